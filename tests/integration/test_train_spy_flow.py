"""The train-spy flow under Prefect: ingest subflow -> mapped fold tasks -> promotion decision,
with the walk-forward report and the decision published as artifacts; bad data stops it before
any training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flows.train_spy import train_spy
from tasks import train as train_tasks
from tests.integration.test_ingest_flow import NOW, _artifacts
from tradeflow.registry import ModelRegistry

pytestmark = pytest.mark.usefixtures("prefect_harness")

TINY = {
    "ppo": {"total_timesteps": 512, "n_envs": 8, "n_steps": 64, "batch_size": 256, "n_epochs": 1},
    "seeds": [0, 1],
    "folds": {"train_size": 378, "test_size": 63, "max_folds": 3},
}


def test_train_spy_flow_publishes_report_and_records_a_decision(data_dir: Path) -> None:
    state = train_spy(overrides=TINY, now=NOW, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert len(out["folds"]) == 3
    assert set(out["summary"]) == {"ppo", "buy_and_hold", "sma", "rsi", "macd", "mean_reversion"}
    assert Path(out["report"]).is_file()
    [report] = _artifacts(state, train_tasks.REPORT_ARTIFACT_KEY)
    assert "data:image/png;base64," in str(report.data)
    [decision] = _artifacts(state, train_tasks.DECISION_ARTIFACT_KEY)
    assert out["challenger"] in str(decision.data)
    registry = ModelRegistry.for_data_dir(data_dir)
    [record] = registry.decisions()
    assert record.challenger == out["challenger"]
    assert (registry.champion() is not None) == out["decision"]["promote"]
    manifest = json.loads((Path(out["run_dir"]) / "manifest.json").read_text())
    assert manifest["challenger"] == out["challenger"]


def test_d1_split_in_the_data_fails_the_run_and_no_model_is_trained(
    data_dir: Path, tmp_path: Path, real_data: Path
) -> None:
    for name in ("SPY", "VIX"):
        raw = pd.read_csv(real_data / f"{name}.csv", na_values=["null"])
        if name == "SPY":
            raw.loc[raw["Date"] < "2020-06-01", ["Open", "High", "Low", "Close"]] *= 10
        raw.to_csv(tmp_path / f"{name}.csv", index=False)
    overrides = TINY | {"data": {"source": "csv", "path": str(tmp_path), "end": "2024-01-24"}}
    state = train_spy(overrides=overrides, now=NOW, return_state=True)
    assert state.is_failed()
    assert "split_like" in str(state.message) or "DATA_REJECTED" in str(state.message)
    assert ModelRegistry.for_data_dir(data_dir).list_versions() == []
    assert not (data_dir / "runs").exists()
