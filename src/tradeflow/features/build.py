"""build_features: one symbol's gated daily bars (+ ^VIX bars) -> the causal feature frame.

The same call serves research (twenty years at once) and a live tick (the latest history): every row
depends only on bars at or before its session, so the row a tick computes for today is the row a
later research run computes for that day.

Row policy, decided here once:
- Prices are dividend-adjusted (open/high/low/close scaled by adj_close / close, as
  sim.MarketArrays does), so log_return includes dividends.
- Warm-up rows (the first `spec.warmup_rows`, where some window is incomplete or a recursive
  smoother still leans on its seed) are dropped, never filled.
- VIX is joined on the session. A session without a VIX bar reuses the latest EARLIER VIX close for
  at most `spec.vix_max_ffill` sessions; staler rows are dropped (counted in `Features.dropped`).
  With `spec.include_vix=False` the vix columns do not exist and `vix` is ignored; with
  include_vix=True a missing `vix` frame is an error, never a silent column of NaN.
- A row whose features are undefined for another reason (a turbulence window with zero variance)
  is dropped and counted too. Input bars must be gated: sorted, unique, finite, positive prices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.errors import InputError
from tradeflow.features import indicators as ind
from tradeflow.features.schema import FeatureError, validate_features
from tradeflow.features.spec import DEFAULT_SPEC, FeatureSpec
from tradeflow.infra.files import atomic_write_parquet
from tradeflow.sim.market import MarketArrays

_PRICES = ("open", "high", "low", "close", "adj_close")
PARQUET_ATTR = "tradeflow.features"


class FeaturesStaleError(FeatureError):
    """A live tick asked for a session the features cannot provide (bars or VIX too old, too little history)."""


@dataclass(frozen=True)
class Features:
    """The feature frame (`session` + spec.names, RangeIndex) and the bar rows aligned 1:1 with it."""

    frame: pd.DataFrame
    spec: FeatureSpec
    bars: pd.DataFrame
    # Why input rows were left out: {"warmup": n, "vix_missing": n, "undefined": n}.
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def symbol(self) -> str:
        return str(self.bars["symbol"].iloc[0])

    @property
    def sessions(self) -> np.ndarray[Any, np.dtype[np.datetime64]]:
        return self.frame["session"].to_numpy(dtype="datetime64[ns]")

    def matrix(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Features as float32 (n, k), columns in spec.names order, C-contiguous for the env."""
        return np.ascontiguousarray(self.frame.loc[:, list(self.spec.names)].to_numpy(dtype=np.float32))

    def market(self) -> MarketArrays:
        """Dividend-adjusted market arrays of the same sessions, row i <-> frame row i."""
        return MarketArrays.from_bars(self.bars)

    def slice(self, start: int, stop: int) -> Features:
        """Rows start..stop-1 (positions), e.g. one walk-forward fold; indexes restart at 0."""
        return Features(
            self.frame.iloc[start:stop].reset_index(drop=True),
            self.spec,
            self.bars.iloc[start:stop].reset_index(drop=True),
            self.dropped,
        )

    def validate(self) -> None:
        """Raise FeatureSchemaError listing every failure (column, session, value) of the frame."""
        validate_features(self.frame, self.spec)


