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
from tradeflow.sim.market import MarketArrays, PanelMarket
from tradeflow.sim.sizing import RESEARCH, SizingRules, size_order


@dataclass(frozen=True)
class Fill:
    index: int  # the session (row) of the fill, at its open
    shares: float  # signed: > 0 bought, < 0 sold
    price: float  # execution price after spread, slippage and impact
    commission: float
    fees: float  # SEC fee + FINRA TAF
    slippage: float  # |shares| * |price - reference price|
    asset: int = 0  # the column of the instrument in a portfolio (0 for one asset)

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
    *,
    equity: float | None = None,
    asset: int = 0,
) -> tuple[float, float, Fill | None]:
    """Trade at `price` towards `weight` of equity in the asset; returns (cash, shares, fill).

    `equity` is the whole book's, marked at the open (default: cash + this one asset). The quantity
    is the one sizing's (`size_order`): a long-only book's buys are limited by the cash on hand, so it
    never borrows to pay its commission.
    """
    if equity is None:
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
    fill = Fill(index, delta, fill_price, commission, fees, abs(delta) * abs(fill_price - price), asset)
    return cash, shares + delta, fill


def rebalance_session(
    cash: float,
    shares: np.ndarray,
    targets: np.ndarray,
    columns: np.ndarray,
    opens: np.ndarray,
    volumes: np.ndarray,
    cost: CostModel,
    index: int = -1,
    rules: SizingRules = RESEARCH,
) -> tuple[float, list[Fill]]:
    """One session's trades of a book at its open: every instrument in `columns` moves toward its
    target weight; returns the cash after them and their fills, and updates `shares` in place.

    Each trade is sized against the book's equity marked at this open, before any of them, sells
    first so their proceeds fund the buys. The backtester (`simulate_portfolio`) and the portfolio
    RL env step through this one function, so both see the same fills.
    """
    # An elementwise product summed, not `shares @ opens`: BLAS's dot may fuse multiply-adds, and a
    # vectorised env marking many books along an axis must reproduce this figure bit for bit.
    marked = cash + float((shares * opens).sum())
    book = None if len(shares) == 1 else marked  # one asset: rebalance marks it itself, as the RL env's step does
    fills: list[Fill] = []
    for j in sorted(columns, key=lambda j: targets[j] * marked - shares[j] * opens[j]):
        cash, shares[j], fill = rebalance(
            cash, shares[j], targets[j], opens[j], volumes[j], cost, index, rules, equity=book, asset=int(j)
        )
        if fill is not None:
            fills.append(fill)
    return cash, fills


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


@dataclass(frozen=True)
class PortfolioResult:
    equity: np.ndarray  # (n,) at each close; equity[0] = initial capital
    shares: np.ndarray  # (n, k) held at each close
    cash: np.ndarray  # (n,)
    weights: np.ndarray  # (n, k) target weights decided at each close
    fills: tuple[Fill, ...]  # Fill.asset names the column


def simulate_portfolio(
    market: PanelMarket,
    weights: np.ndarray,
    cost: CostModel,
    capital: float = 100_000.0,
    rules: SizingRules = RESEARCH,
) -> PortfolioResult:
    """Equity curve of following target weights per instrument (decided at each close) through `market`.

    An instrument trades at the open of t when its target decided at t-1 differs from the one before;
    every trade of a session is sized against the book's equity marked at that open, sells first so
    that their proceeds fund the buys. Only trade sessions run Python; between them the book is
    constant and equity is marked in one numpy expression.
    """
    w = np.asarray(weights, dtype=float)
    n, k = len(market), len(market.symbols)
    if w.shape != (n, k):
        raise InputError(f"weights must be one row per session and one column per instrument ({n}, {k}), got {w.shape}")
    if not np.isfinite(w).all():
        raise InputError("targets contain NaN or infinity")
    decided = np.vstack((np.zeros((1, k)), w[:-1]))
    previous = np.vstack((np.zeros((1, k)), decided[:-1]))
    changed = decided != previous
    trade_days = np.flatnonzero(changed.any(axis=1))
    cash, shares = float(capital), np.zeros(k)
    seg_cash = np.empty(len(trade_days) + 1)
    seg_shares = np.empty((len(trade_days) + 1, k))
    seg_cash[0], seg_shares[0] = cash, shares
    fills: list[Fill] = []
    opens, volumes = market.open, market.volume
    for m, t in enumerate(trade_days):
        cash, session_fills = rebalance_session(
            cash, shares, decided[t], np.flatnonzero(changed[t]), opens[t], volumes[t], cost, int(t), rules
        )
        fills.extend(session_fills)
        seg_cash[m + 1], seg_shares[m + 1] = cash, shares
    seg = np.searchsorted(trade_days, np.arange(n), side="right")
    cash_t, shares_t = seg_cash[seg], seg_shares[seg]
    equity = cash_t + (shares_t * market.close).sum(axis=1)
    equity[0] = capital
    return PortfolioResult(equity=equity, shares=shares_t, cash=cash_t, weights=w, fills=tuple(fills))


def simulate_targets(
    market: MarketArrays,
    targets: np.ndarray,
    cost: CostModel,
    capital: float = 100_000.0,
    rules: SizingRules = RESEARCH,
) -> SimResult:
    """Equity curve of following `targets` (weight decided at each close) through one instrument: the
    one-column case of `simulate_portfolio`."""
    w = np.asarray(targets, dtype=float)
    n = len(market)
    if w.shape != (n,):
        raise InputError(f"targets must have one value per session ({n}), got shape {w.shape}")
    result = simulate_portfolio(PanelMarket.of(market), w[:, None], cost, capital, rules)
    return SimResult(equity=result.equity, shares=result.shares[:, 0], cash=result.cash, targets=w, fills=result.fills)
