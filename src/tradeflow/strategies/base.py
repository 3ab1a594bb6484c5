"""The one Strategy protocol, and the registry of rule strategies by name.

A strategy decides a `Decision` (target weights per instrument) after a session's close, from rows
<= t only: `decide(features, book)` is what the live tick and the replay call, with the real book.
`targets(features)` is the vectorised form a backtest needs: the weight per row, as the same object
would decide it row by row. Execution (at the next open, with costs) belongs to `tradeflow.sim`, so
the same object drives a backtest, the RL parity check and a live tick (issue 10: one decision path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import ValidationError

from tradeflow.domain import Book, Decision
from tradeflow.errors import InputError

if TYPE_CHECKING:
    from tradeflow.features import Features


# What a strategy decides on: one instrument's Features, or a universe's PanelFeatures (Sleeves).
# `Strategy` alone means any of them.
F_contra = TypeVar("F_contra", contravariant=True)


@runtime_checkable
class Strategy(Protocol[F_contra]):
    # `name: str` read-only: declared as a property so frozen (immutable) strategies satisfy it too.
    @property
    def name(self) -> str: ...

    def targets(self, features: F_contra) -> np.ndarray:
        """float64 target weight per row of `features.frame`, using rows <= t only for row t."""
        ...

    def decide(self, features: F_contra, book: Book) -> Decision:
        """The decision after the last row's close, against `book` (the broker's, in a tick)."""
        ...


def numeric_params(strategy: object) -> dict[str, float]:
    """A rule's tunable numbers (booleans such as allow_short are switches, not tunable values)."""
    dump = strategy.model_dump() if hasattr(strategy, "model_dump") else {}
    return {k: float(v) for k, v in dump.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def decision_from_targets(
    strategy: Strategy, features: Features, params: Mapping[str, float] | None = None, **context: str
) -> Decision:
    """The Decision a position-independent strategy makes: its vectorised target on the last row.
    Rules use it, so a rule's live decision is its backtest's last target by construction."""
    weights = np.asarray(strategy.targets(features), dtype=np.float64)
    if len(weights) == 0:
        raise InputError(f"strategy {strategy.name!r} has no feature rows to decide on")
    return Decision(
        strategy=strategy.name,
        session=pd.Timestamp(features.sessions[-1]).date(),
        weights={features.symbol: float(weights[-1])},
        params=dict(params or {}),
        spec_digest=features.spec.digest,
        **context,
    )


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
