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
        weights = {s: self.rule.decide(features.by_symbol[s], book).weight(s) / k for s in self.symbols}
        return Decision(
            strategy=self.name,
            session=pd.Timestamp(features.sessions[-1]).date(),
            weights=weights,
            params=numeric_params(self.rule),
            spec_digest=features.spec.digest,
        )
