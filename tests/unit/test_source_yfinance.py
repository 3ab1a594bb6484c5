"""The yfinance adapter: frame translation, the request it makes, and how yfinance's failures map."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import requests
from curl_cffi.requests import exceptions as curl_errors
from pandas.errors import Pandas4Warning
from yfinance.exceptions import (
    YFDataException,
    YFPricesMissingError,
    YFRateLimitError,
    YFTzMissingError,
)

from tests.fixtures.recorded.replay import YahooReplay, yahoo_history
from tradeflow.adapters.yahoo.data import YFinanceSource, classify_yfinance_error, history_to_bars
from tradeflow.data.bars import BAR_COLUMNS
from tradeflow.data.sources.base import fetch_with_retry
from tradeflow.errors import EmptyDataError, SourceError, TransientSourceError, UnknownSymbolError

START, END = pd.Timestamp("2023-12-14"), pd.Timestamp("2024-01-04")


class _FrameClient:
    """A client factory answering every history() call with one given frame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __call__(self, symbol: str) -> SimpleNamespace:
        return SimpleNamespace(history=lambda **_: self.frame.copy())


def test_history_frame_maps_to_bar_columns_on_new_york_sessions() -> None:
    frame = history_to_bars(yahoo_history("SPY"), "SPY")
    assert tuple(frame.columns) == BAR_COLUMNS
    first = frame.iloc[0]
    assert first["session"] == pd.Timestamp("2023-12-13")
    assert (first["open"], first["close"], first["adj_close"]) == (464.48999, 470.5, 468.600098)
    assert first["volume"] == 93278000.0
    assert frame["volume"].dtype == np.dtype("float64")


def test_history_indexed_in_utc_keeps_the_new_york_session() -> None:
    raw = yahoo_history("SPY")
    utc = raw.set_axis(raw.index.tz_convert("UTC"))  # midnight New York = 05:00 UTC
    assert list(history_to_bars(utc, "SPY")["session"]) == list(history_to_bars(raw, "SPY")["session"])


@pytest.mark.parametrize("layout", ["price_ticker", "ticker_price"])
def test_download_multiindex_columns_keep_only_the_requested_symbol(layout: str) -> None:
    spy, vix = yahoo_history("SPY"), yahoo_history("^VIX")
    both = pd.concat({"SPY": spy, "^VIX": vix}, axis=1)  # yf.download(group_by="ticker"): (ticker, price)
    if layout == "price_ticker":  # yf.download's default: (price, ticker)
        both = both.swaplevel(axis=1)
    frame = history_to_bars(both, "^VIX")
    assert (frame["symbol"] == "^VIX").all()
    assert frame["close"].tolist() == vix["Close"].tolist()


def test_multiindex_without_the_symbol_is_a_source_error() -> None:
    other = pd.concat({"QQQ": yahoo_history("SPY")}, axis=1)
    with pytest.raises(SourceError, match="none for SPY"):
        history_to_bars(other, "SPY")


def test_dividend_and_split_columns_do_not_reach_the_frame() -> None:
    raw = yahoo_history("SPY").assign(Dividends=0.0, **{"Stock Splits": 0.0})
    assert tuple(history_to_bars(raw, "SPY").columns) == BAR_COLUMNS


def test_fetch_asks_for_the_day_after_end_because_yfinance_end_is_exclusive() -> None:
    replay = YahooReplay()
    frame = YFinanceSource(client=replay).fetch("SPY", START, pd.Timestamp("2024-01-05"))
    symbol, kwargs = replay.calls[0]
    assert symbol == "SPY"
    assert kwargs == {
        "start": "2023-12-14",
        "end": "2024-01-06",
        "interval": "1d",
        "auto_adjust": False,
        "actions": False,
    }
    assert frame["session"].iloc[-1] == pd.Timestamp("2024-01-05")


def test_vix_index_bars_keep_zero_volume_and_drop_null_holiday_rows() -> None:
    raw = yahoo_history("^VIX")
    # yfinance with keepna=True leaves Yahoo's all-null rows on holidays in place.
    holiday = pd.DataFrame(
        np.nan,
        index=pd.DatetimeIndex([pd.Timestamp("2023-12-25", tz="America/New_York")], name="Date"),
        columns=raw.columns,
    )
    source = YFinanceSource(client=_FrameClient(pd.concat([raw, holiday]).sort_index()))
    frame = source.fetch("^VIX", START, END)
    assert source.dropped_placeholders["^VIX"] == 1
    assert pd.Timestamp("2023-12-25") not in set(frame["session"])
    assert (frame["volume"] == 0.0).all()
    assert "index" in source.describe("^VIX")


