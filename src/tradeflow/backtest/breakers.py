"""The risk governor's breakers in a backtest: a research equity curve stops where live trading would.

Live, the drawdown breaker (RiskGovernor, E3) trips HALTED when equity marked at the last close is
`max_drawdown` or more below its peak; from then on only position-reducing orders pass, until a
person resumes (never, in a backtest). A daily-bar backtest decides at each close with equity marked
at that close, which is exactly what the first tick of the next session sees, so the same rule is
applied here: from the first close at which the drawdown reaches the limit, the target can only move
toward flat (never grow, never flip). The curve before that close is unchanged, so re-simulating the
clamped targets once is exact.

The daily-loss breaker measures equity against the session's first tick, both marked at the same last
close in a daily-bar world, so it cannot fire on daily bars (live, it fires on intraday price moves
the daily data does not have); the report says which breakers were applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.risk.limits import RiskLimits
from tradeflow.sim import (
    RESEARCH,
    CostModel,
    MarketArrays,
    PanelMarket,
    PortfolioResult,
    SimResult,
    SizingRules,
    simulate_portfolio,
)

APPLIED = ("drawdown",)


@dataclass(frozen=True)
class BreakerEvent:
    session: str  # ISO date of the close at which it fired
    breaker: str  # "drawdown"
    state: str  # the trading state it set: "HALTED"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reduce_only_from(targets: np.ndarray, row: int) -> np.ndarray:
    """Targets decided at `row` and after may only move toward flat from the position held then (the
    target decided at row - 1): never larger, never of the other sign. Per column for a portfolio."""
    out = np.asarray(targets, dtype=np.float64).copy()
    if out.ndim == 2:
        for j in range(out.shape[1]):
            out[:, j] = reduce_only_from(out[:, j], row)
        return out
    held = out[row - 1] if row > 0 else 0.0
    tail = out[row:]
    if held >= 0:
        out[row:] = np.minimum.accumulate(np.concatenate(([held], np.clip(tail, 0.0, None))))[1:]
    else:
        out[row:] = np.maximum.accumulate(np.concatenate(([held], np.clip(tail, None, 0.0))))[1:]
    return out


def portfolio_with_breakers(
    market: PanelMarket,
    weights: np.ndarray,
    cost: CostModel,
    capital: float,
    limits: RiskLimits,
    rules: SizingRules = RESEARCH,
) -> tuple[PortfolioResult, tuple[BreakerEvent, ...], np.ndarray]:
    """`simulate_portfolio` under the governor's drawdown breaker; also the trading state at each
    close ("ACTIVE" or "HALTED": the state the decision at that close was made in)."""
    sim = simulate_portfolio(market, weights, cost, capital, rules)
    state = np.full(len(market), "ACTIVE", dtype=object)
    equity = sim.equity
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, (peak - equity) / peak, 0.0)
    limit = float(limits.max_drawdown)
    hits = np.flatnonzero(drawdown >= limit)
    if len(hits) == 0:
        return sim, (), state
    row = int(hits[0])
    clamped = reduce_only_from(weights, row)
    if not np.array_equal(clamped, np.asarray(weights, dtype=np.float64)):
        sim = simulate_portfolio(market, clamped, cost, capital, rules)
    state[row:] = "HALTED"
    session = pd.Timestamp(market.sessions[row]).date().isoformat()
    detail = (
        f"drawdown {drawdown[row]:.2%} from peak {peak[row]:.2f} >= {limit:.0%}: "
        "only position-reducing orders from here, as live trading would"
    )
    return sim, (BreakerEvent(session, "drawdown", "HALTED", detail),), state


def simulate_with_breakers(
    market: MarketArrays,
    targets: np.ndarray,
    cost: CostModel,
    capital: float,
    limits: RiskLimits,
    rules: SizingRules = RESEARCH,
) -> tuple[SimResult, tuple[BreakerEvent, ...], np.ndarray]:
    """The one-instrument case of `portfolio_with_breakers`."""
    w = np.asarray(targets, dtype=np.float64)
    sim, events, state = portfolio_with_breakers(PanelMarket.of(market), w[:, None], cost, capital, limits, rules)
    final = sim.weights[:, 0]
    return SimResult(sim.equity, sim.shares[:, 0], sim.cash, final, sim.fills), events, state
