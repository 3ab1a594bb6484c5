"""Portfolio backtests: target weights per instrument through the one portfolio simulator
(`tradeflow.sim.simulate_portfolio`), with the governor's breakers and the trading path's sizing.

A rule strategy over a universe trades each instrument in an equal sleeve: its target on symbol j is
the rule's target on j's features divided by the number of instruments. `buy_and_hold` therefore
buys equal weights on the first session and holds them (no rebalancing: a trade happens only when a
target changes, as everywhere in tradeflow). Sessions are the instruments' common sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradeflow.backtest.breakers import BreakerEvent, portfolio_with_breakers
from tradeflow.backtest.engine import SessionLike, round_trips, window_bounds
from tradeflow.backtest.metrics import PERIODS_PER_YEAR, metrics_dict, simple_returns
from tradeflow.errors import InputError
from tradeflow.risk.limits import RiskLimits
from tradeflow.sim import RESEARCH, CostModel, MarketArrays, PanelMarket, SizingRules, simulate_portfolio

if TYPE_CHECKING:
    from tradeflow.features import Features
    from tradeflow.strategies import Strategy


@dataclass(frozen=True)
class PortfolioBacktest:
    strategy: str
    symbols: tuple[str, ...]
    equity: pd.Series  # at each close of the window; equity[0] = capital
    returns: pd.Series
    weights: pd.DataFrame  # target weight decided at each close, session x symbol
    shares: pd.DataFrame  # held at each close
    fills: pd.DataFrame  # session, symbol, shares, price, commission, fees, slippage
    metrics: dict[str, float]
    per_symbol: dict[str, dict[str, float]]
    breakers: tuple[BreakerEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "symbols": list(self.symbols),
            "per_symbol": self.per_symbol,
            "breakers": [e.to_dict() for e in self.breakers],
        }


def evaluate_weights(
    weights: np.ndarray,
    market: PanelMarket,
    cost: CostModel,
    capital: float = 100_000.0,
    start: SessionLike | None = None,
    end: SessionLike | None = None,
    *,
    name: str = "weights",
    limits: RiskLimits | None = None,
    rules: SizingRules = RESEARCH,
) -> PortfolioBacktest:
    """Backtest target weights (session x symbol, decided at each close) over [start, end]."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(market), len(market.symbols)):
        raise InputError(f"{name}: weights must be (sessions, symbols) = {(len(market), len(market.symbols))}")
    i0, i1 = window_bounds(market.sessions, start, end)
    window = market.slice(i0, i1)
    events: tuple[BreakerEvent, ...] = ()
    if limits is None:
        sim = simulate_portfolio(window, w[i0:i1], cost, capital, rules)
    else:
        sim, events, _ = portfolio_with_breakers(window, w[i0:i1], cost, capital, limits, rules)
    index = pd.DatetimeIndex(window.sessions, name="session")
    symbols = window.symbols
    fills = pd.DataFrame(
        [(index[f.index], symbols[f.asset], f.shares, f.price, f.commission, f.fees, f.slippage) for f in sim.fills],
        columns=["session", "symbol", "shares", "price", "commission", "fees", "slippage"],
    )
    pnls: list[np.ndarray] = []
    per_symbol: dict[str, dict[str, float]] = {}
    final_equity = float(sim.equity[-1])
    for j, symbol in enumerate(symbols):
        own = tuple(f for f in sim.fills if f.asset == j)
        trips = round_trips(own, float(window.close[-1, j]))
        pnls.append(trips["pnl"][trips["closed"]])
        held_value = float(sim.shares[-1, j] * window.close[-1, j])
        flow = sum(-f.shares * f.price - f.commission - f.fees for f in own)
        per_symbol[symbol] = {
            "pnl": float(flow + held_value),
            "contribution": float((flow + held_value) / capital),
            "trades": len(own),
            "traded_notional": float(sum(abs(f.shares) * f.price for f in own)),
            "final_weight": held_value / final_equity if final_equity > 0 else 0.0,
        }
    metrics = metrics_dict(
        sim.equity,
        position=np.abs(sim.shares).sum(axis=1),
        traded_notional=float(sum(abs(f.shares) * f.price for f in sim.fills)),
        round_trip_pnl=np.concatenate(pnls) if pnls else np.array([]),
        fills=len(sim.fills),
        periods_per_year=PERIODS_PER_YEAR,
    )
    return PortfolioBacktest(
        strategy=name,
        symbols=symbols,
        equity=pd.Series(sim.equity, index=index, name="equity"),
        returns=pd.Series(simple_returns(sim.equity), index=index[1:], name="returns"),
        weights=pd.DataFrame(sim.weights, index=index, columns=list(symbols)),
        shares=pd.DataFrame(sim.shares, index=index, columns=list(symbols)),
        fills=fills,
        metrics=metrics,
        per_symbol=per_symbol,
        breakers=events,
    )


def sleeve_weights(strategy: Strategy, features: dict[str, Features], market: PanelMarket) -> np.ndarray:
    """Each instrument's rule target in an equal sleeve, on the panel's sessions."""
    k = len(market.symbols)
    out = np.empty((len(market), k))
    for j, symbol in enumerate(market.symbols):
        f = features[symbol]
        targets = pd.Series(np.asarray(strategy.targets(f), dtype=np.float64), index=pd.DatetimeIndex(f.sessions))
        aligned = targets.reindex(pd.DatetimeIndex(market.sessions))
        if aligned.isna().any():
            raise InputError(f"{symbol}: no feature row for {aligned.isna().sum()} of the portfolio's sessions")
        out[:, j] = aligned.to_numpy() / k
    return out


def backtest_portfolio(
    strategy: Strategy,
    features: dict[str, Features],
    cost: CostModel,
    capital: float = 100_000.0,
    start: SessionLike | None = None,
    end: SessionLike | None = None,
    *,
    limits: RiskLimits | None = None,
    rules: SizingRules = RESEARCH,
) -> PortfolioBacktest:
    """`strategy` in equal sleeves over the instruments of `features` (symbol -> its Features)."""
    markets: dict[str, MarketArrays] = {}
    for symbol, f in features.items():
        market = f.market()
        markets[symbol] = market
    panel = PanelMarket.align(markets)
    weights = sleeve_weights(strategy, features, panel)
    return evaluate_weights(weights, panel, cost, capital, start, end, name=strategy.name, limits=limits, rules=rules)
