"""Layer 3 of the gate: our own checks, pure pandas/numpy, over all symbols at once.

- completeness against the symbol's own calendar (calendar_for: NYSE sessions for equities and
  indexes, every UTC day for crypto) between its first and last bar, and rows on days that are not
  sessions;
- freshness: each symbol's newest bar must be the expected session (counted in its calendar);
- per-symbol minimum row count (a symbol that returned nothing is a failure, not an absence);
- split-like jumps in close, and split-like breaks in the adj_close/close ratio;
- overlap consistency with the stored snapshot (close only: dividends legitimately rewrite adj_close).

Every check tolerates a malformed frame (missing columns, NaN, strings): the schema layer reports
those faults, this layer must still report what it can judge rather than crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.calendar import TradingCalendar, is_crypto_symbol, resolve_calendar
from tradeflow.data.bars import is_index_symbol
from tradeflow.data.quality.report import Failure, LayerOutcome
from tradeflow.domain.instruments import CalendarName

# Ratios an unadjusted split or reverse split produces (2:1, 3:1, 4:1, 10:1 and their inverses).
# Close ratios an unadjusted split produces: a 2:1 split halves the price (ratio 1/2), a 1:10 reverse
# split multiplies it by 10.
SPLIT_FACTORS: tuple[tuple[float, str], ...] = (
    (1 / 2, "2:1 split"),
    (1 / 3, "3:1 split"),
    (1 / 4, "4:1 split"),
    (1 / 10, "10:1 split"),
    (2.0, "1:2 reverse split"),
    (3.0, "1:3 reverse split"),
    (4.0, "1:4 reverse split"),
    (10.0, "1:10 reverse split"),
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _iso(ts: pd.Timestamp | np.datetime64) -> str:
    return pd.Timestamp(ts).date().isoformat()


def _num(frame: pd.DataFrame, col: str) -> FloatArray:
    if col not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def ordered_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a usable symbol and session, stably sorted by (symbol, session), fresh index.

    Statistics (returns, runs, ratios) are only meaningful in session order; the schema layer has
    already reported unsorted or unusable rows, so sorting here does not hide them.
    """
    if "symbol" not in frame.columns or "session" not in frame.columns:
        # Rows that cannot be attributed to a (symbol, session) cannot be judged here: no rows.
        empty = frame.iloc[0:0].reset_index(drop=True)
        return empty.assign(symbol=pd.Series([], dtype="str"), session=pd.Series([], dtype="datetime64[ns]"))
    sessions = pd.to_datetime(frame["session"], errors="coerce")
    symbols = frame["symbol"].astype("str")
    keep = sessions.notna() & frame["symbol"].notna()
    out = frame.loc[keep].assign(session=sessions[keep], symbol=symbols[keep])
    return out.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)


