"""Immutable per-symbol Parquet snapshots named by content hash, with a manifest.

Layout under the store root (data/snapshots/ by default):
  manifest.json                  {"version": 1, "symbols": {"SPY": {"current": digest, "snapshots": [...]}}}
  SPY/<digest16>.parquet         one immutable file per distinct content
  _VIX/<digest16>.parquet        symbols are made filesystem-safe ('^' -> '_')

Every write goes to a temporary file in the same directory and is moved into place with os.replace,
so a crash leaves either the old state or the new one, never half a file. Manifest updates hold an
exclusive flock, so two writers cannot lose each other's entries.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.data.bars import BAR_COLUMNS, frame_digest, sort_bars
from tradeflow.errors import StoreError
from tradeflow.infra.files import atomic_write_parquet, atomic_write_text, exclusive_lock

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SnapshotInfo:
    symbol: str
    digest: str
    file: str  # relative to the store root
    rows: int
    first_session: str
    last_session: str
    source: str
    created_at: str  # ISO UTC, passed in by the caller (the library never reads the clock)
    parent: str | None  # the digest this snapshot superseded

    @property
    def last(self) -> pd.Timestamp:
        return pd.Timestamp(self.last_session)

    @property
    def first(self) -> pd.Timestamp:
        return pd.Timestamp(self.first_session)


def symbol_dir_name(symbol: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]", "_", symbol)


# SnapshotInfo's fields: the JSON types they must have, and how a message names them.
_INFO_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "symbol": ((str,), "a string"),
    "digest": ((str,), "a string"),
    "file": ((str,), "a string"),
    "rows": ((int,), "an integer"),
    "first_session": ((str,), "a string"),
    "last_session": ((str,), "a string"),
    "source": ((str,), "a string"),
    "created_at": ((str,), "a string"),
    "parent": ((str, type(None)), "a string or null"),
}
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}


def _kind(value: object) -> str:
    return "null" if value is None else "a boolean" if isinstance(value, bool) else _KINDS.get(type(value), "a value")


def check_manifest(data: object, path: Path) -> dict[str, Any]:
    """The manifest, or StoreError naming `path`, the entry and what is wrong with it (G8).

    A damaged manifest (null, a list, a number, unknown fields, wrong types) used to surface as an
    AttributeError deep in a command. Values are not quoted: the message says where and what kind.
    """

    def bad(where: str, problem: str) -> StoreError:
        return StoreError(f"damaged snapshot manifest {path}: {where}{': ' if where else ''}{problem}")

    if not isinstance(data, dict):
        raise bad("", f"expected an object at the top, found {_kind(data)}")
    if data.get("version") != MANIFEST_VERSION:
        raise StoreError(f"{path}: unsupported manifest version {data.get('version')!r}")
    if set(data) != {"version", "symbols"}:
        raise bad("", f"unknown or missing fields {sorted(set(data) ^ {'version', 'symbols'})}")
    symbols = data["symbols"]
    if not isinstance(symbols, dict):
        raise bad("symbols", f"expected an object, found {_kind(symbols)}")
    for symbol, entry in symbols.items():
        where = f"symbols[{symbol!r}]"
        if not isinstance(entry, dict) or set(entry) != {"current", "snapshots"}:
            raise bad(where, "expected an object with exactly 'current' and 'snapshots'")
        if not isinstance(entry["current"], str | None):
            raise bad(f"{where}.current", f"expected a digest or null, found {_kind(entry['current'])}")
        if not isinstance(entry["snapshots"], list):
            raise bad(f"{where}.snapshots", f"expected a list, found {_kind(entry['snapshots'])}")
        for i, snap in enumerate(entry["snapshots"]):
            problem = _entry_problem(snap, symbol)
            if problem:
                raise bad(f"{where}.snapshots[{i}]", problem)
        digests = [snap["digest"] for snap in entry["snapshots"]]
        if entry["current"] is not None and entry["current"] not in digests:
            raise bad(f"{where}.current", "names a snapshot the entry does not list")
    return data


def _entry_problem(snap: object, symbol: str) -> str | None:
    if not isinstance(snap, dict):
        return f"expected an object, found {_kind(snap)}"
    extra, missing = sorted(set(snap) - set(_INFO_TYPES)), sorted(set(_INFO_TYPES) - set(snap))
    if extra or missing:
        return f"unknown fields {extra}" if extra else f"missing fields {missing}"
    for name, (types, expected) in _INFO_TYPES.items():
        value = snap[name]
        if not isinstance(value, types) or isinstance(value, bool):
            return f"{name}: expected {expected}, found {_kind(value)}"
    if snap["symbol"] != symbol:
        return "symbol: names another symbol than its entry"
    if not _DIGEST_RE.match(snap["digest"]):
        return "digest: not a sha256 hex digest"
    if snap["file"] != snapshot_file(symbol, snap["digest"]):
        return "file: not the file its digest names"
    if snap["rows"] < 1 or not (_DATE_RE.match(snap["first_session"]) and _DATE_RE.match(snap["last_session"])):
        return "rows, first_session or last_session out of range"
    return None


def _current_of(entry: dict[str, Any] | None) -> SnapshotInfo | None:
    """The entry's current snapshot (check_manifest has made sure it is listed)."""
    if not entry or entry["current"] is None:
        return None
    return next(SnapshotInfo(**snap) for snap in entry["snapshots"] if snap["digest"] == entry["current"])


