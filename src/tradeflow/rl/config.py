"""Typed, frozen settings of the trading env and of PPO training.

PPOConfig's defaults are tuned for wall-clock speed on a 2-core CPU without starving learning; the
reasoning is in the class docstring so a change of numbers can be argued against it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EnvConfig(BaseModel):
    """What the agent sees and what it is rewarded for (see tradeflow.rl.env for the timing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rows of features in one observation. The indicators already summarise long histories
    # (MACD, SMA gaps, RSI-30), so a short window of their recent path is enough and keeps the
    # first layer small.
    window: int = Field(10, ge=1)
    # Steps per episode before truncation (about a trading year): long enough for trends to pay,
    # short enough that many start dates are sampled per rollout.
    episode_length: int = Field(252, ge=1)
    allow_short: bool = False
    initial_capital: float = Field(100_000.0, gt=0)
    # reward -= turnover_penalty * traded notional / equity before the trade (extra friction).
    turnover_penalty: float = Field(0.0, ge=0)
    # reward -= drawdown_penalty * (1 - equity / episode peak), paid every step spent underwater.
    drawdown_penalty: float = Field(0.0, ge=0)


class PortfolioEnvConfig(BaseModel):
    """The portfolio env's settings (see tradeflow.rl.portfolio_env for timing, actions and reward)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(10, ge=1)  # rows of each asset's features in one observation, as EnvConfig's
    episode_length: int = Field(252, ge=1)
    initial_capital: float = Field(100_000.0, gt=0)
    # "nine": two assets, Discrete(9) = (sell, hold, buy) per asset, each moving one step on
    # 0 / 0.5 / 1 of an equal sleeve; "grid": N assets, MultiDiscrete target weights on a grid.
    action_mode: Literal["nine", "grid"] = "nine"
    # Points of the "grid" mode per asset: level l of L means raw weight l / (L - 1); the raw
    # weights are divided by their sum when it exceeds 1, so the book never levers (gross <= 1).
    grid_levels: int = Field(3, ge=2)
    # Sessions of returns behind the rolling correlation and the betas (about a quarter).
    corr_window: int = Field(60, ge=2)
    # The market column for betas when it is in the universe; otherwise the equal-weight average.
    market_symbol: str = "SPY"
    # reward -= turnover_penalty * traded notional / equity before the trades (extra friction).
    turnover_penalty: float = Field(0.0, ge=0)
    # reward -= drawdown_penalty * (1 - equity / episode peak), paid every step spent underwater.
    drawdown_penalty: float = Field(0.0, ge=0)


class PPOConfig(BaseModel):
    """PPO hyper-parameters. lr 3e-4, clip 0.2 and net [256, 256] are the issue's; the rest is tuned.

    Why these numbers: on 2 CPU cores PPO's cost is set by the number of optimiser steps (each pays
    Python/autograd/Adam overhead far above its arithmetic) and by samples x epochs pushed through
    two 256x256 MLPs, not by the env. SB3's defaults (1 env, n_steps 2048, minibatch 64, 10 epochs)
    make 320 optimiser steps per 2048-step rollout (~15.7k per 100k timesteps) and call the policy
    once per env step: ~62-90 s per 100k here.
    Here 16 envs are stepped in one numpy call (TradingVecEnv), so a rollout of 16 x 128 = 2048
    transitions costs 128 batched policy forwards, and it is cut into 8 minibatches of 256 for
    5 epochs: 40 optimiser steps per rollout, ~1,960 per 100k. The rollout keeps SB3's size on
    purpose: the number of PPO iterations (policy updates) per timestep is what learning needs. An
    earlier default of 64 envs x 128 steps with minibatch 2048 ran 100k in ~9 s but made only 13
    updates per 100k, and on the walk-forward folds it learned worse than SB3's defaults at equal
    timesteps (mean OOS Sharpe -0.27 vs 0.54). Measured 2026-11-21 (benchmarks/README.md): these
    defaults 12.2 s per 100k (8.2k timesteps/s, goal <= 15 s) vs SB3's 61.7 s; on the same folds and
    seeds at 49,152 timesteps each, mean OOS Sharpe 0.61 +- 0.85 vs SB3's 0.54 +- 1.90 (total return
    +1.6% vs -1.0%), ahead in 4 of 6 fold/seed pairs. 64 parallel episodes were not needed for
    decorrelation: 16 episodes starting at sampled dates already mix a rollout well.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: EnvConfig = EnvConfig()
    total_timesteps: int = Field(100_000, ge=1)
    n_envs: int = Field(16, ge=1)
    n_steps: int = Field(128, ge=1)
    batch_size: int = Field(256, ge=2)
    n_epochs: int = Field(5, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    clip_range: float = Field(0.2, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    ent_coef: float = Field(0.0, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)
    net_arch: tuple[int, ...] = (256, 256)
    activation: Literal["tanh", "relu"] = "tanh"
    # VecNormalize: observations are always worth normalising (RSI is 0..100, returns ~0.01);
    # rewards are daily log returns of ~1e-2, normalising them keeps value targets near unit scale.
    norm_obs: bool = True
    norm_reward: bool = True
    clip_obs: float = Field(10.0, gt=0)
    # Total timesteps between checkpoints (converted to SB3's per-env count); 0 disables them.
    checkpoint_freq: int = Field(50_000, ge=0)
    torch_threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _minibatches_tile_the_rollout(self) -> PPOConfig:
        rollout = self.n_envs * self.n_steps
        if rollout % self.batch_size != 0:
            # SB3 would silently train on a truncated last minibatch.
            raise ValueError(f"batch_size {self.batch_size} must divide n_envs * n_steps = {rollout}")
        return self

    @classmethod
    def sb3_defaults(cls, **overrides: object) -> PPOConfig:
        """SB3's own PPO defaults, with the issue's lr, clip and net: the speed/learning baseline."""
        values: dict[str, object] = {
            "n_envs": 1,
            "n_steps": 2048,
            "batch_size": 64,
            "n_epochs": 10,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "ent_coef": 0.0,
            "vf_coef": 0.5,
            "max_grad_norm": 0.5,
            "norm_reward": True,
        }
        values.update(overrides)
        return cls.model_validate(values)
