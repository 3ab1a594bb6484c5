"""Layer 1 of the gate: the bar frame's contract, checked with pandera in one lazy pass.

Every failing row is reported (lazy=True), mapped back to (symbol, session) and de-duplicated
(a dataframe-level check reports its row once per column). The cross-column checks evaluate every
row: pandera's default ignore_na=True would drop a row with a NaN anywhere (pandera#904), hiding a
high < low beside a missing volume (RELIABILITY D8). A NaN operand itself is left to the
not-null checks, so one fault is one failure.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import Check

from tradeflow.data.bars import BAR_COLUMNS, PRICE_COLUMNS
from tradeflow.data.quality.report import LAYER_FAILURES_PER_CHECK, Failure, LayerOutcome

# pandera's check labels -> the gate's check names (custom checks are labelled by their `error`).
_CHECK_NAMES: dict[str, str] = {
    "column_in_dataframe": "missing_column",
    "column_in_schema": "unexpected_column",
    "not_nullable": "null_value",
    "multiple_fields_uniqueness": "duplicate_session",
}
_ROW_CHECKS = ("high_below_open_close", "low_above_open_close", "high_below_low", "session_out_of_order")


def _arr(df: pd.DataFrame, col: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _operand(df: pd.DataFrame, col: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A column as an operand of the OHLC checks: an infinity is the non-finite check's finding,
    so it is read as missing here (one fault, one failure), like a NaN."""
    values = _arr(df, col)
    return np.where(np.isinf(values), np.nan, values)


def _mask(df: pd.DataFrame, bad: np.ndarray[Any, np.dtype[np.bool_]]) -> pd.Series:
    return pd.Series(~bad, index=df.index)


# Comparisons with NaN are False, so `bad` rows are real violations; np.fmax ignores a NaN side, so
# high < open is still caught when close is missing.
def _high_below_open_close(df: pd.DataFrame) -> pd.Series:
    high = _operand(df, "high")
    return _mask(df, high < np.fmax(_operand(df, "open"), _operand(df, "close")))


def _low_above_open_close(df: pd.DataFrame) -> pd.Series:
    low = _operand(df, "low")
    return _mask(df, low > np.fmin(_operand(df, "open"), _operand(df, "close")))


def _high_below_low(df: pd.DataFrame) -> pd.Series:
    return _mask(df, _operand(df, "high") < _operand(df, "low"))


def _session_out_of_order(df: pd.DataFrame) -> pd.Series:
    """Sessions must not go backwards within a symbol (equal sessions are the uniqueness check's)."""
    sessions = pd.to_datetime(df["session"], errors="coerce")
    previous = sessions.groupby(df["symbol"].astype("str"), sort=False).shift(1)
    return _mask(df, (sessions < previous).to_numpy(dtype=bool, na_value=False))


