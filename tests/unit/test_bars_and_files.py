"""The normalized bar frame and the CSV/Parquet reader, including bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeflow.data.bars import BAR_COLUMNS, frame_digest, normalize_bars, parse_symbols
from tradeflow.data.sources.files import FileSource, read_bar_file
from tradeflow.data.sources.sample import SampleSource
from tradeflow.errors import EmptyDataError, InputError, UnknownSymbolError


def test_yahoo_csv_normalizes_to_bar_columns_with_float_volume(real_data):
    frame = read_bar_file(real_data / "AAPL.csv", "AAPL")
    assert tuple(frame.columns) == BAR_COLUMNS
    assert frame["session"].dtype == "datetime64[ns]"
    assert frame["volume"].dtype == "float64"
    assert len(frame) == 10701
    row = frame.loc[frame["session"] == "2021-12-31"].iloc[0]
    assert row["close"] == pytest.approx(177.57000732421875)


def test_vix_null_holiday_rows_are_dropped_but_counted(real_data):
    frame = read_bar_file(real_data / "VIX.csv", "^VIX")
    assert frame.attrs["dropped_placeholders"] == 306
    assert len(frame) == 8581
    assert not frame[["open", "close"]].isna().any().any()


def test_a_null_row_on_a_real_session_is_kept_for_the_gate(tmp_path, real_data):
    text = (real_data / "SPY.csv").read_text().splitlines()
    # 2024-01-23 is a session: its `null` row must survive normalization as NaN.
    text = [("2024-01-23,null,null,null,null,null,null" if line.startswith("2024-01-23") else line) for line in text]
    path = tmp_path / "SPY.csv"
    path.write_text("\n".join(text))
    frame = read_bar_file(path, "SPY")
    assert frame.attrs["dropped_placeholders"] == 0
    assert frame.loc[frame["session"] == "2024-01-23", "close"].isna().all()


def test_normalization_keeps_faults_visible(real_data):
    raw = pd.read_csv(real_data / "SPY.csv").tail(5)
    shuffled = pd.concat([raw.iloc[[2, 0, 1]], raw.iloc[[1]]])  # unsorted, duplicated
    frame = normalize_bars(shuffled, "SPY")
    assert list(frame["session"].dt.strftime("%d")) == list(pd.to_datetime(shuffled["Date"]).dt.strftime("%d"))


def test_missing_adj_close_column_stays_missing():
    raw = pd.DataFrame(
        {"Date": ["2024-01-02"], "Open": [1.0], "High": [1.0], "Low": [1.0], "Close": [1.0], "Volume": [1]}
    )
    assert "adj_close" not in normalize_bars(raw, "SPY").columns


def test_tz_aware_vendor_stamps_become_new_york_session_dates():
    idx = pd.DatetimeIndex(["2024-01-02 05:00:00+00:00", "2024-01-03 05:00:00+00:00"])  # Alpaca-style midnight ET
    raw = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}, index=idx)
    frame = normalize_bars(raw, "SPY")
    assert [str(d.date()) for d in frame["session"]] == ["2024-01-02", "2024-01-03"]


@pytest.mark.parametrize("bad", ["SPY;rm -rf", "", "TOO-LONG-SYMBOL-NAME-X"])
def test_invalid_symbols_are_input_errors(bad):
    with pytest.raises(InputError):
        parse_symbols(bad)


def test_symbols_are_upper_cased_and_deduplicated():
    assert parse_symbols("spy, ^vix,SPY") == ["SPY", "^VIX"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("Open,High\n1,2\n", "no date/session column"),
        ("Date,Open,High,Low,Close,Adj Close,Volume\nnot-a-date,1,1,1,1,1,1\n", "unparseable dates"),
        ('Date,Open\n"2024-01-02,1\n', "cannot read"),
    ],
)
def test_malformed_files_raise_one_line_input_errors(tmp_path, content, message):
    path = tmp_path / "SPY.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_bar_file(path, "SPY")
    assert "\n" not in str(info.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_bar_file(tmp_path / "nope.csv")


def test_directory_source_finds_caret_symbols_and_rejects_unknown_ones(real_data):
    src = FileSource(real_data, "csv")
    frame = src.fetch("^VIX", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-31"))
    assert set(frame["symbol"]) == {"^VIX"}
    with pytest.raises(UnknownSymbolError, match="no csv file for ZZZZ"):
        src.fetch("ZZZZ", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-31"))


def test_a_range_with_no_rows_is_an_empty_data_error(real_data):
    with pytest.raises(EmptyDataError):
        FileSource(real_data / "SPY.csv", "csv").fetch("SPY", pd.Timestamp("2025-01-01"), pd.Timestamp("2025-02-01"))


def test_parquet_and_csv_of_the_same_bars_have_the_same_digest(tmp_path, real_data):
    frame = read_bar_file(real_data / "SPY.csv", "SPY")
    frame.to_parquet(tmp_path / "SPY.parquet", index=False)
    again = read_bar_file(tmp_path / "SPY.parquet", "SPY")
    assert frame_digest(again) == frame_digest(frame)


def test_sample_source_serves_real_index_history_as_labelled_proxies():
    src = SampleSource()
    spy = src.fetch("SPY", pd.Timestamp("2008-10-01"), pd.Timestamp("2008-10-31"))
    # The S&P 500's record +11.6% day, 2008-10-13: real history, not synthetic.
    r = spy.set_index("session")["close"].pct_change()
    assert r.loc["2008-10-13"] == pytest.approx(0.1158, abs=1e-3)
    assert "proxy" in src.describe("SPY")
    vix = src.fetch("^VIX", pd.Timestamp("2018-01-01"), pd.Timestamp("2018-12-31"))
    assert np.allclose(vix["open"], vix["close"])
    assert (vix["volume"] == 0).all()
    with pytest.raises(UnknownSymbolError, match="serves SPY, QQQ, \\^VIX"):
        src.fetch("AAPL", pd.Timestamp("2018-01-01"), pd.Timestamp("2018-12-31"))
