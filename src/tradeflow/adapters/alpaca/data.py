"""Daily bars from Alpaca's market-data API through alpaca-py (imported only under adapters/alpaca).

Adjustment: open/high/low/close/volume come from a request with adjustment=split (comparable
across splits, like Yahoo's OHLC); adj_close is the close of a second request over the same range
with adjustment=all (splits and dividends). A session the second answer lacks gets a NaN adj_close,
which the quality gate reports rather than this adapter guessing.

Sessions: Alpaca stamps a daily bar at midnight New York time written in UTC (2024-01-02T05:00:00Z;
04:00Z in summer), so the session is that instant's New York date.

Crypto (BTC/USD, ETH/USD): CryptoHistoricalDataClient on the US crypto feed; no keys needed. A daily
crypto bar is taken to be stamped at 00:00 UTC, and its session is that UTC date (the 24/7 calendar's
rule); crypto has no corporate actions, so adj_close is the close. Volume is in coins, fractional.

Unknown symbols: Alpaca answers a well-formed ticker it does not know with no bars, exactly as it
answers a range without trading. Only when the answer is empty does the adapter ask the trading
API for the asset (GET /v2/assets/{symbol}): a 404 means an unknown symbol, anything else an empty
range. Alpaca has no index data, so '^VIX' is refused without a request.

Retries: alpaca-py itself retries 429 and 504 three times, 3 s apart, before raising; what is still
failing after that is reported as transient for fetch_with_retry or the Prefect task to retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd
import requests

from tradeflow.adapters.alpaca.client import KEY_ENV, SECRET_ENV, quiet_sdk_import, require_keys, trading_client
from tradeflow.calendar import NEW_YORK, MarketCalendar, is_crypto_symbol
from tradeflow.config import AlpacaSettings
from tradeflow.data.bars import check_symbol, is_index_symbol, normalize_bars
from tradeflow.data.sources.base import clip_range, require_rows
from tradeflow.errors import (
    ConfigError,
    EmptyDataError,
    SourceError,
    TransientSourceError,
    UnknownSymbolError,
)

with quiet_sdk_import():
    from alpaca.common.exceptions import APIError
    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
    from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

FEEDS = ("iex", "sip", "delayed_sip")
# Wire names of a bar in Alpaca's JSON, and the attribute names alpaca-py's Bar model gives them.
_WIRE_TO_MODEL = {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}


class BarsClient(Protocol):
    """What the adapter needs of alpaca-py's StockHistoricalDataClient."""

    def get_stock_bars(self, request_params: Any) -> Any: ...


class CryptoBarsClient(Protocol):
    """What the adapter needs of alpaca-py's CryptoHistoricalDataClient."""

    def get_crypto_bars(self, request_params: Any) -> Any: ...


class AssetClient(Protocol):
    """What the adapter needs of alpaca-py's TradingClient."""

    def get_asset(self, symbol_or_asset_id: Any) -> Any: ...


def _bar_record(bar: object) -> dict[str, Any]:
    """One bar as {t, o, h, l, c, v}: from the REST JSON (raw_data=True) or from an alpaca-py Bar."""
    if isinstance(bar, Mapping):
        return {k: bar.get(k) for k in _WIRE_TO_MODEL}
    return {k: getattr(bar, attr, None) for k, attr in _WIRE_TO_MODEL.items()}


def _bar_table(bars: Sequence[object]) -> pd.DataFrame:
    table = pd.DataFrame.from_records([_bar_record(b) for b in bars], columns=list(_WIRE_TO_MODEL))
    # The wire stamps are RFC 3339 UTC strings, the model's are aware datetimes: both parse to UTC.
    table["t"] = pd.to_datetime(table["t"], utc=True, format="ISO8601")
    return table


def bars_for_symbol(answer: Any, symbol: str) -> list[Any]:
    """The bars of `symbol` in what get_stock_bars returned: a BarSet, alpaca-py's raw dict
    ({symbol: [bar, ...]}) or the REST body itself ({"bars": {...}, "next_page_token": ...})."""
    data = getattr(answer, "data", answer)
    if isinstance(data, Mapping) and isinstance(data.get("bars"), Mapping):
        data = data["bars"]
    if not isinstance(data, Mapping):
        raise SourceError(f"alpaca: unexpected bars answer of type {type(answer).__name__}")
    return list(data.get(symbol) or [])


