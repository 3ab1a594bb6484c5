"""build_panel: a universe's gated daily bars (+ ^VIX bars) -> one causal feature frame per (session, symbol).

The panel is made of the per-symbol builder, never a second implementation of the indicators: each
symbol's rows are exactly `build_features(bars[symbol], vix, spec)`'s rows, so research on a
universe and a tick on one symbol compute the same numbers for the same session.

Session policy, decided here once:
- Sessions are aligned on the universe's COMMON sessions: the inner join of the sessions on which
  every symbol has a feature row. A session one symbol lacks (its history starts later, or its row
  was dropped by build_features' row policy) is dropped for the whole universe and counted per
  symbol in `PanelFeatures.dropped[symbol]["not_common"]`; it is never filled. Whether a session
  is common depends only on each symbol's rows at or before it, so the join keeps the per-symbol
  no-lookahead property (tests/property/test_features_no_lookahead.py).
- Instruments on different calendars (XNYS stocks beside 24/7 crypto) therefore meet on the
  sessions they share; a universe with no common session is an InputError naming each symbol's range.
- Row order is session-major, symbols in the universe's order (the order of a Decision's weights).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.domain.instruments import Universe
from tradeflow.errors import InputError
from tradeflow.features.build import Features, build_features, write_feature_frame
from tradeflow.features.spec import DEFAULT_SPEC, FeatureSpec
from tradeflow.sim.market import MarketArrays


@dataclass(frozen=True)
class PanelFeatures:
    """Features of a universe on its common sessions.

    `frame` is indexed by (session, symbol) with the spec's columns; `by_symbol[s]` is symbol s's
    Features restricted to the same sessions (row i <-> `sessions[i]`, bars aligned), which is what
    a per-symbol consumer (a rule, the single-asset env) already takes. len() counts sessions.
    """

    universe: Universe
    spec: FeatureSpec
    frame: pd.DataFrame
    by_symbol: Mapping[str, Features]
    # Per symbol, why its input rows were left out: build_features' reasons plus "not_common".
    dropped: Mapping[str, Mapping[str, int]]

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.universe.symbols

    @property
    def sessions(self) -> np.ndarray[Any, np.dtype[np.datetime64]]:
        return self.by_symbol[self.symbols[0]].sessions

    def matrix(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Features as float32 (sessions, symbols, k): columns in spec.names order, symbols in universe order."""
        return np.ascontiguousarray(np.stack([self.by_symbol[s].matrix() for s in self.symbols], axis=1))

    def market(self) -> dict[str, MarketArrays]:
        """Each symbol's dividend-adjusted market arrays on the panel's sessions (row i <-> sessions[i])."""
        return {s: self.by_symbol[s].market() for s in self.symbols}

    def slice(self, start: int, stop: int) -> PanelFeatures:
        """Sessions start..stop-1 (positions), e.g. one walk-forward fold."""
        by_symbol = {s: self.by_symbol[s].slice(start, stop) for s in self.symbols}
        m = len(self.symbols)
        return PanelFeatures(
            self.universe, self.spec, self.frame.iloc[start * m : stop * m], MappingProxyType(by_symbol), self.dropped
        )

    def long_frame(self) -> pd.DataFrame:
        """The frame with `session` and `symbol` as columns (RangeIndex): one row per (session, symbol)."""
        return self.frame.reset_index()

    def validate(self) -> None:
        """Raise FeatureSchemaError listing every failure of any symbol's rows."""
        for symbol in self.symbols:
            self.by_symbol[symbol].validate()


def _symbol_bars(bars_by_symbol: Mapping[str, pd.DataFrame], universe: Universe) -> dict[str, pd.DataFrame]:
    missing = [s for s in universe.symbols if s not in bars_by_symbol]
    extra = sorted(set(bars_by_symbol) - set(universe.symbols))
    if missing or extra:
        raise InputError(
            f"bars must be given for exactly the universe {list(universe.symbols)}: missing {missing}, extra {extra}"
        )
    out = {}
    for symbol in universe.symbols:
        bars = bars_by_symbol[symbol]
        if "symbol" in bars.columns and len(bars) and (bars["symbol"] != symbol).any():
            # A frame filed under one symbol but holding another's bars would silently mislabel a panel row.
            others = sorted(set(map(str, bars["symbol"].unique())) - {symbol})
            raise InputError(f"bars given for {symbol} hold rows of {others}")
        out[symbol] = bars
    return out


def _range(features: Features) -> str:
    sessions = features.sessions
    return f"{features.symbol} {pd.Timestamp(sessions[0]).date()} .. {pd.Timestamp(sessions[-1]).date()}"


def build_panel(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    vix: pd.DataFrame | None,
    universe: Universe,
    spec: FeatureSpec = DEFAULT_SPEC,
    *,
    validate: bool = True,
) -> PanelFeatures:
    """Features of every symbol of `universe` (each gated, sorted by session) on their common sessions.

    Raises InputError for malformed input (see build_features), bars for symbols outside the
    universe or missing from it, and a universe whose symbols share no feature session.
    """
    per_symbol = {
        s: build_features(bars, vix, spec, validate=validate)
        for s, bars in _symbol_bars(bars_by_symbol, universe).items()
    }
    return panel_of(per_symbol, universe, spec)


def panel_of(per_symbol: Mapping[str, Features], universe: Universe, spec: FeatureSpec) -> PanelFeatures:
    """The panel of features already built per symbol (by build_features or features_for_live, as a
    tick does with its cached ones): each symbol's rows on the universe's common sessions."""
    missing = [s for s in universe.symbols if s not in per_symbol]
    if missing:
        raise InputError(f"no features for {', '.join(missing)} of the universe {list(universe.symbols)}")
    per_symbol = {s: per_symbol[s] for s in universe.symbols}
    common = reduce(np.intersect1d, (f.sessions for f in per_symbol.values()))
    if len(common) == 0:
        ranges = "; ".join(_range(f) for f in per_symbol.values())
        raise InputError(f"the universe {list(universe.symbols)} has no common feature session ({ranges})")
    by_symbol: dict[str, Features] = {}
    dropped: dict[str, Mapping[str, int]] = {}
    for symbol, features in per_symbol.items():
        rows = np.flatnonzero(np.isin(features.sessions, common))
        by_symbol[symbol] = Features(
            features.frame.iloc[rows].reset_index(drop=True),
            spec,
            features.bars.iloc[rows].reset_index(drop=True),
            features.dropped,
        )
        dropped[symbol] = MappingProxyType({**features.dropped, "not_common": len(features) - len(rows)})
    names = list(spec.names)
    values = np.stack([by_symbol[s].frame[names].to_numpy(dtype=np.float64) for s in universe.symbols], axis=1)
    index = pd.MultiIndex.from_product(
        [pd.DatetimeIndex(common, name="session"), pd.Index(list(universe.symbols), name="symbol", dtype="str")]
    )
    frame = pd.DataFrame(values.reshape(-1, len(names)), index=index, columns=names)
    return PanelFeatures(universe, spec, frame, MappingProxyType(by_symbol), MappingProxyType(dropped))


def write_panel(panel: PanelFeatures, path: str | Path) -> Path:
    """Validate, then write one row per (session, symbol) (`session`, `symbol`, spec.names) to Parquet
    atomically; the symbols and the spec travel in the file's metadata as write_features' do."""
    panel.validate()
    meta = {"symbols": list(panel.symbols), "spec": panel.spec.to_dict(), "spec_digest": panel.spec.digest}
    return write_feature_frame(panel.long_frame(), json.dumps(meta, sort_keys=True), path)
