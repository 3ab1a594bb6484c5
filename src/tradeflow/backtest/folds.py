"""Walk-forward folds over NYSE sessions: train on the past, skip an embargo, test on what follows.

Layout. Test windows are laid out from the END of the data backwards: the last test window ends on
the last session, the one before it `step` sessions earlier, and so on. The newest sessions, the
ones nearest to what a retrained model will trade, are therefore always out of sample, and whatever
does not divide evenly is left at the start, where it only lengthens the training history. Each
test window is preceded by exactly `embargo` unused sessions, and before those by its train window:

  expanding  train = row 0 .. the embargo gap (grows by `step` from fold to fold)
  rolling    train = the `train_size` sessions before the embargo gap

A fold is kept only when its train window holds at least `min_train` sessions (default
`train_size`), so with the defaults every rolling window is full length and the first expanding
window holds between `train_size` and `train_size + step - 1` sessions. `max_folds` keeps the most
recent folds.

Why the embargo: the RL reward of the last training session t is earned at the open of t+1, and
labels or features spanning several sessions would straddle the boundary too; `embargo >= 1`
keeps every price a training step touches out of the test window.

Row ranges are half-open (`train_start_row <= i < train_stop_row`, like `range` and slices);
session timestamps are inclusive (`train_end` is the last training session).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tradeflow.errors import InputError

Scheme = Literal["expanding", "rolling"]


@dataclass(frozen=True)
class Fold:
    index: int  # 0 = the oldest fold kept
    scheme: Scheme
    embargo: int
    train_start_row: int  # half-open row ranges into the session array
    train_stop_row: int
    test_start_row: int
    test_stop_row: int
    train_start: pd.Timestamp  # inclusive sessions
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def train_rows(self) -> slice:
        return slice(self.train_start_row, self.train_stop_row)

    @property
    def test_rows(self) -> slice:
        return slice(self.test_start_row, self.test_stop_row)

    @property
    def n_train(self) -> int:
        return self.train_stop_row - self.train_start_row

    @property
    def n_test(self) -> int:
        return self.test_stop_row - self.test_start_row

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: sessions as ISO dates (Prefect table artifacts reject Timestamps)."""
        return {
            "index": self.index,
            "scheme": self.scheme,
            "embargo": self.embargo,
            "train_start_row": self.train_start_row,
            "train_stop_row": self.train_stop_row,
            "test_start_row": self.test_start_row,
            "test_stop_row": self.test_stop_row,
            "train_start": _iso(self.train_start),
            "train_end": _iso(self.train_end),
            "test_start": _iso(self.test_start),
            "test_end": _iso(self.test_end),
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fold:
        return cls(
            index=int(data["index"]),
            scheme=data["scheme"],
            embargo=int(data["embargo"]),
            train_start_row=int(data["train_start_row"]),
            train_stop_row=int(data["train_stop_row"]),
            test_start_row=int(data["test_start_row"]),
            test_stop_row=int(data["test_stop_row"]),
            train_start=pd.Timestamp(data["train_start"]),
            train_end=pd.Timestamp(data["train_end"]),
            test_start=pd.Timestamp(data["test_start"]),
            test_end=pd.Timestamp(data["test_end"]),
        )


def _iso(ts: pd.Timestamp) -> str:
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()


def _count(name: str, value: Any, minimum: int) -> int:
    # operator.index accepts numpy integers but refuses floats; bool is an int we do not want.
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


def _session_index(sessions: np.ndarray | pd.DatetimeIndex | pd.Series) -> pd.DatetimeIndex:
    try:
        index = pd.DatetimeIndex(np.asarray(sessions))
    except (TypeError, ValueError) as exc:
        raise InputError(f"sessions must be datetimes: {exc}") from None
    if len(index) == 0:
        raise InputError("sessions is empty: no folds can be made")
    if index.hasnans:
        raise InputError("sessions contains NaT")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise InputError("sessions must be strictly increasing (sorted, no duplicates)")
    return index


def make_folds(
    sessions: np.ndarray | pd.DatetimeIndex | pd.Series,
    *,
    scheme: Scheme = "expanding",
    train_size: int,
    test_size: int,
    embargo: int,
    step: int | None = None,
    min_train: int | None = None,
    max_folds: int | None = None,
) -> list[Fold]:
    """Walk-forward folds over `sessions` (see the module docstring for the layout).

    Raises InputError on invalid arguments or when not a single fold fits the data.
    """
    index = _session_index(sessions)
    if scheme not in ("expanding", "rolling"):
        raise InputError(f"scheme must be 'expanding' or 'rolling', got {scheme!r}")
    train_size = _count("train_size", train_size, 1)
    test_size = _count("test_size", test_size, 1)
    embargo = _count("embargo", embargo, 0)
    step = test_size if step is None else _count("step", step, 1)
    if step < test_size:
        raise InputError(f"step ({step}) must be >= test_size ({test_size}) so test windows never overlap")
    min_train = train_size if min_train is None else _count("min_train", min_train, 1)
    if scheme == "rolling" and min_train > train_size:
        raise InputError(f"min_train ({min_train}) cannot exceed a rolling train_size ({train_size})")
    if max_folds is not None:
        max_folds = _count("max_folds", max_folds, 1)

    n = len(index)
    spans: list[tuple[int, int, int, int]] = []
    test_stop = n
    while True:
        test_start = test_stop - test_size
        train_stop = test_start - embargo
        train_start = 0 if scheme == "expanding" else max(0, train_stop - train_size)
        if train_stop - train_start < min_train:
            break  # every earlier fold would have even less history
        spans.append((train_start, train_stop, test_start, test_stop))
        if max_folds is not None and len(spans) == max_folds:
            break
        test_stop -= step
    if not spans:
        need = min_train + embargo + test_size
        raise InputError(
            f"{n} sessions are too few for one fold: need min_train {min_train} + embargo {embargo} "
            f"+ test_size {test_size} = {need}"
        )
    spans.reverse()
    return [
        Fold(
            index=i,
            scheme=scheme,
            embargo=embargo,
            train_start_row=a,
            train_stop_row=b,
            test_start_row=c,
            test_stop_row=d,
            train_start=index[a],
            train_end=index[b - 1],
            test_start=index[c],
            test_end=index[d - 1],
        )
        for i, (a, b, c, d) in enumerate(spans)
    ]
