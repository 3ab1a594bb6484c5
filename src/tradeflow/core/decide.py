"""Deciding today's target weight from the features, with the very objects research uses.

A rule decides from its vectorised targets (the last row is today's decision). The PPO champion
decides from the same observation the env builds (feature window + current position + its
unrealised P&L), but the position comes from the broker's real book, not from a simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np
import pandas as pd

from tradeflow.errors import InputError
from tradeflow.features import Features
from tradeflow.learning import LearningStore, ParamChoice, params_for
from tradeflow.learning.experiments import TEST
from tradeflow.ledger import DecisionRecord
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
        # A model fed other columns than it was trained on would decide on garbage without an error.
        trained, given = self.model.feature_names, tuple(features.spec.names)
        digest = self.model.feature_hash
        if given != trained or (digest is not None and features.spec.digest != digest):
            raise InputError(
                f"the champion was trained on feature spec {str(digest)[:12]} ({len(trained)} columns) but was "
                f"given spec {features.spec.digest[:12]} ({len(given)} columns): not deciding on other features"
            )
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


def numeric_params(strategy: Strategy) -> dict[str, float]:
    """A rule's tunable numbers (booleans such as allow_short are switches, not tunable values)."""
    dump = strategy.model_dump() if hasattr(strategy, "model_dump") else {}
    return {k: float(v) for k, v in dump.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class GovernedRuleDecider:
    """A rule whose parameters come from the governed learning store (issue 5): the defaults,
    overlaid with adopted changes, and — while an experiment runs — the control or test value of the
    session's arm (`tradeflow.learning.params_for`). `choice` says what the last decision used, and
    the tick writes it to the ledger's decisions, where the review finds each trade's arm.

    An open position keeps the arm it was entered with: its exit is decided with the same
    parameters as its entry, so a trade belongs wholly to one arm (`last_decision` is the ledger's
    previous decision of this strategy; by induction it carries the entry's arm).
    """

    def __init__(
        self,
        strategy: str,
        store: LearningStore,
        *,
        last_decision: Callable[[], DecisionRecord | None] = lambda: None,
        factory: Callable[..., Strategy] | None = None,
    ) -> None:
        from tradeflow.strategies import make_strategy

        self.name = strategy
        self.store = store
        self._factory: Callable[..., Strategy] = factory or (lambda **params: make_strategy(strategy, **params))
        self._defaults = numeric_params(self._factory())
        self._last_decision = last_decision
        self.choice = ParamChoice(dict(self._defaults))

    def target(self, features: Features, book: Book) -> float:
        session = pd.Timestamp(features.sessions[-1]).date()
        choice = params_for(self.store, self.name, self._defaults, session)
        previous = self._last_decision()
        if (
            book.shares != 0
            and previous is not None
            and choice.experiment_id
            and previous.experiment_id == choice.experiment_id
            and previous.arm != choice.arm
        ):
            experiment = self.store.get_experiment(choice.experiment_id)
            if experiment is not None:
                value = experiment.test if previous.arm == TEST else experiment.control
                choice = ParamChoice({**choice.params, experiment.param: value}, previous.arm, experiment.id)
        self.choice = choice
        return float(self._factory(**choice.params).targets(features)[-1])
