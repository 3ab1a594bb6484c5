"""CSV and Parquet files: Yahoo downloads (Date,Open,High,Low,Close,Adj Close,Volume), our own
normalized frames, or anything with recognisable column names.

PATH is a file (one symbol, or a `symbol` column) or a directory holding one file per symbol
(SPY.csv; ^VIX may be ^VIX.csv or VIX.csv).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from tradeflow.calendar import MarketCalendar, TradingCalendar, default_calendar
from tradeflow.config import DEFAULT_MAX_INPUT_BYTES
from tradeflow.data.bars import has_symbol_column, normalize_bars
from tradeflow.data.sources.base import clip_range, drop_placeholder_rows, require_rows
from tradeflow.errors import InputError, UnknownSymbolError

_SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def _check_file(path: Path, max_bytes: int | None) -> None:
    """Refuse what must not be read at all, before reading a byte of it."""
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file or use --symbols with a directory source")
    if not path.is_file():
        # A FIFO or a device (/dev/zero) would block or never end.
        raise InputError(f"{path} is not a regular file")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InputError(
            f"{path} is {size / 2**20:.1f} MiB, over the input limit of {max_bytes / 2**20:.1f} MiB "
            "(TRADEFLOW_QUALITY__MAX_INPUT_BYTES raises it)"
        )


# pandas' C parser messages that carry positions only, re-worded from their numbers; any other
# message is not repeated, since parser and decoder messages may quote the text they choke on (G7).
_PARSER_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)"), "expected {0} fields in line {1}, saw {2}"),
    (re.compile(r"EOF inside string starting at row (\d+)"), "unterminated quoted field starting at row {0}"),
)


def _read_error(exc: Exception) -> str:
    """Why a file could not be read, without quoting its content."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (undecodable byte at offset {exc.start})"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    for pattern, template in _PARSER_MESSAGES:
        match = pattern.search(str(exc))
        if match:
            return template.format(*match.groups())
    if isinstance(exc, pd.errors.ParserError | csv.Error):
        return "malformed CSV"
    return f"not a readable bar file ({type(exc).__name__})"


def _read_raw(path: Path, max_bytes: int | None = None) -> pd.DataFrame:
    _check_file(path, max_bytes)
    try:
        if path.suffix.lower() in _SUFFIXES["parquet"]:
            return pd.read_parquet(path)
        # Yahoo writes missing values as the literal `null`; the 2015 chain samples pad after commas.
        return pd.read_csv(path, na_values=["null", "NULL", "None"], skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty (not even a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error, OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {_read_error(exc)}") from None


def read_bar_file(
    path: str | Path,
    symbol: str | None = None,
    calendar: TradingCalendar | None = None,
    *,
    max_bytes: int | None = DEFAULT_MAX_INPUT_BYTES,
) -> pd.DataFrame:
    """A normalized frame from one file; may be empty (a header-only file is data the gate judges).

    A file with a symbol (or ticker) column names its own symbols: asked for `symbol`, it must hold
    rows for it (G4), and only those rows are returned. Files over `max_bytes` are refused before
    they are read (G5). Yahoo's all-`null` rows on holidays are dropped (they are not sessions);
    the count is kept in `frame.attrs["dropped_placeholders"]`.
    """
    p = Path(path)
    raw = _read_raw(p, max_bytes)
    named = has_symbol_column(raw.columns)
    try:
        frame = normalize_bars(raw, None if named else (symbol or p.stem))
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    del raw
    if symbol is not None and named:
        wanted = symbol.strip().upper()
        mine = (frame["symbol"] == wanted).to_numpy(dtype=bool)
        if len(frame) and not mine.any():
            # Only valid tickers reach this point (normalize_bars refuses anything else), so naming them is safe.
            found = sorted(frame["symbol"].unique())
            names = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise InputError(f"no rows for {wanted} in {p} (its symbol column names {names})")
        frame = frame.loc[mine].reset_index(drop=True)
    frame, dropped = drop_placeholder_rows(frame, calendar or default_calendar())
    frame.attrs["dropped_placeholders"] = dropped
    frame.attrs["path"] = str(p)
    return frame


class FileSource:
    """Bars from CSV or Parquet files on disk."""

    def __init__(
        self,
        path: str | Path,
        kind: str = "csv",
        calendar: MarketCalendar | None = None,
        *,
        max_bytes: int | None = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        if kind not in _SUFFIXES:
            raise InputError(f"unknown file kind {kind!r}; expected csv or parquet")
        self.name = kind
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"path not found: {self.path}")
        self._calendar = calendar or default_calendar()
        self._max_bytes = max_bytes

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
        frame = read_bar_file(path, symbol, self._calendar, max_bytes=self._max_bytes)
        frame = clip_range(frame, start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame
