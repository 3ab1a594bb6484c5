"""NYSE calendar behaviour, including RELIABILITY.md C1-C4 (calendar and time)."""

from __future__ import annotations

import pandas as pd
import pytest

from tradeflow.calendar import MarketState, default_calendar, parse_date_option, to_session, to_utc
from tradeflow.errors import InputError

NY = "America/New_York"


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NY)


@pytest.fixture(scope="module")
def cal():
    return default_calendar()


@pytest.mark.parametrize(
    ("instant", "why"),
    [
        ("2025-07-04 11:00", "Independence Day"),
        ("2025-04-18 11:00", "Good Friday"),
        ("2025-06-19 11:00", "Juneteenth"),
        ("2025-07-05 11:00", "Saturday"),
        ("2025-07-06 11:00", "Sunday"),
        ("2025-11-28 13:05", "after the 13:00 early close"),
        ("2025-11-28 15:30", "after the 13:00 early close"),
    ],
)
def test_c1_tick_on_holiday_weekend_or_after_early_close_is_skipped(cal, instant, why):
    status = cal.status(ny(instant))
    assert status.tick_status == "SKIPPED_MARKET_CLOSED", why
    assert not cal.is_open(ny(instant))


def test_c1_early_close_day_is_open_before_13_et(cal):
    assert cal.status(ny("2025-11-28 12:59")).tick_status == "OPEN"
    assert cal.is_early_close("2025-11-28")
    assert cal.session_close("2025-11-28") == ny("2025-11-28 13:00").tz_convert("UTC")


@pytest.mark.parametrize("day", ["2018-12-05", "2025-01-09"])
def test_c2_special_closures_missed_by_weekday_logic_are_skipped(cal, day, real_data):
    assert pd.Timestamp(day).day_of_week < 5  # a weekday: weekday logic alone would trade
    status = cal.status(ny(f"{day} 11:00"))
    assert status.state is MarketState.CLOSED_NON_SESSION
    assert status.tick_status == "SKIPPED_MARKET_CLOSED"
    if day == "2018-12-05":
        dates = pd.read_csv(real_data / "SPY.csv", usecols=["Date"])["Date"]
        assert day not in set(dates), "cross-check: SPY.csv has no row for the Bush closure"


@pytest.mark.parametrize("instant", ["2025-11-24 16:20", "2025-11-24 07:45", "2025-11-24 09:29:59", "2025-11-24 16:00"])
def test_c3_tick_outside_regular_hours_is_skipped(cal, instant):
    status = cal.status(ny(instant))
    assert status.state in (MarketState.CLOSED_PRE_OPEN, MarketState.CLOSED_POST_CLOSE)
    assert status.tick_status == "SKIPPED_MARKET_CLOSED"


@pytest.mark.parametrize("dst_sunday", ["2025-03-09", "2025-11-02"])
def test_c4_dst_transitions_no_tick_before_0930_or_after_1600_et(cal, dst_sunday):
    """A scheduler stepping in UTC across the DST weekend: open exactly 09:30-16:00 New York time."""
    sunday = pd.Timestamp(dst_sunday)
    for day in (sunday, sunday + pd.Timedelta(days=1)):  # the change itself, then the first session
        instants = pd.date_range(
            pd.Timestamp(day, tz="UTC"), pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1, hours=6), freq="5min"
        )
        open_local = [t.tz_convert(NY) for t in instants if cal.is_open(t)]
        if day == sunday:
            assert open_local == []
            continue
        assert open_local, "the Monday after the change is a session"
        assert min(open_local).strftime("%H:%M") == "09:30"
        assert max(open_local).strftime("%H:%M") == "15:55"
        assert all(t.date() == day.date() for t in open_local)


def test_sessions_are_naive_dates_and_instants_are_utc(cal):
    sessions = cal.sessions("2026-11-20", "2026-11-30")
    assert sessions.tz is None
    assert [str(d.date()) for d in sessions] == [
        "2026-11-20",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
    ]
    assert cal.session_open("2026-11-27").tzname() == "UTC"
    assert str(cal.next_open(ny("2026-11-25 17:00"))) == "2026-11-27 14:30:00+00:00"


def test_last_completed_session_waits_for_the_close(cal):
    assert cal.last_completed_session(ny("2026-11-20 15:59")) == pd.Timestamp("2026-11-19")
    assert cal.last_completed_session(ny("2026-11-20 16:00")) == pd.Timestamp("2026-11-20")
    assert cal.last_completed_session(ny("2026-11-22 12:00")) == pd.Timestamp("2026-11-20")
    # Thanksgiving: the last completed session stays Wednesday's.
    assert cal.last_completed_session(ny("2026-11-26 20:00")) == pd.Timestamp("2026-11-25")


def test_naive_instants_are_refused_rather_than_read_as_utc():
    with pytest.raises(InputError, match="no timezone"):
        to_utc("2026-11-20 10:00")


def test_dates_outside_the_calendar_raise_a_clear_error(cal):
    with pytest.raises(InputError, match="outside the calendar"):
        cal.is_session("2099-01-02")


def test_holidays_list_weekday_closures(cal):
    assert [str(d.date()) for d in cal.holidays("2026-11-01", "2026-12-31")] == ["2026-11-26", "2026-12-25"]


@pytest.mark.parametrize("value", ["-1", "-5", "1500-01-01", "0001-01-01"])
def test_dates_pandas_cannot_hold_are_an_input_error_not_an_overflow(value):
    with pytest.raises(InputError, match="not a date"):
        to_session(value)


def test_a_date_option_is_parsed_strictly_and_its_error_names_the_option():
    assert parse_date_option("--start", "2024-01-05") == pd.Timestamp("2024-01-05")
    assert parse_date_option("--start", None) is None
    for bad in ("-1", "yesterday", "2024-13-45", "2024-01-05T10:00"):
        with pytest.raises(InputError, match=r"^--start: not a date: .* \(expected YYYY-MM-DD\)$"):
            parse_date_option("--start", bad)


def test_ranges_the_calendar_does_not_cover_are_refused_naming_the_covered_range(cal):
    cal.check_covered("1990-01-02", "2035-12-31")  # the whole covered range is fine
    for lo, hi in (("1980-01-01", "1980-02-01"), ("1989-12-01", "1990-02-01"), ("2035-12-01", "2040-01-01")):
        with pytest.raises(InputError, match=r"covers 1990-01-02 \.\. 2035-12-31"):
            cal.check_covered(lo, hi)
