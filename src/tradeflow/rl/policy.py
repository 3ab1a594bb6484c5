"""The trained PPO policy as a Strategy: target weights row by row, the same way the env saw them.

The observation includes the position and its unrealised P&L, which depend on the policy's own
earlier decisions and their fills, so targets are computed sequentially by stepping a TradingEnv
over the rows: the observation builder, the fill model and the position accounting are the very
code the policy was trained on, not a copy.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from tradeflow.errors import InputError
from tradeflow.rl.artifact import LoadedModel
from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import N_POSITION_FEATURES, ObservationBuilder, TradingEnv, next_target
from tradeflow.sim import CostModel, MarketArrays


class FeatureTable(Protocol):
    """What the policy needs of `tradeflow.features.Features` (structural, so rl does not import it)."""

    def matrix(self) -> np.ndarray: ...

    def market(self) -> MarketArrays: ...


class RLPolicyStrategy:
    """Strategy protocol over a loaded PPO model.

    `env_config` and `cost` default to those the model was trained with (from its meta.json);
    overriding them is for experiments, the window must still match the model's input size.
    """

    def __init__(
        self,
        model: LoadedModel,
        env_config: EnvConfig | None = None,
        cost: CostModel | None = None,
        name: str = "ppo",
    ) -> None:
        self.model = model
        self.env_config = env_config if env_config is not None else model.env_config
        self.cost = cost if cost is not None else model.cost
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def decide(self, obs: np.ndarray) -> int:
        """One action (0 sell, 1 hold, 2 buy) for one raw observation."""
        return self.model.act(obs)

    def targets(self, features: FeatureTable) -> np.ndarray:
        """Target weight per row, decided after that row's close from rows <= t and the book so far.

        Rows before the first full feature window hold 0 (flat): the policy cannot observe them.
        """
        matrix = np.asarray(features.matrix(), dtype=np.float32)
        market = features.market()
        self._check_inputs(features, matrix)
        n, window, short = len(market), self.env_config.window, self.env_config.allow_short
        out = np.zeros(n)
        if n < window:
            return out
        if n == window:  # one observable row and no next open: a single decision from a flat book
            obs = ObservationBuilder(matrix, window).observation(n - 1, 0.0, 0.0)
            out[-1] = next_target(self.decide(obs), 0.0, short)
            return out
        config = self.env_config.model_copy(update={"episode_length": n})
        env = TradingEnv(market, matrix, config, self.cost, start_range=(window - 1, window))
        obs, info = env.reset(options={"start": window - 1})
        for row in range(window - 1, n - 1):
            obs, _, terminated, _, info = env.step(self.decide(obs))
            out[row] = info["target"]
            if terminated:  # the book is ruined: nothing left to trade with
                return out
        # The last row's decision has no next open in the data yet: it is what a live tick trades.
        out[-1] = next_target(self.decide(obs), float(info["target"]), short)
        return out

    def _check_inputs(self, features: FeatureTable, matrix: np.ndarray) -> None:
        expected = self.model.observation_size
        got = self.env_config.window * matrix.shape[1] + N_POSITION_FEATURES
        if got != expected:
            raise InputError(
                f"the model takes {expected} inputs, but window {self.env_config.window} x {matrix.shape[1]} "
                f"features + 2 position inputs make {got}"
            )
        spec = getattr(features, "spec", None)
        names = getattr(spec, "names", None)
        if names is not None and tuple(names) != self.model.feature_names:
            raise InputError(f"feature columns {tuple(names)} differ from the model's {self.model.feature_names}")