def _check_metadata(info: SnapshotInfo, frame: pd.DataFrame, path: Path) -> None:
    found = (len(frame), str(frame["session"].min().date()), str(frame["session"].max().date()))
    listed = (info.rows, info.first_session, info.last_session)
    if found != listed or set(frame["symbol"].unique()) != {info.symbol}:
        raise StoreError(
            f"snapshot {path} of {info.symbol} disagrees with its manifest entry: the file holds "
            f"{found[0]} rows {found[1]}..{found[2]}, the manifest lists {listed[0]} rows {listed[1]}..{listed[2]}"
        )


def snapshot_file(symbol: str, digest: str) -> str:
    """Where a snapshot's file lives, relative to the store root: named by its content digest."""
    return f"{symbol_dir_name(symbol)}/{digest[:16]}.parquet"


class SnapshotStore:
    """Content-addressed bar snapshots per symbol; the manifest names the current one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # -- reading ---------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"version": MANIFEST_VERSION, "symbols": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"unreadable snapshot manifest {self.manifest_path}: {exc}") from None
        return check_manifest(manifest, self.manifest_path)

    def symbols(self) -> list[str]:
        return sorted(self._read_manifest()["symbols"])

    def history(self, symbol: str) -> list[SnapshotInfo]:
        entry = self._read_manifest()["symbols"].get(symbol)
        return [SnapshotInfo(**s) for s in entry["snapshots"]] if entry else []

    def current(self, symbol: str) -> SnapshotInfo | None:
        entry = self._read_manifest()["symbols"].get(symbol)
        return _current_of(entry)

    def read(self, info: SnapshotInfo, *, verify: bool = True) -> pd.DataFrame:
        """The snapshot's rows. With `verify`, the content must hash to the digest the file is named
        by, and rows and first/last session must agree with the manifest entry: the digest is
        computed anyway, so the metadata check costs three comparisons (G8)."""
        path = self.root / info.file
        try:
            frame = pd.read_parquet(path)
            frame["session"] = frame["session"].astype("datetime64[ns]")
            frame["symbol"] = frame["symbol"].astype("str")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read snapshot {path} of {info.symbol}: {type(exc).__name__}") from None
        if verify:
            if frame_digest(frame) != info.digest:
                raise StoreError(
                    f"snapshot {path} of {info.symbol} does not match its content hash (modified or corrupt)"
                )
            _check_metadata(info, frame, path)
        return frame

    def load(self, symbol: str) -> pd.DataFrame | None:
        """The current snapshot's rows for `symbol`, or None when nothing is stored."""
        info = self.current(symbol)
        return None if info is None else self.read(info)

    # -- writing ---------------------------------------------------------------------------------
    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.root)

    def write(self, symbol: str, frame: pd.DataFrame, *, source: str, created_at: str) -> SnapshotInfo:
        """Store `frame` (one symbol, gate-approved) as the current snapshot; idempotent per content."""
        return self.write_many({symbol: frame}, source=source, created_at=created_at)[symbol]

    def write_many(
        self, frames: Mapping[str, pd.DataFrame], *, source: str, created_at: str
    ) -> dict[str, SnapshotInfo]:
        """Store one snapshot per symbol and make each current (no compare-and-swap)."""
        return self.commit(frames, source=source, created_at=created_at).snapshots

    def commit(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        source: str,
        created_at: str,
        expected: Mapping[str, str | None] | None = None,
    ) -> Commit:
        """Store one snapshot per symbol and switch all of them in ONE manifest replace.

        Snapshot files are written first; the manifest swap is the commit point, so a crash leaves
        every symbol on its old snapshot or every symbol on its new one, never a mix.

        `expected` is the current digest per symbol that the caller built its frames on (None: none
        stored). A symbol whose current snapshot changed since then was committed by a concurrent
        writer (G6): if the new snapshot ends earlier than that one, it is stored but NOT made
        current, so current never moves backwards; either way the commit says so in its notes.
        """
        prepared: dict[str, tuple[pd.DataFrame, str, str]] = {}
        for symbol, frame in frames.items():
            if frame.empty:
                raise StoreError(f"refusing to store an empty snapshot for {symbol}")
            if set(frame["symbol"].unique()) != {symbol}:
                raise StoreError(f"snapshot for {symbol} holds other symbols: {sorted(frame['symbol'].unique())}")
            rows = sort_bars(frame[list(BAR_COLUMNS)])
            digest = frame_digest(rows)
            prepared[symbol] = (rows, digest, snapshot_file(symbol, digest))
        out = Commit()
        with self._locked():
            manifest = self._read_manifest()
            changed = False
            for symbol, (rows, digest, rel) in prepared.items():
                entry = manifest["symbols"].setdefault(symbol, {"current": None, "snapshots": []})
                now_current = _current_of(entry)
                known = {s["digest"]: s for s in entry["snapshots"]}
                if digest in known:
                    info = SnapshotInfo(**known[digest])
                else:
                    atomic_write_parquet(self.root / rel, rows)
                    info = SnapshotInfo(
                        symbol=symbol,
                        digest=digest,
                        file=rel,
                        rows=len(rows),
                        first_session=str(rows["session"].iloc[0].date()),
                        last_session=str(rows["session"].iloc[-1].date()),
                        source=source,
                        created_at=created_at,
                        parent=entry["current"],
                    )
                    entry["snapshots"].append(asdict(info))
                    changed = True
                out.snapshots[symbol] = info
                raced = expected is not None and symbol in expected and expected[symbol] != entry["current"]
                if raced and now_current is not None and now_current.digest != digest:
                    planned = (expected or {}).get(symbol)
                    what = f"{symbol}: another ingest made snapshot {now_current.digest[:12]}"
                    what += f" (to {now_current.last_session}) current"
                    what += f" after this one planned against {planned[:12] if planned else 'no snapshot'}"
                    if info.last < now_current.last:
                        out.not_current.add(symbol)
                        out.notes.append(
                            f"{what}; kept it current, since this snapshot {digest[:12]} ends earlier "
                            f"({info.last_session}): stored, not current"
                        )
                        continue
                    out.notes.append(f"{what}; replaced it with {digest[:12]} (to {info.last_session}), not older")
                if entry["current"] != digest:
                    entry["current"] = digest
                    changed = True
            if changed:
                atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
        return out


@dataclass
class Commit:
    """What a commit stored: one snapshot per symbol, those left non-current, and why."""

    snapshots: dict[str, SnapshotInfo] = field(default_factory=dict)
    not_current: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
