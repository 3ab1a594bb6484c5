"""PPO training on the vectorised trading env: one call, seeded, with VecNormalize kept beside the model.

Only the training window's rows are handed to the env (plus the window-1 rows of features before
it that the first observation needs), so no episode can ever step into the evaluation period.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from tradeflow.errors import InputError
from tradeflow.rl.config import PPOConfig
from tradeflow.rl.vec_env import TradingVecEnv
from tradeflow.sim import CostModel, MarketArrays

_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


@dataclass(frozen=True)
class TrainedModel:
    model: PPO
    vec_normalize: VecNormalize
    config: PPOConfig
    cost: CostModel
    seed: int
    train_range: tuple[int, int]  # rows [start, stop) of the market/features passed to train_ppo
    train_sessions: tuple[str, str]  # first and last session of the training window (ISO dates)
    n_features: int

    @property
    def observation_size(self) -> int:
        shape = self.vec_normalize.observation_space.shape
        assert shape is not None
        return int(shape[0])


def _session(market: MarketArrays, row: int) -> str:
    return str(np.datetime_as_string(market.sessions[row], unit="D"))


def make_training_env(
    market: MarketArrays,
    features: np.ndarray,
    train_range: tuple[int, int],
    config: PPOConfig,
    cost: CostModel,
    seed: int,
) -> VecNormalize:
    """The VecNormalize(VecMonitor(TradingVecEnv)) PPO trains on, over the training rows only."""
    start, stop = train_range
    n = len(market)
    if np.shape(features)[0] != n:
        raise InputError(f"features have {np.shape(features)[0]} rows but the market has {n}")
    window = config.env.window
    if not 0 <= start < stop <= n:
        raise InputError(f"train range [{start}, {stop}) is outside the data (0..{n})")
    first_obs = max(start, window - 1)  # the first row with a full feature window
    if stop - first_obs < 2:
        raise InputError(f"train range [{start}, {stop}) leaves no step after a {window}-row feature window")
    lo = first_obs - (window - 1)  # rows before the window start feed only the first observations
    env = TradingVecEnv(
        market.slice(lo, stop),
        np.asarray(features[lo:stop], dtype=np.float32),
        config.env,
        cost,
        n_envs=config.n_envs,
        seed=seed,
        start_range=(first_obs - lo, stop - lo - 1),
    )
    return VecNormalize(
        VecMonitor(env),
        norm_obs=config.norm_obs,
        norm_reward=config.norm_reward,
        clip_obs=config.clip_obs,
        gamma=config.gamma,
    )


def train_ppo(
    market: MarketArrays,
    features: np.ndarray,
    train_range: tuple[int, int],
    config: PPOConfig,
    cost: CostModel,
    seed: int,
    out_dir: Path | None = None,
    progress: bool = False,
) -> TrainedModel:
    """Train PPO("MlpPolicy") on rows [start, stop) of `market`/`features` (aligned 1:1).

    With `out_dir`, checkpoints (model + VecNormalize) go to out_dir/checkpoints and, when the
    tensorboard package is importable, TensorBoard logs to out_dir/tensorboard. The same seed,
    config and data give the same weights (CPU, `config.torch_threads` threads).
    """
    # Global torch state, set here because training is the only place that needs it: on a shared
    # 2-core box one thread avoids oversubscription, and it keeps float reductions reproducible.
    torch.set_num_threads(config.torch_threads)
    set_random_seed(seed)
    venv = make_training_env(market, features, train_range, config, cost, seed)
    tensorboard_dir = None
    if out_dir is not None and importlib.util.find_spec("tensorboard") is not None:
        tensorboard_dir = str(Path(out_dir) / "tensorboard")
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": list(config.net_arch), "activation_fn": _ACTIVATIONS[config.activation]},
        tensorboard_log=tensorboard_dir,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    callback = None
    if out_dir is not None and config.checkpoint_freq > 0:
        # SB3 counts save_freq in calls per env, i.e. n_envs timesteps per call.
        callback = CheckpointCallback(
            save_freq=max(config.checkpoint_freq // config.n_envs, 1),
            save_path=str(Path(out_dir) / "checkpoints"),
            name_prefix="ppo",
            save_vecnormalize=True,
        )
    model.learn(total_timesteps=config.total_timesteps, callback=callback, progress_bar=progress, tb_log_name="ppo")
    start, stop = train_range
    return TrainedModel(
        model=model,
        vec_normalize=venv,
        config=config,
        cost=cost,
        seed=seed,
        train_range=(start, stop),
        train_sessions=(_session(market, start), _session(market, stop - 1)),
        n_features=int(np.shape(features)[1]),
    )
