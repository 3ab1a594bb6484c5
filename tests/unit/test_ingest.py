"""The ingest pipeline: incremental fetches, overlap checks, and nothing stored on bad data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.config import Settings
from tradeflow.data import ingest as ingest_mod
from tradeflow.data.ingest import IngestRequest, ingest, plan_ingest
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import DataQualityError, DataStaleError, TransientSourceError

NOW = pd.Timestamp("2026-11-21 12:00", tz="UTC")


class RecordingSource:
    """A real CSV behind a source that records every fetch and can inject faults or ignore ranges."""

    name = "csv"
    coverage_end = None

    def __init__(self, frame: pd.DataFrame, *, ignore_range: bool = False, transient_failures: int = 0):
        self.frame = frame
        self.calls: list[tuple[str, pd.Timestamp, pd.Timestamp]] = []
        self.ignore_range = ignore_range
        self.transient_failures = transient_failures

    def describe(self, symbol: str) -> str:
        return f"recorded csv for {symbol}"

    def fetch(self, symbol, start, end):
        self.calls.append((symbol, start, end))
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientSourceError("connection reset by peer")
        rows = self.frame if self.ignore_range else self.frame[self.frame["session"].between(start, end)]
        return rows.reset_index(drop=True)


@pytest.fixture
def settings(data_dir) -> Settings:
    return Settings(data_dir=data_dir)


@pytest.fixture(scope="module")
def spy_2023(real_data) -> pd.DataFrame:
    frame = read_bar_file(real_data / "SPY.csv", "SPY")
    return frame[frame["session"] >= "2023-01-03"].reset_index(drop=True)


@pytest.fixture
def use_source(monkeypatch):
    def install(source):
        monkeypatch.setattr(ingest_mod, "make_source", lambda *a, **k: source)
        return source

    return install


def request(end: str = "2024-01-24", start: str = "2023-01-03") -> IngestRequest:
    return IngestRequest(source="csv", symbols=("SPY",), start=start, end=end, path="unused")


def test_first_ingest_stores_a_snapshot_and_writes_the_report(settings, spy_2023, use_source):
    use_source(RecordingSource(spy_2023))
    result = ingest(request(), settings, NOW)
    assert result.report.passed
    info = result.snapshots["SPY"]
    assert info.last_session == "2024-01-24"
    assert info.rows == len(spy_2023)
    assert result.report_path is not None
    assert result.report_path.exists()
    assert (settings.reports_dir / "quality" / "latest.md").exists()
    assert "SPY" in result.summary_text()


def test_incremental_ingest_fetches_only_missing_sessions_plus_overlap(settings, spy_2023, use_source):
    src = use_source(RecordingSource(spy_2023))
    first = ingest(request(end="2024-01-10"), settings, NOW)
    src.calls.clear()
    second = ingest(request(end="2024-01-24"), settings, NOW)
    (_, start, end) = src.calls[0]
    # Five stored sessions are fetched again to check them; nothing older.
    assert start == pd.Timestamp("2024-01-04")
    assert end == pd.Timestamp("2024-01-24")
    assert second.new_rows["SPY"] == 9
    assert second.snapshots["SPY"].parent == first.snapshots["SPY"].digest
    assert second.snapshots["SPY"].rows == len(spy_2023)


def test_an_up_to_date_symbol_is_not_fetched_again(settings, spy_2023, use_source):
    src = use_source(RecordingSource(spy_2023))
    first = ingest(request(), settings, NOW)
    src.calls.clear()
    again = ingest(request(), settings, NOW)
    assert src.calls == []
    assert again.snapshots["SPY"] == first.snapshots["SPY"]
    assert plan_ingest(request(), settings, NOW).items[0].up_to_date


def test_d5_silent_adjustment_change_fails_the_overlap_check_and_stores_nothing(settings, real_data, use_source):
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    spy = spy[spy["session"].between("2022-01-03", "2022-06-24")].reset_index(drop=True)
    use_source(RecordingSource(spy))
    before = ingest(request(start="2022-01-03", end="2022-06-10"), settings, NOW).snapshots["SPY"]
    # The provider starts serving dividend-adjusted prices (2022 closes sit 2-3% above adj_close).
    factor = spy["adj_close"] / spy["close"]
    rewritten = spy.copy()
    for col in ("open", "high", "low", "close"):
        rewritten[col] = spy[col] * factor
    use_source(RecordingSource(rewritten))
    with pytest.raises(DataQualityError) as info:
        ingest(request(start="2022-01-03", end="2022-06-24"), settings, NOW)
    failures = [f for f in info.value.report.failures if f.symbol == "SPY" and f.check == "overlap_mismatch"]
    assert {f.session for f in failures} == {"2022-06-06", "2022-06-07", "2022-06-08", "2022-06-09", "2022-06-10"}
    assert SnapshotStore(settings.snapshots_dir).current("SPY") == before
    assert info.value.quarantined is not None


def test_d3_stale_provider_data_raises_data_stale_and_stores_nothing(settings, spy_2023, use_source):
    use_source(RecordingSource(spy_2023))
    with pytest.raises(DataStaleError) as info:
        ingest(request(end=None), settings, NOW)  # last completed session: 2026-11-20
    assert info.value.status == "DATA_STALE"
    stale = [f for f in info.value.report.failures if f.check == "stale"]
    assert stale
    assert stale[0].symbol == "SPY"
    assert SnapshotStore(settings.snapshots_dir).current("SPY") is None


def test_d4_partial_current_day_bar_is_excluded_so_1100_equals_1700_yesterday(settings, spy_2023, use_source, data_dir):
    partial = pd.DataFrame([{**spy_2023.iloc[-1].to_dict(), "session": pd.Timestamp("2024-01-25"), "close": 999.0}])
    with_partial = pd.concat([spy_2023, partial], ignore_index=True)
    use_source(RecordingSource(with_partial, ignore_range=True))
    at_1100 = ingest(request(end=None), settings, pd.Timestamp("2024-01-25 11:00", tz="America/New_York"))
    assert any("unfinished session" in n for n in at_1100.notes)
    morning = SnapshotStore(settings.snapshots_dir).load("SPY")

    evening_settings = Settings(data_dir=data_dir / "evening")
    use_source(RecordingSource(spy_2023))
    ingest(request(end=None), evening_settings, pd.Timestamp("2024-01-24 17:00", tz="America/New_York"))
    evening = SnapshotStore(evening_settings.snapshots_dir).load("SPY")
    pd.testing.assert_frame_equal(morning, evening)


def test_d7_empty_provider_answer_fails_the_gate_rather_than_passing(settings, spy_2023, use_source):
    use_source(RecordingSource(spy_2023.iloc[:0]))
    with pytest.raises(DataQualityError) as info:
        ingest(request(), settings, NOW)
    checks = {f.check for f in info.value.report.failures}
    assert any("row" in c for c in checks), checks
    assert any(c == "stale" for c in checks), checks
    assert SnapshotStore(settings.snapshots_dir).symbols() == []


def test_d1_split_jump_rejects_the_ingest_and_quarantines_the_frame(settings, spy_2023, use_source):
    broken = spy_2023.copy()
    before = broken["session"] < "2023-06-01"
    broken.loc[before, ["open", "high", "low", "close"]] *= 10
    use_source(RecordingSource(broken))
    with pytest.raises(DataQualityError) as info:
        ingest(request(), settings, NOW)
    assert info.value.status == "DATA_REJECTED"
    jumps = [f for f in info.value.report.failures if f.session == "2023-06-01"]
    assert jumps, info.value.report.failures[:5]
    assert SnapshotStore(settings.snapshots_dir).symbols() == []
    assert list(settings.quarantine_dir.iterdir())


def test_transient_fetch_errors_are_retried_then_succeed(settings, spy_2023, use_source, monkeypatch):
    monkeypatch.setattr("tradeflow.data.sources.base.time.sleep", lambda s: None)
    src = use_source(RecordingSource(spy_2023, transient_failures=2))
    result = ingest(request(), settings, NOW)
    assert len(src.calls) == 3
    assert result.report.passed


def test_without_start_a_stored_symbol_continues_from_its_snapshot_not_from_1999(settings, spy_2023, use_source):
    src = use_source(RecordingSource(spy_2023))
    ingest(request(start="2023-06-01", end="2024-01-10"), settings, NOW)
    src.calls.clear()
    ingest(request(start=None, end="2024-01-24"), settings, NOW)
    assert src.calls[0][1] == pd.Timestamp("2024-01-04")  # the 5-session overlap, nothing older


def test_an_earlier_start_back_fills_history_before_the_snapshot(settings, spy_2023, use_source):
    src = use_source(RecordingSource(spy_2023))
    ingest(request(start="2023-06-01", end="2024-01-24"), settings, NOW)
    src.calls.clear()
    result = ingest(request(start="2023-01-03", end="2024-01-24"), settings, NOW)
    assert src.calls[0][1] == pd.Timestamp("2023-01-03")
    assert result.snapshots["SPY"].first_session == "2023-01-03"


def test_g3_an_infinite_high_in_a_csv_fails_the_ingest_and_stores_nothing(capsys, settings, real_data, tmp_path):
    from tradeflow.cli import EXIT_GATE, main

    raw = pd.read_csv(real_data / "SPY.csv", dtype=str)
    raw = raw[raw["Date"] >= "2023-01-03"]
    raw.loc[raw["Date"] == "2024-01-10", "High"] = "inf"
    raw.to_csv(tmp_path / "SPY.csv", index=False)
    args = ["ingest", "--source", "csv", "--path", str(tmp_path), "--symbols", "SPY", "--start", "2023-01-03"]
    code = main([*args, "--end", "2024-01-24", "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == EXIT_GATE
    assert "non_finite_value SPY 2024-01-10" in err
    assert SnapshotStore(settings.snapshots_dir).symbols() == []


# --- G6: racing ingests never move the current snapshot backwards silently ------------------------


def _prepared(settings, end: str):
    """An ingest planned, fetched and gated, not yet committed: the window in which another can commit."""
    plan = plan_ingest(request(end=end), settings, NOW)
    fetched = {it.symbol: ingest_mod.fetch_symbol(plan, it.symbol, settings) for it in plan.items}
    return plan, ingest_mod.check_bars(plan, fetched, settings)


def test_g6_an_older_ingest_committing_after_a_newer_one_leaves_the_newer_current_and_says_so(
    settings, spy_2023, use_source
):
    use_source(RecordingSource(spy_2023))
    older = _prepared(settings, "2024-01-10")
    newer = _prepared(settings, "2024-01-24")
    newer_result = ingest_mod.commit_bars(*newer, settings)
    older_result = ingest_mod.commit_bars(*older, settings)
    store = SnapshotStore(settings.snapshots_dir)
    assert store.current("SPY") == newer_result.snapshots["SPY"]
    assert store.current("SPY").last_session == "2024-01-24"
    # The older snapshot is kept on record, not current, and the result says why.
    assert older_result.snapshots["SPY"].digest in {s.digest for s in store.history("SPY")}
    assert older_result.not_current == {"SPY"}
    assert older_result.to_dict()["symbols"]["SPY"]["current"] is False
    assert any("ends earlier" in n and "not current" in n for n in older_result.notes)
    assert "NOT current" in older_result.summary_text()


def test_g6_a_newer_ingest_committing_after_an_older_one_becomes_current_with_a_note(settings, spy_2023, use_source):
    use_source(RecordingSource(spy_2023))
    older = _prepared(settings, "2024-01-10")
    newer = _prepared(settings, "2024-01-24")
    ingest_mod.commit_bars(*older, settings)
    result = ingest_mod.commit_bars(*newer, settings)
    assert SnapshotStore(settings.snapshots_dir).current("SPY").last_session == "2024-01-24"
    assert result.not_current == frozenset()
    assert any("another ingest made snapshot" in n for n in result.notes)


def test_the_quality_report_labels_stored_bars_as_the_snapshot_and_fetched_bars_as_the_source(
    settings, spy_2023, use_source
):
    use_source(RecordingSource(spy_2023))
    first = ingest(request(end="2024-01-10"), settings, NOW)
    digest = first.snapshots["SPY"].digest[:12]
    result = ingest(request(start=None, end="2024-01-24"), settings, NOW)
    origins = [(o.origin, o.rows, o.first_session, o.last_session) for o in result.report.origins]
    # 2024-01-04 .. 2024-01-10 are the re-fetched overlap: those bars are the provider's, fetched now.
    assert origins == [
        (f"stored snapshot {digest}", 252, "2023-01-03", "2024-01-03"),
        ("recorded csv for SPY (fetched now)", 14, "2024-01-04", "2024-01-24"),
    ]
    assert f"| SPY | stored snapshot {digest} | 252 | 2023-01-03 | 2024-01-03 |" in result.report.to_markdown()
    saved = json.loads(result.report_path.with_suffix(".json").read_text())
    assert [o["origin"] for o in saved["origins"]] == [
        f"stored snapshot {digest}",
        "recorded csv for SPY (fetched now)",
    ]
    # Up to date: nothing was fetched, and the report must not say it came from the source.
    again = ingest(request(start=None, end="2024-01-24"), settings, NOW)
    assert [o.origin for o in again.report.origins] == [f"stored snapshot {again.snapshots['SPY'].digest[:12]}"]
    assert "fetched now" not in again.summary_text()
