"""Yahoo Finance daily bars through yfinance: research and fallback data (ECOSYSTEM.md §5.3).

yfinance is imported in this module only. Two of its habits shape the code:

- it hides failures by default (an empty frame and a log line instead of an exception), and a network
  error while it looks up the ticker's timezone is reported as "no timezone found", i.e. as if the
  symbol did not exist. The default client therefore sets `yf.config.debug.hide_exceptions = False`,
  yfinance 1.7's replacement for the deprecated `raise_errors=True`, which only covered the price
  request and not that timezone lookup. The setting is process-wide; tradeflow wants it everywhere.
- its "possibly delisted" wording is speculation (see yfinance.exceptions.YFPricesMissingError):
  Yahoo says the same for a real ticker over a range without prices. Only a missing timezone or
  Yahoo's own "not found / delisted" reason means an unknown symbol; other missing prices are an
  empty answer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pandas as pd

from tradeflow.calendar import MarketCalendar, default_calendar
from tradeflow.data.bars import check_symbol, is_index_symbol, normalize_bars
from tradeflow.data.sources.base import clip_range, drop_placeholder_rows, require_rows
from tradeflow.errors import EmptyDataError, SourceError, TransientSourceError, UnknownSymbolError

# Names of the network errors of both HTTP backends yfinance can run on (curl_cffi, or requests when
# curl_cffi is unavailable); yfinance's own retry helper recognises the same set.
_TRANSIENT_NAMES = frozenset(
    {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "DNSError", "ChunkedEncodingError", "ProxyError"}
)
_UNKNOWN_REASONS = ("not found", "delisted", "no data found")


class HistoryClient(Protocol):
    """What the adapter needs of `yfinance.Ticker`: tests replay recorded frames through it."""

    def history(self, *args: Any, **kwargs: Any) -> pd.DataFrame: ...


HistoryClientFactory = Callable[[str], HistoryClient]


def _default_client(symbol: str) -> HistoryClient:
    import yfinance as yf

    yf.config.debug.hide_exceptions = False
    ticker: HistoryClient = yf.Ticker(symbol)
    return ticker


def history_to_bars(raw: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """A yfinance history/download frame (tz-aware exchange-time index; Open, High, Low, Close,
    Adj Close, Volume and maybe Dividends/Stock Splits) as a normalized bar frame.

    `yf.download` returns column pairs (price, ticker) by default, or (ticker, price) with
    group_by="ticker"; either way only this symbol's columns are kept.
    """
    frame = raw
    if isinstance(frame.columns, pd.MultiIndex):
        for level in range(frame.columns.nlevels):
            if symbol in frame.columns.get_level_values(level):
                picked = frame.xs(symbol, axis=1, level=level)
                frame = picked if isinstance(picked, pd.DataFrame) else picked.to_frame()
                break
        else:
            raise SourceError(f"yfinance answered with columns for other tickers, none for {symbol}")
    frame = frame.drop(columns=[c for c in ("Dividends", "Stock Splits", "Capital Gains") if c in frame.columns])
    return normalize_bars(frame, symbol)


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def classify_yfinance_error(exc: BaseException, symbol: str) -> SourceError | None:
    """The tradeflow error for an exception out of yfinance, or None when it is not a data-source
    failure (a programming error, which should surface as it is)."""
    from yfinance.exceptions import (
        YFDataException,
        YFException,
        YFPricesMissingError,
        YFRateLimitError,
        YFTzMissingError,
    )

    text = str(exc) or type(exc).__name__
    if isinstance(exc, YFRateLimitError):
        return TransientSourceError(f"yfinance: Yahoo rate-limited the request for {symbol}: {text}")
    if isinstance(exc, YFTzMissingError):
        return UnknownSymbolError(f"yfinance does not know {symbol} ({text})")
    if isinstance(exc, YFPricesMissingError):
        reason = (exc.yahoo_reason or "").lower()
        if any(word in reason for word in _UNKNOWN_REASONS):
            return UnknownSymbolError(f"yfinance does not know {symbol} ({text})")
        return EmptyDataError(f"yfinance returned no prices for {symbol}: {text}")
    if isinstance(exc, YFDataException) and "CURRENTLY DOWN" in text.upper():
        return TransientSourceError(f"yfinance: Yahoo Finance is down: {text}")
    if isinstance(exc, YFException):
        return SourceError(f"yfinance failed for {symbol}: {text}")
    status = _http_status(exc)
    if status is not None:
        if status == 429 or status >= 500:
            return TransientSourceError(f"yfinance: HTTP {status} from Yahoo for {symbol}")
        if status == 404:
            return UnknownSymbolError(f"yfinance does not know {symbol} (HTTP 404)")
        return SourceError(f"yfinance: HTTP {status} from Yahoo for {symbol}")
    if isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in _TRANSIENT_NAMES:
        return TransientSourceError(f"yfinance: network error for {symbol}: {type(exc).__name__}: {text}")
    if isinstance(exc, json.JSONDecodeError):
        # An outage or consent page instead of the JSON chart answer.
        return TransientSourceError(f"yfinance: Yahoo answered {symbol} with something that is not JSON")
    return None


@contextmanager
def _quiet_vendor_warnings() -> Iterator[None]:
    # yfinance trips pandas 3's Pandas4Warning (inplace deprecations) and warns about its own
    # deprecations; neither says anything about the data.
    with warnings.catch_warnings():
        try:
            from pandas.errors import Pandas4Warning

            warnings.simplefilter("ignore", Pandas4Warning)
        except ImportError:  # pragma: no cover - pandas < 3
            pass
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"yfinance(\.|$)")
        yield


class YFinanceSource:
    """Daily bars from Yahoo Finance (unofficial API: rate-limited, occasionally revised)."""

    name = "yfinance"

    def __init__(self, calendar: MarketCalendar | None = None, client: HistoryClientFactory | None = None) -> None:
        self._calendar = calendar or default_calendar()
        self._client = client or _default_client
        self.dropped_placeholders: dict[str, int] = {}

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return None

    def describe(self, symbol: str) -> str:
        kind = "index" if is_index_symbol(symbol) else "daily bars"
        return f"Yahoo Finance {kind} for {symbol} via yfinance (split-adjusted OHLC; Adj Close also for dividends)"

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        symbol = check_symbol(symbol)
        # yfinance's `end` is exclusive: ask for the day after the last wanted session.
        first, after_last = start.strftime("%Y-%m-%d"), (end + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        try:
            with _quiet_vendor_warnings():
                raw = self._client(symbol).history(
                    start=first, end=after_last, interval="1d", auto_adjust=False, actions=False
                )
        except Exception as exc:
            mapped = classify_yfinance_error(exc, symbol)
            if mapped is None:
                raise
            raise mapped from exc
        if raw is None or raw.empty:
            raise EmptyDataError(f"yfinance returned an empty frame for {symbol} ({first} .. {end.date()})")
        frame = history_to_bars(raw, symbol)
        frame, dropped = drop_placeholder_rows(frame, self._calendar)
        self.dropped_placeholders[symbol] = dropped
        frame = clip_range(frame, start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame
