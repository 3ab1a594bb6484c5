"""Calendars per instrument, tz-aware throughout: the NYSE ("XNYS", exchange_calendars) and the 24/7
crypto calendar (every UTC day a session, daily bars stamped 00:00 UTC). `calendar_for(symbol)` says
which one a symbol trades on.

Sessions are tz-naive dates (exchange_calendars' session labels; UTC dates for crypto); instants are
tz-aware UTC Timestamps. A naive instant is refused: exchange_calendars would silently read it as UTC, and a
New York wall-clock time read as UTC is five hours wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol, overload

import exchange_calendars as xcals
import pandas as pd

from tradeflow.domain.instruments import CalendarName
from tradeflow.errors import InputError

NEW_YORK = "America/New_York"
# exchange_calendars' default bounds are today-20y .. today+1y; tradeflow reads history from 1990
# and generates schedules a few years ahead, so the bounds are explicit.
CALENDAR_START = "1990-01-02"
CALENDAR_END = "2035-12-31"

DateLike = str | dt.date | dt.datetime | pd.Timestamp
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class MarketState(StrEnum):
    OPEN = "OPEN"
    CLOSED_NON_SESSION = "CLOSED_NON_SESSION"  # weekend, holiday or special closure
    CLOSED_PRE_OPEN = "CLOSED_PRE_OPEN"
    CLOSED_POST_CLOSE = "CLOSED_POST_CLOSE"  # includes after 13:00 ET on an early-close day


@dataclass(frozen=True)
class MarketStatus:
    """Whether the market is open at an instant, and why not."""

    now: pd.Timestamp
    state: MarketState
    session: pd.Timestamp | None  # the session of that calendar day, if the day is one
    reason: str

    @property
    def is_open(self) -> bool:
        return self.state is MarketState.OPEN

    @property
    def tick_status(self) -> str:
        """What a trading tick does at this instant: trade, or skip with SKIPPED_MARKET_CLOSED.

        Outside regular hours a market order would become market-on-open, so the tick skips.
        """
        return "OPEN" if self.is_open else "SKIPPED_MARKET_CLOSED"


@dataclass(frozen=True)
class SessionTimes:
    session: pd.Timestamp
    open: pd.Timestamp
    close: pd.Timestamp
    early_close: bool


def to_session(value: DateLike) -> pd.Timestamp:
    """A tz-naive, midnight session label from a date-like value; raises InputError when unparseable
    or outside what pandas can hold (years 1677..2262: '-1' parses as the year -1 and then overflows)."""
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("NaT")
        if ts.tzinfo is not None:
            ts = ts.tz_convert(NEW_YORK).tz_localize(None)
        return ts.normalize().as_unit("ns")
    except (ValueError, TypeError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise InputError(f"not a date: {value!r}") from exc


def to_utc(value: DateLike) -> pd.Timestamp:
    """A tz-aware UTC instant; naive input is refused (see the module docstring)."""
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("NaT")
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC")
            ts.as_unit("ns")  # only to refuse instants pandas' calendar arithmetic cannot hold
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"not a timestamp: {value!r}") from exc
    if ts.tzinfo is None:
        raise InputError(f"timestamp {value!r} has no timezone; give one (e.g. 2026-11-20T16:30-05:00)")
    return ts


@overload
def parse_date_option(option: str, value: str) -> pd.Timestamp: ...
@overload
def parse_date_option(option: str, value: None) -> None: ...
@overload
def parse_date_option(option: str, value: str | None) -> pd.Timestamp | None: ...
def parse_date_option(option: str, value: str | None) -> pd.Timestamp | None:
    """The one parser of a command's date option (--start, --end, --as-of, --session, a config's
    data.start): strictly YYYY-MM-DD, so '-1' or '2024' is refused instead of read as a year; the
    error names the option. None stays None (the option was not given)."""
    if value is None:
        return None
    problem = InputError(f"{option}: not a date: {value!r} (expected YYYY-MM-DD)")
    if not _ISO_DATE.fullmatch(value):
        raise problem
    try:
        return to_session(dt.date.fromisoformat(value))
    except (ValueError, InputError):
        raise problem from None


class MarketCalendar:
    """NYSE sessions, opening hours (early closes and special closures included) and their arithmetic."""

    name = CalendarName.XNYS

    def __init__(self, start: DateLike = CALENDAR_START, end: DateLike = CALENDAR_END) -> None:
        self._cal: Any = xcals.get_calendar("XNYS", start=to_session(start), end=to_session(end))
        self._early: frozenset[pd.Timestamp] = frozenset(self._cal.early_closes)

    @property
    def first_session(self) -> pd.Timestamp:
        return pd.Timestamp(self._cal.first_session)

    @property
    def last_session(self) -> pd.Timestamp:
        return pd.Timestamp(self._cal.last_session)

    def _clip(self, session: pd.Timestamp) -> pd.Timestamp:
        if session < self.first_session or session > self.last_session:
            raise InputError(
                f"{session.date()} is outside the calendar ({self.first_session.date()} .. {self.last_session.date()})"
            )
        return session

    def sessions(self, start: DateLike, end: DateLike) -> pd.DatetimeIndex:
        """NYSE sessions from start to end inclusive (empty when end < start)."""
        lo, hi = to_session(start), to_session(end)
        lo, hi = max(lo, self.first_session), min(hi, self.last_session)
        if hi < lo:
            return pd.DatetimeIndex([], dtype="datetime64[ns]")
        return pd.DatetimeIndex(self._cal.sessions_in_range(lo, hi)).as_unit("ns")

    def is_session(self, day: DateLike) -> bool:
        return bool(self._cal.is_session(self._clip(to_session(day))))

    def session_open(self, session: DateLike) -> pd.Timestamp:
        return pd.Timestamp(self._cal.session_open(self._clip(to_session(session)))).tz_convert("UTC")

    def session_close(self, session: DateLike) -> pd.Timestamp:
        return pd.Timestamp(self._cal.session_close(self._clip(to_session(session)))).tz_convert("UTC")

    def is_early_close(self, session: DateLike) -> bool:
        return to_session(session) in self._early

    def session_times(self, start: DateLike, end: DateLike) -> list[SessionTimes]:
        out = []
        for s in self.sessions(start, end):
            out.append(SessionTimes(s, self.session_open(s), self.session_close(s), s in self._early))
        return out

    def status(self, now: DateLike) -> MarketStatus:
        """Open or closed at `now`, with the reason: the gate every trading tick passes first."""
        ts = to_utc(now)
        day = to_session(ts)  # the New York calendar day of the instant
        if not self.is_session(day):
            kind = "weekend" if day.day_of_week >= 5 else "holiday or special closure"
            return MarketStatus(ts, MarketState.CLOSED_NON_SESSION, None, f"{day.date()} is not a session ({kind})")
        opens, closes = self.session_open(day), self.session_close(day)
        if ts < opens:
            return MarketStatus(
                ts,
                MarketState.CLOSED_PRE_OPEN,
                day,
                f"before the open at {opens.tz_convert(NEW_YORK):%H:%M} ET",
            )
        if ts >= closes:
            early = " (early close)" if self.is_early_close(day) else ""
            return MarketStatus(
                ts,
                MarketState.CLOSED_POST_CLOSE,
                day,
                f"after the close at {closes.tz_convert(NEW_YORK):%H:%M} ET{early}",
            )
        return MarketStatus(ts, MarketState.OPEN, day, "regular trading hours")

    def is_open(self, now: DateLike) -> bool:
        return self.status(now).is_open

    def last_completed_session(self, now: DateLike) -> pd.Timestamp:
        """The latest session whose close is at or before `now` (its daily bar is final)."""
        ts = to_utc(now)
        day = to_session(ts)
        if self.is_session(day) and self.session_close(day) <= ts:
            return day
        return self.previous_session(day)

    def previous_session(self, day: DateLike) -> pd.Timestamp:
        """The last session strictly before `day`."""
        d = self._clip(to_session(day))
        return pd.Timestamp(self._cal.date_to_session(d - pd.Timedelta(days=1), direction="previous"))

    def next_session(self, day: DateLike) -> pd.Timestamp:
        """The first session strictly after `day`."""
        d = self._clip(to_session(day))
        return pd.Timestamp(self._cal.date_to_session(d + pd.Timedelta(days=1), direction="next"))

    def next_open(self, now: DateLike) -> pd.Timestamp:
        """The next opening bell strictly after `now` (UTC)."""
        return pd.Timestamp(self._cal.next_open(to_utc(now))).tz_convert("UTC")

    def check_covered(self, start: DateLike, end: DateLike) -> None:
        """Refuse a range reaching beyond the calendar: outside it `sessions` is empty and every
        weekday would read as a holiday."""
        lo, hi = to_session(start), to_session(end)
        if lo < self.first_session or hi > self.last_session:
            raise InputError(
                f"the NYSE calendar covers {self.first_session.date()} .. {self.last_session.date()}; "
                f"{lo.date()} .. {hi.date()} reaches outside it"
            )

    def holidays(self, start: DateLike, end: DateLike) -> list[pd.Timestamp]:
        """Weekdays in the range that are not sessions (holidays and special closures)."""
        days = pd.bdate_range(to_session(start), to_session(end))
        sessions = self.sessions(start, end)
        return [d for d in days if d not in sessions]


class TradingCalendar(Protocol):
    """What the gate, ingest and the CLI ask of a calendar: MarketCalendar (XNYS) and AlwaysCalendar."""

    @property
    def name(self) -> CalendarName: ...
    @property
    def first_session(self) -> pd.Timestamp: ...
    @property
    def last_session(self) -> pd.Timestamp: ...
    def sessions(self, start: DateLike, end: DateLike) -> pd.DatetimeIndex: ...
    def is_session(self, day: DateLike) -> bool: ...
    def session_times(self, start: DateLike, end: DateLike) -> list[SessionTimes]: ...
    def status(self, now: DateLike) -> MarketStatus: ...
    def last_completed_session(self, now: DateLike) -> pd.Timestamp: ...
    def previous_session(self, day: DateLike) -> pd.Timestamp: ...
    def next_session(self, day: DateLike) -> pd.Timestamp: ...
    def check_covered(self, start: DateLike, end: DateLike) -> None: ...
    def holidays(self, start: DateLike, end: DateLike) -> list[pd.Timestamp]: ...


def _utc_day(value: DateLike) -> pd.Timestamp:
    """The UTC calendar day of a date-like value, as a tz-naive midnight label.

    Unlike to_session, an aware instant is read in UTC, not New York: a crypto day runs 00:00-24:00 UTC.
    """
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("NaT")
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.normalize().as_unit("ns")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"not a date: {value!r}") from exc


class AlwaysCalendar:
    """Crypto's calendar: every UTC day is a session from 00:00 to 24:00 UTC, with no holidays.

    The daily bar of day D is stamped D 00:00 UTC and is final at D+1 00:00 UTC, so the last completed
    session at `now` is the UTC day before now's. The bounds match MarketCalendar's, so a range the
    NYSE calendar refuses is refused here too.
    """

    name = CalendarName.ALWAYS

    def __init__(self, start: DateLike = CALENDAR_START, end: DateLike = CALENDAR_END) -> None:
        self._first, self._last = _utc_day(start), _utc_day(end)

    @property
    def first_session(self) -> pd.Timestamp:
        return self._first

    @property
    def last_session(self) -> pd.Timestamp:
        return self._last

    def _clip(self, day: pd.Timestamp) -> pd.Timestamp:
        if day < self._first or day > self._last:
            raise InputError(f"{day.date()} is outside the calendar ({self._first.date()} .. {self._last.date()})")
        return day

    def sessions(self, start: DateLike, end: DateLike) -> pd.DatetimeIndex:
        lo, hi = max(_utc_day(start), self._first), min(_utc_day(end), self._last)
        if hi < lo:
            return pd.DatetimeIndex([], dtype="datetime64[ns]")
        return pd.date_range(lo, hi, freq="D").as_unit("ns")

    def is_session(self, day: DateLike) -> bool:
        self._clip(_utc_day(day))
        return True

    def session_open(self, session: DateLike) -> pd.Timestamp:
        return self._clip(_utc_day(session)).tz_localize("UTC")

    def session_close(self, session: DateLike) -> pd.Timestamp:
        return self.session_open(session) + pd.Timedelta(days=1)

    def is_early_close(self, session: DateLike) -> bool:
        return False

    def session_times(self, start: DateLike, end: DateLike) -> list[SessionTimes]:
        return [SessionTimes(s, self.session_open(s), self.session_close(s), False) for s in self.sessions(start, end)]

    def status(self, now: DateLike) -> MarketStatus:
        ts = to_utc(now)
        day = self._clip(_utc_day(ts))
        return MarketStatus(ts, MarketState.OPEN, day, "crypto trades every day, around the clock")

    def is_open(self, now: DateLike) -> bool:
        return self.status(now).is_open

    def last_completed_session(self, now: DateLike) -> pd.Timestamp:
        """The UTC day before `now`'s: today's bar is still forming until 00:00 UTC tomorrow."""
        return self.previous_session(_utc_day(to_utc(now)))

    def previous_session(self, day: DateLike) -> pd.Timestamp:
        return self._clip(_utc_day(day)) - pd.Timedelta(days=1)

    def next_session(self, day: DateLike) -> pd.Timestamp:
        return self._clip(_utc_day(day)) + pd.Timedelta(days=1)

    def check_covered(self, start: DateLike, end: DateLike) -> None:
        lo, hi = _utc_day(start), _utc_day(end)
        if lo < self._first or hi > self._last:
            raise InputError(
                f"the 24/7 calendar covers {self._first.date()} .. {self._last.date()}; "
                f"{lo.date()} .. {hi.date()} reaches outside it"
            )

    def holidays(self, start: DateLike, end: DateLike) -> list[pd.Timestamp]:
        return []  # crypto never closes


def is_crypto_symbol(symbol: str) -> bool:
    """Crypto pairs are written BASE/QUOTE (BTC/USD, ETH/USD), Alpaca's spelling; no equity has a '/'."""
    return "/" in symbol


