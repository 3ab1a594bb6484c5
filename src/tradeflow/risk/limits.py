"""Risk limits: the numbers the governor enforces, typed and frozen so nothing on the trading path can
loosen them mid-tick. Fractions are of account equity; Decimal because they are compared with broker
money. The seed defaults suit a long-only, daily-bar strategy over a handful of symbols."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class RiskLimits(BaseModel):
    # extra="forbid": a misspelt limit in a config file must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Per-symbol position: |qty| in shares (optional) and |qty| x price as a fraction of equity.
    max_position_shares: Decimal | None = Field(None, gt=0)
    max_position_fraction: Decimal = Field(Decimal("1.0"), gt=0)
    # One order's notional (qty x limit price, or x the latest price for a market order): an optional
    # absolute cap and a fraction of equity; the smaller one binds.
    max_order_notional: Decimal | None = Field(None, gt=0)
    max_order_fraction: Decimal = Field(Decimal("1.0"), gt=0)
    # Sum over symbols of |qty| x price, as a fraction of equity: 1.0 means no leverage.
    max_gross_exposure: Decimal = Field(Decimal("1.0"), gt=0)
    # Long-only by default: a sell that would leave a short position is clipped at flat.
    allow_short: bool = False
    # Session P&L (equity vs the session's opening equity) at or below -daily_loss_limit -> REDUCING.
    daily_loss_limit: Decimal = Field(Decimal("0.05"), gt=0, lt=1)
    # Drawdown from the equity peak at or beyond max_drawdown -> HALTED until a human resumes.
    max_drawdown: Decimal = Field(Decimal("0.20"), gt=0, lt=1)
    # Order-count caps. Exceeding the per-tick cap or the per-minute limiter is the signature of a
    # runaway strategy (RELIABILITY E5) and trips HALTED; 200/minute is Alpaca's own API limit.
    max_orders_per_tick: int = Field(5, ge=1)
    max_orders_per_day: int = Field(50, ge=1)
    max_orders_per_minute: int = Field(200, ge=1)
    # The latest price (and a limit price) must lie within this fraction of the last close: a 10x
    # price is a data or sizing bug, never a trade.
    price_band: Decimal = Field(Decimal("0.10"), gt=0, lt=1)

    def order_notional_cap(self, equity: Decimal) -> Decimal:
        cap = self.max_order_fraction * equity
        if self.max_order_notional is not None:
            cap = min(cap, self.max_order_notional)
        return cap
