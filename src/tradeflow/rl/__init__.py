"""Reinforcement learning: the trading env (single and vectorised), PPO training, model artifacts
and the trained policy as a Strategy. stable_baselines3 is imported only under this package.

The env and its config import without torch; training, artifacts and the policy load lazily, so
`from tradeflow.rl import EnvConfig` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tradeflow.rl.config import EnvConfig, PortfolioEnvConfig, PPOConfig
from tradeflow.rl.env import BUY, HOLD, SELL, TradingEnv

if TYPE_CHECKING:
    from tradeflow.rl.artifact import LoadedModel, load_artifact, read_git_sha, save_artifact
    from tradeflow.rl.policy import RLPolicyStrategy
    from tradeflow.rl.portfolio_env import PortfolioEnv, PortfolioVecEnv
    from tradeflow.rl.train import TrainedModel, train_ppo
    from tradeflow.rl.vec_env import TradingVecEnv

_LAZY = {
    "LoadedModel": "tradeflow.rl.artifact",
    "load_artifact": "tradeflow.rl.artifact",
    "read_git_sha": "tradeflow.rl.artifact",
    "save_artifact": "tradeflow.rl.artifact",
    "RLPolicyStrategy": "tradeflow.rl.policy",
    "PortfolioEnv": "tradeflow.rl.portfolio_env",
    "PortfolioVecEnv": "tradeflow.rl.portfolio_env",
    "TrainedModel": "tradeflow.rl.train",
    "train_ppo": "tradeflow.rl.train",
    "TradingVecEnv": "tradeflow.rl.vec_env",
}

__all__ = [
    "BUY",
    "HOLD",
    "SELL",
    "EnvConfig",
    "LoadedModel",
    "PPOConfig",
    "PortfolioEnv",
    "PortfolioEnvConfig",
    "PortfolioVecEnv",
    "RLPolicyStrategy",
    "TradingEnv",
    "TradingVecEnv",
    "TrainedModel",
    "load_artifact",
    "read_git_sha",
    "save_artifact",
    "train_ppo",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tradeflow.rl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