def symbol_starts(ordered: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True on the first row of each symbol in an ordered frame."""
    codes = pd.factorize(ordered["symbol"])[0]  # integer codes: comparing strings row by row is slow
    first = np.ones(len(codes), dtype=bool)
    if len(codes) > 1:
        first[1:] = codes[1:] != codes[:-1]
    return first


def is_index_rows(ordered: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True on rows of index symbols (data.bars.is_index_symbol, vectorized per symbol)."""
    return _rows_where(ordered, is_index_symbol)


def is_crypto_rows(ordered: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True on rows of crypto pairs (calendar.is_crypto_symbol, vectorized per symbol)."""
    return _rows_where(ordered, is_crypto_symbol)


def _rows_where(ordered: pd.DataFrame, rule: Callable[[str], bool]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    codes, names = pd.factorize(ordered["symbol"])
    flags = np.array([rule(str(n)) for n in names], dtype=bool)
    return flags[codes] if len(codes) else np.zeros(0, dtype=bool)


def _symbol_ranges(ordered: pd.DataFrame) -> list[tuple[str, int, int]]:
    starts = np.flatnonzero(symbol_starts(ordered))
    ends = [*starts[1:].tolist(), len(ordered)]
    sym = ordered["symbol"].to_numpy(dtype=object)
    return [(str(sym[s]), int(s), int(e)) for s, e in zip(starts.tolist(), ends, strict=True)]


def check_min_rows(ordered: pd.DataFrame, symbols: Sequence[str], min_rows: int) -> list[Failure]:
    counts = ordered["symbol"].value_counts() if len(ordered) else pd.Series(dtype="int64")
    out = []
    for sym in sorted(set(symbols) | set(counts.index.astype(str))):
        n = int(counts.get(sym, 0))
        if n < min_rows:
            detail = f"{n} rows, expected at least {min_rows}"
            out.append(Failure("min_row_count", "consistency", sym, None, detail, n))
    return out


def check_completeness(ordered: pd.DataFrame, calendar: TradingCalendar) -> LayerOutcome:
    """Name every session missing between a symbol's first and last bar, and every non-session row,
    each symbol judged by its own calendar (`calendar` for NYSE symbols; crypto by the 24/7 one)."""
    out = LayerOutcome()
    if ordered.empty:
        return out
    dates = ordered["session"].to_numpy(dtype="datetime64[ns]")
    lo, hi = pd.Timestamp(dates.min()), pd.Timestamp(dates.max())
    session_arrays: dict[str, np.ndarray[Any, np.dtype[np.datetime64]]] = {}
    for sym, s, e in _symbol_ranges(ordered):
        cal = resolve_calendar(sym, calendar)
        label = "NYSE" if cal.name is CalendarName.XNYS else str(cal.name)
        if cal.name not in session_arrays:
            session_arrays[cal.name] = cal.sessions(lo, hi).to_numpy(dtype="datetime64[ns]")
        sessions = session_arrays[cal.name]
        lo_bound, hi_bound = cal.first_session.to_datetime64(), cal.last_session.to_datetime64()
        present = np.unique(dates[s:e])
        outside = (present < lo_bound) | (present > hi_bound)
        if outside.any():
            out.notes.append(
                f"{sym}: {int(outside.sum())} bar(s) outside the calendar's range "
                f"{_iso(lo_bound)}..{_iso(hi_bound)} were not checked against {label} sessions"
            )
            present = present[~outside]
        if not len(present):
            continue
        expected = sessions[np.searchsorted(sessions, present[0]) : np.searchsorted(sessions, present[-1], side="right")]
        if np.array_equal(expected, present):  # the common case, without set operations
            continue
        for day in np.setdiff1d(expected, present, assume_unique=True):
            out.failures.append(
                Failure("missing_session", "calendar", sym, _iso(day), f"{label} session with no bar", None)
            )
        for day in present[~np.isin(present, sessions)]:
            detail = f"bar on a day that is not a {label} session"
            out.failures.append(Failure("non_session_row", "calendar", sym, _iso(day), detail, None))
    return out


def check_freshness(
    ordered: pd.DataFrame, symbols: Sequence[str], as_of: pd.Timestamp, calendar: TradingCalendar
) -> list[Failure]:
    """Each symbol's newest bar must be `as_of`: older is stale, newer is a bar from the future."""
    target = as_of.normalize()
    last = ordered.groupby("symbol", sort=True)["session"].max() if len(ordered) else pd.Series(dtype="object")
    out = []
    names = sorted(set(symbols) | set(last.index.astype(str)))
    if not names:
        return [Failure("stale", "calendar", None, None, f"no bars at all, expected {_iso(target)}", None)]
    for sym in names:
        newest = last.get(sym)
        if newest is None or pd.isna(newest):
            out.append(Failure("stale", "calendar", sym, None, f"no bars, expected {_iso(target)}", None))
            continue
        newest = pd.Timestamp(newest)
        if newest < target:
            behind = max(len(resolve_calendar(sym, calendar).sessions(newest, target)) - 1, 0)
            detail = f"last bar {_iso(newest)}, expected {_iso(target)} ({behind} session(s) behind)"
            out.append(Failure("stale", "calendar", sym, _iso(newest), detail, float(behind)))
        elif newest > target:
            detail = f"bar for {_iso(newest)} is after the as-of session {_iso(target)} (partial or future bar)"
            out.append(Failure("bar_after_as_of", "calendar", sym, _iso(newest), detail, None))
    return out


def _split_like(ratio: FloatArray, tolerance: float) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], list[str]]:
    """Which ratios lie within `tolerance` of a split factor, and that factor's label (by position)."""
    factors = np.array([f for f, _ in SPLIT_FACTORS])
    hit = np.zeros(len(ratio), dtype=bool)
    labels = [""] * len(ratio)
    # Only ratios at least ~halving or doubling can match: test those few, not n x 8 distances.
    low, high = factors[factors < 1].max() * (1 + tolerance), factors[factors > 1].min() * (1 - tolerance)
    candidates = np.flatnonzero((ratio <= low) | (ratio >= high))
    if not len(candidates):
        return hit, labels
    dist = np.abs(ratio[candidates, None] / factors[None, :] - 1.0)
    nearest = dist.argmin(axis=1)
    for i, k, d in zip(candidates.tolist(), nearest.tolist(), dist[np.arange(len(candidates)), nearest], strict=True):
        if d <= tolerance:
            hit[i] = True
            labels[i] = SPLIT_FACTORS[k][1]
    return hit, labels


