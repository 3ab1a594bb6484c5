"""The known-events allow-list: what it excuses, what it never excuses, and that every entry is needed."""

from __future__ import annotations

import json

import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import MarketCalendar
from tradeflow.data.quality import GateContext, KnownEvents, gx_layer, run_gate
from tradeflow.data.quality.known_events import KNOWN_EVENTS_FILE, find_expectations_dir
from tradeflow.data.quality.report import Failure
from tradeflow.errors import ConfigError

REPO_EVENTS = find_expectations_dir() / KNOWN_EVENTS_FILE
FILES = {"SPY": "SPY.csv", "AAPL": "AAPL.csv", "MSFT": "MSFT.csv", "^VIX": "VIX.csv"}


def fail(check: str = "split_like", symbol: str | None = "AAPL", session: str | None = "2000-09-29") -> Failure:
    return Failure(check, "consistency", symbol, session, "ratio 0.4813", 0.4813)


EVENTS = KnownEvents.from_records(
    [{"symbol": "aapl", "session": "2000-09-29", "checks": ["split_like"], "reason": "profit warning"}]
)


def test_a_listed_check_on_the_listed_day_is_excused_with_its_reason():
    kept, allowed = EVENTS.partition([fail()])
    assert kept == []
    assert [f.allowed_by for f in allowed] == ["profit warning"]


@pytest.mark.parametrize(
    "other",
    [
        fail(check="return_outlier"),  # a different check
        fail(session="2000-09-28"),  # a different day
        fail(symbol="MSFT"),  # a different symbol
        fail(symbol=None, session=None),  # frame-level failures are never excused
    ],
)
def test_anything_else_is_kept(other):
    kept, allowed = EVENTS.partition([other])
    assert kept == [other]
    assert allowed == []


@pytest.mark.parametrize(
    "record",
    [
        {"symbol": "AAPL", "session": "2000-09-29", "checks": [], "reason": "x"},
        {"symbol": "AAPL", "session": "2000-09-29", "checks": ["split_like"], "reason": " "},
        {"symbol": "AAPL", "session": "not a date", "checks": ["split_like"], "reason": "x"},
        {"symbol": "AAPL", "checks": ["split_like"], "reason": "x"},
    ],
)
def test_malformed_entries_are_refused(record):
    with pytest.raises(ConfigError):
        KnownEvents.from_records([record])


def test_load_reads_the_file_and_refuses_a_missing_or_malformed_one(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": [e.to_dict() for e in EVENTS.events]}))
    assert KnownEvents.load(path).events == EVENTS.events
    with pytest.raises(ConfigError, match="not found"):
        KnownEvents.load(tmp_path / "absent.json")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="events"):
        KnownEvents.load(path)


def test_load_without_a_path_reads_the_repository_file():
    assert KnownEvents.load(None).events == KnownEvents.load(REPO_EVENTS).events
    assert len(KnownEvents.load(None)) >= 1


def test_gate_context_loads_the_repository_allow_list_by_default():
    ctx = GateContext(MarketCalendar())
    assert ctx.allow_list.events == KnownEvents.load(REPO_EVENTS).events


@pytest.fixture(scope="module")
def full_calendar() -> MarketCalendar:
    return MarketCalendar(start="1980-01-02")


@pytest.mark.parametrize("event", KnownEvents.load(REPO_EVENTS).events, ids=lambda e: f"{e.symbol}-{e.session}")
def test_every_allow_list_entry_is_needed_by_a_real_file(event, real_data, full_calendar):
    """Without the entry, the untouched real file fails exactly the excused checks on that day."""
    gx_layer.warm_up(find_expectations_dir())
    frame = read_bar_file(real_data / FILES[event.symbol], event.symbol, full_calendar)
    ctx = GateContext(full_calendar, as_of=frame["session"].max(), known_events=KnownEvents.empty())
    report = run_gate(frame, ctx)
    on_the_day = {f.check for f in report.failures if (f.symbol, f.session) == (event.symbol, event.session)}
    assert on_the_day == set(event.checks)
