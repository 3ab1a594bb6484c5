"""A rule over a universe: each instrument in an equal sleeve (issue 10).

The target on symbol j is the rule's own target on j's features divided by the number of
instruments, so `buy_and_hold` holds equal weights bought on the first session, and `sma` trades each
sleeve on its own trend. The backtest (`targets`, session x symbol) and the tick (`decide`, one
Decision with a weight per instrument) are the same object, as for every strategy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tradeflow.domain import Book, Decision
from tradeflow.strategies.base import Strategy, numeric_params

if TYPE_CHECKING:
    from tradeflow.features import PanelFeatures


class Sleeves:
    def __init__(self, rule: Strategy, symbols: tuple[str, ...]) -> None:
        if not symbols:
            raise ValueError("sleeves need at least one instrument")
        self.rule = rule
        self.symbols = tuple(symbols)

    @property
    def name(self) -> str:
        return self.rule.name

    def targets(self, features: PanelFeatures) -> np.ndarray:
        """Weights of shape (sessions, symbols) on the panel's common sessions."""
        k = len(self.symbols)
        return np.column_stack(
            [np.asarray(self.rule.targets(features.by_symbol[s]), dtype=np.float64) / k for s in self.symbols]
        )

    def decide(self, features: PanelFeatures, book: Book) -> Decision:
        k = len(self.symbols)
        decisions = {s: self.rule.decide(features.by_symbol[s], book) for s in self.symbols}
        first = decisions[self.symbols[0]]
        # What each sleeve decided with: shared parameters as they are (a rule's), per-symbol ones
        # (an ensemble's member weights, fitted per instrument) prefixed with their symbol.
        shared = all(dict(d.params) == dict(first.params) for d in decisions.values())
        params = (
            dict(first.params)
            if shared
            else {f"{s}.{name}": value for s, d in decisions.items() for name, value in d.params.items()}
        )
        same_arm = all((d.arm, d.experiment_id) == (first.arm, first.experiment_id) for d in decisions.values())
        return Decision(
            strategy=self.name,
            session=pd.Timestamp(features.sessions[-1]).date(),
            weights={s: d.weight(s) / k for s, d in decisions.items()},
            params=params or numeric_params(self.rule),
            arm=first.arm if same_arm else "",
            experiment_id=first.experiment_id if same_arm else "",
            spec_digest=features.spec.digest,
        )
