"""CSV and Parquet files: Yahoo downloads (Date,Open,High,Low,Close,Adj Close,Volume), our own
normalized frames, or anything with recognisable column names.

PATH is a file (one symbol, or a `symbol` column) or a directory holding one file per symbol
(SPY.csv; ^VIX may be ^VIX.csv or VIX.csv).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from tradeflow.calendar import MarketCalendar, default_calendar
from tradeflow.data.bars import normalize_bars
from tradeflow.data.sources.base import clip_range, drop_placeholder_rows, require_rows
from tradeflow.errors import InputError, UnknownSymbolError

_SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file or use --symbols with a directory source")
    try:
        if path.suffix.lower() in _SUFFIXES["parquet"]:
            return pd.read_parquet(path)
        # Yahoo writes missing values as the literal `null`; the 2015 chain samples pad after commas.
        return pd.read_csv(path, na_values=["null", "NULL", "None"], skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty (not even a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path}: {first}") from None


def read_bar_file(path: str | Path, symbol: str | None = None, calendar: MarketCalendar | None = None) -> pd.DataFrame:
    """A normalized frame from one file; may be empty (a header-only file is data the gate judges).

    Yahoo's all-`null` rows on holidays are dropped (they are not sessions); the count is kept in
    `frame.attrs["dropped_placeholders"]`.
    """
    p = Path(path)
    raw = _read_raw(p)
    if symbol is None and not any(str(c).strip().lower() in ("symbol", "ticker") for c in raw.columns):
        symbol = p.stem
    try:
        frame = normalize_bars(raw, symbol)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    if symbol is not None and "symbol" in frame.columns:
        frame = frame.loc[frame["symbol"] == symbol.upper()].reset_index(drop=True)
    frame, dropped = drop_placeholder_rows(frame, calendar or default_calendar())
    frame.attrs["dropped_placeholders"] = dropped
    frame.attrs["path"] = str(p)
    return frame


class FileSource:
    """Bars from CSV or Parquet files on disk."""

    def __init__(self, path: str | Path, kind: str = "csv", calendar: MarketCalendar | None = None) -> None:
        if kind not in _SUFFIXES:
            raise InputError(f"unknown file kind {kind!r}; expected csv or parquet")
        self.name = kind
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"path not found: {self.path}")
        self._calendar = calendar or default_calendar()

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return None

    def describe(self, symbol: str) -> str:
        return f"{self.name} file {self._file_for(symbol)}"

    def _file_for(self, symbol: str) -> Path:
        if self.path.is_file():
            return self.path
        stems = [symbol, symbol.lstrip("^")]
        for stem in stems:
            for suffix in _SUFFIXES[self.name]:
                for candidate in (self.path / f"{stem}{suffix}", self.path / f"{stem.lower()}{suffix}"):
                    if candidate.is_file():
                        return candidate
        raise UnknownSymbolError(
            f"no {self.name} file for {symbol} in {self.path} (looked for {stems[-1]}.{self.name})"
        )

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        path = self._file_for(symbol)
        frame = read_bar_file(path, symbol, self._calendar)
        if self.path.is_file() and frame.empty and len(_read_raw(path)):
            raise UnknownSymbolError(f"{path} has no rows for {symbol}")
        frame = clip_range(frame, start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame
