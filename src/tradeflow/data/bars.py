"""The normalized daily bar frame every source returns and every later stage reads.

One row per (symbol, session), columns exactly BAR_COLUMNS:
  session    datetime64[ns], tz-naive NYSE session label (midnight)
  symbol     str
  open, high, low, close, adj_close   float64 (split-adjusted prices; adj_close also for dividends)
  volume     float64 (float so a missing value stays visible as NaN for the gate to report)

Normalization fixes names, types and units only. It never sorts, de-duplicates, fills or drops
real rows: those are faults the quality gate must see and report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from tradeflow.errors import InputError

BAR_COLUMNS: tuple[str, ...] = ("session", "symbol", "open", "high", "low", "close", "adj_close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close")
VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")

# Lower-cased, separator-free spellings of each column seen in Yahoo, yfinance, Alpaca and IB output.
_ALIASES: Mapping[str, str] = {
    "date": "session",
    "session": "session",
    "timestamp": "session",
    "datetime": "session",
    "time": "session",
    "open": "open",
    "o": "open",
    "high": "high",
    "h": "high",
    "low": "low",
    "l": "low",
    "close": "close",
    "c": "close",
    "adjclose": "adj_close",
    "adjustedclose": "adj_close",
    "volume": "volume",
    "v": "volume",
    "symbol": "symbol",
    "ticker": "symbol",
}
# A ticker (SPY, BRK.B, ^VIX, ES=F) or a crypto pair BASE/QUOTE (BTC/USD): one '/', between two codes.
_SYMBOL_RE = re.compile(r"^(\^?[A-Z0-9][A-Z0-9.\-=]{0,14}|[A-Z0-9]{1,10}/[A-Z0-9]{1,10})$")


def check_symbol(symbol: str) -> str:
    """The upper-cased symbol, or InputError when it cannot be a ticker (e.g. 'SPY;rm')."""
    s = symbol.strip().upper()
    if not _SYMBOL_RE.match(s):
        raise InputError(f"not a valid symbol: {symbol!r}")
    return s


def parse_symbols(text: str | Iterable[str]) -> list[str]:
    """'SPY, ^VIX' or ['SPY', '^VIX'] -> ['SPY', '^VIX'] (validated, order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        if item.strip():
            sym = check_symbol(item)
            if sym not in out:
                out.append(sym)
    if not out:
        raise InputError("no symbols given")
    return out


def is_index_symbol(symbol: str) -> bool:
    """Yahoo's convention: indexes start with '^' (no volume, no dividends, no splits)."""
    return symbol.startswith("^")


def empty_bars() -> pd.DataFrame:
    """A zero-row frame with the normalized columns and dtypes."""
    return pd.DataFrame(
        {
            "session": pd.Series([], dtype="datetime64[ns]"),
            "symbol": pd.Series([], dtype="str"),
            **{c: pd.Series([], dtype="float64") for c in VALUE_COLUMNS},
        }
    )


def _canonical_name(name: object) -> str | None:
    key = re.sub(r"[\s_\-]", "", str(name)).lower()
    return _ALIASES.get(key)


def has_symbol_column(columns: Iterable[object]) -> bool:
    """True when a vendor frame names its own symbols (a `symbol` or `ticker` column)."""
    return any(_canonical_name(c) == "symbol" for c in columns)


# Error messages below never quote what a file holds (RELIABILITY G7): a `.env` or
# /proc/self/environ read as a CSV has secrets in its header and rows. They name the expected
# columns, counts and row numbers instead.
_SESSION_NAMES = "Date, Session, Timestamp, Datetime or Time"


def _to_sessions(values: pd.Series) -> pd.Series:
    """Session labels: tz-aware stamps are read in New York time, then the time of day is dropped."""
    try:
        if pd.api.types.is_datetime64_any_dtype(values):
            ts = values
        else:
            ts = pd.to_datetime(values.astype("str"), format="mixed", errors="raise")
    except (ValueError, TypeError, OverflowError):
        # pandas' message quotes the offending value; say where it is instead.
        parsed = pd.to_datetime(values.astype("str"), format="mixed", errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy())
        where = f" (first at data row {int(bad[0]) + 1})" if len(bad) else ""
        raise InputError(f"unparseable dates in the session column: {len(bad)} value(s) are not dates{where}") from None
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("America/New_York").dt.tz_localize(None)
    return ts.dt.normalize().astype("datetime64[ns]")


def normalize_bars(raw: pd.DataFrame, symbol: str | None = None) -> pd.DataFrame:
    """Map a vendor frame onto BAR_COLUMNS. The session may be a column or the index.

    Missing value columns stay missing (the gate's schema reports them); a missing session column or
    a frame without a symbol is malformed input.
    """
    frame = raw
    if not any(_canonical_name(c) == "session" for c in frame.columns):
        if isinstance(frame.index, pd.DatetimeIndex) or _canonical_name(frame.index.name) == "session":
            frame = frame.reset_index(names="session")
    renamed: dict[object, str] = {}
    for col in frame.columns:
        canon = _canonical_name(col)
        if canon is not None and canon not in renamed.values():
            renamed[col] = canon
    frame = frame.rename(columns=renamed)[list(renamed.values())]
    if "session" not in frame.columns:
        raise InputError(f"no date/session column (expected one named {_SESSION_NAMES})")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    out["session"] = _to_sessions(frame["session"]).to_numpy()
    if symbol is not None:
        out["symbol"] = check_symbol(symbol)
    elif "symbol" in frame.columns:
        named = frame["symbol"].astype("str").str.strip().str.upper()
        bad = np.flatnonzero(~named.str.match(_SYMBOL_RE.pattern).to_numpy(dtype=bool))
        if len(bad):
            # Not echoed: a symbol column that is not symbols may be anything, secrets included.
            raise InputError(
                f"the symbol column holds {len(bad)} value(s) that are not valid symbols "
                f"(first at data row {int(bad[0]) + 1})"
            )
        out["symbol"] = named.to_numpy()
    else:
        raise InputError("the frame has no symbol column and no symbol was given")
    out["symbol"] = out["symbol"].astype("str")
    for col in VALUE_COLUMNS:
        if col in frame.columns:
            # Vendors write missing values as 'null' or '' strings: numbers or NaN, nothing else.
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64").to_numpy()
    return out


def concat_bars(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-symbol frames into one, keeping each frame's own row order."""
    parts = [f for f in frames if len(f.columns)]
    if not parts:
        return empty_bars()
    return pd.concat(parts, ignore_index=True)


def cut_window(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    """Rows whose session lies in [start, end] (None: unbounded), order kept, fresh index.

    Every historical window is this cut of a stored, already-gated frame: a window is never
    re-ingested or re-gated, so an earlier --end cannot fail the gate on the bars after it.
    """
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["session"] >= start).to_numpy(dtype=bool)
    if end is not None:
        keep &= (frame["session"] <= end).to_numpy(dtype=bool)
    return frame.loc[keep].reset_index(drop=True)


def sort_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical order (symbol, session) with a fresh index: for storage, after the gate passed."""
    return frame.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)


def frame_digest(frame: pd.DataFrame) -> str:
    """A content hash of a bar frame: same rows and values, same digest, whatever the file format."""
    import hashlib

    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            arr = values.astype("datetime64[ns]").to_numpy().view("int64")
        elif pd.api.types.is_numeric_dtype(values):
            arr = values.to_numpy(dtype="float64")
        else:
            arr = np.asarray(values.astype("str").str.cat(sep="\x1f").encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