def test_rows_yahoo_sends_outside_the_range_are_clipped() -> None:
    # Yahoo may append the latest price after `end`; the whole recording spans 2023-12-13 .. 2024-01-05.
    frame = YFinanceSource(client=_FrameClient(yahoo_history("SPY"))).fetch("SPY", START, END)
    assert (frame["session"].min(), frame["session"].max()) == (START, END)


def test_empty_frame_without_an_exception_is_an_empty_data_error() -> None:
    with pytest.raises(EmptyDataError):
        YFinanceSource(client=_FrameClient(yahoo_history("SPY").iloc[0:0])).fetch("SPY", START, END)


def test_yfinance_rate_limit_is_transient_and_retried() -> None:
    replay = YahooReplay().fail_with(YFRateLimitError())
    sleeps: list[float] = []
    frame = fetch_with_retry(YFinanceSource(client=replay), "SPY", START, END, sleep=sleeps.append)
    assert len(replay.calls) == 2
    assert sleeps == [1.0]
    assert len(frame) == 14  # the sessions 2023-12-14 .. 2024-01-04


def test_missing_timezone_means_an_unknown_symbol() -> None:
    with pytest.raises(UnknownSymbolError, match="ZZZZ"):
        YFinanceSource(client=YahooReplay()).fetch("ZZZZ", START, END)


def test_yahoo_not_found_reason_means_an_unknown_symbol() -> None:
    exc = YFPricesMissingError("ZZZZ", "", yahoo_reason="No data found, symbol may be delisted")
    assert isinstance(classify_yfinance_error(exc, "ZZZZ"), UnknownSymbolError)


def test_possibly_delisted_speculation_on_a_known_ticker_is_an_empty_answer() -> None:
    exc = YFPricesMissingError("SPY", " (1d 2024-03-04 -> 2024-03-09)")
    assert "possibly delisted" in str(exc)
    mapped = classify_yfinance_error(exc, "SPY")
    assert isinstance(mapped, EmptyDataError)
    assert not isinstance(mapped, UnknownSymbolError)


@pytest.mark.parametrize(
    "exc",
    [
        curl_errors.ConnectionError("Failed to perform, curl: (7) Failed to connect to query2.finance.yahoo.com"),
        curl_errors.Timeout("Operation timed out after 10001 milliseconds"),
        curl_errors.DNSError("Could not resolve host: query2.finance.yahoo.com"),
        requests.exceptions.ConnectionError("Max retries exceeded"),
        requests.exceptions.ReadTimeout("Read timed out."),
        TimeoutError("timed out"),
        YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"),
        json.JSONDecodeError("Expecting value", "<html>", 0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_failures_and_outages_are_transient(exc: BaseException) -> None:
    assert isinstance(classify_yfinance_error(exc, "SPY"), TransientSourceError)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, UnknownSymbolError), (429, TransientSourceError), (503, TransientSourceError), (401, SourceError)],
)
def test_http_errors_map_by_status(status: int, expected: type[SourceError]) -> None:
    exc = curl_errors.HTTPError(f"HTTP Error {status}", response=SimpleNamespace(status_code=status))
    mapped = classify_yfinance_error(exc, "SPY")
    assert type(mapped) is expected


def test_a_programming_error_is_not_disguised_as_a_source_error() -> None:
    replay = YahooReplay().fail_with(KeyError("chart"))
    with pytest.raises(KeyError):
        YFinanceSource(client=replay).fetch("SPY", START, END)


def test_errors_raised_are_tradeflow_errors_chained_to_the_vendor_error() -> None:
    replay = YahooReplay().fail_with(YFTzMissingError("ZZZZ"))
    with pytest.raises(UnknownSymbolError) as info:
        YFinanceSource(client=replay).fetch("ZZZZ", START, END)
    assert isinstance(info.value.__cause__, YFTzMissingError)


def test_pandas4_warnings_raised_inside_yfinance_are_silenced() -> None:
    def noisy(symbol: str) -> SimpleNamespace:
        def history(**kwargs: object) -> pd.DataFrame:
            warnings.warn("inplace is deprecated", Pandas4Warning, stacklevel=2)
            return yahoo_history("SPY")

        return SimpleNamespace(history=history)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        YFinanceSource(client=noisy).fetch("SPY", START, END)
    assert not [w for w in caught if issubclass(w.category, Pandas4Warning)]


def test_default_client_makes_yfinance_raise_instead_of_hiding_errors() -> None:
    import yfinance as yf

    from tradeflow.adapters.yahoo import data as yahoo

    before = yf.config.debug.hide_exceptions
    yf.config.debug.hide_exceptions = True  # yfinance's default
    try:
        ticker = yahoo._default_client("SPY")  # builds a Ticker; no request is made
        assert yf.config.debug.hide_exceptions is False
        assert hasattr(ticker, "history")
    finally:
        yf.config.debug.hide_exceptions = before
