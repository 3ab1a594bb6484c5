"""The quality gate end to end on the REAL files (RELIABILITY D1-D8), faults injected in memory."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import MarketCalendar
from tradeflow.data.bars import empty_bars
from tradeflow.data.quality import (
    Failure,
    GateContext,
    KnownEvents,
    QualityReport,
    gx_layer,
    raise_for_report,
    run_gate,
)
from tradeflow.data.quality.report import REPORT_FAILURES_PER_CHECK
from tradeflow.errors import DataQualityError, DataStaleError

FILES = {"SPY": "SPY.csv", "AAPL": "AAPL.csv", "MSFT": "MSFT.csv", "^VIX": "VIX.csv"}


@lru_cache(maxsize=1)
def calendar() -> MarketCalendar:
    # AAPL and MSFT start in 1980 and 1986: the default 1990 start would leave years unchecked.
    return MarketCalendar(start="1980-01-02")


@lru_cache(maxsize=8)
def _read(path: str, symbol: str) -> pd.DataFrame:
    return read_bar_file(path, symbol, calendar())


@pytest.fixture(scope="session")
def warm_gx() -> None:
    """Import GX and build its context once; every later gate run in this process reuses it."""
    gx_layer.warm_up(GateContext(calendar()).expectations_dir)


@pytest.fixture
def bars(real_data: Path, warm_gx: None):
    def load(symbol: str) -> pd.DataFrame:
        return _read(str(real_data / FILES[symbol]), symbol).copy()

    return load


def gate(frame: pd.DataFrame, **kwargs: object) -> QualityReport:
    return run_gate(frame, GateContext(calendar(), **kwargs))  # type: ignore[arg-type]


def where(report: QualityReport, check: str) -> set[tuple[str | None, str | None]]:
    return {(f.symbol, f.session) for f in report.failures if f.check == check}


def last_session(frame: pd.DataFrame) -> pd.Timestamp:
    return pd.Timestamp(frame["session"].max())


# --- D2: genuine extreme days pass --------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["SPY", "AAPL", "MSFT", "^VIX"])
def test_d2_untouched_real_file_passes_with_as_of_its_last_session(bars, symbol):
    frame = bars(symbol)
    report = gate(frame, as_of=last_session(frame), symbols=(symbol,))
    assert report.passed, report.to_markdown()
    assert report.failures == ()
    assert report.rows == len(frame)
    assert set(report.timings) >= {"schema", "statistics", "checks"}


@pytest.mark.parametrize(
    ("symbol", "session"),
    [
        ("AAPL", "2000-09-29"),
        ("MSFT", "1987-10-19"),
        ("SPY", "2008-10-13"),
        ("SPY", "2020-03-16"),
        ("^VIX", "2018-02-05"),
    ],
)
def test_d2_named_extreme_days_are_never_failures(bars, symbol, session):
    frame = bars(symbol)
    report = gate(frame, as_of=last_session(frame))
    assert not [f for f in report.failures if f.session == session]


def test_d2_aapl_profit_warning_is_excused_by_the_allow_list_and_kept_on_record(bars):
    frame = bars("AAPL")
    report = gate(frame, as_of=last_session(frame))
    assert [(f.check, f.session) for f in report.allowed] == [("split_like", "2000-09-29")]
    assert "profit warning" in (report.allowed[0].allowed_by or "")
    assert any("2000-09-29" in n for n in report.notes)  # the large move is still mentioned to a person


def test_d2_without_the_allow_list_the_aapl_crash_day_would_fail_as_split_like(bars):
    frame = bars("AAPL")
    report = gate(frame, as_of=last_session(frame), known_events=KnownEvents.empty())
    assert not report.passed
    assert where(report, "split_like") == {("AAPL", "2000-09-29")}
    assert len(report.failures) == 1


# --- D1: a synthetic 10:1 split jump --------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "factor", "ratio"), [("SPY", 10.0, 0.1), ("AAPL", 0.1, 10.0)])
def test_d1_close_scaled_before_a_date_fails_naming_the_session_and_ratio(bars, symbol, factor, ratio):
    frame = bars(symbol)
    before = frame["session"] < "2015-06-01"
    frame.loc[before, "close"] *= factor
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    [split] = report.failures_for("split_like")
    assert (split.symbol, split.session) == (symbol, "2015-06-01")
    assert split.value == pytest.approx(ratio, rel=0.05)
    assert f"{ratio:.4f}"[:4] in split.detail
    # Close alone moved, so the adjustment ratio broke and the OHLC algebra fails too.
    assert where(report, "adjustment_break") == {(symbol, "2015-06-01")}
    assert where(report, "return_outlier") >= {(symbol, "2015-06-01")}


def test_d1_whole_bar_scaled_like_an_unadjusted_split_fails_only_at_the_split(bars):
    frame = bars("SPY")
    before = frame["session"] < "2015-06-01"
    frame.loc[before, ["open", "high", "low", "close", "adj_close"]] *= 10
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    assert {f.session for f in report.failures} == {"2015-06-01"}
    assert {f.check for f in report.failures} == {"split_like", "return_outlier"}


# --- D3: stale data -----------------------------------------------------------------------------


def test_d3_as_of_after_the_last_bar_is_a_freshness_failure_and_raises_data_stale(bars, tmp_path):
    frame = bars("SPY")
    report = gate(frame, as_of="2024-02-01")
    [stale] = report.failures_for("stale")
    assert stale.symbol == "SPY"
    assert stale.detail.startswith("last bar 2024-01-24, expected 2024-02-01")
    assert report.is_stale
    with pytest.raises(DataStaleError) as info:
        raise_for_report(report, frame, tmp_path / "quarantine")
    assert info.value.status == "DATA_STALE"
    assert info.value.report is report
    assert Path(info.value.quarantined).is_dir()


def test_d3_a_bar_after_as_of_is_rejected_too_but_not_as_stale(bars):
    frame = bars("SPY")
    report = gate(frame, as_of="2024-01-23")
    assert where(report, "bar_after_as_of") == {("SPY", "2024-01-24")}
    assert not report.is_stale


# --- D5: silent adjustment changes ----------------------------------------------------------------


def test_d5_missing_adj_close_column_fails_the_schema(bars):
    frame = bars("SPY").drop(columns=["adj_close"])
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    [missing] = report.failures_for("missing_column")
    assert missing.layer == "schema"
    assert "adj_close" in missing.detail


def test_d5_dividend_adjusted_close_against_the_stored_close_fails_the_overlap_check(bars):
    frame = bars("SPY")
    stored = frame.loc[frame["session"].between("2022-01-03", "2022-12-30")].reset_index(drop=True)
    new = frame.loc[frame["session"] >= "2022-01-03"].reset_index(drop=True)
    scale = new["adj_close"] / new["close"]
    new[["open", "high", "low", "close"]] = new[["open", "high", "low", "close"]].mul(scale, axis=0)
    report = gate(new, as_of=last_session(new), stored=stored)
    assert not report.passed
    # Every overlapping session is counted; the report lists the first ones (bounded, G5).
    assert report.counts() == {"overlap_mismatch": len(stored)}
    sessions = sorted(s for _, s in where(report, "overlap_mismatch"))
    assert sessions[0] == "2022-01-03"
    assert len(sessions) == REPORT_FAILURES_PER_CHECK
    assert all(f.symbol == "SPY" and "stored" in f.detail for f in report.failures_for("overlap_mismatch"))
    assert {f.check for f in report.failures} == {"overlap_mismatch"}


def test_d5_rewritten_adj_close_alone_is_not_an_overlap_failure(bars):
    frame = bars("SPY")
    stored = frame.loc[frame["session"].between("2022-01-03", "2022-12-30")].reset_index(drop=True)
    new = frame.loc[frame["session"] >= "2022-01-03"].reset_index(drop=True)
    new["adj_close"] *= 0.98  # a later download re-bases dividends: legitimate
    report = gate(new, as_of=last_session(new), stored=stored)
    assert report.passed, report.summary_line()
    assert any("compared with the stored snapshot" in n for n in report.notes)


# --- D6: structural faults, all in one lazy pass ----------------------------------------------------


def test_d6_every_structural_fault_in_one_frame_is_reported_with_check_symbol_and_session(bars):
    frame = bars("SPY")
    frame = frame.loc[frame["session"].between("2019-01-02", "2019-12-31")].reset_index(drop=True)
    s = frame["session"].dt.strftime("%Y-%m-%d")
    row = {d: i for i, d in enumerate(s)}
    frame.loc[row["2019-03-01"], "high"] = frame.loc[row["2019-03-01"], ["open", "close"]].max() - 1
    frame.loc[row["2019-03-04"], "low"] = frame.loc[row["2019-03-04"], ["open", "close"]].min() + 1
    frame.loc[row["2019-03-05"], ["low", "close"]] = [-1.0, 0.0]
    frame.loc[row["2019-03-06"], "volume"] = -5.0
    frame.loc[row["2019-03-07"], "open"] = np.nan
    swapped = frame.loc[[row["2019-05-02"], row["2019-05-01"]]].to_numpy()
    frame.loc[[row["2019-05-01"], row["2019-05-02"]]] = swapped
    frame = pd.concat([frame, frame.loc[[row["2019-06-03"]]]], ignore_index=True)  # duplicate date
    frame = frame.loc[frame["session"] != "2019-07-01"].reset_index(drop=True)  # missing session

    report = gate(frame, as_of="2019-12-31")
    found = {(f.check, f.symbol, f.session) for f in report.failures}
    expected = {
        ("high_below_open_close", "SPY", "2019-03-01"),
        ("low_above_open_close", "SPY", "2019-03-04"),
        ("non_positive_price", "SPY", "2019-03-05"),
        ("negative_volume", "SPY", "2019-03-06"),
        ("null_value", "SPY", "2019-03-07"),
        ("session_out_of_order", "SPY", "2019-05-01"),
        ("duplicate_session", "SPY", "2019-06-03"),
        ("missing_session", "SPY", "2019-07-01"),
    }
    assert expected <= found, sorted(expected - found)
    nonpositive = {f.detail for f in report.failures_for("non_positive_price")}
    assert nonpositive == {"low -1.0 <= 0", "close 0.0 <= 0"}


def test_d6_literal_null_in_a_csv_is_reported_as_a_null_on_that_session(tmp_path, warm_gx):
    lines = [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "2024-01-02,472.16,473.67,470.49,472.65,472.65,123623700",
        "2024-01-03,470.43,471.19,468.17,null,468.79,103585900",
        "2024-01-04,468.30,470.96,467.05,467.28,467.28,84232200",
    ]
    path = tmp_path / "SPY.csv"
    path.write_text("\n".join(lines))
    frame = read_bar_file(path, "SPY", calendar())
    report = gate(frame, as_of="2024-01-04")
    assert ("null_value", "SPY", "2024-01-03") in {(f.check, f.symbol, f.session) for f in report.failures}
    assert report.failures_for("null_value")[0].detail == "close is null"


def test_d6_unnormalized_null_strings_are_reported_per_row_not_crash(bars):
    frame = bars("SPY").iloc[-20:].reset_index(drop=True)
    frame["close"] = frame["close"].astype(object)
    frame.loc[5, "close"] = "null"
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    assert ("SPY", frame["session"][5].date().isoformat()) in where(report, "wrong_dtype")
    assert not report.failures_for("layer_error")


# --- D7: empty frames ---------------------------------------------------------------------------------


def test_d7_empty_frame_fails_on_row_count_and_freshness_and_raises(bars, tmp_path):
    frame = bars("SPY").iloc[:0]
    report = gate(frame, as_of="2024-01-24", symbols=("SPY",))
    assert not report.passed
    checks = {f.check for f in report.failures}
    assert {"min_row_count", "stale"} <= checks
    assert ("SPY", None) in where(report, "min_row_count")
    assert {f.layer for f in report.failures_for("min_row_count")} == {"statistics", "consistency"}
    with pytest.raises(DataQualityError):
        raise_for_report(report, frame, tmp_path)


def test_d7_empty_frame_without_expectations_still_never_passes(warm_gx):
    report = gate(empty_bars())
    assert not report.passed
    assert report.failures_for("min_row_count")


def test_d7_min_rows_zero_is_refused_because_it_would_pass_vacuously():
    with pytest.raises(ValueError, match="min_rows"):
        GateContext(calendar(), min_rows=0)


def test_d7_a_symbol_with_too_few_rows_fails_even_beside_a_full_one(bars):
    spy, vix = bars("SPY").iloc[-30:], bars("^VIX").iloc[-3:]
    frame = pd.concat([spy, vix], ignore_index=True)
    report = gate(frame, as_of="2024-01-24", min_rows=20)
    assert ("^VIX", None) in where(report, "min_row_count")
    assert ("SPY", None) not in where(report, "min_row_count")


# --- D8: a NaN beside a real violation ---------------------------------------------------------------


def test_d8_nan_volume_and_high_below_low_in_one_row_are_both_reported(bars):
    frame = bars("SPY").iloc[-60:].reset_index(drop=True)
    frame.loc[10, "volume"] = np.nan
    frame.loc[10, "high"] = frame.loc[10, "low"] - 1.0
    session = frame["session"][10].date().isoformat()
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    at_row = {f.check for f in report.failures if f.session == session}
    assert {"null_value", "high_below_low", "high_below_open_close"} <= at_row


# --- multi-symbol frames and failure handling --------------------------------------------------------


def test_one_gate_run_reports_faults_of_every_symbol(bars):
    parts = [bars(s).iloc[-250:] for s in ("SPY", "^VIX")] + [bars("MSFT").iloc[-250:]]
    frame = pd.concat(parts, ignore_index=True)
    frame.loc[frame.index[5], "volume"] = -1.0  # SPY
    frame.loc[frame.index[300], "close"] = np.nan  # ^VIX
    msft = frame.index[frame["symbol"] == "MSFT"]
    frame.loc[msft[:100], ["open", "high", "low", "close", "adj_close"]] *= 4  # MSFT looks unadjusted
    report = gate(frame)
    assert ("SPY", frame.loc[5, "session"].date().isoformat()) in where(report, "negative_volume")
    assert ("^VIX", frame.loc[300, "session"].date().isoformat()) in where(report, "null_value")
    assert ("MSFT", frame.loc[msft[100], "session"].date().isoformat()) in where(report, "split_like")


def test_a_crashing_layer_is_a_failure_and_the_other_layers_still_report(bars, monkeypatch):
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("suite store unreachable")

    monkeypatch.setattr(gx_layer, "validate_statistics", boom)
    frame = bars("SPY").iloc[-30:].reset_index(drop=True)
    frame.loc[3, "volume"] = -1.0
    report = gate(frame, as_of=last_session(frame))
    assert not report.passed
    [crash] = report.failures_for("layer_error")
    assert crash.layer == "statistics"
    assert "suite store unreachable" in crash.detail
    assert report.failures_for("negative_volume")


def test_raise_for_report_does_nothing_and_writes_nothing_when_passed(bars, tmp_path):
    frame = bars("SPY").iloc[-30:]
    report = gate(frame, as_of=last_session(frame))
    assert report.passed
    raise_for_report(report, frame, tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_quarantine_writes_frame_and_reports_named_by_content_and_nothing_else(bars, tmp_path):
    frame = bars("SPY").iloc[-30:].reset_index(drop=True)
    frame.loc[2, "high"] = 1.0
    report = gate(frame, as_of=last_session(frame))
    q = tmp_path / "q"
    with pytest.raises(DataQualityError) as first:
        raise_for_report(report, frame, q)
    assert type(first.value) is DataQualityError
    folder = Path(first.value.quarantined)
    assert [p.relative_to(tmp_path) for p in sorted(tmp_path.rglob("*"))] == [
        Path("q"),
        folder.relative_to(tmp_path),
        folder.relative_to(tmp_path) / "bars.parquet",
        folder.relative_to(tmp_path) / "report.json",
        folder.relative_to(tmp_path) / "report.md",
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "bars.parquet"), frame, check_dtype=False)
    again = QualityReport.from_dict(json.loads((folder / "report.json").read_text()))
    assert again.failures == report.failures
    assert "FAILED" in (folder / "report.md").read_text()
    # The same rejection again (new timings, same findings) lands in the same folder.
    rerun = gate(frame, as_of=last_session(frame))
    with pytest.raises(DataQualityError) as second:
        raise_for_report(rerun, frame, q)
    assert Path(second.value.quarantined) == folder
    assert len(list(q.iterdir())) == 1


def test_data_docs_are_built_when_a_docs_dir_is_given(bars, tmp_path):
    frame = bars("^VIX").iloc[-100:]
    report = gate(frame, as_of=last_session(frame), docs_dir=tmp_path / "docs")
    assert report.passed
    assert report.docs_path is not None
    assert (tmp_path / "docs" / "index.html").is_file()
    assert "data_docs" in report.timings


def test_failures_in_the_report_are_failure_objects_in_layer_order(bars):
    frame = bars("SPY").iloc[-30:].reset_index(drop=True)
    frame.loc[1, "volume"] = -1.0
    report = gate(frame, as_of="2024-02-01")
    assert all(isinstance(f, Failure) for f in report.failures)
    assert [f.layer for f in report.failures] == ["schema", "calendar"]


# --- G3: non-finite values, through the command a person runs ---------------------------------------


@pytest.mark.parametrize(("column", "value"), [("High", "inf"), ("Low", "-inf"), ("Volume", "inf"), ("Close", "NaN")])
def test_g3_validate_rejects_a_file_with_a_non_finite_price_or_volume(
    capsys, real_data, tmp_path, data_dir, column, value
):
    from tradeflow.cli import EXIT_GATE, main

    raw = pd.read_csv(real_data / "SPY.csv", dtype=str).iloc[-300:]
    raw.loc[raw["Date"] == "2024-01-10", column] = value
    path = tmp_path / "SPY.csv"
    raw.to_csv(path, index=False)
    code = main(["validate", str(path), "--as-of", "2024-01-24", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_GATE
    expected = "null_value" if value == "NaN" else "non_finite_value"
    assert [(f["check"], f["session"], f["layer"]) for f in payload["failures"]] == [(expected, "2024-01-10", "schema")]


# --- G5: mass failures give a bounded report with exact counts -------------------------------------


def test_g5_mass_failures_are_all_counted_but_only_the_first_per_check_are_listed(bars, tmp_path):
    frame = bars("SPY")
    n = len(frame)
    frame.loc[::2, "volume"] = -1.0  # 3,901 negative volumes (schema layer)
    frame.loc[1::4, "high"] = frame.loc[1::4, "low"] - 1.0  # 1,950 high < low (schema, row checks)
    frame.loc[2000:3999, "close"] = 100.0  # a 2,000-session run of one close (statistics layer, GX)
    frame = pd.concat([frame, frame.iloc[:1500]], ignore_index=True)  # 1,500 duplicated sessions
    report = gate(frame, as_of=last_session(frame))
    counts = report.counts()
    assert counts["negative_volume"] == len(range(0, n, 2)) + len(range(0, 1500, 2))
    assert counts["high_below_low"] == len(range(1, n, 4)) + len(range(1, 1500, 4))
    assert counts["duplicate_session"] == 1500
    assert counts["stale_close_run"] > 1000  # past the statistics layer's own cap: counted, not built
    assert not report.passed
    per_check = pd.Series([f.check for f in report.failures]).value_counts()
    assert per_check.max() == REPORT_FAILURES_PER_CHECK
    assert report.failure_count == sum(counts.values())
    assert len(report.to_json()) < 100_000
    with pytest.raises(DataQualityError) as info:
        raise_for_report(report, frame, tmp_path / "q")
    assert (info.value.quarantined / "report.json").stat().st_size < 100_000
    assert json.loads((info.value.quarantined / "report.json").read_text())["counts"] == counts


def test_g5_a_quarantine_folder_left_by_a_killed_writer_is_removed_and_a_failed_write_leaves_none(
    bars, tmp_path, monkeypatch
):
    import subprocess
    import sys

    import tradeflow.data.quality as quality

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".tmp-quarantine-{int(dead.stdout)}-abc").mkdir(parents=True)
    report = gate(bars("SPY").iloc[:0], as_of="2024-01-24")

    def disk_full(frame, folder):
        (folder / "bars.parquet").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quality, "_write_frame", disk_full)
    with pytest.raises(OSError, match="No space"):
        raise_for_report(report, bars("SPY").iloc[:0], tmp_path)
    assert list(tmp_path.iterdir()) == []
