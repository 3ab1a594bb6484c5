"""train-spy as a library: out-of-sample walk-forward, reproducible from its manifest, and the
champion changes only through the recorded promotion gate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tradeflow.config import Settings
from tradeflow.data.ingest import IngestRequest, ingest
from tradeflow.errors import InputError
from tradeflow.registry import ModelRegistry
from tradeflow.research.config import TrainSpyConfig
from tradeflow.research.pipeline import replay_config, run_train_spy
from tradeflow.research.walkforward import champion_folds, load_dataset, plan_folds

NOW = pd.Timestamp("2026-11-21 12:00", tz="UTC")
TINY = {
    "ppo": {
        "total_timesteps": 1024,
        "n_envs": 8,
        "n_steps": 64,
        "batch_size": 256,
        "n_epochs": 2,
        "checkpoint_freq": 512,
    },
    "seeds": [0, 1],
    "folds": {"train_size": 378, "test_size": 63, "embargo": 5, "max_folds": 3},
}


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """Sample SPY + ^VIX ingested once (through the gate) for the module."""
    root = tmp_path_factory.mktemp("research")
    settings = Settings(data_dir=root / "data")
    ingest(IngestRequest(source="sample", symbols=("SPY", "^VIX"), start="2012-01-01"), settings, NOW)
    return root / "data"


def copy_store(src, dst) -> Settings:
    import shutil

    shutil.copytree(src, dst)
    return Settings(data_dir=dst)


@pytest.fixture(scope="module")
def first_run(sample_store, tmp_path_factory):
    settings = copy_store(sample_store, tmp_path_factory.mktemp("run1") / "data")
    return settings, run_train_spy(TrainSpyConfig.from_dict(TINY), settings, NOW)


def test_every_fold_evaluates_ppo_per_seed_and_every_baseline_out_of_sample(first_run):
    _, result = first_run
    folds = result.folds
    assert len(folds) == 3
    for fold in folds:
        runs = [e for e in result.evaluations if e.fold == fold.index]
        assert sorted(e.seed for e in runs if e.strategy == "ppo") == [0, 1]
        assert {e.strategy for e in runs} == {"ppo", "buy_and_hold", "sma", "rsi", "macd", "mean_reversion"}
        for e in runs:
            # Out of sample: every equity curve lies inside the fold's test window, after training.
            assert e.equity.index[0] == fold.test_start
            assert e.equity.index[-1] == fold.test_end
            assert e.equity.index[0] > fold.train_end


def test_the_decision_is_recorded_with_reasons_either_way(first_run):
    settings, result = first_run
    registry = ModelRegistry.for_data_dir(settings.data_dir)
    decisions = registry.decisions()
    assert len(decisions) == 1
    assert decisions[0].challenger == result.version.version
    assert decisions[0].decision.reasons
    assert (registry.champion() is not None) == result.decision.promote
    assert result.report is not None
    text = result.report.markdown.read_text()
    for name in ("ppo", "buy_and_hold", "sma", "rsi", "macd", "mean_reversion"):
        assert name in text


def test_the_manifest_holds_everything_needed_to_reproduce_the_run(first_run):
    _, result = first_run
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["data_hash"] == result.dataset.data_hash
    assert manifest["config"] == TrainSpyConfig.from_dict(TINY).model_dump(mode="json")
    assert manifest["seeds"] == [0, 1]
    assert {"python", "numpy", "torch"} <= set(manifest["packages"])
    assert len(manifest["folds"]) == 3


def test_a_second_run_from_the_manifest_reproduces_the_same_metrics(first_run, sample_store, tmp_path):
    _, first = first_run
    config = replay_config(first.run_dir / "manifest.json")
    second = run_train_spy(config, copy_store(sample_store, tmp_path / "data"), NOW)
    assert second.dataset.data_hash == first.dataset.data_hash
    # NaN-aware equality (buy-and-hold has no closed round trip, so its win rate is NaN).
    assert json.dumps(second.summary, sort_keys=True) == json.dumps(first.summary, sort_keys=True)
    for a, b in zip(first.evaluations, second.evaluations, strict=True):
        np.testing.assert_array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    assert second.decision.promote == first.decision.promote
    # The deployable model has the same weights (model.zip's own bytes differ by zip timestamps).
    import zipfile

    def weights(version) -> bytes:
        with zipfile.ZipFile(version.path / "model.zip") as z:
            return z.read("policy.pth")

    assert weights(second.version) == weights(first.version)


def test_a_champion_is_compared_only_on_folds_after_its_training_data(first_run):
    _, result = first_run
    # A champion trained through the end of fold 1's test window is out of sample on fold 2 only.
    trained_through = str(result.folds[1].test_end.date())
    assert champion_folds(trained_through, result.folds) == result.folds[2:]
    assert champion_folds(str(result.folds[-1].test_end.date()), result.folds) == []
    assert champion_folds(None, result.folds) == []


def test_without_a_stored_snapshot_training_refuses_to_start(tmp_path):
    with pytest.raises(InputError, match="no stored snapshot for SPY"):
        load_dataset(TrainSpyConfig(), Settings(data_dir=tmp_path))


def test_folds_follow_the_config(sample_store):
    config = TrainSpyConfig.from_dict(TINY)
    folds = plan_folds(load_dataset(config, Settings(data_dir=sample_store)), config)
    assert all(f.n_test == 63 for f in folds)
    assert all((f.test_start_row - f.train_stop_row) == 5 for f in folds)


def test_training_leaves_checkpoints_with_normalisation_stats_beside_each_model(first_run):
    _, result = first_run
    ckpt = result.run_dir / "models" / "fold0-seed0.training" / "checkpoints"
    names = sorted(p.name for p in ckpt.iterdir())
    assert any(n.endswith(".zip") for n in names), names
    assert any("vecnormalize" in n for n in names), names


def test_replay_parity_reproduces_the_challengers_vectorised_fold_through_the_real_tick(first_run, sample_store):
    """Issue 10: before promoting, the gate replays the challenger over its last test fold through
    run_tick; the real tick must end within the stated tolerance of the vectorised curve."""
    from pathlib import Path

    from tradeflow.research.parity import replay_parity
    from tradeflow.rl.artifact import load_artifact

    settings, result = first_run
    config = TrainSpyConfig.from_dict(TINY)
    dataset = load_dataset(config, settings)
    folds = plan_folds(dataset, config)
    last = max(folds, key=lambda f: f.index)
    [evaluation] = [e for e in result.evaluations if e.strategy == "ppo" and e.seed == 0 and e.fold == last.index]
    parity = replay_parity(
        load_artifact(Path(evaluation.artifact)), dataset, last, config, evaluation.metrics["total_return"]
    )
    assert parity.ok, parity.reason()
    assert parity.tolerance_bps == config.promotion.replay_parity_bps
    assert "replay parity on fold" in parity.reason()
    wrong = replay_parity(load_artifact(Path(evaluation.artifact)), dataset, last, config, 0.05)  # not its curve
    assert not wrong.ok
    assert "OUTSIDE" in wrong.reason()


def test_a_promotion_without_replay_parity_is_overturned_with_the_reason(first_run):
    import dataclasses

    from tradeflow.registry import PromotionDecision
    from tradeflow.research.pipeline import _with_replay_parity

    settings, result = first_run
    config = TrainSpyConfig.from_dict(TINY)
    dataset = load_dataset(config, settings)
    folds = plan_folds(dataset, config)
    challenger = [e for e in result.evaluations if e.strategy == "ppo" and e.seed == 0]
    passed = PromotionDecision(True, ("pass: all tests",), {})
    kept = _with_replay_parity(passed, challenger, folds, dataset, config)
    assert kept.promote
    assert kept.evidence["replay_parity"]["ok"] is True
    skewed = [dataclasses.replace(e, metrics={**e.metrics, "total_return": e.metrics["total_return"] + 0.01})
              for e in challenger]  # fmt: skip
    overturned = _with_replay_parity(passed, skewed, folds, dataset, config)
    assert not overturned.promote
    assert "OUTSIDE" in overturned.reasons[-1]