def _check_bars(bars: pd.DataFrame, what: str, columns: tuple[str, ...]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    missing = [c for c in ("session", "symbol", *columns) if c not in bars.columns]
    if missing:
        raise InputError(f"{what}: missing columns {missing}")
    if bars.empty:
        raise InputError(f"{what}: no rows")
    symbols = bars["symbol"].unique()
    if len(symbols) != 1:
        raise InputError(f"{what}: features are built per symbol, got {sorted(map(str, symbols))}")
    sessions = bars["session"].to_numpy(dtype="datetime64[ns]")
    if len(sessions) > 1 and not (np.diff(sessions.view("int64")) > 0).all():
        raise InputError(f"{what}: sessions must be strictly increasing (sorted, no duplicates)")
    return sessions


def _adjusted_prices(bars: pd.DataFrame) -> dict[str, ind.FloatArray]:
    values = {c: bars[c].to_numpy(dtype=np.float64) for c in _PRICES}
    stacked = np.column_stack(list(values.values()))
    # NaN <= 0 is False, so the finiteness test is needed as well as the sign test.
    bad = ~(np.isfinite(stacked) & (stacked > 0)).all(axis=1)
    if bad.any():
        first = pd.Timestamp(bars["session"].to_numpy()[np.argmax(bad)]).date()
        raise InputError(f"bars: {int(bad.sum())} rows with missing or non-positive prices (first {first}); gate them")
    factor = values["adj_close"] / values["close"]
    return {c: values[c] * factor for c in ("open", "high", "low", "close")}


def _vix_columns(
    sessions: np.ndarray[Any, np.dtype[np.datetime64]], vix: pd.DataFrame | None, spec: FeatureSpec
) -> dict[str, ind.FloatArray]:
    if not spec.include_vix:
        return {}
    if vix is None:
        raise InputError("the feature spec includes vix: pass the ^VIX bars, or use spec.replace(include_vix=False)")
    vix_sessions = _check_bars(vix, "vix bars", ("close",))
    close = vix["close"].to_numpy(dtype=np.float64)
    # A VIX bar without a usable close is treated as no bar at all (the ffill rule then applies).
    usable = np.isfinite(close) & (close > 0)
    level, change = ind.align_vix(sessions, vix_sessions[usable], close[usable], spec.vix_max_ffill)
    return {"vix": level, "vix_change": change}


def _compute(prices: Mapping[str, ind.FloatArray], spec: FeatureSpec) -> dict[str, ind.FloatArray]:
    o, h, lo, c = (prices[k] for k in ("open", "high", "low", "close"))
    del o  # the open is not an input of any feature in v1; it is kept in the aligned bars for fills
    r = ind.log_returns(c)
    macd_line, macd_sig, macd_hist = ind.macd(c, spec.macd_fast, spec.macd_slow, spec.macd_signal)
    upper, lower = ind.bollinger(c, spec.boll_window, spec.boll_k)
    return {
        "log_return": r,
        f"realized_vol_{spec.vol_window}": ind.realized_vol(r, spec.vol_window),
        "macd": macd_line,
        "macd_signal": macd_sig,
        "macd_hist": macd_hist,
        "boll_upper": upper,
        "boll_lower": lower,
        f"rsi_{spec.rsi_window}": ind.rsi(c, spec.rsi_window),
        f"cci_{spec.cci_window}": ind.cci(h, lo, c, spec.cci_window),
        f"dx_{spec.dx_window}": ind.dx(h, lo, spec.dx_window),
        f"sma_{spec.sma_short}_gap": ind.sma_gap(c, spec.sma_short),
        f"sma_{spec.sma_long}_gap": ind.sma_gap(c, spec.sma_long),
        "turbulence": ind.turbulence(r, spec.turbulence_window),
    }


def build_features(
    bars: pd.DataFrame, vix: pd.DataFrame | None = None, spec: FeatureSpec = DEFAULT_SPEC, *, validate: bool = True
) -> Features:
    """Features of one symbol's bars (sorted by session, gated) with ^VIX bars when spec.include_vix.

    Raises InputError for malformed input or when no row survives the warm-up, and FeatureSchemaError
    when the result breaks its schema (`validate=False` skips that check, ~4 ms on twenty years).
    """
    sessions = _check_bars(bars, "bars", _PRICES)
    n = len(sessions)
    columns = _compute(_adjusted_prices(bars), spec)
    columns.update(_vix_columns(sessions, vix, spec))
    values = np.column_stack([columns[name] for name in spec.names])

    warm = np.arange(n) >= spec.warmup_rows
    finite = np.isfinite(values).all(axis=1)
    keep = warm & finite
    if not keep.any():
        reason = (
            "no row after the warm-up has every feature defined (is the VIX too stale?)"
            if warm.any()
            else f"the spec's warm-up needs more than {spec.warmup_rows} rows"
        )
        raise InputError(f"no feature rows from {n} bars of {bars['symbol'].iloc[0]}: {reason}")
    no_vix = np.zeros(n, dtype=bool)
    if spec.include_vix:
        no_vix = warm & ~(np.isfinite(columns["vix"]) & np.isfinite(columns["vix_change"]))
    dropped = {
        "warmup": int((~warm).sum()),
        "vix_missing": int(no_vix.sum()),
        "undefined": int((warm & ~finite & ~no_vix).sum()),
    }
    rows = np.flatnonzero(keep)
    frame = pd.DataFrame({"session": sessions[rows]})
    for j, name in enumerate(spec.names):
        frame[name] = values[rows, j]
    aligned = bars.iloc[rows].reset_index(drop=True)
    features = Features(frame, spec, aligned, MappingProxyType(dropped))
    if validate:
        features.validate()
    return features


def features_for_live(
    bars: pd.DataFrame, vix: pd.DataFrame | None, spec: FeatureSpec, *, session: str | pd.Timestamp
) -> Features:
    """build_features, then insist that the last row is `session` (the one the tick decides on).

    A tick must not act on yesterday's features as if they were today's: when the bars end earlier,
    or today's row was dropped (VIX staler than the spec allows), this raises FeaturesStaleError.
    """
    want = pd.Timestamp(session)
    if want.tzinfo is not None:  # a tz-aware `now` names the New York session it falls in
        want = want.tz_convert("America/New_York").tz_localize(None)
    want = want.normalize()
    features = build_features(bars, vix, spec)  # InputError: malformed bars or too little history
    last = pd.Timestamp(features.sessions[-1])
    if last != want:
        raise FeaturesStaleError(
            f"the latest feature row is {last.date()}, not {want.date()} (bars end "
            f"{pd.Timestamp(bars['session'].iloc[-1]).date()}; dropped {dict(features.dropped)})"
        )
    return features


def write_features(features: Features, path: str | Path) -> Path:
    """Validate, then write the frame (session + spec.names) to Parquet atomically (temp + os.replace).

    The symbol and the spec travel in the file's metadata (pandas attrs, key PARQUET_ATTR), so a
    reader can check the spec digest before feeding a model.
    """
    features.validate()
    meta = {"symbol": features.symbol, "spec": features.spec.to_dict(), "spec_digest": features.spec.digest}
    return write_feature_frame(features.frame, json.dumps(meta, sort_keys=True), path)


def write_feature_frame(frame: pd.DataFrame, meta: str, path: str | Path) -> Path:
    """`frame` to Parquet atomically, with `meta` (JSON text) under the PARQUET_ATTR attribute:
    the one writer of feature files, single-symbol and panel alike."""
    frame = frame.copy()
    frame.attrs[PARQUET_ATTR] = meta
    out = Path(path)
    atomic_write_parquet(out, frame)
    return out
