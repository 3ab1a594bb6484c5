"""Daily bars from Interactive Brokers (TWS or IB Gateway) through ib_async (imported only under adapters/ib).

Threads and event loops: ib_async's blocking calls drive an asyncio loop (run_until_complete). That
breaks in a thread whose loop is already running, and its predecessor ib_insync broke in worker
threads without a loop (ECOSYSTEM.md §5.2). Each fetch therefore holds its whole IB conversation
(connect, qualify, request, disconnect) in a short-lived thread of its own with a private event loop,
closed afterwards: it works from Prefect's worker threads and from async code alike, and never
touches the caller's loop.

Adjustment: TRADES bars are split-adjusted but not dividend-adjusted. adj_close is the close of the
ADJUSTED_LAST bars, which IB serves only up to now (its endDateTime must be empty); the request is
sized from IB's server time, not the local clock. Indexes pay no dividends: their adj_close is their
close, as on Yahoo.

Empty answers: ib_async returns an empty list when a request times out, while IB itself reports
"no data" as error 162. With RaiseRequestErrors on, an empty list is therefore a timeout
(transient) and error 162 "no data" an empty answer.

Volume: IB sends -1 where there is none. An index trades no volume (0.0, as the sample and Yahoo
sources have it); for a stock -1 is missing data (NaN, for the gate to report).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tradeflow.adapters.ib.client import close_event_loop, disconnect_quietly, new_ib
from tradeflow.adapters.ib.parsing import make_contract
from tradeflow.calendar import NEW_YORK, MarketCalendar
from tradeflow.config import IBSettings
from tradeflow.data.bars import check_symbol, is_index_symbol, normalize_bars
from tradeflow.data.sources.base import clip_range, require_rows
from tradeflow.errors import EmptyDataError, SourceError, TransientSourceError, UnknownSymbolError

# IB error codes worth a retry: 502 cannot connect, 504 not connected, 1100 connectivity lost,
# 1101 restored with data lost, 10182 request failed because of a disconnect.
_TRANSIENT_CODES = frozenset({502, 504, 1100, 1101, 10182})
# ib_async's default; a daily history request normally answers within seconds.
HISTORY_TIMEOUT_S = 60.0


class IBClient(Protocol):
    """What the adapter needs of `ib_async.IB` (tests pass a fake through `ib_factory`)."""

    RaiseRequestErrors: bool

    def connect(self, *args: Any, **kwargs: Any) -> Any: ...

    def qualifyContracts(self, *contracts: Any) -> list[Any]: ...  # noqa: N802 - ib_async's name

    def reqHistoricalData(self, *args: Any, **kwargs: Any) -> Sequence[Any]: ...  # noqa: N802

    def reqCurrentTime(self) -> dt.datetime: ...  # noqa: N802

    def disconnect(self) -> Any: ...


def duration_for(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """An IB durationStr reaching back from `end` to at least `start`: 'N D' up to 365 days, else
    whole years (IB refuses day counts above 365). Over-fetching is harmless: rows are clipped."""
    days = (end.normalize() - start.normalize()).days + 1
    return f"{max(days, 1)} D" if days <= 365 else f"{math.ceil(days / 365)} Y"


def _field(bar: object, name: str) -> Any:
    return bar.get(name) if isinstance(bar, Mapping) else getattr(bar, name, None)


def _session_of(value: object) -> pd.Timestamp:
    """A bar's date: a date (formatDate=1 daily bars), an aware datetime, or the wire 'YYYYMMDD'."""
    if isinstance(value, str):
        return pd.Timestamp(dt.datetime.strptime(value.strip()[:8], "%Y%m%d"))
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    if ts.tzinfo is not None:
        ts = ts.tz_convert(NEW_YORK).tz_localize(None)
    return ts.normalize()


def ib_bars_to_frame(
    trades: Sequence[object], adjusted: Sequence[object] | None, symbol: str, *, index: bool
) -> pd.DataFrame:
    """TRADES bars (+ ADJUSTED_LAST bars for adj_close) as a normalized bar frame. Pure.

    Bars are ib_async BarData or dicts of the same fields. For an index adj_close is the close;
    for a stock without `adjusted` it stays NaN (not known).
    """
    sessions = pd.DatetimeIndex([_session_of(_field(b, "date")) for b in trades])
    close = np.array([_field(b, "close") for b in trades], dtype="float64")
    volume = np.array([_field(b, "volume") for b in trades], dtype="float64")
    volume[volume < 0] = 0.0 if index else np.nan
    if index:
        adj_close = close.copy()
    elif adjusted:
        adj = pd.Series(
            [_field(b, "close") for b in adjusted],
            index=pd.DatetimeIndex([_session_of(_field(b, "date")) for b in adjusted]),
            dtype="float64",
        )
        adj = adj[~adj.index.duplicated(keep="last")]
        adj_close = adj.reindex(sessions).to_numpy()
    else:
        adj_close = np.full(len(trades), np.nan)
    raw = pd.DataFrame(
        {
            "session": sessions,
            "open": [_field(b, "open") for b in trades],
            "high": [_field(b, "high") for b in trades],
            "low": [_field(b, "low") for b in trades],
            "close": close,
            "adj_close": adj_close,
            "volume": volume,
        }
    )
    return normalize_bars(raw, symbol)


