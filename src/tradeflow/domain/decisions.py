"""What a strategy decides, and the book it decides against: one value type for the backtest, the
replay and the live tick (issue 10: one decision path)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from tradeflow.domain.orders import Position


@dataclass(frozen=True)
class Book:
    """The positions (the broker's, in a tick) and the equity marked at the decision's prices."""

    positions: Mapping[str, Position]
    equity: Decimal

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol, Decimal(0), Decimal(0))

    @classmethod
    def flat(cls, equity: Decimal = Decimal(1)) -> Book:
        return cls({}, equity)


@dataclass(frozen=True)
class Decision:
    """Target weights per instrument decided after `session`'s close, and what they were decided with:
    the strategy, its parameters, the experiment arm (learning), the feature spec's digest."""

    strategy: str
    session: dt.date
    weights: Mapping[str, float]
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    arm: str = ""
    experiment_id: str = ""
    spec_digest: str = ""

    def weight(self, symbol: str) -> float:
        """The target weight of `symbol`; an instrument the decision does not name is held at 0."""
        return float(self.weights.get(symbol, 0.0))
