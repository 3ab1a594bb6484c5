"""The learning-review flow under Prefect: a paper replay's ledger is reviewed, the report lands
under data/reports/learning/ and as a Prefect artifact; a non-session is skipped; an unhealthy
champion emits the event train-spy/nightly is triggered by."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flows.learning_review import learning_review
from tasks import learning as learning_tasks
from tests.integration.test_ingest_flow import _artifacts
from tradeflow import bootstrap
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.config import get_settings
from tradeflow.core.replay import replay
from tradeflow.features import DEFAULT_SPEC, build_features
from tradeflow.learning.health import DRIFT_COLUMNS, HealthReport, HealthThresholds
from tradeflow.strategies import make_strategy

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def traded(data_dir: Path, real_data: Path) -> Path:
    """Two years of MACD trading through the real tick, its ledger where the flow looks for it."""
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    features = build_features(spy, vix, DEFAULT_SPEC)
    (data_dir / "ledger").mkdir(parents=True)
    replay(features, make_strategy("macd"), "2021-01-04", "2022-12-30", cash_buffer=0.02, workdir=data_dir / "ledger")
    return data_dir


def test_review_of_a_session_writes_the_report_and_the_artifact(traded: Path) -> None:
    state = learning_review(session="2022-12-30", now="2022-12-30T23:00:00+00:00", return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["summary"]["count"] >= 10  # MACD round trips over two years
    report = Path(out["report"])
    assert report == traded / "reports" / "learning" / "2022-12-30" / "review.md"
    assert "# Learning review — 2022-12-30" in report.read_text()
    [artifact] = _artifacts(state, learning_tasks.REVIEW_ARTIFACT_KEY)
    assert "## Experiments" in str(artifact.data)


def test_a_day_without_a_session_is_skipped(data_dir: Path) -> None:
    state = learning_review(session="2022-12-25", return_state=True)
    assert state.is_completed()
    assert state.name == "Skipped"
    assert not (data_dir / "reports").exists()


def test_an_unhealthy_champion_emits_the_event_that_triggers_an_early_retrain(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    breached = HealthReport(
        drift=pd.DataFrame(columns=list(DRIFT_COLUMNS)).rename_axis("feature"),
        costs=None,
        agreement=None,
        breaches=("feature drift: 6 of 14 features drifted (PSI > 0.25)",),
        thresholds=HealthThresholds(),
        insufficient=(),
        train_sessions=500,
        live_sessions=60,
    )
    monkeypatch.setattr(bootstrap, "champion_health", lambda settings, ledger, session: breached)
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(learning_tasks, "emit_event", lambda **kw: emitted.append(kw))
    get_settings.cache_clear()
    state = learning_review(session="2022-12-30", now="2022-12-30T23:00:00+00:00", return_state=True)
    assert state.is_completed(), state.message
    [event] = emitted
    assert event["event"] == learning_tasks.DEGRADED_EVENT
    assert event["resource"] == {"prefect.resource.id": learning_tasks.CHAMPION_RESOURCE}
    assert event["payload"]["breaches"] == list(breached.breaches)
    assert "model health: feature drift" in state.result()["alerts"][0]
    assert dt.date.fromisoformat(state.result()["session"]) == dt.date(2022, 12, 30)
