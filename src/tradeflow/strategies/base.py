"""The Strategy protocol and the registry of rule strategies by name.

A strategy maps a feature frame to one target weight per row: the weight it wants to hold, decided
after that row's close from rows <= t only. Execution (at the next open, with costs) belongs to
`tradeflow.sim`, so the same targets drive a backtest, the RL parity check and a live tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from pydantic import ValidationError

from tradeflow.errors import InputError

if TYPE_CHECKING:
    from tradeflow.features import Features


@runtime_checkable
class Strategy(Protocol):
    # `name: str` read-only: declared as a property so frozen (immutable) strategies satisfy it too.
    @property
    def name(self) -> str: ...

    def targets(self, features: Features) -> np.ndarray:
        """float64 target weight per row of `features.frame`, using rows <= t only for row t."""
        ...


StrategyFactory = Callable[..., Strategy]


def _rule_factories() -> dict[str, StrategyFactory]:
    # Imported lazily: rules import this module for the protocol.
    from tradeflow.strategies.rules import BuyAndHold, MacdRule, MeanReversionRule, RsiRule, SmaCrossover

    return {
        "buy_and_hold": BuyAndHold,
        "sma": SmaCrossover,
        "rsi": RsiRule,
        "macd": MacdRule,
        "mean_reversion": MeanReversionRule,
    }


def strategy_names() -> tuple[str, ...]:
    """Names `make_strategy` knows ("champion" is resolved by the model registry, not here)."""
    return tuple(_rule_factories())


def make_strategy(name: str, **params: object) -> Strategy:
    """A rule strategy by registry name with typed, validated parameters; InputError on bad input."""
    factories = _rule_factories()
    factory = factories.get(name)
    if factory is None:
        raise InputError(f"unknown strategy {name!r}; expected one of {', '.join(factories)}")
    try:
        return factory(**params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid parameters for strategy {name!r}: {problems}") from None
