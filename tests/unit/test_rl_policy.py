"""The RL policy as a Strategy: its targets are the env rollout of the same policy (so its
backtest is the env's equity curve), causal, flat before the first window, and guarded against
feature tables it was not trained on."""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_env import spy_market_and_features
from tradeflow.errors import InputError
from tradeflow.rl.artifact import LoadedModel, load_artifact, save_artifact
from tradeflow.rl.config import EnvConfig, PPOConfig
from tradeflow.rl.env import TradingEnv
from tradeflow.rl.policy import RLPolicyStrategy
from tradeflow.rl.train import train_ppo
from tradeflow.sim import CostModel, MarketArrays, simulate_targets

CONFIG = PPOConfig(
    env=EnvConfig(window=4, episode_length=64),
    total_timesteps=512,
    n_envs=4,
    n_steps=64,
    batch_size=128,
    n_epochs=2,
    net_arch=(32, 32),
)
NAMES = ("log_return", "lag1", "lag2", "mom5", "vol20")


@dataclass(frozen=True)
class Table:
    """The part of tradeflow.features.Features the policy reads."""

    _matrix: np.ndarray
    _market: MarketArrays

    def matrix(self) -> np.ndarray:
        return self._matrix

    def market(self) -> MarketArrays:
        return self._market

    def head(self, n: int) -> Table:
        return Table(self._matrix[:n], self._market.slice(0, n))


@pytest.fixture(scope="module")
def table() -> Table:
    market, features = spy_market_and_features(start="2012-01-01")
    return Table(features, market)


@pytest.fixture(scope="module")
def saved(table, tmp_path_factory) -> Path:
    trained = train_ppo(table.market(), table.matrix(), (0, 1000), CONFIG, CostModel(), seed=5)
    path = tmp_path_factory.mktemp("models") / "ppo"
    return save_artifact(path, trained, data_hash="x", feature_names=NAMES, feature_version="t")


@pytest.fixture(scope="module")
def model(saved) -> LoadedModel:
    return load_artifact(saved)


def test_targets_are_the_env_rollout_of_the_same_policy_and_backtest_to_its_equity(table, model):
    strategy = RLPolicyStrategy(model)
    targets = strategy.targets(table)
    market, window = table.market(), CONFIG.env.window
    assert set(np.unique(targets)) == {0.0, 1.0}  # the policy really trades, both ways

    env = TradingEnv(market, table.matrix(), CONFIG.env.model_copy(update={"episode_length": 10**6}), CostModel())
    obs, _ = env.reset(options={"start": window - 1})
    truncated = False
    while not truncated:
        obs, _, _, truncated, _ = env.step(model.act(obs))
    np.testing.assert_array_equal(targets[window - 1 : -1], env.targets)

    sim = simulate_targets(market, targets, CostModel(), capital=CONFIG.env.initial_capital)
    np.testing.assert_allclose(sim.equity[window - 1 :], env.equity_curve, rtol=1e-12)


@pytest.mark.parametrize("cut", [4, 5, 37, 400, 1234])
def test_targets_at_t_unchanged_when_later_rows_are_appended(table, model, cut):
    strategy = RLPolicyStrategy(model)
    full = strategy.targets(table)
    np.testing.assert_array_equal(strategy.targets(table.head(cut)), full[:cut])


def test_rows_before_the_first_full_window_are_flat(table, model):
    targets = RLPolicyStrategy(model).targets(table.head(3))
    np.testing.assert_array_equal(targets, np.zeros(3))


def test_decide_is_the_deterministic_action_of_the_loaded_model(table, model):
    strategy = RLPolicyStrategy(model)
    env = TradingEnv(table.market(), table.matrix(), CONFIG.env, CostModel())
    obs, _ = env.reset(seed=0)
    assert strategy.act(obs) == strategy.act(obs.copy()) == int(model.predict(obs[None])[0])
    assert strategy.act(obs) in (0, 1, 2)


def test_strategy_satisfies_the_strategy_protocol(model):
    from tradeflow.strategies.base import Strategy

    strategy = RLPolicyStrategy(model, name="champion")
    assert isinstance(strategy, Strategy)
    assert strategy.name == "champion"
    assert strategy.env_config == CONFIG.env
    assert strategy.cost == CostModel()


