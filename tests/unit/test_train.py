"""PPO training and model artifacts: reproducible from seed + config + data, reloaded models act
identically, lineage recorded, checkpoints written, the training env confined to its window."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from stable_baselines3 import PPO

from tests.unit.test_env import spy_market_and_features
from tradeflow.errors import InputError
from tradeflow.rl.artifact import load_artifact, package_versions, read_git_sha, save_artifact
from tradeflow.rl.config import EnvConfig, PPOConfig
from tradeflow.rl.train import TrainedModel, make_training_env, train_ppo
from tradeflow.rl.vec_env import TradingVecEnv
from tradeflow.sim import CostModel

TINY = PPOConfig(
    env=EnvConfig(window=4, episode_length=64),
    total_timesteps=512,
    n_envs=4,
    n_steps=64,
    batch_size=128,
    n_epochs=2,
    net_arch=(32, 32),
    checkpoint_freq=256,
)
TRAIN = (100, 1600)


@pytest.fixture(scope="module")
def spy():
    return spy_market_and_features(start="2005-01-01")


@pytest.fixture(scope="module")
def trained(spy) -> TrainedModel:
    market, features = spy
    return train_ppo(market, features, TRAIN, TINY, CostModel(), seed=3)


def sample_observations(trained: TrainedModel, spy, n: int = 400) -> np.ndarray:
    """Real observations from the data, with random positions and P&Ls."""
    market, features = spy
    env = TradingVecEnv(market, features, trained.config.env, CostModel(), n_envs=n, seed=9)
    obs = env.reset()
    rng = np.random.default_rng(0)
    obs[:, -2] = rng.choice([0.0, 1.0], size=n)
    obs[:, -1] = rng.normal(0, 0.05, size=n) * obs[:, -2]
    return obs


def state(trained: TrainedModel) -> dict[str, torch.Tensor]:
    return trained.model.policy.state_dict()


def test_same_seed_config_and_data_train_identical_weights_and_actions(spy, trained):
    market, features = spy
    again = train_ppo(market, features, TRAIN, TINY, CostModel(), seed=3)
    for name, tensor in state(trained).items():
        assert torch.equal(tensor, state(again)[name]), name
    np.testing.assert_array_equal(trained.vec_normalize.obs_rms.mean, again.vec_normalize.obs_rms.mean)
    obs = sample_observations(trained, spy)
    a1, _ = trained.model.predict(trained.vec_normalize.normalize_obs(obs), deterministic=True)
    a2, _ = again.model.predict(again.vec_normalize.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(a1, a2)


def test_a_different_seed_trains_different_weights(spy, trained):
    market, features = spy
    other = train_ppo(market, features, TRAIN, TINY, CostModel(), seed=4)
    assert any(not torch.equal(t, state(other)[k]) for k, t in state(trained).items())


def test_reloaded_artifact_gives_identical_actions_on_identical_observations(tmp_path, spy, trained):
    path = save_artifact(
        tmp_path / "m1", trained, data_hash="abc", feature_names=[f"f{i}" for i in range(5)], feature_version="t1"
    )
    loaded = load_artifact(path)
    obs = sample_observations(trained, spy)
    normalized = trained.vec_normalize.normalize_obs(obs)
    expected, _ = trained.model.predict(normalized, deterministic=True)
    np.testing.assert_array_equal(loaded.predict(obs), expected)
    with torch.no_grad():
        dist = trained.model.policy.get_distribution(torch.from_numpy(normalized))
    np.testing.assert_array_equal(loaded.action_probabilities(obs), dist.distribution.probs.numpy())
    assert [loaded.act(o) for o in obs[:50]] == list(expected[:50])
    np.testing.assert_array_equal(load_artifact(path).predict(obs), expected)


def test_artifact_records_data_features_configs_seed_versions_and_git_sha(tmp_path, spy, trained):
    market, _ = spy
    names = [f"f{i}" for i in range(5)]
    path = save_artifact(
        tmp_path / "m",
        trained,
        data_hash="sha256:feed",
        feature_names=names,
        feature_version="v7",
        feature_hash="h7",
        feature_params={"version": "v7", "rsi_window": 14},
        git_sha="0" * 40,
    )
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.zip", "vecnormalize.pkl"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["data_hash"] == "sha256:feed"
    assert meta["feature_spec"] == {
        "version": "v7",
        "hash": "h7",
        "names": names,
        "params": {"version": "v7", "rsi_window": 14},
    }
    assert meta["seed"] == 3
    assert meta["timesteps"] == TINY.total_timesteps
    assert meta["train_range"] == list(TRAIN)
    first, last = (str(np.datetime_as_string(market.sessions[i], unit="D")) for i in (TRAIN[0], TRAIN[1] - 1))
    assert meta["train_sessions"] == [first, last]
    assert PPOConfig.model_validate(meta["ppo_config"]) == TINY
    assert CostModel.model_validate(meta["cost_model"]) == CostModel()
    assert meta["git_sha"] == "0" * 40
    assert set(meta["packages"]) == {"python", "numpy", "pandas", "torch", "stable-baselines3", "gymnasium"}
    assert meta["packages"]["stable-baselines3"] == "2.9.2"
    loaded = load_artifact(path)
    assert loaded.env_config == TINY.env
    assert loaded.feature_names == tuple(names)


def test_artifacts_are_never_overwritten_and_must_be_complete(tmp_path, trained):
    path = save_artifact(tmp_path / "m", trained, data_hash="a", feature_names=list("abcde"), feature_version="1")
    with pytest.raises(InputError, match="already exists"):
        save_artifact(path, trained, data_hash="b", feature_names=list("abcde"), feature_version="1")
    with pytest.raises(InputError, match="feature names"):
        save_artifact(tmp_path / "m2", trained, data_hash="a", feature_names=["x"], feature_version="1")
    (path / "vecnormalize.pkl").unlink()
    with pytest.raises(InputError, match=r"vecnormalize\.pkl is missing"):
        load_artifact(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left behind


def test_checkpoints_with_normalisation_stats_every_checkpoint_freq_timesteps(tmp_path, spy):
    market, features = spy
    train_ppo(market, features, TRAIN, TINY, CostModel(), seed=1, out_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "ppo_256_steps.zip",
        "ppo_512_steps.zip",
        "ppo_vecnormalize_256_steps.pkl",
        "ppo_vecnormalize_512_steps.pkl",
    ]


def test_training_env_holds_only_the_training_rows_and_the_first_window(spy):
    market, features = spy
    config = TINY.model_copy(update={"env": EnvConfig(window=10, episode_length=10_000)})
    venv = make_training_env(market, features, (500, 800), config, CostModel(), seed=0)
    env = venv.unwrapped
    assert isinstance(env, TradingVecEnv)
    np.testing.assert_array_equal(env.arrays.close, market.close[491:800])
    assert (env.arrays.start_low, env.arrays.start_high) == (9, 308)  # decisions from row 500 on
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(700):  # longer than the window: episodes end at its last row and restart inside
        venv.step(rng.integers(0, 3, size=config.n_envs))
        assert (env._row < 309).all()
        assert (env._row >= 9).all()


@pytest.mark.parametrize("train_range", [(-1, 100), (100, 100), (0, 10**6), (0, 4)])
def test_train_ranges_outside_the_data_or_too_short_are_rejected(spy, train_range):
    market, features = spy
    with pytest.raises(InputError, match="train range"):
        make_training_env(market, features, train_range, TINY, CostModel(), seed=0)


def test_batch_size_must_tile_the_rollout():
    with pytest.raises(ValidationError, match="must divide"):
        PPOConfig(n_envs=3, n_steps=100, batch_size=64)


def test_sb3_defaults_are_sb3s_own_with_the_issues_lr_clip_and_net():
    sb3 = inspect.signature(PPO.__init__).parameters
    cfg = PPOConfig.sb3_defaults()
    for name in ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm"):
        assert getattr(cfg, name) == sb3[name].default, name
    assert cfg.n_envs == 1
    assert (cfg.learning_rate, cfg.clip_range, cfg.net_arch) == (3e-4, 0.2, (256, 256))
    default = PPOConfig()
    assert (default.learning_rate, default.clip_range, default.net_arch) == (3e-4, 0.2, (256, 256))


def test_git_sha_is_read_from_loose_refs_packed_refs_detached_heads_and_worktrees(tmp_path):
    sha_a, sha_b, sha_c = "a" * 40, "b" * 40, "c" * 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha_a + "\n")
    assert read_git_sha(repo) == sha_a
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha_b} refs/heads/main\n")
    assert read_git_sha(repo) == sha_b
    (repo / ".git" / "HEAD").write_text(sha_c + "\n")
    assert read_git_sha(repo) == sha_c
    worktree_git = repo / ".git" / "worktrees" / "wt"
    worktree_git.mkdir(parents=True)
    (worktree_git / "HEAD").write_text("ref: refs/heads/main\n")
    (worktree_git / "commondir").write_text("../..\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {worktree_git}\n")
    assert read_git_sha(tmp_path / "wt") == sha_b
    assert read_git_sha(tmp_path / "nowhere") is None


def test_package_versions_name_the_running_interpreter_and_libraries():
    versions = package_versions()
    assert versions["numpy"] == np.__version__
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
