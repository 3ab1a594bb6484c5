"""Backtest a strategy: its targets through `tradeflow.sim` (the cost and fill model the RL env uses).

Evaluation window: the strategy sees the FULL feature frame, so its indicators and latches are warm
on the first session of the window (targets are causal, so rows after the window change nothing
inside it). The simulation runs on the [start, end] slice only: the book is flat at the first
session's close (equity = capital), the target decided at that close fills at the next open, and
the target decided at the last close is never executed. Prices are dividend-adjusted
(`features.market()`), so a long position earns SPY's dividends as a holder would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tradeflow.backtest.breakers import BreakerEvent, simulate_with_breakers
from tradeflow.backtest.metrics import PERIODS_PER_YEAR, metrics_dict, simple_returns
from tradeflow.errors import InputError
from tradeflow.risk.limits import RiskLimits
from tradeflow.sim import RESEARCH, CostModel, Fill, MarketArrays, SimResult, SizingRules, simulate_targets

if TYPE_CHECKING:
    from tradeflow.features import Features
    from tradeflow.strategies import Strategy

DEFAULT_COST = CostModel()
SessionLike = str | date | pd.Timestamp | np.datetime64
_FILL_COLUMNS = ("session", "shares", "price", "notional", "commission", "fees", "slippage", "cost")
_TRADE_COLUMNS = ("entry_session", "exit_session", "side", "entry_notional", "pnl", "return", "closed")


@dataclass(frozen=True)
class BacktestResult:
    strategy: str
    equity: pd.Series  # at each close of the window, indexed by session; equity[0] = capital
    returns: pd.Series  # simple close-to-close returns, from the window's second session
    targets: pd.Series  # target weight decided at each close
    position: pd.Series  # shares held at each close
    fills: pd.DataFrame  # one row per executed order (_FILL_COLUMNS), at the open of `session`
    trades: pd.DataFrame  # round trips (_TRADE_COLUMNS); an open one at the end has closed=False
    costs: dict[str, float]  # commission, fees, slippage, total (currency)
    metrics: dict[str, float]  # metrics_dict keys
    sim: SimResult  # the raw arrays, for parity checks against the RL env
    breakers: tuple[BreakerEvent, ...] = ()  # the governor's breakers that fired (with `limits`)
    state: pd.Series | None = None  # trading state at each close ("ACTIVE"/"HALTED"), with `limits`


def window_bounds(sessions: np.ndarray, start: SessionLike | None, end: SessionLike | None) -> tuple[int, int]:
    """Row range [i0, i1) of the sessions inside [start, end] (both inclusive); at least two sessions."""
    s = np.asarray(sessions, dtype="datetime64[ns]")
    i0 = 0 if start is None else int(np.searchsorted(s, _session(start), side="left"))
    i1 = len(s) if end is None else int(np.searchsorted(s, _session(end), side="right"))
    if i1 - i0 < 2:
        raise InputError(f"the window {start or 'first'}..{end or 'last'} holds {max(i1 - i0, 0)} session(s); need 2+")
    return i0, i1


def _session(value: SessionLike) -> np.datetime64:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"not a date: {value!r}") from None
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize().as_unit("ns").to_datetime64()


def round_trips(fills: tuple[Fill, ...], last_close: float) -> dict[str, np.ndarray]:
    """Round trips from the fills: a trip opens when the position leaves zero and closes when it returns
    to zero; a fill that flips the side closes one trip and opens the next, its commission and fees
    split pro rata by shares. P&L is net of every cost (slippage is already in the fill prices); a
    trip still open at the end is marked at `last_close` and flagged closed=False.
    Values are row indices of the window (entry/exit at the fill's open).
    """
    rows: list[tuple[int, int, float, float, float, bool]] = []  # entry, exit, side, notional, pnl, closed
    pos, flow, gross, opened = 0.0, 0.0, 0.0, -1
    for f in fills:
        before, after = pos, pos + f.shares
        charges = f.commission + f.fees
        if abs(after) <= 1e-9 * max(abs(before), 1.0):
            after = 0.0
        if before == 0.0:
            opened, flow, gross = f.index, -f.shares * f.price - charges, abs(f.shares) * f.price
        elif after == 0.0 or np.sign(after) == np.sign(before):
            flow -= f.shares * f.price + charges
            if abs(after) > abs(before):
                gross += abs(f.shares) * f.price
            if after == 0.0:
                rows.append((opened, f.index, float(np.sign(before)), gross, flow, True))
        else:  # through zero: close `before`, open `after`
            share = abs(before) / abs(f.shares)
            rows.append(
                (opened, f.index, float(np.sign(before)), gross, flow + before * f.price - charges * share, True)
            )
            opened, flow, gross = f.index, -after * f.price - charges * (1 - share), abs(after) * f.price
        pos = after
    if pos != 0.0:
        rows.append((opened, -1, float(np.sign(pos)), gross, flow + pos * last_close, False))
    entry, exit_, side, notional, pnl, closed = zip(*rows, strict=True) if rows else ((),) * 6
    return {
        "entry": np.asarray(entry, dtype=np.int64),
        "exit": np.asarray(exit_, dtype=np.int64),
        "side": np.asarray(side, dtype=np.float64),
        "entry_notional": np.asarray(notional, dtype=np.float64),
        "pnl": np.asarray(pnl, dtype=np.float64),
        "closed": np.asarray(closed, dtype=bool),
    }


def evaluate_targets(
    targets: np.ndarray,
    market: MarketArrays,
    cost: CostModel = DEFAULT_COST,
    capital: float = 100_000.0,
    start: SessionLike | None = None,
    end: SessionLike | None = None,
    *,
    name: str = "targets",
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
    limits: RiskLimits | None = None,
    rules: SizingRules = RESEARCH,
) -> BacktestResult:
    """Backtest a precomputed target sequence (one weight per row of `market`) over [start, end].

    With `limits`, the risk governor's drawdown breaker applies as in live trading (breakers.py).
    `rules` are the one sizing's (sim.sizing): research trades fractions; the trading path's rules
    (whole shares, a cash buffer) make the curve the one a replay of the tick gives."""
    w = np.asarray(targets, dtype=np.float64)
    if w.shape != (len(market),):
        raise InputError(f"{name}: targets must have one value per session ({len(market)}), got shape {w.shape}")
    i0, i1 = window_bounds(market.sessions, start, end)
    window = market.slice(i0, i1)
    index = pd.DatetimeIndex(window.sessions, name="session")
    events: tuple[BreakerEvent, ...] = ()
    state = None
    if limits is None:
        sim = simulate_targets(window, w[i0:i1], cost, capital, rules)
    else:
        sim, events, states = simulate_with_breakers(window, w[i0:i1], cost, capital, limits, rules)
        state = pd.Series(states, index=index, name="state")
    trips = round_trips(sim.fills, float(window.close[-1]))

    fill_index = np.fromiter((f.index for f in sim.fills), dtype=np.int64, count=len(sim.fills))
    raw = np.array([(f.shares, f.price, f.commission, f.fees, f.slippage) for f in sim.fills], dtype=np.float64)
    raw = raw.reshape(len(sim.fills), 5)
    shares, price, commission, fees, slippage = raw.T
    notional = np.abs(shares) * price
    fills = pd.DataFrame(
        dict(
            zip(
                _FILL_COLUMNS,
                (index[fill_index], shares, price, notional, commission, fees, slippage, commission + fees + slippage),
                strict=True,
            )
        )
    )
    exit_sessions = np.where(trips["exit"] >= 0, window.sessions[np.maximum(trips["exit"], 0)], np.datetime64("NaT"))
    with np.errstate(divide="ignore", invalid="ignore"):
        trip_return = np.where(trips["entry_notional"] > 0, trips["pnl"] / trips["entry_notional"], np.nan)
    trades = pd.DataFrame(
        dict(
            zip(
                _TRADE_COLUMNS,
                (
                    index[trips["entry"]],
                    pd.DatetimeIndex(exit_sessions),
                    trips["side"],
                    trips["entry_notional"],
                    trips["pnl"],
                    trip_return,
                    trips["closed"],
                ),
                strict=True,
            )
        )
    )
    costs = {
        "commission": float(commission.sum()),
        "fees": float(fees.sum()),
        "slippage": float(slippage.sum()),
    }
    costs["total"] = costs["commission"] + costs["fees"] + costs["slippage"]
    metrics = metrics_dict(
        sim.equity,
        position=sim.shares,
        traded_notional=float(notional.sum()),
        round_trip_pnl=trips["pnl"][trips["closed"]],
        fills=len(sim.fills),
        periods_per_year=PERIODS_PER_YEAR,
        n_trials=n_trials,
        trial_sharpe_variance=trial_sharpe_variance,
    )
    return BacktestResult(
        strategy=name,
        equity=pd.Series(sim.equity, index=index, name="equity"),
        returns=pd.Series(simple_returns(sim.equity), index=index[1:], name="returns"),
        targets=pd.Series(sim.targets, index=index, name="target"),
        position=pd.Series(sim.shares, index=index, name="shares"),
        fills=fills,
        trades=trades,
        costs=costs,
        metrics=metrics,
        sim=sim,
        breakers=events,
        state=state,
    )


def backtest(
    strategy: Strategy,
    features: Features,
    cost: CostModel = DEFAULT_COST,
    capital: float = 100_000.0,
    start: SessionLike | None = None,
    end: SessionLike | None = None,
    *,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
    limits: RiskLimits | None = None,
    rules: SizingRules = RESEARCH,
) -> BacktestResult:
    """Backtest `strategy` on `features` over [start, end] (inclusive; None = the frame's ends).

    `n_trials` and `trial_sharpe_variance` (of the annualised Sharpes of all variants tried) only
    deflate the `dsr` metric; with the defaults dsr equals psr.
    """
    targets = np.asarray(strategy.targets(features), dtype=np.float64)
    return evaluate_targets(
        targets,
        features.market(),
        cost,
        capital,
        start,
        end,
        name=strategy.name,
        n_trials=n_trials,
        trial_sharpe_variance=trial_sharpe_variance,
        limits=limits,
        rules=rules,
    )