def calendar_name_for(symbol: str) -> CalendarName:
    return CalendarName.ALWAYS if is_crypto_symbol(symbol) else CalendarName.XNYS


@lru_cache(maxsize=1)
def always_calendar() -> AlwaysCalendar:
    return AlwaysCalendar()


def calendar_for(symbol: str) -> TradingCalendar:
    """The calendar `symbol` trades on: the 24/7 one for crypto pairs, the NYSE for everything else."""
    if calendar_name_for(symbol) is CalendarName.ALWAYS:
        return always_calendar()
    return default_calendar()


def resolve_calendar(symbol: str, nyse: TradingCalendar) -> TradingCalendar:
    """calendar_for with an injected NYSE calendar (tests and callers pass their own bounds)."""
    return always_calendar() if is_crypto_symbol(symbol) else nyse


def calendar_for_symbols(symbols: Iterable[str], default: TradingCalendar | None = None) -> TradingCalendar:
    """The one calendar a set of symbols shares (`default` stands for the NYSE one); a mix of crypto
    and equities has none: their last completed sessions differ, so they are ingested separately."""
    names = {calendar_name_for(s) for s in symbols}
    if names == {CalendarName.ALWAYS}:
        return always_calendar()
    if CalendarName.ALWAYS in names:
        crypto = sorted(s for s in symbols if is_crypto_symbol(s))
        raise InputError(
            f"crypto ({', '.join(crypto)}) trades on a 24/7 calendar and equities on the NYSE's: "
            "give them in separate commands"
        )
    return default if default is not None else default_calendar()


@lru_cache(maxsize=1)
def default_calendar() -> MarketCalendar:
    """One shared calendar per process: building it takes a few hundred milliseconds."""
    return MarketCalendar()
