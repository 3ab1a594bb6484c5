"""Deciding today's target weight from the features, with the very objects research uses.

A rule decides from its vectorised targets (the last row is today's decision). The PPO champion
decides from the same observation the env builds (feature window + current position + its
unrealised P&L), but the position comes from the broker's real book, not from a simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np

from tradeflow.features import Features
from tradeflow.rl.artifact import LoadedModel
from tradeflow.rl.env import ObservationBuilder, next_target, unrealised_pnl
from tradeflow.strategies import Strategy


@dataclass(frozen=True)
class Book:
    """The live position of the traded symbol, as the broker reports it."""

    shares: Decimal
    avg_price: Decimal
    equity: Decimal

    def weight(self) -> float:
        """The current target weight the policy thinks in: +1 long, 0 flat, -1 short."""
        if self.shares == 0 or self.equity <= 0:
            return 0.0
        return float(np.sign(float(self.shares)))


class Decider(Protocol):
    name: str

    def target(self, features: Features, book: Book) -> float: ...


class RuleDecider:
    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.name = strategy.name

    def target(self, features: Features, book: Book) -> float:
        return float(self.strategy.targets(features)[-1])


class PolicyDecider:
    """The PPO champion, deterministic, on the last feature row and the real book."""

    def __init__(self, model: LoadedModel, name: str = "champion") -> None:
        self.model = model
        self.name = name

    def target(self, features: Features, book: Book) -> float:
        window = self.model.env_config.window
        matrix = features.matrix()
        if len(matrix) < window:
            raise ValueError(f"the policy needs {window} feature rows, got {len(matrix)}")
        close = float(features.market().close[-1])
        current = book.weight()
        pnl = unrealised_pnl(float(book.shares), float(book.avg_price), close) if book.shares else 0.0
        obs = ObservationBuilder(matrix[-window:], window).observation(window - 1, current, pnl)
        action = self.model.act(obs)
        return next_target(action, current, self.model.env_config.allow_short)