def classify_ib_error(exc: BaseException, symbol: str) -> SourceError | None:
    """The tradeflow error for an exception out of ib_async, or None for a programming error."""
    from ib_async.wrapper import RequestError

    if isinstance(exc, RequestError):
        code, message = exc.code, exc.message
        low = message.lower()
        if code == 200:
            return UnknownSymbolError(f"IB has no contract for {symbol} (error 200: {message})")
        if code == 162 and "no data" in low:
            return EmptyDataError(f"IB returned no bars for {symbol} (error 162: {message})")
        if (code == 162 and "pacing" in low) or code in _TRANSIENT_CODES:
            return TransientSourceError(f"IB error {code} for {symbol}: {message}")
        return SourceError(f"IB error {code} for {symbol}: {message}")
    # ConnectionRefusedError (nothing listening), asyncio timeouts (TimeoutError since 3.11), resets.
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return TransientSourceError(f"IB connection failed for {symbol}: {type(exc).__name__}: {exc}")
    return None


class IBSource:
    """Daily bars from a running TWS / IB Gateway (read-only API connection)."""

    name = "ib"

    def __init__(
        self,
        settings: IBSettings,
        calendar: MarketCalendar | None = None,
        ib_factory: Callable[[], IBClient] | None = None,
    ) -> None:
        self._settings = settings
        # `calendar` is accepted for make_source's uniform signature: IB sends no placeholder rows
        # on holidays, so there is nothing to check against it.
        self._ib_factory = ib_factory or new_ib

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return None

    def describe(self, symbol: str) -> str:
        where = f"{self._settings.host}:{self._settings.port}"
        return f"Interactive Brokers TRADES daily bars for {symbol} from {where} (adj_close from ADJUSTED_LAST)"

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        symbol = check_symbol(symbol)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradeflow-ib") as pool:
            trades, adjusted = pool.submit(self._converse_on_own_loop, symbol, start, end).result()
        frame = ib_bars_to_frame(trades, adjusted, symbol, index=is_index_symbol(symbol))
        frame = clip_range(frame, start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame

    def _converse_on_own_loop(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[list[Any], list[Any] | None]:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return self._converse(symbol, start, end)
        finally:
            asyncio.set_event_loop(None)
            close_event_loop(loop)

    def _converse(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple[list[Any], list[Any] | None]:
        ib = self._ib_factory()
        # Failed requests raise RequestError (with IB's code) instead of returning an empty list.
        ib.RaiseRequestErrors = True
        try:
            return self._requests(ib, symbol, start, end)
        except SourceError:
            raise
        except Exception as exc:
            mapped = classify_ib_error(exc, symbol)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            disconnect_quietly(ib)

    def _requests(
        self, ib: IBClient, symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[list[Any], list[Any] | None]:
        from ib_async import StartupFetchNONE

        s = self._settings
        # A data-only connection: no orders, no account sync to wait for.
        ib.connect(
            s.host, s.port, clientId=s.client_id, timeout=s.timeout_s, readonly=True, fetchFields=StartupFetchNONE
        )
        contract = make_contract(symbol)
        qualified = ib.qualifyContracts(contract)
        if not qualified or qualified[0] is None:
            raise UnknownSymbolError(f"IB could not qualify a contract for {symbol} (unknown or ambiguous)")
        # An aware end instant: ib_async would read a naive one in the machine's local timezone.
        last = pd.Timestamp(end.date(), tz=NEW_YORK) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
        trades = list(self._history(ib, contract, last.to_pydatetime(), duration_for(start, end), "TRADES"))
        if not trades:
            raise TransientSourceError(f"IB sent no bars and no error for {symbol}: the request timed out")
        if is_index_symbol(symbol):
            return trades, None
        now = pd.Timestamp(ib.reqCurrentTime())
        now = (now.tz_localize("UTC") if now.tzinfo is None else now).tz_convert(NEW_YORK).tz_localize(None)
        adjusted = list(self._history(ib, contract, "", duration_for(start, now), "ADJUSTED_LAST"))
        if not adjusted:
            raise TransientSourceError(f"IB sent no ADJUSTED_LAST bars and no error for {symbol}: timed out")
        return trades, adjusted

    @staticmethod
    def _history(ib: IBClient, contract: Any, end: dt.datetime | str, duration: str, what: str) -> Sequence[Any]:
        return ib.reqHistoricalData(
            contract,
            endDateTime=end,
            durationStr=duration,
            barSizeSetting="1 day",
            whatToShow=what,
            useRTH=True,
            formatDate=1,
            timeout=HISTORY_TIMEOUT_S,
        )
