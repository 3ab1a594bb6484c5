"""The ingest flow under Prefect (temporary API): snapshots, reports, artifacts, retries, failures."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, Log, StateType
from prefect.logging.handlers import APILogHandler
from prefect.states import State

from flows.ingest import ingest, main
from tasks import ingest as ingest_tasks
from tradeflow.adapters.sample.data import SampleSource
from tradeflow.data import ingest as lib
from tradeflow.errors import DataQualityError, TransientSourceError, UnknownSymbolError

pytestmark = pytest.mark.usefixtures("prefect_harness")

# After the close of Friday 2026-11-20: a replayable "now" (the sample data ends in 2018).
NOW = "2026-11-20T22:30:00+00:00"


def _artifacts(state: State[Any], key: str) -> list[Artifact]:
    flow_run_id: UUID | None = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )


def _logs(state: State[Any]) -> list[Log]:
    APILogHandler().flush()  # the log worker sends in batches
    with get_client(sync_client=True) as client:
        return client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def _parquet(path: Path) -> list[Path]:
    return [p for p in _files(path) if p.suffix == ".parquet"]


def _write_yahoo_csv(path: Path, split_on: str | None = None) -> Path:
    """Two years of real SPY-proxy bars as a Yahoo CSV; with `split_on`, an unadjusted 10:1 split."""
    bars = SampleSource().fetch("SPY", pd.Timestamp("2017-01-03"), pd.Timestamp("2018-12-31"))
    out = pd.DataFrame(
        {
            "Date": bars["session"].dt.strftime("%Y-%m-%d"),
            "Open": bars["open"],
            "High": bars["high"],
            "Low": bars["low"],
            "Close": bars["close"],
            "Adj Close": bars["adj_close"],
            "Volume": bars["volume"],
        }
    )
    if split_on is not None:
        after = bars["session"] >= pd.Timestamp(split_on)
        for col in ("Open", "High", "Low", "Close", "Adj Close"):
            out.loc[after, col] = out.loc[after, col] / 10
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


def test_ingest_flow_on_sample_data_writes_snapshots_report_and_artifacts(data_dir: Path) -> None:
    state = ingest(now=NOW, return_state=True)

    assert state.is_completed(), state.message
    out = state.result()
    assert json.loads(json.dumps(out)) == out  # JSON-able, for the API and `--json` callers
    assert out["passed"] is True
    assert set(out["symbols"]) == {"SPY", "^VIX"}
    assert out["as_of"] == "2018-12-31"  # the sample bundle's last session, not the wall clock
    assert all(s["rows"] > 1000 for s in out["symbols"].values())
    for info in out["symbols"].values():
        assert (data_dir / "snapshots" / info["file"]).is_file(), info
    assert {p.parent.name for p in _parquet(data_dir / "snapshots")} == {"SPY", "_VIX"}
    assert Path(out["report"]).is_file()
    assert Path(out["report"]).is_relative_to(data_dir)
    assert "SPY" in out["summary"]

    [quality] = _artifacts(state, ingest_tasks.QUALITY_ARTIFACT_KEY)
    assert quality.type == "markdown"
    assert "PASSED" in str(quality.description)
    [summary] = _artifacts(state, ingest_tasks.SUMMARY_ARTIFACT_KEY)
    assert "SPY" in str(summary.data)
    # The library's own `tradeflow.*` log records are in the run's logs (what the UI shows).
    assert any(log.name.startswith("tradeflow.") and "fetched" in log.message for log in _logs(state))


def test_ingest_flow_accepts_a_clean_csv(data_dir: Path, tmp_path: Path) -> None:
    # The control for the split case below: the same file without the split passes.
    csv = _write_yahoo_csv(tmp_path / "in" / "SPY.csv")
    state = ingest(source="csv", symbols=["SPY"], path=str(csv), end="2018-12-31", now=NOW, return_state=True)
    assert state.is_completed(), state.message
    assert [p.parent.name for p in _parquet(data_dir / "snapshots")] == ["SPY"]


def test_ingest_flow_fails_on_an_unadjusted_split_and_writes_nothing_to_the_store(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(ingest_tasks, "emit_event", lambda **kw: events.append(kw))
    csv = _write_yahoo_csv(tmp_path / "in" / "SPY.csv", split_on="2018-06-01")

    state = ingest(source="csv", symbols=["SPY"], path=str(csv), end="2018-12-31", now=NOW, return_state=True)

    assert state.is_failed()
    with pytest.raises(DataQualityError) as err:
        state.result()
    assert not err.value.report.passed
    [split] = err.value.report.failures_for("split_like")  # failed for the split, not by accident
    assert (split.symbol, split.session) == ("SPY", "2018-06-01")
    assert _parquet(data_dir / "snapshots") == []
    assert not (data_dir / "snapshots" / "manifest.json").exists()
    assert _files(data_dir / "quarantine"), "the rejected candidate was not quarantined"
    assert _files(data_dir / "reports" / "quality")
    [quality] = _artifacts(state, ingest_tasks.QUALITY_ARTIFACT_KEY)
    assert "FAILED" in str(quality.description)
    [event] = events
    assert event["event"] == "tradeflow.dq.failed"
    assert event["resource"]["prefect.resource.id"] == "tradeflow.dataset.csv"


def test_run_entry_point_exits_1_with_one_line_when_the_gate_fails(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _write_yahoo_csv(tmp_path / "in" / "SPY.csv", split_on="2018-06-01")
    rc = main(["--source", "csv", "--symbols", "SPY", "--path", str(csv), "--end", "2018-12-31", "--now", NOW])
    assert rc == 1
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ingest failed:")]
    assert len(err_lines) == 1
    assert "DATA_REJECTED" in err_lines[0]
    assert "split_like" in err_lines[0]


# --- fetch retries: counted calls into the library --------------------------------------------


def _run_fetch(monkeypatch: pytest.MonkeyPatch, outcomes: list[BaseException | None]) -> tuple[StateType, list[int]]:
    """Run the fetch task (delays zeroed) against a fake library call that fails per `outcomes`;
    returns the task's final state type and the `attempts` argument of every library call."""
    calls: list[int] = []

    def fake_fetch_symbol(plan: Any, symbol: str, settings: Any, attempts: int = 1) -> pd.DataFrame:
        calls.append(attempts)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if outcome is not None:
            raise outcome
        return pd.DataFrame({"symbol": [symbol]})

    monkeypatch.setattr(lib, "fetch_symbol", fake_fetch_symbol)
    fast_fetch = ingest_tasks.fetch_bars.with_options(retry_delay_seconds=0)

    @flow
    def fetch_one() -> StateType:
        # A failed task state returned from a flow would fail the flow: hand back only its type.
        return fast_fetch("plan", "SPY", "settings", return_state=True).type

    return fetch_one(), calls