def bars_to_frame(bars: Sequence[object], adjusted: Sequence[object] | None, symbol: str) -> pd.DataFrame:
    """Split-adjusted bars (+ the adjustment=all bars for adj_close) as a normalized bar frame.

    Pure: no request, no clock. With `adjusted=None` adj_close stays NaN (not known).
    """
    table = _bar_table(bars)
    sessions = table["t"].dt.tz_convert(NEW_YORK).dt.normalize()
    adj_close = pd.Series(float("nan"), index=table.index)
    if adjusted is not None and len(adjusted):
        adj = _bar_table(adjusted)
        by_session = pd.Series(adj["c"].to_numpy(), index=adj["t"].dt.tz_convert(NEW_YORK).dt.normalize().to_numpy())
        by_session = by_session[~by_session.index.duplicated(keep="last")]
        adj_close = sessions.map(by_session)
    raw = pd.DataFrame(
        {
            "session": table["t"],
            "open": table["o"],
            "high": table["h"],
            "low": table["l"],
            "close": table["c"],
            "adj_close": adj_close,
            "volume": table["v"],
        }
    )
    return normalize_bars(raw, symbol)


def crypto_bars_to_frame(bars: Sequence[object], symbol: str) -> pd.DataFrame:
    """Daily crypto bars as a normalized bar frame on UTC-day sessions. Pure: no request, no clock."""
    table = _bar_table(bars)
    # Naive UTC stamps: normalize_bars reads aware ones in New York time, which would put the
    # 00:00 UTC bar of the 25th on the 24th.
    raw = pd.DataFrame(
        {
            "session": table["t"].dt.tz_convert("UTC").dt.tz_localize(None),
            "open": table["o"],
            "high": table["h"],
            "low": table["l"],
            "close": table["c"],
            "adj_close": table["c"],
            "volume": table["v"],
        }
    )
    return normalize_bars(raw, symbol)


def _api_message(exc: Exception) -> str:
    try:
        return str(exc.message)  # type: ignore[attr-defined]  # alpaca's JSON {"code", "message"} body
    except Exception:
        return (str(exc) or type(exc).__name__)[:200]


def classify_alpaca_error(exc: BaseException, symbol: str) -> SourceError | None:
    """The tradeflow error for an exception out of alpaca-py, or None for a programming error."""
    if isinstance(exc, APIError):
        status = exc.status_code
        message = _api_message(exc)
        if status is not None and (status == 429 or status >= 500):
            return TransientSourceError(f"alpaca: HTTP {status} for {symbol}: {message}")
        if status in (400, 404, 422) and "symbol" in message.lower():
            return UnknownSymbolError(f"alpaca does not know {symbol}: {message}")
        if status in (401, 403):
            return SourceError(
                f"alpaca refused the request (HTTP {status}: {message}); check {KEY_ENV}, {SECRET_ENV} "
                "and the feed (SIP needs a data subscription)"
            )
        return SourceError(f"alpaca: HTTP {status} for {symbol}: {message}")
    if isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
        return TransientSourceError(f"alpaca: network error for {symbol}: {type(exc).__name__}: {exc}")
    return None


def _keys_if_set(settings: AlpacaSettings) -> tuple[str, str] | None:
    try:
        return require_keys(settings)
    except ConfigError:
        return None


