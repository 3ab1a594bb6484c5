"""The experiment value types: what an experiment is, its status and the kinds of history rows.

Apart from the experiment logic (learning/experiments.py) so that the learning store, which stores
these values, and the logic, which reads and writes the store, do not import each other."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum

from tradeflow.errors import InputError

# The floor: an experiment decided on fewer trades per arm is refused, not obeyed.
MIN_TRADES_FLOOR = 30


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    ADOPTED = "adopted"
    REJECTED = "rejected"
    ABANDONED = "abandoned"


class HistoryKind(StrEnum):
    PROPOSED = "proposed"
    ADOPTED = "adopted"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    ABANDONED = "abandoned"
    PATTERN = "pattern"
    NOTE = "note"


def _finite(name: str, value: float) -> float:
    f = float(value)
    if not math.isfinite(f):
        raise InputError(f"{name} must be finite, got {value!r}")
    return f


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A pre-registered experiment: one parameter of one strategy, control vs test value."""

    id: str
    strategy: str
    param: str
    control: float
    test: float
    allocation: float = 0.2
    min_trades: int = MIN_TRADES_FLOOR
    alpha: float = 0.05
    min_effect: float = 0.005
    created: dt.date
    status: ExperimentStatus = ExperimentStatus.RUNNING
    concluded: dt.date | None = None

    def __post_init__(self) -> None:
        if not (self.id and self.strategy and self.param):
            raise InputError("an experiment needs an id, a strategy and a parameter")
        for name in ("control", "test", "allocation", "alpha", "min_effect"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        object.__setattr__(self, "status", ExperimentStatus(self.status))
        if not 0 < self.allocation < 0.5:
            # Below 0.5 so the control, the value in use, keeps most decisions while it is unproven.
            raise InputError(f"allocation must be in (0, 0.5), got {self.allocation}")
        if int(self.min_trades) != self.min_trades or self.min_trades < MIN_TRADES_FLOOR:
            raise InputError(f"min_trades must be an integer >= {MIN_TRADES_FLOOR}, got {self.min_trades}")
        if self.control == self.test:
            raise InputError(f"control and test values are both {self.control}: nothing to test")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_effect < 0:
            raise InputError(f"min_effect must be >= 0, got {self.min_effect}")
