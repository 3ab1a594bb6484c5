"""The trained PPO policy as a Strategy: target weights row by row, the same way the env saw them.

The observation includes the position and its unrealised P&L, which depend on the policy's own
earlier decisions and their fills, so targets are computed sequentially by stepping a TradingEnv
over the rows: the observation builder, the fill model and the position accounting are the very
code the policy was trained on, not a copy.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from tradeflow.domain import Book, Decision
from tradeflow.errors import InputError
from tradeflow.rl.artifact import LoadedModel
from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import N_POSITION_FEATURES, ObservationBuilder, TradingEnv, next_target, unrealised_pnl
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

    def act(self, obs: np.ndarray) -> int:
        """One action (0 sell, 1 hold, 2 buy) for one raw observation."""
        return self.model.act(obs)

    def decide(self, features: FeatureTable, book: Book) -> Decision:
        """The live decision: the same observation the env builds (feature window, position, its
        unrealised P&L), with the position taken from `book` (the broker's real one) rather than a
        simulated rollout. Refuses features of another spec than the model was trained on: it would
        otherwise decide on misaligned columns without an error."""
        spec = getattr(features, "spec", None)
        trained, digest = self.model.feature_names, self.model.feature_hash
        given = tuple(getattr(spec, "names", ()))
        given_digest = str(getattr(spec, "digest", ""))
        if given != trained or (digest is not None and given_digest != digest):
            raise InputError(
                f"the model was trained on feature spec {str(digest)[:12]} ({len(trained)} columns) but was "
                f"given spec {given_digest[:12]} ({len(given)} columns): not deciding on other features"
            )
        trained_for = ", ".join(self.model.universe or ("one instrument",))
        if hasattr(features, "by_symbol"):  # a universe's panel: the policy decides for its own only
            traded = ", ".join(getattr(features, "symbols", ()))
            raise InputError(f"the model was trained to decide for {trained_for}, not for a universe ({traded})")
        symbol = str(getattr(features, "symbol", ""))
        universe = self.model.universe
        if universe is not None and symbol not in universe:
            raise InputError(
                f"the model was trained to decide for {', '.join(universe)}, not {symbol}: not deciding for "
                "an instrument outside its universe"
            )
        matrix = np.asarray(features.matrix(), dtype=np.float32)
        window = self.env_config.window
        if len(matrix) < window:
            raise InputError(f"the policy needs {window} feature rows, got {len(matrix)}")
        market = features.market()
        held = book.position(symbol)
        close = float(market.close[-1])
        current = 0.0 if held.qty == 0 or book.equity <= 0 else float(np.sign(float(held.qty)))
        pnl = unrealised_pnl(float(held.qty), float(held.avg_price), close) if held.qty else 0.0
        obs = ObservationBuilder(matrix[-window:], window).observation(window - 1, current, pnl)
        target = next_target(self.act(obs), current, self.env_config.allow_short)
        return Decision(
            strategy=self.name,
            session=pd.Timestamp(market.sessions[-1]).date(),
            weights={symbol: float(target)},
            spec_digest=given_digest,
        )

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
            out[-1] = next_target(self.act(obs), 0.0, short)
            return out
        config = self.env_config.model_copy(update={"episode_length": n})
        env = TradingEnv(market, matrix, config, self.cost, start_range=(window - 1, window))
        obs, info = env.reset(options={"start": window - 1})
        for row in range(window - 1, n - 1):
            obs, _, terminated, _, info = env.step(self.act(obs))
            out[row] = info["target"]
            if terminated:  # the book is ruined: nothing left to trade with
                return out
        # The last row's decision has no next open in the data yet: it is what a live tick trades.
        out[-1] = next_target(self.act(obs), float(info["target"]), short)
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
