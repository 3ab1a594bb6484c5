"""The IB adapter: bar translation, contracts, the requests it makes, threads and event loops, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.recorded.replay import IBReplay, ib_bars, load_json
from tradeflow.adapters.ib.data import (
    IBSource,
    classify_ib_error,
    duration_for,
    ib_bars_to_frame,
)
from tradeflow.adapters.ib.parsing import make_contract
from tradeflow.config import IBSettings
from tradeflow.data.bars import BAR_COLUMNS
from tradeflow.data.sources.base import fetch_with_retry
from tradeflow.errors import EmptyDataError, SourceError, TransientSourceError, UnknownSymbolError

START, END = pd.Timestamp("2023-12-14"), pd.Timestamp("2024-01-04")
SESSIONS_IN_RANGE = 14
REFUSED = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4002)")


def _request_error(code: int, message: str) -> Exception:
    from ib_async.wrapper import RequestError

    return RequestError(7, code, message)


def test_bar_data_maps_to_bar_columns_with_adj_close_from_adjusted_last() -> None:
    frame = ib_bars_to_frame(ib_bars("SPY_TRADES_1day"), ib_bars("SPY_ADJUSTED_LAST_1day"), "SPY", index=False)
    assert tuple(frame.columns) == BAR_COLUMNS
    row = frame.set_index("session").loc[pd.Timestamp("2023-12-14")]
    assert (row["open"], row["close"], row["volume"]) == (472.5, 472.01, 119026000.0)
    assert row["adj_close"] == pytest.approx(470.104)


def test_wire_dicts_with_yyyymmdd_dates_translate_like_bar_data() -> None:
    wire = load_json("ib/SPY_TRADES_1day.json")
    pd.testing.assert_frame_equal(
        ib_bars_to_frame(wire, None, "SPY", index=False),
        ib_bars_to_frame(ib_bars("SPY_TRADES_1day"), None, "SPY", index=False),
    )


def test_aware_bar_datetimes_land_on_the_new_york_session() -> None:
    bar = {
        "date": dt.datetime(2024, 1, 2, 21, 0, tzinfo=dt.UTC),
        "open": 1,
        "high": 2,
        "low": 0.5,
        "close": 1.5,
        "volume": 10,
    }
    assert ib_bars_to_frame([bar], None, "SPY", index=False)["session"].iloc[0] == pd.Timestamp("2024-01-02")


def test_index_volume_sentinel_becomes_zero_and_adj_close_is_the_close() -> None:
    frame = ib_bars_to_frame(ib_bars("VIX_TRADES_1day"), None, "^VIX", index=True)
    assert (frame["volume"] == 0.0).all()
    assert (frame["adj_close"] == frame["close"]).all()


def test_stock_volume_sentinel_is_missing_data_for_the_gate() -> None:
    bars = ib_bars("SPY_TRADES_1day")
    bars[0].volume = -1
    frame = ib_bars_to_frame(bars, None, "SPY", index=False)
    assert np.isnan(frame["volume"].iloc[0])
    assert frame["adj_close"].isna().all()  # no ADJUSTED_LAST answer: not known, not guessed


def test_contracts_vix_is_a_cboe_index_and_stocks_route_smart_in_usd() -> None:
    vix, spy, brk = make_contract("^VIX"), make_contract("SPY"), make_contract("BRK-B")
    assert (vix.secType, vix.symbol, vix.exchange, vix.currency) == ("IND", "VIX", "CBOE", "USD")
    assert (spy.secType, spy.symbol, spy.exchange, spy.currency) == ("STK", "SPY", "SMART", "USD")
    assert brk.symbol == "BRK B"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-02", "2024-01-02", "1 D"),
        ("2023-12-14", "2024-01-04", "22 D"),
        ("2023-01-05", "2024-01-04", "365 D"),
        ("2023-01-04", "2024-01-04", "2 Y"),
        ("2005-01-03", "2024-01-04", "20 Y"),
    ],
)
def test_duration_reaches_back_to_start_in_days_then_years(start: str, end: str, expected: str) -> None:
    assert duration_for(pd.Timestamp(start), pd.Timestamp(end)) == expected


def test_fetch_asks_trades_up_to_the_end_session_and_adjusted_last_up_to_server_time() -> None:
    replay = IBReplay()
    frame = IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)
    trades, adjusted = replay.history_requests
    assert trades["whatToShow"] == "TRADES"
    assert trades["endDateTime"] == dt.datetime(2024, 1, 4, 23, 59, 59, tzinfo=trades["endDateTime"].tzinfo)
    assert pd.Timestamp(trades["endDateTime"]).tz_convert("America/New_York").hour == 23
    assert (trades["durationStr"], trades["barSizeSetting"], trades["useRTH"]) == ("22 D", "1 day", True)
    assert (adjusted["whatToShow"], adjusted["endDateTime"]) == ("ADJUSTED_LAST", "")
    assert adjusted["durationStr"] == "42 D"  # 2023-12-14 .. the server's 2024-01-24
    assert len(frame) == SESSIONS_IN_RANGE


def test_connects_read_only_with_the_configured_address_and_client_id() -> None:
    replay = IBReplay()
    settings = IBSettings(host="10.0.0.5", port=7497, client_id=42, timeout_s=3.0)
    IBSource(settings, ib_factory=replay).fetch("SPY", START, END)
    assert replay.instances[0].connect_args == {
        "host": "10.0.0.5",
        "port": 7497,
        "clientId": 42,
        "timeout": 3.0,
        "readonly": True,
    }


def test_vix_fetch_uses_the_index_contract_and_no_adjusted_request() -> None:
    replay = IBReplay()
    frame = IBSource(IBSettings(), ib_factory=replay).fetch("^VIX", START, END)
    assert [(r["secType"], r["symbol"], r["whatToShow"]) for r in replay.history_requests] == [("IND", "VIX", "TRADES")]
    assert (frame["symbol"] == "^VIX").all()
    assert (frame["volume"] == 0.0).all()


def test_fetch_works_from_a_worker_thread() -> None:
    replay = IBReplay()
    source = IBSource(IBSettings(), ib_factory=replay)
    with ThreadPoolExecutor(max_workers=2) as pool:
        frames = list(pool.map(lambda _: source.fetch("SPY", START, END), range(2)))
    assert [len(f) for f in frames] == [SESSIONS_IN_RANGE, SESSIONS_IN_RANGE]


def test_fetch_works_from_a_plain_thread_without_an_event_loop() -> None:
    replay = IBReplay()
    out: dict[str, object] = {}

    def work() -> None:
        try:
            out["frame"] = IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)
        except BaseException as exc:  # surfaced below: an assertion in a thread would be lost
            out["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert "error" not in out, out.get("error")
    assert len(out["frame"]) == SESSIONS_IN_RANGE  # type: ignore[arg-type]


def test_fetch_works_inside_a_running_event_loop_and_leaves_it_alone() -> None:
    replay = IBReplay()
    source = IBSource(IBSettings(), ib_factory=replay)

    async def caller() -> tuple[pd.DataFrame, asyncio.AbstractEventLoop]:
        # ib_async's blocking calls alone would fail here: "This event loop is already running".
        return source.fetch("SPY", START, END), asyncio.get_running_loop()

    frame, caller_loop = asyncio.run(caller())
    assert len(frame) == SESSIONS_IN_RANGE
    used = replay.instances[0].loops
    assert used
    assert all(loop is not caller_loop for loop in used)


def test_the_private_event_loop_is_closed_after_each_fetch() -> None:
    replay = IBReplay()
    IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)
    loops = {id(loop): loop for loop in replay.instances[0].loops}
    assert len(loops) == 1
    assert all(loop.is_closed() for loop in loops.values())


def test_disconnects_after_success_and_after_each_kind_of_failure() -> None:
    replay = IBReplay().fail_connect_with(REFUSED)
    source = IBSource(IBSettings(), ib_factory=replay)
    with pytest.raises(TransientSourceError):
        source.fetch("SPY", START, END)
    with pytest.raises(UnknownSymbolError):
        source.fetch("ZZZZ", START, END)
    with pytest.raises(EmptyDataError):
        source.fetch("SPY", pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-08"))
    source.fetch("SPY", START, END)
    assert [ib.disconnect_calls for ib in replay.instances] == [1, 1, 1, 1]


def test_ib_connection_refused_is_transient_and_retried() -> None:
    replay = IBReplay().fail_connect_with(REFUSED)
    sleeps: list[float] = []
    frame = fetch_with_retry(IBSource(IBSettings(), ib_factory=replay), "SPY", START, END, sleep=sleeps.append)
    assert replay.connects == 2
    assert sleeps == [1.0]
    assert len(frame) == SESSIONS_IN_RANGE


def test_ib_connect_timeout_is_transient() -> None:
    replay = IBReplay().fail_connect_with(TimeoutError())
    with pytest.raises(TransientSourceError):
        IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)


def test_an_empty_answer_without_an_error_is_a_timeout_and_transient() -> None:
    replay = IBReplay()
    replay.silent_timeouts = 1
    with pytest.raises(TransientSourceError, match="timed out"):
        IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)


def test_an_ambiguous_contract_is_an_unknown_symbol() -> None:
    replay = IBReplay()
    replay.ambiguous.add("SPY")
    with pytest.raises(UnknownSymbolError, match="qualify"):
        IBSource(IBSettings(), ib_factory=replay).fetch("SPY", START, END)
    assert replay.history_requests == []


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (200, "No security definition has been found for the request", UnknownSymbolError),
        (
            162,
            "Historical Market Data Service error message:HMDS query returned no data: SPY@SMART Trades",
            EmptyDataError,
        ),
        (
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
            TransientSourceError,
        ),
        (1100, "Connectivity between IB and Trader Workstation has been lost.", TransientSourceError),
        (504, "Not connected", TransientSourceError),
        (354, "Requested market data is not subscribed.", SourceError),
    ],
)
def test_ib_error_codes_map_to_what_a_caller_should_do(code: int, message: str, expected: type[SourceError]) -> None:
    assert type(classify_ib_error(_request_error(code, message), "SPY")) is expected


def test_a_programming_error_is_not_disguised_as_a_source_error() -> None:
    assert classify_ib_error(KeyError("date"), "SPY") is None


def test_describe_names_the_gateway_address() -> None:
    assert "127.0.0.1:4002" in IBSource(IBSettings()).describe("SPY")
