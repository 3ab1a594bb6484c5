"""The tick feeds the champion the features it was trained on (issue 10): it used to build the default
spec whatever the model was trained on, and the policy did not check the columns it was given."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.unit.conftest import OPEN_NOW
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.core.tick import run_tick
from tradeflow.domain import Book
from tradeflow.errors import InputError
from tradeflow.features import DEFAULT_SPEC, build_features
from tradeflow.rl.artifact import load_artifact, save_artifact
from tradeflow.rl.config import EnvConfig, PPOConfig
from tradeflow.rl.policy import RLPolicyStrategy
from tradeflow.rl.train import train_ppo
from tradeflow.sim import CostModel

TINY = PPOConfig(
    env=EnvConfig(window=4, episode_length=64),
    total_timesteps=256,
    n_envs=4,
    n_steps=32,
    batch_size=64,
    n_epochs=1,
    net_arch=(16, 16),
)
OWN_SPEC = DEFAULT_SPEC.replace(rsi_window=14, sma_short=10, sma_long=40)  # not the default's columns


@pytest.fixture(scope="module")
def bars(real_data):
    return read_bar_file(real_data / "SPY.csv", "SPY"), read_bar_file(real_data / "VIX.csv", "^VIX")


@pytest.fixture(scope="module")
def artifact(bars, tmp_path_factory):
    features = build_features(*bars, OWN_SPEC)
    trained = train_ppo(features.market(), features.matrix(), (0, 800), TINY, CostModel(), seed=3)
    path = tmp_path_factory.mktemp("models") / "own-spec"
    return save_artifact(
        path,
        trained,
        data_hash="test",
        feature_names=OWN_SPEC.names,
        feature_version=OWN_SPEC.version,
        feature_hash=OWN_SPEC.digest,
        feature_params=OWN_SPEC.to_dict(),
        universe=("SPY",),
    )


def _champion(data_dir, artifact):
    from tradeflow.registry import ModelRegistry

    registry = ModelRegistry.for_data_dir(data_dir)
    lineage = {"data_hash": "test", "feature_spec": OWN_SPEC.digest, "config": {}, "seed": 3}
    mv = registry.register(artifact, metrics={}, lineage=lineage, created_at="2024-01-24T22:00:00+00:00")
    registry.set_champion(mv.version, reason="test", decided_at="2024-01-24T22:00:00+00:00")
    return mv


def test_policy_refuses_features_of_another_spec_than_it_was_trained_on(artifact, bars):
    decider = RLPolicyStrategy(load_artifact(artifact), name="champion")
    default = build_features(*bars, DEFAULT_SPEC)
    with pytest.raises(InputError, match="trained on feature spec"):
        decider.decide(default, Book.flat(Decimal(100_000)))
    own = build_features(*bars, OWN_SPEC)
    assert decider.decide(own, Book.flat(Decimal(100_000))).weight("SPY") in (0.0, 1.0)


def test_tick_builds_the_champions_own_feature_spec_and_decides(csv_trading, artifact):
    from tradeflow.bootstrap import build_tick_runtime
    from tradeflow.config import get_settings

    settings = get_settings()
    _champion(settings.data_dir, artifact)
    with build_tick_runtime(settings, mode="paper", broker="sim", strategy="champion", now=OPEN_NOW) as runtime:
        assert runtime.market_data(OPEN_NOW).spec == OWN_SPEC
        report = run_tick(runtime, OPEN_NOW)
    assert report.status in ("TRADED", "NO_ACTION"), report.to_dict()
    assert report.target_weight in (0.0, 1.0)


def test_tick_given_other_features_than_the_champions_ends_no_model_and_sends_nothing(world, bars, artifact):
    _, broker, ledger, runtime, _ = world
    model = load_artifact(artifact)
    default = build_features(*bars, DEFAULT_SPEC)
    report = run_tick(
        runtime(decider=lambda: RLPolicyStrategy(model, name="champion"), market_data=lambda now: default), OPEN_NOW
    )
    assert report.status == "NO_MODEL"
    assert any("trained on feature spec" in a for a in report.alerts)
    assert broker.calls["submit"] == 0
    assert ledger.orders() == []


def test_an_old_artifact_without_its_spec_is_usable_only_when_it_was_trained_on_the_default(artifact, tmp_path):
    import shutil

    from tradeflow.bootstrap import ChampionUnusableError, champion_spec
    from tradeflow.config import Settings

    old = tmp_path / "old"
    shutil.copytree(artifact, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["feature_spec"].pop("params")
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ChampionUnusableError, match="does not record its feature spec"):
        champion_spec(load_artifact(old), Settings(data_dir=tmp_path))
    assert champion_spec(load_artifact(artifact), Settings(data_dir=tmp_path)) == OWN_SPEC


def test_a_champion_trained_for_another_universe_is_refused_by_the_tick_with_the_reason(
    world, bars, artifact, tmp_path
):
    """The model carries its universe: a tick trading a symbol outside it refuses (NO_MODEL), naming both."""
    import shutil

    other = tmp_path / "aapl-model"
    shutil.copytree(artifact, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["universe"] = ["AAPL"]
    (other / "meta.json").write_text(json.dumps(meta))
    model = load_artifact(other)
    own = build_features(*bars, OWN_SPEC)
    _, broker, ledger, runtime, _ = world
    report = run_tick(
        runtime(decider=lambda: RLPolicyStrategy(model, name="champion"), market_data=lambda now: own), OPEN_NOW
    )
    assert report.status == "NO_MODEL"
    assert any("trained to decide for AAPL, not SPY" in a for a in report.alerts), report.alerts
    assert broker.calls["submit"] == 0
    assert ledger.orders() == []
    assert load_artifact(artifact).universe == ("SPY",)


def test_a_single_instrument_champion_refuses_to_decide_for_a_universe(artifact, real_data):
    from tradeflow.domain import Universe
    from tradeflow.features import build_panel

    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real_data / f"{s}.csv", s) for s in ("SPY", "AAPL")}
    panel = build_panel(bars, vix, Universe.of("SPY", "AAPL"), OWN_SPEC)
    with pytest.raises(InputError, match=r"trained to decide for SPY, not for a universe \(SPY, AAPL\)"):
        RLPolicyStrategy(load_artifact(artifact), name="champion").decide(panel, Book.flat(Decimal(100_000)))
