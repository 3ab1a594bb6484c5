"""Governed rules: a rule strategy whose parameters come from the learning loop's governed store.

Every strategy decides through the one protocol (`tradeflow.strategies.Strategy`): rules decide from
their vectorised targets (the last row is today's decision), the PPO champion (`RLPolicyStrategy`)
from the observation the env builds with the broker's real book. This module adds what the learning
loop needs on top of a rule: which parameters and which experiment arm a decision used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from tradeflow.domain import Book, Decision
from tradeflow.features import Features
from tradeflow.learning import LearningStore, ParamChoice, params_for
from tradeflow.learning.experiments import TEST
from tradeflow.ledger import DecisionRecord
from tradeflow.strategies import Strategy, decision_from_targets, numeric_params


class GovernedRule:
    """A rule whose parameters come from the governed learning store (issue 5): the defaults,
    overlaid with adopted changes, and — while an experiment runs — the control or test value of the
    session's arm (`tradeflow.learning.params_for`). Its Decision says which parameters and which arm
    it used, and the tick writes them to the ledger's decisions, where the review finds each trade's arm.

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

        self._name = strategy
        self.store = store
        self._factory: Callable[..., Strategy] = factory or (lambda **params: make_strategy(strategy, **params))
        self._defaults = numeric_params(self._factory())
        self._last_decision = last_decision

    @property
    def name(self) -> str:
        return self._name

    def _choice(self, features: Features, book: Book | None) -> ParamChoice:
        session = pd.Timestamp(features.sessions[-1]).date()
        choice = params_for(self.store, self.name, self._defaults, session)
        previous = self._last_decision()
        held = book is not None and book.position(features.symbol).qty != 0
        if (
            held
            and previous is not None
            and choice.experiment_id
            and previous.experiment_id == choice.experiment_id
            and previous.arm != choice.arm
        ):
            experiment = self.store.get_experiment(choice.experiment_id)
            if experiment is not None:
                value = experiment.test if previous.arm == TEST else experiment.control
                choice = ParamChoice({**choice.params, experiment.param: value}, previous.arm, experiment.id)
        return choice

    def targets(self, features: Features) -> np.ndarray:
        """The vectorised form, with the parameters governing the last row's session."""
        return self._factory(**self._choice(features, None).params).targets(features)

    def decide(self, features: Features, book: Book) -> Decision:
        choice = self._choice(features, book)
        rule = self._factory(**choice.params)
        decision = decision_from_targets(
            rule, features, choice.params, arm=choice.arm, experiment_id=choice.experiment_id
        )
        return dataclasses.replace(decision, strategy=self.name)
