"""Live features cached on disk, so the second and later ticks of a session do not rebuild them.

An entry is keyed by what the features are a pure function of: the content digests of the gated
snapshots they were built from, the feature spec's digest and the session of their last row. A new
snapshot, another spec or the next session is another key, so a stale entry is never invalidated,
it simply misses. Only features that passed `features_for_live` are stored, so an entry's last row
is its key's session by construction, and that is checked again when it is read.

An entry is one Parquet file, data/features/cache/<key>-<content digest>.parquet, written
atomically: the feature frame's columns, then the aligned bar rows under a "bar." prefix (`session`
is in both), with the key, the spec, the dropped counts and the dtypes in the file's metadata. Like a
snapshot, the file is named by the sha256 of its bytes; a file that does not hash to its name, cannot
be read, or belongs to another key, spec or session is a miss: the caller rebuilds and overwrites it.
A cache can only ever cost a rebuild, never a wrong feature.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tradeflow.features.build import Features
from tradeflow.features.spec import FeatureSpec
from tradeflow.infra.files import atomic_write_bytes
from tradeflow.infra.jsontext import canonical_json

log = logging.getLogger("tradeflow.features.cache")

# Bump when the file layout changes: older entries then miss instead of being misread.
CACHE_FORMAT = 1
_META = b"tradeflow.feature_cache"
_BAR = "bar."
# Entries kept after a write: a tick needs one per (symbol set, spec), a day's ticks make one more.
DEFAULT_KEEP = 16


def cache_key(digests: Mapping[str, str], spec: FeatureSpec, session: pd.Timestamp | str) -> str:
    """The entry's key: sha256 over the snapshot digest per symbol, the spec digest and the session."""
    parts = {
        "format": CACHE_FORMAT,
        "snapshots": dict(sorted(digests.items())),
        "spec": spec.digest,
        "session": _day(session),
    }
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def _day(session: pd.Timestamp | str) -> str:
    return str(pd.Timestamp(session).date())


class FeatureCache:
    """Features by cache key under `root`; reads never raise, a failed write only logs."""

    def __init__(self, root: str | Path, *, keep: int = DEFAULT_KEEP) -> None:
        self.root = Path(root)
        self.keep = keep

    def entries(self, key: str) -> list[Path]:
        """The files stored under `key` (one, unless a write raced or a file was damaged)."""
        return sorted(self.root.glob(f"{key}-*.parquet")) if self.root.is_dir() else []

    def get_or_build(
        self,
        digests: Mapping[str, str],
        spec: FeatureSpec,
        session: pd.Timestamp | str,
        build: Callable[[], Features],
    ) -> Features:
        """The cached features for the key, or `build()` stored under it. An error of `build` (stale
        or malformed features) leaves the cache untouched and reaches the caller."""
        key = cache_key(digests, spec, session)
        cached = self.load(key, spec, session)
        if cached is not None:
            return cached
        features = build()
        self.store(key, features, session)
        return features

    def load(self, key: str, spec: FeatureSpec, session: pd.Timestamp | str) -> Features | None:
        """The entry for `key`, or None when there is none or none is exactly what was stored."""
        for path in self.entries(key):
            try:
                return _read_entry(path, key, spec, _day(session))
            except _Untrusted as exc:
                log.warning("feature cache entry %s not trusted (%s): rebuilding", path, exc)
            # Whatever a damaged or foreign file raises (pyarrow has its own exception tree), it is
            # a miss: the features are rebuilt from the gated snapshots, which are the authority.
            except Exception as exc:
                log.warning("feature cache entry %s unreadable (%s): rebuilding", path, type(exc).__name__)
        return None

    def store(self, key: str, features: Features, session: pd.Timestamp | str) -> Path | None:
        """Write the entry atomically and drop the key's other files and the oldest entries beyond
        `keep`. A failed write (disk full, read-only data dir) costs the next tick a rebuild, so it
        is logged, not raised."""
        frame = features.frame.reset_index(drop=True)
        bars = features.bars.reset_index(drop=True)
        table = pa.Table.from_pandas(pd.concat([frame, bars.add_prefix(_BAR)], axis=1), preserve_index=False)
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "session": _day(session),
            "spec": features.spec.to_dict(),
            "dropped": dict(features.dropped),
            "frame_columns": list(frame.columns),
            "bar_columns": list(bars.columns),
            "dtypes": {**_dtypes(frame, ""), **_dtypes(bars, _BAR)},
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META: json.dumps(meta).encode()})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        path = self.root / f"{key}-{hashlib.sha256(data).hexdigest()}.parquet"
        try:
            atomic_write_bytes(path, data)
            self._prune(key, path)
        except OSError as exc:
            log.warning("feature cache: could not write %s: %s", path, exc)
            return None
        return path

    def _prune(self, key: str, written: Path) -> None:
        for other in self.entries(key):
            if other != written:
                other.unlink(missing_ok=True)
        entries = sorted(self.root.glob("*.parquet"), key=_mtime, reverse=True)
        for old in [p for p in entries if p != written][max(self.keep - 1, 0) :]:
            old.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # pruned by a concurrent tick meanwhile
        return 0.0


class _Untrusted(Exception):
    """A cache file that reads but is not the entry asked for: a miss, never an error."""


def _dtypes(frame: pd.DataFrame, prefix: str) -> dict[str, str]:
    return {f"{prefix}{c}": str(t) for c, t in frame.dtypes.items()}


def _read_entry(path: Path, key: str, spec: FeatureSpec, session: str) -> Features:
    data = path.read_bytes()
    if path.name != f"{key}-{hashlib.sha256(data).hexdigest()}.parquet":
        raise _Untrusted("its content does not hash to its name")
    table = pq.read_table(pa.BufferReader(data))
    meta: dict[str, Any] = json.loads((table.schema.metadata or {})[_META])
    expected = {
        "format": CACHE_FORMAT,
        "key": key,
        "session": session,
        "spec": spec.to_dict(),
        "frame_columns": ["session", *spec.names],
    }
    if any(meta.get(k) != v for k, v in expected.items()):
        raise _Untrusted("it belongs to another key, spec or session")
    frame_columns, bar_columns = meta["frame_columns"], [_BAR + c for c in meta["bar_columns"]]
    whole = table.to_pandas()
    if list(whole.columns) != [*frame_columns, *bar_columns] or whole.empty:
        raise _Untrusted("its columns are not the ones it lists")
    # Parquet may bring a column back in another dtype (string, timestamp unit): restore the stored one.
    changed = {c: t for c, t in meta["dtypes"].items() if str(whole[c].dtype) != t}
    if changed:
        whole = whole.astype(changed)
    if str(whole["session"].iloc[-1].date()) != session:
        raise _Untrusted("its last row is not its session")
    frame = whole[frame_columns]
    bars = whole[bar_columns].rename(columns=lambda c: c[len(_BAR) :])
    dropped = MappingProxyType({str(k): int(v) for k, v in meta["dropped"].items()})
    return Features(frame, spec, bars, dropped)
