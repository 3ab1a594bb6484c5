"""The BarSource contract (data/sources/base.py), held against every source: sample, csv, parquet,
yfinance, alpaca and ib (the vendor ones replaying recorded answers; see conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.contract.conftest import EMPTY_RANGE, CountingSource, SourceCase
from tradeflow.calendar import default_calendar
from tradeflow.data.bars import BAR_COLUMNS, VALUE_COLUMNS
from tradeflow.data.sources.base import BarSource, fetch_with_retry
from tradeflow.errors import EmptyDataError, TransientSourceError, UnknownSymbolError


def _fetch(case: SourceCase) -> pd.DataFrame:
    start, end = case.window
    return case.source.fetch(case.symbol, start, end)


def test_source_satisfies_the_bar_source_protocol(case: SourceCase) -> None:
    assert isinstance(case.source, BarSource)
    assert case.source.name == case.name


def test_fetch_returns_exactly_bar_columns_with_documented_dtypes(case: SourceCase) -> None:
    frame = _fetch(case)
    assert tuple(frame.columns) == BAR_COLUMNS
    assert frame["session"].dtype == np.dtype("datetime64[ns]")
    assert pd.api.types.is_string_dtype(frame["symbol"])
    for col in VALUE_COLUMNS:
        assert frame[col].dtype == np.dtype("float64"), col
    assert isinstance(frame.index, pd.RangeIndex)


def test_fetch_keeps_only_rows_within_start_and_end(case: SourceCase) -> None:
    start, end = case.window
    frame = _fetch(case)
    assert len(frame) > 0
    assert frame["session"].min() >= start
    assert frame["session"].max() <= end
    assert (frame["symbol"] == case.symbol).all()


def test_fetch_returns_every_nyse_session_of_the_range_and_nothing_else(case: SourceCase) -> None:
    start, end = case.window
    frame = _fetch(case)
    expected = default_calendar().sessions(start, end)
    # Both ends are inclusive, and the holidays inside the range (Christmas, New Year) are absent.
    assert list(frame["session"]) == list(expected)


def test_unknown_symbol_raises_unknown_symbol_error(case: SourceCase) -> None:
    start, end = case.window
    with pytest.raises(UnknownSymbolError):
        case.source.fetch(case.unknown_symbol, start, end)


def test_range_without_bars_raises_empty_data_error(case: SourceCase) -> None:
    with pytest.raises(EmptyDataError):
        case.source.fetch(case.symbol, *EMPTY_RANGE)


def test_transient_fault_raises_transient_source_error(case: SourceCase) -> None:
    if case.flaky is None:
        pytest.skip(f"{case.name} reads local data: there is no network fault to inject")
    start, end = case.window
    with pytest.raises(TransientSourceError):
        case.flaky(1).fetch(case.symbol, start, end)


def test_transient_fault_is_retried_by_fetch_with_retry_then_succeeds(case: SourceCase) -> None:
    if case.flaky is None:
        pytest.skip(f"{case.name} reads local data: there is no network fault to inject")
    source = CountingSource(case.flaky(1))
    sleeps: list[float] = []
    start, end = case.window
    frame = fetch_with_retry(source, case.symbol, start, end, attempts=3, sleep=sleeps.append)
    assert source.calls == 2
    assert sleeps == [1.0]
    assert list(frame["session"]) == list(default_calendar().sessions(start, end))


def test_transient_fault_that_persists_is_raised_after_the_last_attempt(case: SourceCase) -> None:
    if case.flaky is None:
        pytest.skip(f"{case.name} reads local data: there is no network fault to inject")
    source = CountingSource(case.flaky(5))
    sleeps: list[float] = []
    start, end = case.window
    with pytest.raises(TransientSourceError):
        fetch_with_retry(source, case.symbol, start, end, attempts=3, sleep=sleeps.append)
    assert source.calls == 3
    assert sleeps == [1.0, 2.0]


def test_unknown_symbol_is_not_retried(case: SourceCase) -> None:
    source = CountingSource(case.source)
    sleeps: list[float] = []
    start, end = case.window
    before = case.vendor_calls() if case.vendor_calls else 0
    with pytest.raises(UnknownSymbolError):
        fetch_with_retry(source, case.unknown_symbol, start, end, attempts=3, sleep=sleeps.append)
    assert source.calls == 1
    assert sleeps == []
    if case.vendor_calls is not None:
        # The adapter did not retry inside either: the vendor saw exactly one attempt's requests.
        with_retry = case.vendor_calls() - before
        with pytest.raises(UnknownSymbolError):
            case.source.fetch(case.unknown_symbol, start, end)
        assert case.vendor_calls() - before - with_retry == with_retry


def test_empty_answer_is_not_retried(case: SourceCase) -> None:
    source = CountingSource(case.source)
    sleeps: list[float] = []
    with pytest.raises(EmptyDataError):
        fetch_with_retry(source, case.symbol, *EMPTY_RANGE, attempts=3, sleep=sleeps.append)
    assert source.calls == 1
    assert sleeps == []


def test_describe_returns_one_non_empty_line(case: SourceCase) -> None:
    line = case.source.describe(case.symbol)
    assert isinstance(line, str)
    assert line.strip()
    assert "\n" not in line


def test_no_vendor_type_leaks_into_the_frame(case: SourceCase) -> None:
    frame = _fetch(case)
    records = frame.to_dict("records")
    for row in records:
        assert type(row["session"]) is pd.Timestamp  # datetime64[ns] cells
        assert type(row["symbol"]) is str
        for col in VALUE_COLUMNS:
            assert type(row[col]) is float, (col, type(row[col]))
    for key, value in frame.attrs.items():
        assert isinstance(value, str | int | float | bool | type(None)), (key, type(value))


def test_real_spy_sources_agree_on_recorded_close_and_dividend_adjusted_close(case: SourceCase) -> None:
    if not case.real_spy:
        pytest.skip("the sample source serves the S&P 500 index as a proxy, not SPY prices")
    frame = _fetch(case).set_index("session")
    # SPY's close on the first session of 2024, and its dividend-adjusted close before the
    # 2023-12-15 ex-date, as Yahoo had them in January 2024.
    assert frame.loc[pd.Timestamp("2024-01-02"), "close"] == pytest.approx(472.649994, abs=0.006)
    assert frame.loc[pd.Timestamp("2023-12-14"), "close"] == pytest.approx(472.01001, abs=0.006)
    assert frame.loc[pd.Timestamp("2023-12-14"), "adj_close"] == pytest.approx(470.104004, abs=0.001)
    assert frame.loc[pd.Timestamp("2024-01-02"), "volume"] == pytest.approx(123623700.0)