class AlpacaSource:
    """Daily bars from Alpaca (IEX on the free plan, SIP with a subscription)."""

    name = "alpaca"

    def __init__(
        self,
        settings: AlpacaSettings,
        calendar: MarketCalendar | None = None,
        client: BarsClient | None = None,
        asset_client: AssetClient | None = None,
        crypto_client: CryptoBarsClient | None = None,
    ) -> None:
        self._feed = settings.feed.strip().lower()
        if self._feed not in FEEDS:
            raise ConfigError(f"unknown alpaca feed {settings.feed!r}; expected one of {', '.join(FEEDS)}")
        self._settings = settings
        # `calendar` is accepted for make_source's uniform signature: Alpaca sends no placeholder
        # rows on holidays, so there is nothing to check against it.
        # Without an injected client the keys are needed now: fail at construction, not mid-ingest.
        self._keys = require_keys(settings) if client is None else _keys_if_set(settings)
        self._client = client
        self._asset_client = asset_client
        self._crypto_client = crypto_client

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return None

    def describe(self, symbol: str) -> str:
        if is_crypto_symbol(symbol):
            return f"Alpaca US crypto daily bars for {symbol} (UTC days; volume in coins)"
        volume = "; IEX volume is only IEX's share of the market" if self._feed == "iex" else ""
        return (
            f"Alpaca {self._feed.upper()} daily bars for {symbol} (split-adjusted OHLCV, "
            f"adj_close from adjustment=all{volume})"
        )

    def _bars_client(self) -> BarsClient:
        if self._client is None:
            key, secret = self._keys or require_keys(self._settings)
            # raw_data: the adapter reads the REST JSON itself (bars_to_frame), the same shape as the
            # recorded responses the tests replay.
            self._client = StockHistoricalDataClient(api_key=key, secret_key=secret, raw_data=True)
        return self._client

    def _assets(self) -> AssetClient | None:
        if self._asset_client is None and self._keys is not None:
            self._asset_client = trading_client(self._settings, raw_data=True)
        return self._asset_client

    def _request_bars(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, adjustment: str) -> list[Any]:
        # Aware New York bounds: alpaca-py would read naive datetimes as UTC, five hours off.
        first = pd.Timestamp(start.date(), tz=NEW_YORK)
        last = pd.Timestamp(end.date(), tz=NEW_YORK) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
        request = StockBarsRequest(
            symbol_or_symbols=[symbol],
            timeframe=TimeFrame.Day,
            start=first.to_pydatetime(),
            end=last.to_pydatetime(),
            feed=DataFeed(self._feed),
            adjustment=Adjustment(adjustment),
        )
        try:
            answer = self._bars_client().get_stock_bars(request)
        except Exception as exc:
            mapped = classify_alpaca_error(exc, symbol)
            if mapped is None:
                raise
            raise mapped from exc
        return bars_for_symbol(answer, symbol)

    def _asset_exists(self, symbol: str) -> bool | None:
        """True/False from the trading API's asset lookup; None when there is no way to ask."""
        assets = self._assets()
        if assets is None:
            return None
        try:
            assets.get_asset(symbol)
        except Exception as exc:
            if isinstance(exc, APIError) and exc.status_code == 404:
                return False
            mapped = classify_alpaca_error(exc, symbol)
            if mapped is None:
                raise
            raise mapped from exc
        return True

    def _crypto_bars_client(self) -> CryptoBarsClient:
        if self._crypto_client is None:
            # Alpaca serves crypto bars without keys; with keys the rate limit is higher.
            key, secret = self._keys or (None, None)
            self._crypto_client = CryptoHistoricalDataClient(api_key=key, secret_key=secret, raw_data=True)
        return self._crypto_client

    def _fetch_crypto(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        first = pd.Timestamp(start.date(), tz="UTC")
        last = pd.Timestamp(end.date(), tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
        request = CryptoBarsRequest(
            symbol_or_symbols=[symbol], timeframe=TimeFrame.Day, start=first.to_pydatetime(), end=last.to_pydatetime()
        )
        try:
            answer = self._crypto_bars_client().get_crypto_bars(request)
        except Exception as exc:
            mapped = classify_alpaca_error(exc, symbol)
            if mapped is None:
                raise
            raise mapped from exc
        bars = bars_for_symbol(answer, symbol)
        if not bars:
            raise EmptyDataError(f"alpaca returned no crypto bars for {symbol} between {start.date()} and {end.date()}")
        frame = clip_range(crypto_bars_to_frame(bars, symbol), start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        symbol = check_symbol(symbol)
        if is_crypto_symbol(symbol):
            return self._fetch_crypto(symbol, start, end)
        if is_index_symbol(symbol):
            raise UnknownSymbolError(f"alpaca has no index data such as {symbol}; use the yfinance or ib source")
        # Alpaca writes share classes with a dot (BRK.B) where Yahoo uses a dash (BRK-B).
        vendor_symbol = symbol.replace("-", ".")
        bars = self._request_bars(vendor_symbol, start, end, "split")
        if not bars:
            exists = self._asset_exists(vendor_symbol)
            if exists is False:
                raise UnknownSymbolError(f"alpaca does not know {symbol} (no bars, and no such asset)")
            maybe = " (or the symbol is unknown: no asset lookup without keys)" if exists is None else ""
            raise EmptyDataError(f"alpaca returned no bars for {symbol} between {start.date()} and {end.date()}{maybe}")
        adjusted = self._request_bars(vendor_symbol, start, end, "all")
        frame = clip_range(bars_to_frame(bars, adjusted, symbol), start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame
