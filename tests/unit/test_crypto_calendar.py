"""The 24/7 crypto calendar beside the NYSE one, the symbol -> calendar rule, and crypto symbols."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tradeflow.calendar import AlwaysCalendar, always_calendar, calendar_for, calendar_for_symbols, default_calendar
from tradeflow.cli import EXIT_INPUT, EXIT_OK, main
from tradeflow.data.bars import check_symbol, parse_symbols
from tradeflow.data.store import symbol_dir_name
from tradeflow.domain.instruments import CalendarName
from tradeflow.errors import InputError


def test_every_day_of_a_month_with_weekends_and_us_holidays_is_a_crypto_session():
    cal = AlwaysCalendar()
    days = cal.sessions("2024-12-20", "2025-01-05")
    assert list(days) == list(pd.date_range("2024-12-20", "2025-01-05", freq="D"))
    for day in ("2024-12-21", "2024-12-25", "2025-01-01"):  # Saturday, Christmas, New Year
        assert cal.is_session(day)
        assert not default_calendar().is_session(day)
    assert cal.holidays("2024-12-20", "2025-01-05") == []


def test_crypto_daily_bar_runs_from_0000_utc_to_the_next_0000_utc():
    cal = AlwaysCalendar()
    (times,) = cal.session_times("2024-12-25", "2024-12-25")
    assert times.open == pd.Timestamp("2024-12-25T00:00Z")
    assert times.close == pd.Timestamp("2024-12-26T00:00Z")
    assert not times.early_close


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-12-25T00:00:00Z", "2024-12-24"),  # the 24th's bar just closed
        ("2024-12-25T23:59:59Z", "2024-12-24"),  # the 25th's is still forming
        ("2024-12-24T20:30:00-05:00", "2024-12-24"),  # 01:30 UTC on the 25th: New York's date is not the rule
        ("2024-12-29T12:00:00Z", "2024-12-28"),  # a Sunday: Saturday's bar is final
    ],
)
def test_last_completed_crypto_session_is_the_previous_utc_day(now, expected):
    assert AlwaysCalendar().last_completed_session(pd.Timestamp(now)) == pd.Timestamp(expected)


def test_crypto_market_is_open_on_a_sunday_night_when_the_nyse_is_closed():
    sunday = pd.Timestamp("2024-12-29T23:00Z")
    assert always_calendar().is_open(sunday)
    assert not default_calendar().is_open(sunday)


def test_symbols_with_a_slash_trade_on_the_24_7_calendar_and_the_rest_on_the_nyse():
    assert calendar_for("BTC/USD").name is CalendarName.ALWAYS
    assert calendar_for("ETH/USD").name is CalendarName.ALWAYS
    assert calendar_for("SPY").name is CalendarName.XNYS
    assert calendar_for("^VIX").name is CalendarName.XNYS


def test_a_mix_of_crypto_and_equities_has_no_one_calendar():
    assert calendar_for_symbols(["BTC/USD", "ETH/USD"]).name is CalendarName.ALWAYS
    assert calendar_for_symbols(["SPY", "^VIX"]).name is CalendarName.XNYS
    with pytest.raises(InputError, match="separate commands"):
        calendar_for_symbols(["SPY", "BTC/USD"])


def test_crypto_pairs_are_valid_symbols_and_get_a_directory_name_without_a_slash():
    assert check_symbol("btc/usd") == "BTC/USD"
    assert parse_symbols("BTC/USD,ETH/USD") == ["BTC/USD", "ETH/USD"]
    assert symbol_dir_name("BTC/USD") == "BTC_USD"
    assert "/" not in symbol_dir_name("ETH/USD")
    for bad in ("BTC/", "/USD", "BTC/USD/EUR", "BTC//USD", "../USD"):
        with pytest.raises(InputError):
            check_symbol(bad)


def test_calendar_command_lists_every_day_for_a_crypto_symbol(capsys):
    code = main(["calendar", "--symbol", "BTC/USD", "--start", "2024-12-20", "--end", "2025-01-05", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert payload["calendar"] == "24/7"
    assert len(payload["sessions"]) == 17
    assert payload["sessions"][5] == {
        "session": "2024-12-25",
        "open": "2024-12-25T00:00:00+00:00",
        "close": "2024-12-26T00:00:00+00:00",
        "early_close": False,
    }
    assert payload["closed_weekdays"] == []


def test_calendar_command_for_an_equity_symbol_is_the_nyse_one(capsys):
    code = main(["calendar", "--symbol", "SPY", "--start", "2024-12-20", "--end", "2025-01-05", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert payload["calendar"] == "XNYS"
    assert "2024-12-25" in payload["closed_weekdays"]


def test_calendar_command_refuses_a_malformed_symbol_in_one_line(capsys):
    code = main(["calendar", "--symbol", "BTC/US;D", "--start", "2024-12-20", "--end", "2024-12-21"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    assert err.strip().count("\n") == 0
    assert "not a valid symbol" in err
