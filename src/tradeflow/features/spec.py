"""The versioned feature specification: which features, with which windows, and how warm-up is judged.

A model's metadata stores `spec.to_dict()` and `spec.digest`; a model is only ever fed features built
from the same spec (same digest). Bump `version` whenever a definition in indicators.py changes, so
an old model can never silently receive differently computed features under the same name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from tradeflow.errors import ConfigError
from tradeflow.infra.jsontext import canonical_json

FEATURE_VERSION = "v1"


def settle_rows(alpha: float, tol: float) -> int:
    """Rows a recursive smoother with weight `alpha` must run before its seed's weight falls below `tol`.

    An EMA seeded with its first input keeps weight (1 - alpha)^n on that arbitrary seed after n
    steps; the value is only used once that weight is negligible, so a live tick with a shorter
    history computes (within `tol`) what the research run computed for the same session.
    """
    return math.ceil(math.log(tol) / math.log(1.0 - alpha))


@dataclass(frozen=True)
class FeatureSpec:
    """Windows and switches of the feature set. Names follow the windows (e.g. rsi_window=14 -> rsi_14)."""

    version: str = FEATURE_VERSION
    vol_window: int = 20
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    boll_window: int = 20
    boll_k: float = 2.0
    rsi_window: int = 30
    cci_window: int = 30
    dx_window: int = 30
    sma_short: int = 30
    sma_long: int = 60
    turbulence_window: int = 252
    include_vix: bool = True
    # A session without a VIX bar reuses the latest earlier VIX close for at most this many sessions.
    vix_max_ffill: int = 3
    # Weight a recursive smoother (EMA / Wilder) may still give its seed when its first value is kept.
    seed_weight_tol: float = 1e-6

    def __post_init__(self) -> None:
        windows = {
            "vol_window": (self.vol_window, 2),
            "macd_fast": (self.macd_fast, 1),
            "macd_slow": (self.macd_slow, 2),
            "macd_signal": (self.macd_signal, 1),
            "boll_window": (self.boll_window, 2),
            "rsi_window": (self.rsi_window, 2),
            "cci_window": (self.cci_window, 2),
            "dx_window": (self.dx_window, 2),
            "sma_short": (self.sma_short, 1),
            "sma_long": (self.sma_long, 1),
            "turbulence_window": (self.turbulence_window, 2),
        }
        for name, (value, least) in windows.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"feature spec: {name} must be an integer >= {least}, got {value!r}")
        if self.macd_fast >= self.macd_slow:
            raise ConfigError(f"feature spec: macd_fast ({self.macd_fast}) must be < macd_slow ({self.macd_slow})")
        if self.sma_short == self.sma_long:
            raise ConfigError("feature spec: sma_short and sma_long must differ (their names would collide)")
        if not self.boll_k > 0:
            raise ConfigError(f"feature spec: boll_k must be > 0, got {self.boll_k!r}")
        if not isinstance(self.vix_max_ffill, int) or self.vix_max_ffill < 0:
            raise ConfigError(f"feature spec: vix_max_ffill must be an integer >= 0, got {self.vix_max_ffill!r}")
        if not 0.0 < self.seed_weight_tol < 1.0:
            raise ConfigError(f"feature spec: seed_weight_tol must be in (0, 1), got {self.seed_weight_tol!r}")
        if not self.version:
            raise ConfigError("feature spec: version must not be empty")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature columns in matrix order (the vix pair only when include_vix)."""
        vix = ("vix", "vix_change") if self.include_vix else ()
        return (
            "log_return",
            f"realized_vol_{self.vol_window}",
            "macd",
            "macd_signal",
            "macd_hist",
            "boll_upper",
            "boll_lower",
            f"rsi_{self.rsi_window}",
            f"cci_{self.cci_window}",
            f"dx_{self.dx_window}",
            f"sma_{self.sma_short}_gap",
            f"sma_{self.sma_long}_gap",
            *vix,
            "turbulence",
        )

    @property
    def warmup_rows(self) -> int:
        """Leading bar rows without a defined value for every price feature (VIX availability aside).

        Row i (0-based) is the first usable row of a feature when its window or settled recursion
        needs rows 0..i. Returns start at row 1, so return-based windows need one extra row.
        """
        tol = self.seed_weight_tol
        macd = settle_rows(2.0 / (self.macd_slow + 1), tol) + settle_rows(2.0 / (self.macd_signal + 1), tol)
        return max(
            self.vol_window,  # returns 1..vol_window
            macd,
            self.boll_window - 1,
            1 + settle_rows(1.0 / self.rsi_window, tol),
            self.cci_window - 1,
            1 + settle_rows(1.0 / self.dx_window, tol),
            self.sma_short - 1,
            self.sma_long - 1,
            self.turbulence_window + 1,  # today's return plus turbulence_window earlier returns
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec from model metadata; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"feature spec: unknown fields {unknown}")
        return cls(**dict(data))

    @property
    def digest(self) -> str:
        """A stable sha256 of the spec (canonical JSON with sorted keys): equal specs, equal digest."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode("utf-8")).hexdigest()

    def replace(self, **changes: Any) -> FeatureSpec:
        """A copy with some fields changed (validated again), e.g. DEFAULT_SPEC.replace(include_vix=False)."""
        return dataclasses.replace(self, **changes)


DEFAULT_SPEC = FeatureSpec()
