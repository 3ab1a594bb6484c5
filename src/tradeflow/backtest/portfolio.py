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
from tradeflow.sim import RESEARCH, CostModel, PanelMarket, SizingRules, simulate_portfolio
from tradeflow.strategies.sleeves import Sleeves

if TYPE_CHECKING:
    from tradeflow.features import PanelFeatures
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


def backtest_portfolio(
    strategy: Strategy,
    features: PanelFeatures,
    cost: CostModel,
    capital: float = 100_000.0,
    start: SessionLike | None = None,
    end: SessionLike | None = None,
    *,
    limits: RiskLimits | None = None,
    rules: SizingRules = RESEARCH,
) -> PortfolioBacktest:
    """`strategy` (a rule) in equal sleeves over the panel's instruments (strategies.Sleeves)."""
    sleeves = Sleeves(strategy, features.symbols)
    panel = PanelMarket.align(features.market())
    return evaluate_weights(
        sleeves.targets(features), panel, cost, capital, start, end, name=strategy.name, limits=limits, rules=rules
    )
