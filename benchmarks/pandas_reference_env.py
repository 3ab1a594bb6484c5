"""The reference for the env benchmark: a FinRL-style gymnasium env that reads a DataFrame per step.

FinRL's StockTradingEnv keeps the whole market as one long DataFrame indexed by an integer day
(`df.index = df.date.factorize()[0]`) with its date and ticker columns beside prices and indicators,
and on every step does `self.data = self.df.loc[self.day, :]`, then builds the next state from that
row. This env does the same, with tradeflow's semantics so that the two envs do the same work and
only the data path differs:

- the same Discrete(3) actions (0 sell -> flat, 1 hold, 2 buy -> fully long), the same timing
  (decide after the close of day t, fill at the open of day t+1), the same reward (log change of
  net equity) and the same observation (the last `window` feature rows, oldest first, then the
  target weight and the unrealised log P&L);
- the same trade arithmetic: `tradeflow.sim.rebalance` with the same CostModel, so cash, shares and
  costs agree to the bit and `check_parity` in bench_research.py can prove the two envs equivalent;
- FinRL-style bookkeeping lists (assets, rewards, actions, dates) appended every step.

What differs is exactly what the benchmark measures: the prices come from `df.loc[day, :]` (a mixed
dtype row, as in FinRL where `date` and `tic` share the frame) and the observation window from
`df.loc[day - window + 1 : day, features]`, instead of precomputed numpy arrays. It is a benchmark
reference, not product code: it lives here, outside src/, on purpose.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from tradeflow.features import Features
from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import BUY, N_ACTIONS, SELL
from tradeflow.sim import CostModel, rebalance


def finrl_frame(features: Features) -> pd.DataFrame:
    """One row per day: date and ticker, dividend-adjusted prices (as the env's MarketArrays) and the
    feature columns, indexed by an integer day as FinRL does."""
    market = features.market()
    frame = pd.DataFrame(
        {
            "date": features.frame["session"].to_numpy(),
            "tic": features.symbol,
            "open": market.open,
            "high": market.high,
            "low": market.low,
            "close": market.close,
            "volume": market.volume,
        }
    )
    for name in features.spec.names:
        frame[name] = features.frame[name].to_numpy(dtype=np.float64)
    frame.index = pd.RangeIndex(len(frame))
    return frame


class PandasReferenceEnv(gym.Env[np.ndarray, np.int64]):
    """FinRL-style single-asset env over a DataFrame (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's declared attribute

    def __init__(
        self,
        df: pd.DataFrame,
        feature_names: tuple[str, ...],
        config: EnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if config.allow_short:
            # The entry bookkeeping below covers flat <-> long only, which is all the benchmark runs.
            raise ValueError("the pandas reference env is long-only")
        self.df = df
        self.features = list(feature_names)
        self.config = config
        self.cost = cost
        self.window = config.window
        n = len(df)
        self.start_low, self.start_high = start_range if start_range is not None else (self.window - 1, n - 1)
        self.last_day = n - 1
        size = self.window * len(self.features) + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._reset_book(self.start_low)

    def _reset_book(self, day: int) -> None:
        capital = self.config.initial_capital
        self.day = day
        self.start = day
        self.steps = 0
        self.cash, self.shares, self.entry, self.target = capital, 0.0, 0.0, 0.0
        self.data = self.df.loc[self.day, :]  # FinRL: the current day's row
        self.asset_memory: list[float] = [capital]
        self.rewards_memory: list[float] = []
        self.actions_memory: list[int] = []
        self.date_memory: list[Any] = [self.data["date"]]

    def _price(self, column: str) -> float:
        # A cell of the day's row, an object-dtype Series because date and tic share the frame (as in FinRL).
        return float(cast(float, self.data[column]))

    def _state(self) -> np.ndarray:
        window = self.df.loc[self.day - self.window + 1 : self.day, self.features]  # label slice: inclusive
        pnl = 0.0
        if self.shares != 0.0 and self.entry > 0.0:
            pnl = float(np.log(self._price("close") / self.entry))
        obs = np.empty(self.observation_space.shape or (0,), dtype=np.float32)
        obs[:-2] = window.to_numpy(dtype=np.float32).ravel()
        obs[-2] = self.target
        obs[-1] = pnl
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "start" in options:
            day = int(options["start"])
        else:
            day = int(self.np_random.integers(self.start_low, self.start_high))
        self._reset_book(day)
        return self._state(), {}

    def step(self, action: int | np.integer[Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        act = int(action)
        begin_total_asset = self.cash + self.shares * self._price("close")
        target = 1.0 if act == BUY else (0.0 if act == SELL else self.target)
        self.day += 1
        self.data = self.df.loc[self.day, :]  # the per-step lookup FinRL does
        if target != self.target:
            old = self.shares
            self.cash, self.shares, fill = rebalance(
                self.cash, self.shares, target, self._price("open"), self._price("volume"), self.cost
            )
            if fill is not None:
                if self.shares == 0.0:
                    self.entry = 0.0
                elif old == 0.0:
                    self.entry = fill.price
            self.target = target
        self.steps += 1
        end_total_asset = self.cash + self.shares * self._price("close")
        reward = float(np.log(max(end_total_asset, 1e-12 * self.config.initial_capital) / begin_total_asset))
        self.asset_memory.append(end_total_asset)
        self.rewards_memory.append(reward)
        self.actions_memory.append(act)
        self.date_memory.append(self.data["date"])
        terminated = end_total_asset <= 0.0
        truncated = not terminated and (self.steps >= self.config.episode_length or self.day >= self.last_day)
        return self._state(), reward, terminated, truncated, {}
