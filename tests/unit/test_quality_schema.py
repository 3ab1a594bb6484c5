"""Layer 1 (pandera): every failing row named by symbol and session, one failure per fault."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.data.quality.schema import bar_schema, validate_schema

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


@lru_cache(maxsize=1)
def _spy() -> pd.DataFrame:
    return read_bar_file(REAL / "SPY.csv", "SPY")


@pytest.fixture
def spy(real_data: Path) -> pd.DataFrame:
    """The last 40 real SPY bars (2023-11-28 .. 2024-01-24)."""
    return _spy().iloc[-40:].reset_index(drop=True)


def found(frame: pd.DataFrame) -> list[tuple[str, str | None, str | None]]:
    return [(f.check, f.symbol, f.session) for f in validate_schema(frame).failures]


def day(frame: pd.DataFrame, i: int) -> str:
    return frame["session"][i].date().isoformat()


def test_clean_real_bars_pass(spy):
    assert validate_schema(spy).failures == []


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("adj_close", 0.0, "non_positive_price"),
        ("adj_close", -2.5, "non_positive_price"),
        ("volume", -1.0, "negative_volume"),
        ("low", np.nan, "null_value"),
        ("volume", np.nan, "null_value"),
    ],
)
def test_a_bad_value_is_reported_once_with_symbol_and_session(spy, column, value, check):
    spy.loc[7, column] = value
    failures = validate_schema(spy).failures
    assert [(f.check, f.symbol, f.session) for f in failures] == [(check, "SPY", day(spy, 7))]
    assert column in failures[0].detail


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "adj_close", "volume"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_g3_an_infinite_price_or_volume_fails_as_non_finite_and_only_as_that(spy, column, value):
    spy.loc[7, column] = value
    failures = validate_schema(spy).failures
    assert [(f.check, f.symbol, f.session) for f in failures] == [("non_finite_value", "SPY", day(spy, 7))]
    assert column in failures[0].detail


def test_non_positive_prices_name_each_offending_column(spy):
    spy.loc[7, ["low", "close"]] = [0.0, 0.0]
    details = {f.detail for f in validate_schema(spy).failures if f.check == "non_positive_price"}
    assert details == {"low 0.0 <= 0", "close 0.0 <= 0"}


def test_nat_session_is_a_null_and_named_by_symbol(spy):
    spy.loc[3, "session"] = pd.NaT
    assert ("null_value", "SPY", None) in found(spy)


def test_high_below_open_or_close_is_one_failure_per_row_not_one_per_column(spy):
    spy.loc[4, "high"] = spy.loc[4, "close"] - 0.5
    failures = [f for f in validate_schema(spy).failures if f.check == "high_below_open_close"]
    assert [(f.symbol, f.session) for f in failures] == [("SPY", day(spy, 4))]
    assert failures[0].detail.startswith("high ")


def test_low_above_open_or_close_is_reported(spy):
    spy.loc[5, "low"] = spy.loc[5, ["open", "close"]].min() + 0.01
    assert ("low_above_open_close", "SPY", day(spy, 5)) in found(spy)


def test_d8_nan_volume_does_not_hide_high_below_low_in_the_same_row(spy):
    spy.loc[9, "volume"] = np.nan
    spy.loc[9, "high"] = spy.loc[9, "low"] - 1.0
    checks = {c for c, _, s in found(spy) if s == day(spy, 9)}
    assert {"null_value", "high_below_low"} <= checks


def test_a_nan_operand_is_the_null_checks_finding_not_an_ohlc_violation(spy):
    spy.loc[6, "high"] = np.nan
    assert {c for c, _, _ in found(spy)} == {"null_value"}


def test_high_below_open_is_caught_even_when_close_is_missing(spy):
    spy.loc[8, "close"] = np.nan
    spy.loc[8, "high"] = spy.loc[8, "open"] - 1.0
    assert ("high_below_open_close", "SPY", day(spy, 8)) in found(spy)


def test_duplicate_session_is_one_failure_counting_its_rows(spy):
    frame = pd.concat([spy, spy.iloc[[10, 10]]], ignore_index=True)
    failures = [f for f in validate_schema(frame).failures if f.check == "duplicate_session"]
    assert [(f.symbol, f.session, f.value) for f in failures] == [("SPY", day(spy, 10), 3)]


def test_same_session_for_two_symbols_is_not_a_duplicate(spy):
    other = spy.assign(symbol="QQQ")
    assert validate_schema(pd.concat([spy, other], ignore_index=True)).failures == []


def test_rows_out_of_order_within_a_symbol_are_reported(spy):
    frame = spy.iloc[[0, 1, 3, 2, 4]].reset_index(drop=True)
    assert [f for f in found(frame) if f[0] == "session_out_of_order"] == [
        ("session_out_of_order", "SPY", day(frame, 3))
    ]


def test_interleaved_symbols_are_not_out_of_order(spy):
    other = spy.assign(symbol="QQQ")
    frame = pd.concat([spy, other]).sort_index(kind="stable").reset_index(drop=True)
    assert validate_schema(frame).failures == []


def test_d5_missing_adj_close_and_extra_columns_fail_strictly(spy):
    frame = spy.drop(columns=["adj_close"]).assign(dividends=0.0)
    checks = {(f.check, f.value) for f in validate_schema(frame).failures}
    assert ("missing_column", "adj_close") in checks
    assert ("unexpected_column", "dividends") in checks


def test_literal_null_string_in_a_price_column_is_named_per_row(spy):
    spy["close"] = spy["close"].astype(object)
    spy.loc[2, "close"] = "null"
    failures = validate_schema(spy).failures
    assert ("wrong_dtype", "SPY", day(spy, 2)) in {(f.check, f.symbol, f.session) for f in failures}


def test_duplicate_index_labels_of_a_concatenated_frame_still_map_to_the_right_rows(spy):
    frame = pd.concat([spy.iloc[:20], spy.iloc[20:].assign(symbol="QQQ")])  # index labels 0..19 twice
    frame.index = list(range(20)) * 2
    frame.iloc[25, frame.columns.get_loc("volume")] = -1.0
    assert [f for f in found(frame) if f[0] == "negative_volume"] == [("negative_volume", "QQQ", day(spy, 25))]


def test_every_failing_row_is_reported_in_one_lazy_pass(spy):
    spy.loc[[1, 11, 21, 31], "volume"] = -1.0
    spy.loc[[2, 12], "close"] = np.nan
    failures = validate_schema(spy).failures
    assert sum(f.check == "negative_volume" for f in failures) == 4
    assert sum(f.check == "null_value" for f in failures) == 2


def test_schema_declares_exactly_the_bar_columns():
    assert list(bar_schema().columns) == [
        "session",
        "symbol",
        "open",
        "high",
        "low",
        "close",
        "adj_close",
        "volume",
    ]


def test_100_symbols_of_5000_rows_validate_in_well_under_a_few_seconds(real_data):
    one = _spy().iloc[-5000:]
    frame = pd.concat([one.assign(symbol=f"S{i:03d}") for i in range(100)], ignore_index=True)
    validate_schema(frame.iloc[:1000])  # first call builds pandera's machinery
    t0 = time.perf_counter()
    assert validate_schema(frame).failures == []
    assert time.perf_counter() - t0 < 3.0
