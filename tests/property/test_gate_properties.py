"""Property: each fault mutator, applied anywhere in a real SPY slice, is rejected; the untouched slice passes.

The slice is two real years (2015-2016, 504 sessions). Mutators: an unadjusted split jump, a NaN, a
duplicated date, and a frozen stretch of repeated closes (a stale feed).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import MarketCalendar
from tradeflow.data.quality import GateContext, QualityReport, gx_layer, run_gate
from tradeflow.data.quality.known_events import find_expectations_dir

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
PRICES = ["open", "high", "low", "close", "adj_close"]
SPLIT_FACTORS = [2.0, 3.0, 4.0, 10.0, 1 / 2, 1 / 3, 1 / 4, 1 / 10]
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@lru_cache(maxsize=1)
def calendar() -> MarketCalendar:
    return MarketCalendar()


@lru_cache(maxsize=1)
def spy_slice() -> pd.DataFrame:
    frame = read_bar_file(REAL / "SPY.csv", "SPY", calendar())
    return frame.loc[frame["session"].between("2015-01-02", "2016-12-30")].reset_index(drop=True)


N = 504


@pytest.fixture(scope="module", autouse=True)
def warm(real_data: Path) -> None:
    assert len(spy_slice()) == N
    gx_layer.warm_up(find_expectations_dir())


def gate(frame: pd.DataFrame) -> QualityReport:
    return run_gate(frame, GateContext(calendar(), as_of=pd.Timestamp("2016-12-30"), symbols=("SPY",)))


def day(i: int) -> str:
    return spy_slice()["session"][i].date().isoformat()


def test_untouched_slice_passes():
    report = gate(spy_slice().copy())
    assert report.passed, report.to_markdown()


@FAST
@given(pos=st.integers(1, N - 1), factor=st.sampled_from(SPLIT_FACTORS))
def test_split_jump_anywhere_is_rejected_at_that_session(pos, factor):
    frame = spy_slice().copy()
    frame.loc[: pos - 1, PRICES] *= factor  # history before `pos` left unadjusted
    report = gate(frame)
    assert not report.passed
    assert {f.check for f in report.failures if f.session == day(pos)} & {"split_like", "return_outlier"}


@FAST
@given(pos=st.integers(0, N - 1), column=st.sampled_from([*PRICES, "volume"]))
def test_nan_anywhere_is_rejected_as_a_null_on_that_session(pos, column):
    frame = spy_slice().copy()
    frame.loc[pos, column] = np.nan
    report = gate(frame)
    assert not report.passed
    assert ("null_value", "SPY", day(pos)) in {(f.check, f.symbol, f.session) for f in report.failures}


@FAST
@given(pos=st.integers(0, N - 1))
def test_duplicated_date_anywhere_is_rejected(pos):
    frame = spy_slice()
    frame = pd.concat([frame.iloc[: pos + 1], frame.iloc[[pos]], frame.iloc[pos + 1 :]], ignore_index=True)
    report = gate(frame)
    assert not report.passed
    assert ("duplicate_session", "SPY", day(pos)) in {(f.check, f.symbol, f.session) for f in report.failures}


@FAST
@given(data=st.data(), length=st.integers(5, 40))
def test_frozen_stretch_of_repeated_closes_anywhere_is_rejected(data, length):
    start = data.draw(st.integers(1, N - length + 1), label="start")
    frame = spy_slice().copy()
    frozen = frame.loc[start - 1, "close"]
    rows = frame.index[start : start + length - 1]  # with the bar before, `length` identical closes
    frame.loc[rows, ["open", "high", "low", "close", "adj_close"]] = frozen
    report = gate(frame)
    assert not report.passed
    assert "stale_close_run" in {f.check for f in report.failures}
