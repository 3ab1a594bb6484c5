"""What a trade costs: commission with a minimum and a cap, half the spread, slippage (optionally
growing with the share of the day's volume taken), and the SEC fee and FINRA TAF on sells.

Defaults are for SPY through a per-share broker (IBKR Pro fixed-like) and are deliberately a little
conservative: SPY's quoted spread is one cent (~0.2 bps at $450), here 0.5 bps each way, plus 1 bp
of slippage for a market order at the open.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class CostModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    commission_per_share: float = Field(0.005, ge=0)
    commission_min: float = Field(1.0, ge=0)  # per order with any shares
    # Cap as a fraction of the trade value (IBKR: 1%); None means no cap, 0 means commission-free.
    commission_max_pct: float | None = Field(0.01, ge=0)
    half_spread_bps: float = Field(0.5, ge=0)
    slippage_bps: float = Field(1.0, ge=0)
    # Extra slippage of impact_bps * sqrt(shares / day's volume); 0 disables (indexes have no volume).
    impact_bps: float = Field(0.0, ge=0)
    sec_fee_rate: float = Field(27.80e-6, ge=0)  # SEC Section 31: $27.80 per $1M of sale proceeds
    taf_per_share: float = Field(0.000166, ge=0)  # FINRA Trading Activity Fee on shares sold
    taf_max: float = Field(8.30, ge=0)

    def price_impact(self, shares: float, volume: float) -> float:
        """Relative price move against us for an order of `shares` (spread + slippage + impact)."""
        bps = self.half_spread_bps + self.slippage_bps
        if self.impact_bps > 0 and volume > 0 and math.isfinite(volume):
            bps += self.impact_bps * math.sqrt(abs(shares) / volume)
        return bps * 1e-4

    def commission(self, shares: float, price: float) -> float:
        if shares == 0:
            return 0.0
        raw = max(self.commission_min, self.commission_per_share * abs(shares))
        if self.commission_max_pct is None:
            return raw
        return min(raw, self.commission_max_pct * abs(shares) * price)

    def sell_fees(self, shares: float, price: float) -> float:
        """Regulatory fees on a sale of `shares` (> 0) at `price`."""
        return self.sec_fee_rate * shares * price + min(self.taf_per_share * shares, self.taf_max)
