"""Walk-forward folds: no test row inside or before its train window + embargo, disjoint tests."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.backtest.folds import Fold, make_folds
from tradeflow.errors import InputError


def _sessions(n: int) -> pd.DatetimeIndex:
    return pd.bdate_range("2010-01-04", periods=n)


def test_expanding_folds_start_at_row_zero_and_end_on_the_last_session():
    sessions = _sessions(100)
    folds = make_folds(sessions, scheme="expanding", train_size=40, test_size=10, embargo=2)
    assert all(f.train_start_row == 0 for f in folds)
    assert folds[-1].test_stop_row == 100
    assert folds[-1].test_end == sessions[-1]
    # 100 - 10*k - 2 >= 40  ->  k <= 5 test windows fit.
    assert len(folds) == 5
    assert [f.n_train for f in folds] == [48, 58, 68, 78, 88]
    assert [f.index for f in folds] == [0, 1, 2, 3, 4]


def test_rolling_folds_keep_a_fixed_train_length():
    folds = make_folds(_sessions(100), scheme="rolling", train_size=30, test_size=10, embargo=3)
    assert {f.n_train for f in folds} == {30}
    assert folds[0].train_start_row > 0
    assert [f.train_start_row for f in folds[1:]] == [f.train_start_row + 10 for f in folds[:-1]]


def test_embargo_gap_is_exactly_the_requested_number_of_sessions():
    sessions = _sessions(60)
    for fold in make_folds(sessions, train_size=20, test_size=5, embargo=4):
        assert fold.test_start_row - fold.train_stop_row == 4
        skipped = sessions[fold.train_stop_row : fold.test_start_row]
        assert len(skipped) == 4
        assert fold.train_end < skipped[0]
        assert skipped[-1] < fold.test_start


def test_timestamps_are_inclusive_ends_of_half_open_row_ranges():
    sessions = _sessions(50)
    fold = make_folds(sessions, train_size=20, test_size=10, embargo=1, max_folds=1)[0]
    assert fold.train_start == sessions[fold.train_rows][0]
    assert fold.train_end == sessions[fold.train_rows][-1]
    assert fold.test_start == sessions[fold.test_rows][0]
    assert fold.test_end == sessions[fold.test_rows][-1]
    assert len(sessions[fold.test_rows]) == fold.n_test == 10


def test_max_folds_keeps_the_most_recent_folds():
    all_folds = make_folds(_sessions(200), train_size=50, test_size=20, embargo=0)
    last_two = make_folds(_sessions(200), train_size=50, test_size=20, embargo=0, max_folds=2)
    assert [f.test_start for f in last_two] == [f.test_start for f in all_folds[-2:]]
    assert [f.index for f in last_two] == [0, 1]


def test_min_train_admits_shorter_early_rolling_windows():
    full_only = make_folds(_sessions(100), scheme="rolling", train_size=50, test_size=10, embargo=0)
    with_short = make_folds(_sessions(100), scheme="rolling", train_size=50, test_size=10, embargo=0, min_train=20)
    assert len(with_short) > len(full_only)
    assert with_short[0].train_start_row == 0
    assert with_short[0].n_train >= 20


def test_step_larger_than_test_size_leaves_gaps_between_test_windows():
    folds = make_folds(_sessions(120), train_size=30, test_size=10, embargo=0, step=25)
    assert [b.test_start_row - a.test_start_row for a, b in itertools.pairwise(folds)] == [25] * (len(folds) - 1)


def test_numpy_datetime_sessions_are_accepted_and_fold_round_trips_through_json():
    sessions = _sessions(80).to_numpy()
    fold = make_folds(sessions, train_size=30, test_size=10, embargo=2)[-1]
    data = json.loads(json.dumps(fold.to_dict()))
    assert data["test_end"] == str(pd.Timestamp(sessions[-1]).date())
    assert Fold.from_dict(data) == fold


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_size": 0, "test_size": 5, "embargo": 0}, "train_size must be >= 1"),
        ({"train_size": 10, "test_size": 5, "embargo": -1}, "embargo must be >= 0"),
        ({"train_size": 10, "test_size": 5, "embargo": 0, "step": 3}, "never overlap"),
        ({"train_size": 10.5, "test_size": 5, "embargo": 0}, "must be an integer"),
        ({"train_size": 10, "test_size": True, "embargo": 0}, "must be an integer"),
        ({"train_size": 10, "test_size": 5, "embargo": 0, "scheme": "sliding"}, "scheme must be"),
        ({"train_size": 10, "test_size": 5, "embargo": 0, "scheme": "rolling", "min_train": 11}, "cannot exceed"),
        ({"train_size": 10, "test_size": 5, "embargo": 0, "max_folds": 0}, "max_folds must be >= 1"),
        ({"train_size": 90, "test_size": 10, "embargo": 5}, "too few for one fold"),
    ],
)
def test_invalid_arguments_raise_a_clear_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        make_folds(_sessions(100), **kwargs)


def test_unsorted_or_duplicate_sessions_are_rejected():
    s = _sessions(40)
    with pytest.raises(InputError, match="strictly increasing"):
        make_folds(s[::-1], train_size=10, test_size=5, embargo=0)
    with pytest.raises(InputError, match="strictly increasing"):
        make_folds(s.append(s[-1:]), train_size=10, test_size=5, embargo=0)
    with pytest.raises(InputError, match="empty"):
        make_folds(np.array([], dtype="datetime64[ns]"), train_size=10, test_size=5, embargo=0)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 400),
    scheme=st.sampled_from(["expanding", "rolling"]),
    train_size=st.integers(1, 150),
    test_size=st.integers(1, 60),
    embargo=st.integers(0, 20),
    extra_step=st.integers(0, 30),
    min_train_frac=st.floats(0.05, 1.0),
    max_folds=st.one_of(st.none(), st.integers(1, 10)),
)
def test_no_test_row_is_ever_inside_or_before_its_train_window_plus_embargo(
    n, scheme, train_size, test_size, embargo, extra_step, min_train_frac, max_folds
):
    min_train = max(1, int(train_size * min_train_frac))
    kwargs = {
        "scheme": scheme,
        "train_size": train_size,
        "test_size": test_size,
        "embargo": embargo,
        "step": test_size + extra_step,
        "min_train": min_train,
        "max_folds": max_folds,
    }
    sessions = _sessions(n)
    if n < min_train + embargo + test_size:
        with pytest.raises(InputError, match="too few for one fold"):
            make_folds(sessions, **kwargs)
        return
    folds = make_folds(sessions, **kwargs)
    assert folds
    if max_folds is not None:
        assert len(folds) <= max_folds
    for fold in folds:
        assert 0 <= fold.train_start_row < fold.train_stop_row
        assert fold.test_start_row - fold.train_stop_row == embargo
        assert fold.n_test == test_size
        assert fold.test_stop_row <= n
        assert fold.n_train >= min_train
        if scheme == "expanding":
            assert fold.train_start_row == 0
        else:
            assert fold.n_train <= train_size
        # the session timestamps agree with the rows: every test session after every train session + embargo
        assert fold.test_start > fold.train_end
        assert sessions.get_loc(fold.test_start) >= sessions.get_loc(fold.train_end) + 1 + embargo
    assert folds[-1].test_stop_row == n
    for a, b in itertools.pairwise(folds):
        assert a.test_stop_row <= b.test_start_row, "test windows are disjoint and increasing"
        assert b.test_start_row - a.test_start_row == test_size + extra_step
