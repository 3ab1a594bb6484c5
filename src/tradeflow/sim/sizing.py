"""One sizing: target weight + book + price + cost model -> the quantity to trade (issue 10, item 4).

The backtester and the RL env (through `rebalance`), the event-driven replay and the live tick all
size an order with `size_order`, so a research curve and the trading path buy the same amount:

- the target is `weight` of the equity marked at the price the order will face, less a cash buffer;
- a buy of an unlevered book (weight <= 1) is capped by the cash on hand after spread, slippage,
  impact and commission, so it is never refused for buying power;
- whole units toward zero unless the instrument trades in fractions;
- a change worth less than `rebalance_band` of equity is not traded, unless it closes the position
  (exits always trade): without it a 5-minute tick would churn one-share orders as equity drifts.

Research (`RESEARCH`) trades fractions with no buffer and no band: the backtest only trades when the
target changes. The tick takes its rules from the instrument and the trading settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradeflow.sim.costs import CostModel


@dataclass(frozen=True)
class SizingRules:
    fractional: bool = True  # fractions of a unit allowed (research, crypto); else whole units toward zero
    cash_buffer: float = 0.0  # fraction of equity kept back from the target
    rebalance_band: float = 0.0  # minimum change worth trading, as a fraction of equity

    def __post_init__(self) -> None:
        if not (0.0 <= self.cash_buffer < 1.0) or not (0.0 <= self.rebalance_band < 1.0):
            raise ValueError("cash_buffer and rebalance_band must lie in [0, 1)")


RESEARCH = SizingRules()


@dataclass(frozen=True)
class Sized:
    qty: float  # signed quantity to trade; 0.0 means no order
    impact: float  # the price impact the quantity was sized against (a capped buy keeps its estimate)


def size_order(
    weight: float,
    held: float,
    cash: float,
    equity: float,
    price: float,
    volume: float,
    cost: CostModel,
    rules: SizingRules = RESEARCH,
    *,
    hold: float | None = None,
) -> Sized:
    """The signed quantity to trade at `price` so that `held` moves toward `weight` of `equity`, or,
    with `hold`, toward that quantity: the position sized when the target weight last changed, which
    a backtest keeps until the target changes again (a drifting weight is not re-sized)."""
    if equity <= 0:
        weight, hold = 0.0, None  # nothing left to trade with: close out what remains
    investable = max(equity, 0.0) * (1.0 - rules.cash_buffer) if rules.cash_buffer else max(equity, 0.0)
    delta = (weight * investable / price if hold is None else hold) - held
    if abs(delta) * price <= 1e-9 * max(abs(equity), 1.0):
        return Sized(0.0, 0.0)
    impact = cost.price_impact(delta, volume)
    if delta > 0 and weight <= 1.0:
        fill_price = price * (1.0 + impact)
        commission = cost.commission(delta, fill_price)
        if delta * fill_price + commission > cash:
            delta = (cash - commission) / fill_price
            if delta <= 0:
                return Sized(0.0, impact)
    if not rules.fractional:
        delta = math.trunc(held + delta) - held
    exits = (weight == 0.0 if hold is None else hold == 0.0) and held != 0.0
    if rules.rebalance_band and not exits and abs(delta) * price < rules.rebalance_band * equity:
        return Sized(0.0, impact)
    return Sized(delta, impact)
