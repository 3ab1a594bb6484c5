"""The normalized bar frame and the CSV/Parquet reader, including bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import FileSource, read_bar_file
from tradeflow.adapters.sample.data import SampleSource
from tradeflow.data.bars import BAR_COLUMNS, frame_digest, normalize_bars, parse_symbols
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


# --- G4: a file's own symbol column must agree with the symbol asked for --------------------------


def _with_symbol_column(real_data, tmp_path, name: str, symbol: str):
    raw = pd.read_csv(real_data / "SPY.csv", dtype=str).iloc[-300:]
    raw.insert(1, "Symbol", symbol)
    path = tmp_path / name
    raw.to_csv(path, index=False)
    return path


def test_g4_a_file_whose_symbol_column_names_another_symbol_is_refused_naming_both(real_data, tmp_path):
    path = _with_symbol_column(real_data, tmp_path, "SPY.csv", "AAPL")
    with pytest.raises(InputError) as info:
        read_bar_file(path, "SPY")
    assert str(info.value) == f"no rows for SPY in {path} (its symbol column names AAPL)"


def test_g4_a_multi_symbol_file_still_serves_the_rows_of_the_symbol_asked_for(real_data, tmp_path):
    spy = _with_symbol_column(real_data, tmp_path, "a.csv", "SPY")
    both = pd.concat([pd.read_csv(spy), pd.read_csv(spy).assign(Symbol="QQQ")])
    both.to_csv(tmp_path / "both.csv", index=False)
    frame = read_bar_file(tmp_path / "both.csv", "QQQ")
    assert len(frame) == 300
    assert set(frame["symbol"]) == {"QQQ"}


def test_g4_validate_and_ingest_of_a_contradicting_file_exit_2_and_store_nothing(capsys, real_data, tmp_path, data_dir):
    from tradeflow.cli import EXIT_INPUT, main
    from tradeflow.data.store import SnapshotStore

    path = _with_symbol_column(real_data, tmp_path, "prices.csv", "AAPL")
    expected = f"no rows for SPY in {path} (its symbol column names AAPL)"
    assert main(["validate", str(path), "--symbol", "SPY", "--as-of", "2024-01-24"]) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == f"error: {expected}"
    args = ["ingest", "--source", "csv", "--path", str(path), "--symbols", "SPY", "--start", "2023-01-03"]
    assert main([*args, "--end", "2024-01-24", "--now", "2026-11-21T12:00Z"]) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == f"error: {expected}"
    assert SnapshotStore(data_dir / "snapshots").symbols() == []


# --- G7: no error quotes what the file holds -------------------------------------------------------

CANARY = "CANARY-7f3a9c-SECRET"


@pytest.mark.parametrize(
    "content",
    [
        f"TRADEFLOW_ALPACA__API_KEY={CANARY}\nTRADEFLOW_ALPACA__SECRET_KEY={CANARY}\n",  # a .env file
        f"{CANARY},Open\n2024-01-02,1\n",  # the secret as a header name
        f"Date,Open,High,Low,Close,Adj Close,Volume\n{CANARY},1,1,1,1,1,1\n",  # as a date
        f'Date,Open\n"{CANARY},1\n',  # inside an unterminated quote
        f"Date,Symbol,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,{CANARY.lower()}!,1,1,1,1,1,1\n",  # as a symbol
        f"USER=x\x00KEY={CANARY}\x00HOME=/root\x00",  # /proc/self/environ's layout
    ],
)
def test_g7_errors_on_a_file_holding_a_canary_secret_never_echo_it(capsys, tmp_path, data_dir, content):
    from tradeflow.cli import EXIT_INPUT, main

    path = tmp_path / ".env"
    path.write_text(content)
    code = main(["validate", str(path), "--symbol", "SPY", "--as-of", "2024-01-24"])
    out = capsys.readouterr()
    assert code == EXIT_INPUT, out
    assert str(path) in out.err
    assert CANARY.lower() not in (out.out + out.err).lower()
    assert "internal error" not in out.err


def test_g7_proc_self_environ_is_refused_without_quoting_the_environment(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    # /proc/self/environ is the environment a process started with: the canary must be set before.
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "TRADEFLOW_TEST_CANARY": CANARY, "TRADEFLOW_DATA_DIR": str(tmp_path), "PYTHONPATH": str(src)}
    args = [sys.executable, "-m", "tradeflow.cli", "validate", "/proc/self/environ"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: /proc/self/environ: ")
    assert CANARY not in done.stdout + done.stderr


def test_a_device_or_fifo_is_refused_before_reading_it(tmp_path):
    with pytest.raises(InputError, match="not a regular file"):
        read_bar_file("/dev/zero", "SPY")


# --- G5: an oversized file is refused before it is read --------------------------------------------


def test_g5_a_file_over_the_input_limit_is_refused_by_validate_and_ingest_before_reading(
    capsys, monkeypatch, real_data, tmp_path, data_dir
):
    from tradeflow.cli import EXIT_INPUT, main
    from tradeflow.config import get_settings

    (tmp_path / "SPY.csv").write_bytes((real_data / "SPY.csv").read_bytes())  # ~480 KB
    monkeypatch.setenv("TRADEFLOW_QUALITY__MAX_INPUT_BYTES", str(100 * 1024))
    get_settings.cache_clear()
    assert main(["validate", str(tmp_path / "SPY.csv"), "--as-of", "2024-01-24"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'SPY.csv'} is 0.")
    assert "over the input limit of 0.1 MiB" in err
    args = ["ingest", "--source", "csv", "--path", str(tmp_path), "--symbols", "SPY", "--end", "2024-01-24"]
    assert main([*args, "--now", "2026-11-21T12:00Z"]) == EXIT_INPUT
    assert "over the input limit" in capsys.readouterr().err
    assert not (data_dir / "snapshots").exists()
    assert not (data_dir / "quarantine").exists()