def _step_ratio(values: FloatArray, first: np.ndarray[Any, np.dtype[np.bool_]]) -> FloatArray:
    prev = np.roll(values, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = values / prev
    ratio[first] = np.nan
    return ratio


def check_split_jumps(ordered: pd.DataFrame, tolerance: float) -> list[Failure]:
    """Close-to-close ratios near a split factor (indexes and crypto never split, so they are skipped:
    a crypto pair halving in a day is a crash the return expectations judge, not a split)."""
    if ordered.empty:
        return []
    first = symbol_starts(ordered)
    close = _num(ordered, "close")
    ratio = _step_ratio(close, first)
    equity = ~is_index_rows(ordered) & ~is_crypto_rows(ordered)
    hit, labels = _split_like(ratio, tolerance)
    out = []
    sym, ses = ordered["symbol"].to_numpy(dtype=object), ordered["session"].to_numpy()
    for i in np.flatnonzero(hit & equity):
        detail = (
            f"close {close[i - 1]:.6g} on {_iso(ses[i - 1])} -> {close[i]:.6g} on {_iso(ses[i])}: "
            f"ratio {ratio[i]:.4f}, within {tolerance:.0%} of a {labels[i]}"
        )
        out.append(Failure("split_like", "consistency", str(sym[i]), _iso(ses[i]), detail, float(ratio[i])))
    return out


def check_adjustment_breaks(ordered: pd.DataFrame, tolerance: float) -> list[Failure]:
    """The adj_close/close ratio moves by dividends (a few %), never by a split factor in one day."""
    if ordered.empty or "adj_close" not in ordered.columns:
        return []
    first = symbol_starts(ordered)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = _num(ordered, "adj_close") / _num(ordered, "close")
    ratio = _step_ratio(factor, first)
    hit, labels = _split_like(ratio, tolerance)
    out = []
    sym, ses = ordered["symbol"].to_numpy(dtype=object), ordered["session"].to_numpy()
    for i in np.flatnonzero(hit):
        detail = (
            f"adj_close/close went {factor[i - 1]:.6g} -> {factor[i]:.6g} from {_iso(ses[i - 1])}: "
            f"ratio {ratio[i]:.4f}, as if a {labels[i]} were applied to one column only"
        )
        out.append(Failure("adjustment_break", "consistency", str(sym[i]), _iso(ses[i]), detail, float(ratio[i])))
    return out


def check_overlap(ordered: pd.DataFrame, stored: pd.DataFrame, tolerance: float) -> LayerOutcome:
    """On sessions in both frames, the new close must equal the stored close within `tolerance`.

    A provider that silently switches to dividend-adjusted closes (yfinance PR #2147) shows up here.
    """
    out = LayerOutcome()
    old = ordered_bars(stored)
    if "close" not in old.columns or "close" not in ordered.columns:
        out.notes.append("overlap check skipped: the stored or the new frame has no close column")
        return out
    old = old.drop_duplicates(["symbol", "session"], keep="last")
    left = ordered[["symbol", "session"]].assign(close=_num(ordered, "close"))
    right = old[["symbol", "session"]].assign(stored_close=_num(old, "close"))
    both = left.merge(right, on=["symbol", "session"], how="inner")
    if both.empty:
        out.notes.append("overlap check: no session is in both the stored snapshot and the new frame")
        return out
    new, ref = both["close"].to_numpy(), both["stored_close"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = new / ref - 1.0
    bad = ~(np.abs(rel) <= tolerance) & ~(np.isnan(new) & np.isnan(ref))
    for sym, ses, n, r, d in zip(both["symbol"][bad], both["session"][bad], new[bad], ref[bad], rel[bad], strict=True):
        detail = f"close {n:.6g} vs stored {r:.6g} ({d:+.3%}, tolerance {tolerance:.2%})"
        out.failures.append(Failure("overlap_mismatch", "consistency", str(sym), _iso(ses), detail, float(d)))
    out.notes.append(f"overlap check: {len(both)} session(s) compared with the stored snapshot")
    return out


def run_checks(
    frame: pd.DataFrame,
    *,
    calendar: TradingCalendar,
    as_of: pd.Timestamp | None,
    stored: pd.DataFrame | None,
    symbols: Sequence[str],
    min_rows: int,
    split_tolerance: float,
    overlap_tolerance: float,
) -> LayerOutcome:
    """All layer-3 checks over the whole frame; nothing stops at the first failure."""
    ordered = ordered_bars(frame)
    out = LayerOutcome()
    out.failures.extend(check_min_rows(ordered, symbols, min_rows))
    completeness = check_completeness(ordered, calendar)
    out.failures.extend(completeness.failures)
    out.notes.extend(completeness.notes)
    if as_of is not None:
        out.failures.extend(check_freshness(ordered, symbols, as_of, calendar))
    else:
        out.notes.append("freshness not judged (no as-of session given)")
    out.failures.extend(check_split_jumps(ordered, split_tolerance))
    out.failures.extend(check_adjustment_breaks(ordered, split_tolerance))
    if stored is not None:
        overlap = check_overlap(ordered, stored, overlap_tolerance)
        out.failures.extend(overlap.failures)
        out.notes.extend(overlap.notes)
    return out
