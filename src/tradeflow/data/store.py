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
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.data.bars import BAR_COLUMNS, frame_digest, sort_bars
from tradeflow.errors import StoreError

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


@contextlib.contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on `directory`/.lock: serialises read-modify-write of shared files."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temporary sibling and os.replace (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
            manifest: dict[str, Any] = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"unreadable snapshot manifest {self.manifest_path}: {exc}") from None
        if manifest.get("version") != MANIFEST_VERSION:
            raise StoreError(f"{self.manifest_path}: unsupported manifest version {manifest.get('version')!r}")
        return manifest

    def symbols(self) -> list[str]:
        return sorted(self._read_manifest()["symbols"])

    def history(self, symbol: str) -> list[SnapshotInfo]:
        entry = self._read_manifest()["symbols"].get(symbol)
        return [SnapshotInfo(**s) for s in entry["snapshots"]] if entry else []

    def current(self, symbol: str) -> SnapshotInfo | None:
        entry = self._read_manifest()["symbols"].get(symbol)
        if not entry:
            return None
        for snap in entry["snapshots"]:
            if snap["digest"] == entry["current"]:
                return SnapshotInfo(**snap)
        raise StoreError(f"manifest names {entry['current'][:12]} as current for {symbol}, but lists no such snapshot")

    def read(self, info: SnapshotInfo, *, verify: bool = True) -> pd.DataFrame:
        path = self.root / info.file
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read snapshot {path}: {exc}") from None
        frame["session"] = frame["session"].astype("datetime64[ns]")
        frame["symbol"] = frame["symbol"].astype("str")
        if verify and frame_digest(frame) != info.digest:
            raise StoreError(f"snapshot {path} does not match its content hash (modified or corrupt)")
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
        """Store one snapshot per symbol and switch all of them in ONE manifest replace.

        Snapshot files are written first; the manifest swap is the commit point, so a crash leaves
        every symbol on its old snapshot or every symbol on its new one, never a mix.
        """
        prepared: dict[str, tuple[pd.DataFrame, str, str]] = {}
        for symbol, frame in frames.items():
            if frame.empty:
                raise StoreError(f"refusing to store an empty snapshot for {symbol}")
            if set(frame["symbol"].unique()) != {symbol}:
                raise StoreError(f"snapshot for {symbol} holds other symbols: {sorted(frame['symbol'].unique())}")
            rows = sort_bars(frame[list(BAR_COLUMNS)])
            digest = frame_digest(rows)
            prepared[symbol] = (rows, digest, f"{symbol_dir_name(symbol)}/{digest[:16]}.parquet")
        out: dict[str, SnapshotInfo] = {}
        with self._locked():
            manifest = self._read_manifest()
            changed = False
            for symbol, (rows, digest, rel) in prepared.items():
                entry = manifest["symbols"].setdefault(symbol, {"current": None, "snapshots": []})
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
                if entry["current"] != digest:
                    entry["current"] = digest
                    changed = True
                out[symbol] = info
            if changed:
                atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
        return out