def test_fetch_retries_a_transient_error_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    final, calls = _run_fetch(monkeypatch, [TransientSourceError("HTTP 503"), None])
    assert final is StateType.COMPLETED
    assert calls == [1, 1]  # retried once, and the library was asked for a single attempt each time


def test_fetch_gives_up_after_three_retries_of_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    final, calls = _run_fetch(monkeypatch, [ConnectionError("reset by peer")])
    assert final is StateType.FAILED
    assert len(calls) == 4


@pytest.mark.parametrize(
    "error",
    [
        UnknownSymbolError("no such symbol"),
        DataQualityError(SimpleNamespace(summary_line=lambda: "2 critical checks failed")),  # type: ignore[arg-type]
        ValueError("bad frame"),
    ],
    ids=["unknown-symbol", "data-quality", "value-error"],
)
def test_fetch_does_not_retry_a_deterministic_error(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    final, calls = _run_fetch(monkeypatch, [error, None])
    assert final is StateType.FAILED
    assert calls == [1]


def test_fetch_backs_off_exponentially_with_jitter_and_other_steps_never_retry() -> None:
    fetch = ingest_tasks.fetch_bars
    assert fetch.retries == 3
    assert fetch.retry_delay_seconds == [2, 4, 8]
    assert fetch.retry_jitter_factor == 0.5
    for step in (ingest_tasks.plan_ingest, ingest_tasks.check_bars, ingest_tasks.commit_bars):
        assert step.retries == 0, step.name


def test_ingest_flow_completes_when_a_fetch_fails_once_transiently(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = lib.fetch_symbol
    calls: list[str] = []

    def flaky(plan: lib.IngestPlan, symbol: str, settings: Any, attempts: int = 1) -> pd.DataFrame:
        calls.append(symbol)
        if symbol == "^VIX" and calls.count(symbol) == 1:
            raise TransientSourceError("HTTP 503 from the provider")
        return real(plan, symbol, settings, attempts=attempts)

    monkeypatch.setattr(lib, "fetch_symbol", flaky)
    state = ingest(now=NOW, return_state=True)  # the real 2 s (+jitter) back-off
    assert state.is_completed(), state.message
    assert sorted(calls) == ["SPY", "^VIX", "^VIX"]
