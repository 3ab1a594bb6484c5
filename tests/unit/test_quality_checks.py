"""Layer 3 (pandas): completeness, freshness, row counts, split-like jumps, adjustment breaks, overlap."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import MarketCalendar
from tradeflow.data.quality.checks import (
    check_adjustment_breaks,
    check_completeness,
    check_freshness,
    check_min_rows,
    check_overlap,
    check_split_jumps,
    ordered_bars,
    run_checks,
)

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


@lru_cache(maxsize=1)
def cal() -> MarketCalendar:
    return MarketCalendar()


@lru_cache(maxsize=2)
def _real(name: str, symbol: str) -> pd.DataFrame:
    return read_bar_file(REAL / name, symbol, cal())


@pytest.fixture
def spy(real_data: Path) -> pd.DataFrame:
    """Real SPY, 2023-01-03 .. 2024-01-24."""
    frame = _real("SPY.csv", "SPY")
    return frame.loc[frame["session"] >= "2023-01-03"].reset_index(drop=True)


@pytest.fixture
def vix(real_data: Path) -> pd.DataFrame:
    frame = _real("VIX.csv", "^VIX")
    return frame.loc[frame["session"] >= "2023-01-03"].reset_index(drop=True)


def at(frame: pd.DataFrame, session: str) -> int:
    return int(np.flatnonzero(frame["session"] == session)[0])


def where(failures) -> set[tuple[str, str | None, str | None]]:
    return {(f.check, f.symbol, f.session) for f in failures}


# --- completeness -------------------------------------------------------------------------------


def test_complete_real_year_has_no_calendar_failures(spy):
    assert check_completeness(ordered_bars(spy), cal()).failures == []


def test_each_missing_session_is_named(spy):
    gaps = spy.loc[~spy["session"].isin(pd.to_datetime(["2023-07-03", "2023-07-05", "2023-11-24"]))]
    failures = check_completeness(ordered_bars(gaps), cal()).failures
    assert where(failures) == {
        ("missing_session", "SPY", "2023-07-03"),
        ("missing_session", "SPY", "2023-07-05"),
        ("missing_session", "SPY", "2023-11-24"),
    }


def test_holidays_and_special_closures_are_not_missing(spy):
    # 2023-07-04 and 2023-11-23 are holidays: real SPY has no rows and needs none.
    assert not spy["session"].isin(pd.to_datetime(["2023-07-04", "2023-11-23"])).any()
    assert check_completeness(ordered_bars(spy), cal()).failures == []


def test_a_row_on_a_holiday_or_weekend_is_named(spy):
    extra = spy.iloc[[10, 10]].assign(session=pd.to_datetime(["2023-07-04", "2023-07-08"]))
    frame = pd.concat([spy, extra], ignore_index=True)
    assert where(check_completeness(ordered_bars(frame), cal()).failures) == {
        ("non_session_row", "SPY", "2023-07-04"),
        ("non_session_row", "SPY", "2023-07-08"),
    }


def test_bars_before_the_calendar_start_are_noted_not_judged(real_data):
    aapl = read_bar_file(REAL / "AAPL.csv", "AAPL", cal())  # starts 1980; this calendar starts 1990
    outcome = check_completeness(ordered_bars(aapl), cal())
    assert outcome.failures == []
    assert any("AAPL" in n and "not checked" in n for n in outcome.notes)


def test_completeness_is_judged_per_symbol(spy, vix):
    frame = pd.concat([spy, vix.loc[vix["session"] != "2023-05-01"]], ignore_index=True)
    assert where(check_completeness(ordered_bars(frame), cal()).failures) == {("missing_session", "^VIX", "2023-05-01")}


# --- freshness and row counts -------------------------------------------------------------------------


def test_stale_detail_names_last_bar_and_expected_session(spy):
    [stale] = check_freshness(ordered_bars(spy), ("SPY",), pd.Timestamp("2024-01-29"), cal())
    assert stale.check == "stale"
    assert stale.detail == "last bar 2024-01-24, expected 2024-01-29 (3 session(s) behind)"
    assert stale.value == 3


def test_fresh_frame_has_no_freshness_failure(spy):
    assert check_freshness(ordered_bars(spy), ("SPY",), pd.Timestamp("2024-01-24"), cal()) == []


def test_an_expected_symbol_without_rows_is_stale(spy):
    failures = check_freshness(ordered_bars(spy), ("SPY", "QQQ"), pd.Timestamp("2024-01-24"), cal())
    assert where(failures) == {("stale", "QQQ", None)}


def test_each_symbol_is_judged_on_its_own_newest_bar(spy, vix):
    frame = pd.concat([spy, vix.iloc[:-2]], ignore_index=True)
    failures = check_freshness(ordered_bars(frame), (), pd.Timestamp("2024-01-24"), cal())
    assert where(failures) == {("stale", "^VIX", "2024-01-22")}


def test_min_rows_counts_per_symbol_and_includes_absent_symbols(spy):
    failures = check_min_rows(ordered_bars(spy.iloc[:5]), ("SPY", "^VIX"), 10)
    assert [(f.symbol, f.value) for f in failures] == [("SPY", 5), ("^VIX", 0)]


# --- split-like jumps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, 4, 10, 1 / 2, 1 / 3, 1 / 4, 1 / 10])
def test_every_split_factor_is_caught_at_the_first_session_after_the_jump(spy, factor):
    i = at(spy, "2023-06-01")
    spy.loc[: i - 1, "close"] *= factor
    [failure] = check_split_jumps(ordered_bars(spy), 0.05)
    assert (failure.symbol, failure.session) == ("SPY", "2023-06-01")
    real = spy["close"][i] / (spy["close"][i - 1] / factor)
    assert failure.value == pytest.approx(real / factor)
    assert "2023-05-31" in failure.detail
    assert f"{failure.value:.4f}" in failure.detail


def test_ordinary_real_moves_are_not_split_like(spy):
    assert check_split_jumps(ordered_bars(spy), 0.05) == []


def test_split_tolerance_bounds_the_match(spy):
    i = at(spy, "2023-06-01")
    spy.loc[i:, "close"] = spy.loc[i - 1, "close"] * 0.5 * 1.06  # ratio 0.53: 6% from 1/2
    assert check_split_jumps(ordered_bars(spy), 0.05) == []
    assert len(check_split_jumps(ordered_bars(spy), 0.07)) == 1


def test_indexes_are_never_split_like(vix):
    vix.loc[: at(vix, "2023-06-01") - 1, "close"] *= 2
    assert check_split_jumps(ordered_bars(vix), 0.05) == []


def test_ratios_are_taken_within_a_symbol_not_across_symbols(spy):
    half = spy.assign(symbol="HALF", close=spy["close"] / 2)
    frame = pd.concat([spy, half], ignore_index=True)
    assert check_split_jumps(ordered_bars(frame), 0.05) == []


def test_an_unsorted_frame_is_judged_in_session_order(spy):
    shuffled = spy.sample(frac=1.0, random_state=7)
    assert check_split_jumps(ordered_bars(shuffled), 0.05) == []


def test_adjustment_break_when_only_one_price_column_is_split_adjusted(spy):
    i = at(spy, "2023-06-01")
    spy.loc[: i - 1, "adj_close"] /= 4
    failures = check_adjustment_breaks(ordered_bars(spy), 0.05)
    assert where(failures) == {("adjustment_break", "SPY", "2023-06-01")}
    assert check_split_jumps(ordered_bars(spy), 0.05) == []


def test_real_dividends_do_not_break_the_adjustment_ratio(real_data):
    msft = read_bar_file(REAL / "MSFT.csv", "MSFT", cal())  # includes the $3 special dividend of 2004
    assert check_adjustment_breaks(ordered_bars(msft), 0.05) == []


# --- overlap with the stored snapshot ----------------------------------------------------------------


def test_overlap_identical_closes_pass(spy):
    outcome = check_overlap(ordered_bars(spy.iloc[-10:]), spy.iloc[-15:-3], 0.005)
    assert outcome.failures == []
    assert any("7 session(s) compared" in n for n in outcome.notes)


def test_overlap_names_every_session_where_close_moved_beyond_tolerance(spy):
    new = spy.iloc[-10:].copy()
    new.loc[new.index[[2, 5]], "close"] *= 1.01
    new.loc[new.index[7], "close"] *= 1.004  # within 0.5%
    failures = check_overlap(ordered_bars(new), spy, 0.005).failures
    days = {new["session"][new.index[k]].date().isoformat() for k in (2, 5)}
    assert where(failures) == {("overlap_mismatch", "SPY", d) for d in days}
    assert all(f.value == pytest.approx(0.01) for f in failures)


def test_overlap_ignores_adj_close(spy):
    new = spy.iloc[-10:].assign(adj_close=lambda f: f["adj_close"] * 0.9)
    assert check_overlap(ordered_bars(new), spy, 0.005).failures == []


def test_overlap_without_common_sessions_is_a_note(spy):
    outcome = check_overlap(ordered_bars(spy.iloc[-5:]), spy.iloc[:5], 0.005)
    assert outcome.failures == []
    assert any("no session" in n for n in outcome.notes)


# --- robustness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", [["close"], ["adj_close"], ["session"], ["symbol"], ["close", "adj_close", "volume"]])
def test_missing_columns_never_crash_the_checks(spy, drop):
    outcome = run_checks(
        spy.drop(columns=drop),
        calendar=cal(),
        as_of=pd.Timestamp("2024-01-24"),
        stored=spy,
        symbols=("SPY",),
        min_rows=1,
        split_tolerance=0.05,
        overlap_tolerance=0.005,
    )
    unattributable = "session" in drop or "symbol" in drop
    # Rows without a symbol or session cannot count towards the expected symbol.
    assert (("min_row_count", "SPY", None) in where(outcome.failures)) is unattributable


def test_string_and_nan_values_never_crash_the_checks(spy):
    frame = spy.astype({"close": object})
    frame.loc[3, "close"] = "null"
    frame.loc[4, "session"] = pd.NaT
    outcome = run_checks(
        frame,
        calendar=cal(),
        as_of=pd.Timestamp("2024-01-24"),
        stored=None,
        symbols=(),
        min_rows=1,
        split_tolerance=0.05,
        overlap_tolerance=0.005,
    )
    # The NaT row is unusable, so its session is missing; the 'null' close is the schema's to report.
    assert where(outcome.failures) == {("missing_session", "SPY", spy["session"][4].date().isoformat())}
