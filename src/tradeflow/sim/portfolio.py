"""The portfolio simulator: one rebalance kernel, used by the RL env step by step and by the
backtester over whole target sequences, so both see exactly the same fills and costs.

Timing (no lookahead by construction): a target weight decided after the close of session t is
executed at the OPEN of session t+1; equity is marked at each close. A trade happens only when the
target changes: holding a long position lets its weight drift, it is not rebalanced daily.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradeflow.errors import InputError
from tradeflow.sim.costs import CostModel
from tradeflow.sim.market import MarketArrays
from tradeflow.sim.sizing import RESEARCH, SizingRules, size_order


@dataclass(frozen=True)
class Fill:
    index: int  # the session (row) of the fill, at its open
    shares: float  # signed: > 0 bought, < 0 sold
    price: float  # execution price after spread, slippage and impact
    commission: float
    fees: float  # SEC fee + FINRA TAF
    slippage: float  # |shares| * |price - reference price|

    @property
    def total_cost(self) -> float:
        return self.commission + self.fees + self.slippage


def rebalance(
    cash: float,
    shares: float,
    weight: float,
    price: float,
    volume: float,
    cost: CostModel,
    index: int = -1,
    rules: SizingRules = RESEARCH,
) -> tuple[float, float, Fill | None]:
    """Trade at `price` towards `weight` of equity in the asset; returns (cash, shares, fill).

    The quantity is the one sizing's (`size_order`): a long-only book's buys are limited by the
    cash on hand, so it never borrows to pay its commission.
    """
    equity = cash + shares * price
    sized = size_order(weight, shares, cash, equity, price, volume, cost, rules)
    delta, impact = sized.qty, sized.impact
    if delta == 0.0:
        return cash, shares, None
    if delta > 0:
        fill_price = price * (1.0 + impact)
        commission = cost.commission(delta, fill_price)
        fees = 0.0
        cash -= delta * fill_price + commission
    else:
        # Sales are not limited by cash: fees on a tiny sale can exceed its proceeds, as at a real
        # broker. The default 1% commission cap keeps that from happening in practice.
        fill_price = price * (1.0 - impact)
        sold = -delta
        commission = cost.commission(sold, fill_price)
        fees = cost.sell_fees(sold, fill_price)
        cash += sold * fill_price - commission - fees
    fill = Fill(index, delta, fill_price, commission, fees, abs(delta) * abs(fill_price - price))
    return cash, shares + delta, fill


@dataclass(frozen=True)
class SimResult:
    equity: np.ndarray  # at each close; equity[0] = initial capital
    shares: np.ndarray  # held at each close
    cash: np.ndarray
    targets: np.ndarray  # target weight decided at each close
    fills: tuple[Fill, ...]

    @property
    def returns(self) -> np.ndarray:
        """Simple close-to-close returns of the portfolio (len n - 1); 0 after equity reaches 0."""
        prev = self.equity[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(prev != 0, np.diff(self.equity) / prev, 0.0)

    @property
    def exposure(self) -> np.ndarray:
        """Fraction of equity in the asset at each close (signed)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.equity != 0, 1.0 - self.cash / self.equity, 0.0)

    @property
    def total_costs(self) -> float:
        return float(sum(f.total_cost for f in self.fills))


def simulate_targets(
    market: MarketArrays,
    targets: np.ndarray,
    cost: CostModel,
    capital: float = 100_000.0,
    rules: SizingRules = RESEARCH,
) -> SimResult:
    """Equity curve of following `targets` (weight decided at each close) through `market`.

    Vectorised by holding period: only trade sessions run Python (the kernel); between trades the
    position is constant and equity is marked in one numpy expression.
    """
    w = np.asarray(targets, dtype=float)
    n = len(market)
    if w.shape != (n,):
        raise InputError(f"targets must have one value per session ({n}), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise InputError("targets contain NaN or infinity")
    # A trade at the open of t happens when the target decided at t-1 differs from the one before
    # (the book starts flat); the last target has no next open and is never executed.
    decided = np.concatenate(([0.0], w[:-1]))
    previous = np.concatenate(([0.0], decided[:-1]))
    trade_days = np.flatnonzero(decided != previous)
    cash, shares = float(capital), 0.0
    seg_cash = np.empty(len(trade_days) + 1)
    seg_shares = np.empty(len(trade_days) + 1)
    seg_cash[0], seg_shares[0] = cash, shares
    fills: list[Fill] = []
    opens, volumes = market.open, market.volume
    for k, t in enumerate(trade_days):
        cash, shares, fill = rebalance(cash, shares, decided[t], opens[t], volumes[t], cost, int(t), rules)
        if fill is not None:
            fills.append(fill)
        seg_cash[k + 1], seg_shares[k + 1] = cash, shares
    seg = np.searchsorted(trade_days, np.arange(n), side="right")
    cash_t, shares_t = seg_cash[seg], seg_shares[seg]
    equity = cash_t + shares_t * market.close
    equity[0] = capital
    return SimResult(equity=equity, shares=shares_t, cash=cash_t, targets=w, fills=tuple(fills))