# Column checks. pandera drops NaN before a column check (ignore_na), so NaN stays the not-null
# check's finding. An infinity is its own fault (G3: `High=inf` used to pass `> 0` and reach the
# store): it is `non_finite_value` only, so -inf is not also counted as a non-positive price.
def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(~np.isinf(pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")), index=s.index)


def _positive_or_infinite(s: pd.Series) -> pd.Series:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    return pd.Series((v > 0) | np.isinf(v), index=s.index)


def _non_negative_or_infinite(s: pd.Series) -> pd.Series:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    return pd.Series((v >= 0) | np.isinf(v), index=s.index)


@lru_cache(maxsize=1)
def bar_schema() -> pa.DataFrameSchema:
    """The normalized bar frame's schema (data/bars.py), strict: a missing or extra column fails."""

    finite = Check(_finite, error="non_finite_value")

    def price() -> pa.Column:
        return pa.Column("float64", [finite, Check(_positive_or_infinite, error="non_positive_price")], nullable=False)

    columns: dict[str, pa.Column] = {
        "session": pa.Column("datetime64[ns]", nullable=False),
        "symbol": pa.Column(str, nullable=False),
        **{c: price() for c in PRICE_COLUMNS},
        "volume": pa.Column(
            "float64", [finite, Check(_non_negative_or_infinite, error="negative_volume")], nullable=False
        ),
    }
    assert tuple(columns) == BAR_COLUMNS  # the schema and the frame definition must not drift
    row_checks = [
        Check(_high_below_open_close, ignore_na=False, error="high_below_open_close"),
        Check(_low_above_open_close, ignore_na=False, error="low_above_open_close"),
        Check(_high_below_low, ignore_na=False, error="high_below_low"),
        Check(_session_out_of_order, ignore_na=False, error="session_out_of_order"),
    ]
    return pa.DataFrameSchema(
        columns,
        checks=row_checks,
        strict=True,
        unique=["symbol", "session"],
        report_duplicates="all",
        name="daily_bars",
    )


class _RowView:
    """Row values by position, for naming and describing failures without per-row pandas indexing."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.n = len(frame)
        self.symbol = frame["symbol"].astype("str").to_numpy(dtype=object) if "symbol" in frame else None
        sessions = pd.to_datetime(frame["session"], errors="coerce") if "session" in frame else None
        self.session = None if sessions is None else sessions.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        self.values = {c: _arr(frame, c) for c in ("open", "high", "low", "close") if c in frame}

    def where(self, i: int) -> tuple[str | None, str | None]:
        sym = None if self.symbol is None else self.symbol[i]
        sess = None if self.session is None else self.session[i]
        return (sym if isinstance(sym, str) and sym not in ("nan", "<NA>") else None), (
            sess if isinstance(sess, str) else None
        )

    def describe(self, check: str, rows: np.ndarray[Any, np.dtype[np.int64]]) -> list[str]:
        """Details for many rows of one row-level check at once (mass failures must stay cheap)."""
        v = {c: a[rows].tolist() for c, a in self.values.items()}
        nan = [float("nan")] * len(rows)
        o, h, lo, c = (v.get(k, nan) for k in ("open", "high", "low", "close"))
        if check == "high_below_open_close":
            return [f"high {x:.6g} < max(open {y:.6g}, close {z:.6g})" for x, y, z in zip(h, o, c, strict=True)]
        if check == "low_above_open_close":
            return [f"low {x:.6g} > min(open {y:.6g}, close {z:.6g})" for x, y, z in zip(lo, o, c, strict=True)]
        if check == "high_below_low":
            return [f"high {x:.6g} < low {y:.6g}" for x, y in zip(h, lo, strict=True)]
        return ["session earlier than the previous row of the same symbol (rows not sorted)"] * len(rows)


def _check_name(raw: str) -> str:
    if raw in _CHECK_NAMES:
        return _CHECK_NAMES[raw]
    if raw in _ROW_CHECKS:
        return raw
    if raw.startswith(("dtype(", "pandas_dtype(")) or raw.startswith("coerce_dtype"):
        return "wrong_dtype"
    return raw


def validate_schema(frame: pd.DataFrame) -> LayerOutcome:
    """Run the schema lazily over the whole frame; every failure names its row's symbol and session."""
    # Positions, not the caller's labels: a concatenated frame may carry duplicate index labels.
    data = frame.reset_index(drop=True)
    try:
        bar_schema().validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        unlisted: dict[str, int] = {}
        failures = _failures(exc.failure_cases, data, unlisted)
        return LayerOutcome(failures=failures, unlisted=unlisted)
    return LayerOutcome()


def _failures(cases: pd.DataFrame, data: pd.DataFrame, unlisted: dict[str, int]) -> list[Failure]:
    """Failure objects for at most LAYER_FAILURES_PER_CHECK rows per check; the rest are counted
    into `unlisted` (a hostile file can fail millions of rows: G5)."""
    cap = LAYER_FAILURES_PER_CHECK
    rows = _RowView(data)
    out: list[Failure] = []
    # factorize: mass failures yield millions of failure cases, and per-element Python is too slow.
    codes, labels = pd.factorize(cases["check"].astype("str"))
    raw_checks = np.asarray(labels, dtype=object)[codes]
    checks = np.array([_check_name(str(c)) for c in labels], dtype=object)[codes]
    columns = cases["column"].to_numpy(dtype=object)
    values = cases["failure_case"].to_numpy(dtype=object)
    index = pd.to_numeric(cases["index"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    indexed = ~np.isnan(index)
    # Whole-column faults (missing, extra or mistyped column) carry no row index.
    for i in np.flatnonzero(~indexed):
        out.append(_column_failure(checks[i], raw_checks[i], _column(columns[i]), values[i]))
    positions = index.astype("int64", copy=False) if indexed.all() else np.where(indexed, index, -1).astype("int64")
    for check in dict.fromkeys(checks[indexed]):  # first-seen order
        sel = indexed & (checks == check)
        if check == "duplicate_session":
            dups, total = _duplicate_failures(positions[sel & (columns == "session")], rows, cap)
            out.extend(dups)
        elif check in _ROW_CHECKS:
            # A dataframe-level check reports its row once per column: one failure per row.
            hit = np.unique(positions[sel])
            total = len(hit)
            for row, detail in zip(hit[:cap].tolist(), rows.describe(check, hit[:cap]), strict=True):
                sym, sess = rows.where(row)
                out.append(Failure(check, "schema", sym, sess, detail, None))
        else:
            chosen = np.flatnonzero(sel)
            total = len(chosen)
            for i in chosen[:cap]:
                out.append(_row_failure(check, raw_checks[i], _column(columns[i]), values[i], int(positions[i]), rows))
        if total > cap:
            unlisted[check] = unlisted.get(check, 0) + total - cap
    return out


def _column(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _duplicate_failures(
    row_positions: np.ndarray[Any, np.dtype[np.int64]], rows: _RowView, cap: int
) -> tuple[list[Failure], int]:
    """One failure per duplicated (symbol, session), with the number of rows sharing it: the first
    `cap` of them, and how many there are."""
    counts: dict[tuple[str | None, str | None], int] = {}
    for row in row_positions.tolist():
        key = rows.where(row)
        counts[key] = counts.get(key, 0) + 1
    failures = [
        Failure("duplicate_session", "schema", sym, sess, f"{n} rows for the same session", n)
        for (sym, sess), n in list(counts.items())[:cap]
    ]
    return failures, len(counts)


def _column_failure(check: str, raw: str, col: str | None, case: object) -> Failure:
    if check == "missing_column":
        detail = f"column {case!s} is missing"
    elif check == "unexpected_column":
        detail = f"unexpected column {case!s}"
    elif check == "wrong_dtype":
        detail = f"column {col} has dtype {case!s}; expected {raw}"
    else:
        detail = f"{col or 'frame'}: {raw} failed ({case!s})"
    return Failure(check, "schema", None, None, detail, str(case))


def _row_failure(check: str, raw: str, col: str | None, case: object, row: int, rows: _RowView) -> Failure:
    sym, sess = rows.where(row)
    value: float | str | None
    try:
        value = float(case)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = str(case)
    if check == "null_value":
        detail = f"{col} is null"
    elif check == "non_positive_price":
        detail = f"{col} {case!s} <= 0"
    elif check == "negative_volume":
        detail = f"volume {case!s} < 0"
    elif check == "non_finite_value":
        detail = f"{col} is {case!s} (not a finite number)"
    elif check == "wrong_dtype":
        detail = f"{col} holds {case!r}, which is not a number"
    else:
        detail = f"{col}: {raw} failed for {case!s}"
    return Failure(check, "schema", sym, sess, detail, value)