def test_feature_tables_the_model_was_not_trained_on_are_rejected(table, model):
    with pytest.raises(InputError, match="inputs"):
        RLPolicyStrategy(model).targets(Table(table.matrix()[:, :3], table.market()))
    with pytest.raises(InputError, match="inputs"):
        RLPolicyStrategy(model, env_config=EnvConfig(window=6)).targets(table)

    @dataclass(frozen=True)
    class Spec:
        names: tuple[str, ...]

    @dataclass(frozen=True)
    class Named(Table):
        spec: Spec = Spec(())

    renamed = Named(table.matrix(), table.market(), Spec(("a", "b", "c", "d", "e")))
    with pytest.raises(InputError, match="differ"):
        RLPolicyStrategy(model).targets(renamed)
    same = Named(table.matrix(), table.market(), Spec(NAMES))
    np.testing.assert_array_equal(RLPolicyStrategy(model).targets(same), RLPolicyStrategy(model).targets(table))


def test_policy_trained_on_built_features_backtests_to_its_env_equity(tmp_path, real_data):
    from tradeflow.adapters.files.data import read_bar_file
    from tradeflow.features import build_features

    bars = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    features = build_features(bars[bars["session"] >= "2012-01-01"], vix[vix["session"] >= "2012-01-01"])
    market, matrix = features.market(), features.matrix()
    trained = train_ppo(market, matrix, (0, 800), CONFIG, CostModel(), seed=1)
    path = save_artifact(
        tmp_path / "m", trained, data_hash="x", feature_names=features.spec.names, feature_version=features.spec.version
    )
    strategy = RLPolicyStrategy(load_artifact(path))
    targets = strategy.targets(features)
    assert targets.shape == (len(market),)

    window = CONFIG.env.window
    env = TradingEnv(market, matrix, CONFIG.env.model_copy(update={"episode_length": 10**6}), CostModel())
    obs, _ = env.reset(options={"start": window - 1})
    truncated = False
    while not truncated:
        obs, _, _, truncated, _ = env.step(strategy.act(obs))
    sim = simulate_targets(market, targets, CostModel(), capital=CONFIG.env.initial_capital)
    np.testing.assert_allclose(sim.equity[window - 1 :], env.equity_curve, rtol=1e-12)


def _damage(artifact: Path, name: str, how: str) -> None:
    target = artifact / name
    if how == "missing":
        target.unlink()
    elif how == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        target.write_bytes(b"\x00\x01 not what this file should hold")
    elif how == "null":
        target.write_text("null")
    elif how == "no_env_config":
        meta = json.loads(target.read_text())
        del meta["env_config"]
        target.write_text(json.dumps(meta))
    elif how == "bad_window":
        meta = json.loads(target.read_text())
        meta["env_config"]["window"] = "many"
        target.write_text(json.dumps(meta))
    elif how == "another_object":
        target.write_bytes(pickle.dumps({"obs_rms": None}))


@pytest.mark.parametrize(
    ("name", "how", "message"),
    [
        ("model.zip", "truncated", "model.zip is damaged"),
        ("model.zip", "garbage", "model.zip is damaged"),
        ("vecnormalize.pkl", "missing", "vecnormalize.pkl is missing"),
        ("vecnormalize.pkl", "truncated", "vecnormalize.pkl is damaged"),
        ("vecnormalize.pkl", "garbage", "vecnormalize.pkl is damaged"),
        ("vecnormalize.pkl", "another_object", "vecnormalize.pkl is damaged"),
        ("meta.json", "missing", "meta.json is missing"),
        ("meta.json", "truncated", "meta.json is damaged"),
        ("meta.json", "null", "meta.json is damaged"),
        ("meta.json", "no_env_config", "meta.json is damaged: missing field(s) env_config"),
        ("meta.json", "bad_window", "meta.json is damaged: env_config.window is invalid"),
    ],
)
def test_g8_a_damaged_artifact_file_is_an_input_error_naming_the_file(saved, tmp_path, name, how, message):
    artifact = tmp_path / "copy"
    shutil.copytree(saved, artifact)
    _damage(artifact, name, how)
    with pytest.raises(InputError) as caught:
        load_artifact(artifact)
    assert message in str(caught.value)
    assert str(artifact) in str(caught.value)
