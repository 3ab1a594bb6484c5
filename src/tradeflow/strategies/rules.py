"""Rule strategies over the scale-free feature columns, vectorised over the whole frame.

Every rule reads only `features.frame` columns and compares values of the same row, or carries a
state forward (enter/exit latches), so the target at row t never depends on rows after t. Weights are
1.0 (long) and 0.0 (flat); with `allow_short` the flat state of a symmetric rule becomes -1.0.
A NaN in an input column satisfies no condition: the rule stays in (or falls back to) its default state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeflow.errors import InputError
from tradeflow.strategies.base import decision_from_targets, numeric_params

if TYPE_CHECKING:
    from tradeflow.domain import Book, Decision
    from tradeflow.features import Features


def _column(features: Features, name: str) -> np.ndarray:
    frame = features.frame
    if name not in frame.columns:
        raise InputError(f"feature column {name!r} is missing (have {', '.join(map(str, frame.columns))})")
    return frame[name].to_numpy(dtype=np.float64)


def latch(
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray | None = None,
    exit_short: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of an enter/exit state machine, without a Python loop over rows.

    Sequential meaning, row by row: an entry sets the position (long wins if both sides enter on the
    same row); an exit flattens only the side it belongs to. Vectorised as: the position at t is the
    side of the last entry at or before t, unless an exit of that side happened after that entry.
    """
    n = len(enter_long)
    rows = np.arange(n)
    side = np.zeros(n, dtype=np.int8)
    if enter_short is not None:
        side[enter_short] = -1
    side[enter_long] = 1
    last = np.maximum.accumulate(np.where(side != 0, rows, -1))
    entered = last >= 0
    last0 = np.where(entered, last, 0)
    current = np.where(entered, side[last0], 0)
    # exits in (last entry, t]: an exit on the entry row itself does not undo the entry
    exits_long = np.cumsum(exit_long)
    still_long = (current == 1) & (exits_long == exits_long[last0])
    position = still_long.astype(np.float64)
    if enter_short is not None:
        exits_short = np.cumsum(exit_short if exit_short is not None else np.zeros(n, dtype=bool))
        position -= (current == -1) & (exits_short == exits_short[last0])
    return position


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]

    def targets(self, features: Features) -> np.ndarray:
        raise NotImplementedError

    def decide(self, features: Features, book: Book) -> Decision:
        # A rule's decision does not depend on the book: its last vectorised target, by construction.
        return decision_from_targets(self, features, numeric_params(self))


class BuyAndHold(_Rule):
    """Always fully long: the benchmark every strategy is judged beside."""

    name: ClassVar[str] = "buy_and_hold"

    def targets(self, features: Features) -> np.ndarray:
        return np.ones(len(features.frame), dtype=np.float64)


class SmaCrossover(_Rule):
    """Long while SMA-30 is above SMA-60 (a trend filter); flat (or short) otherwise.

    From the gaps g_k = close / SMA_k - 1: SMA_30 > SMA_60  <=>  g_60 > g_30, since close > 0.
    """

    name: ClassVar[str] = "sma"
    allow_short: bool = False

    def targets(self, features: Features) -> np.ndarray:
        up = _column(features, "sma_60_gap") > _column(features, "sma_30_gap")
        return np.where(up, 1.0, -1.0 if self.allow_short else 0.0)


class MacdRule(_Rule):
    """Long while MACD is above its signal line; flat (or short) otherwise."""

    name: ClassVar[str] = "macd"
    allow_short: bool = False

    def targets(self, features: Features) -> np.ndarray:
        up = _column(features, "macd") > _column(features, "macd_signal")
        return np.where(up, 1.0, -1.0 if self.allow_short else 0.0)


class RsiRule(_Rule):
    """Buy the dip: enter long when RSI-30 < lower, exit when RSI-30 > upper.

    RSI over 30 sessions is much smoother than the classic RSI-14, so 30/70 would almost never
    trigger: on SPY 2005-2023 RSI-30 sits between ~41 and ~66 nine days in ten (median ~55). The
    defaults 45 (about the 12th percentile: a real pullback) and 60 (about the 75th: recovered) keep
    the rule trading a few times a year. With `allow_short` the exit goes short instead of flat.
    """

    name: ClassVar[str] = "rsi"
    lower: float = Field(45.0, ge=0.0, le=100.0)
    upper: float = Field(60.0, ge=0.0, le=100.0)
    allow_short: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RsiRule:
        if not self.lower < self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self

    def targets(self, features: Features) -> np.ndarray:
        rsi = _column(features, "rsi_30")
        oversold, overbought = rsi < self.lower, rsi > self.upper
        if self.allow_short:
            return latch(oversold, overbought, overbought, oversold)
        return latch(oversold, overbought)


class MeanReversionRule(_Rule):
    """Bollinger mean reversion: enter long when the close falls below the lower band, exit when it
    is back above the middle band (`exit_at="middle"`, default) or above the upper band ("upper").

    From the scale-free bands b = band / close - 1: close < lower  <=>  boll_lower > 0; the middle
    band is their mean, so close > middle  <=>  boll_upper + boll_lower < 0; close > upper  <=>
    boll_upper < 0. With `allow_short` the mirror image also trades: short above the upper band,
    cover below the middle (or lower) band.
    """

    name: ClassVar[str] = "mean_reversion"
    exit_at: Literal["middle", "upper"] = "middle"
    allow_short: bool = False

    def targets(self, features: Features) -> np.ndarray:
        upper, lower = _column(features, "boll_upper"), _column(features, "boll_lower")
        below_lower, above_upper = lower > 0.0, upper < 0.0
        middle = upper + lower
        if self.exit_at == "middle":
            exit_long, exit_short = middle < 0.0, middle > 0.0
        else:
            exit_long, exit_short = above_upper, below_lower
        if self.allow_short:
            return latch(below_lower, exit_long, above_upper, exit_short)
        return latch(below_lower, exit_long)
