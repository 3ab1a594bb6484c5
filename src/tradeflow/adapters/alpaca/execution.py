"""Alpaca paper and live trading through alpaca-py's TradingClient (imported only under
adapters/alpaca).

Outcomes of a submit (RELIABILITY A1-A3, A10):
- 200 -> ACCEPTED.
- 422 "client_order_id must be unique" -> the order exists: it is fetched by client id and adopted
  (DUPLICATE); nothing new is sent.
- 429 -> REJECTED with retryable=True: nothing was accepted; the caller may resend the same id later.
- other 4xx (insufficient buying power, bad request, unauthorized) -> REJECTED.
- 5xx, 408, a timeout, a dropped connection or an unreadable answer -> AMBIGUOUS: the order may
  exist, so the caller reconciles by client id and never resends under a new id.

alpaca-py's own retries: its RESTClient retries ANY request, order submission included, on 429 and
504, three times 3 s apart, before raising. That is safe only because every order carries our
deterministic client_order_id: a retried POST whose first attempt had landed comes back 422
"must be unique", which this adapter adopts. Those retries are extra HTTP requests this adapter does
not see, so the limiter's budget leaves room for them (below).

Rate limit: Alpaca allows 200 requests per minute per account. Calls are serialised by a lock and
go through a sliding-window limiter of 180 per 60 s; while alpaca-py retries it sleeps 3 s per retry,
so at most 20 retries fit in a minute: 180 + 20 stays within 200.

Queries that fail raise BrokerUnavailable (B3): never an empty list, a zero or "flat". Error
messages carry the HTTP status and Alpaca's message, never a request header (the keys travel there).
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import requests

from tradeflow.adapters.alpaca.client import quiet_sdk_import, trading_client
from tradeflow.adapters.alpaca.parsing import (
    ErrorKind,
    account_to_domain,
    classify_http_error,
    error_parts,
    fill_activity_to_execution,
    order_request,
    order_to_domain,
    position_to_domain,
)
from tradeflow.config import AlpacaSettings
from tradeflow.domain import Account, BrokerOrder, Execution, OrderIntent, Position, SubmitOutcome, SubmitResult
from tradeflow.errors import BrokerUnavailable

with quiet_sdk_import():
    from alpaca.common.exceptions import APIError
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

T = TypeVar("T")
REQUESTS_PER_MINUTE = 180
OPEN_ORDERS_LIMIT = 500  # the API's maximum page
ACTIVITY_PAGE_SIZE = 100  # the API's maximum page
# Failures of a query that mean "could not answer" (the SDK's, the transport's, or a malformed body).
_QUERY_FAILURES = (APIError, requests.RequestException, OSError, ValueError, TypeError)


class TradingClientLike(Protocol):
    """What the adapter needs of alpaca-py's TradingClient."""

    def submit_order(self, order_data: Any) -> Any: ...

    def get_order_by_client_id(self, client_id: str) -> Any: ...

    def get_order_by_id(self, order_id: Any, filter: Any = None) -> Any: ...

    def get_orders(self, filter: Any = None) -> Any: ...

    def cancel_order_by_id(self, order_id: Any) -> Any: ...

    def get_all_positions(self) -> Any: ...

    def get_account(self) -> Any: ...

    def get(self, path: str, data: Any = None, **kwargs: Any) -> Any: ...


class RequestRateLimiter:
    """At most `max_requests` acquisitions in any `per_seconds` window.

    A sliding log rather than a token bucket: a bucket lets its full capacity burst on top of what it
    refills within the same minute, which could pass 200 in a minute; the log cannot. `monotonic`
    and `sleep` are injectable; an injected `sleep` must advance the injected clock.
    """

    def __init__(
        self,
        max_requests: int = REQUESTS_PER_MINUTE,
        per_seconds: float = 60.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("the limiter needs max_requests >= 1 and per_seconds > 0")
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._stamps: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> float:
        """Wait until one more request fits, record it, and return the seconds waited."""
        waited = 0.0
        with self._lock:
            now = self._monotonic()
            while True:
                while self._stamps and now - self._stamps[0] >= self.per_seconds:
                    self._stamps.popleft()
                if len(self._stamps) < self.max_requests:
                    break
                pause = self.per_seconds - (now - self._stamps[0])
                self._sleep(pause)
                waited += pause
                now = self._monotonic()
            self._stamps.append(now)
            self.waited_s += waited
        return waited


class AlpacaBroker:
    """The Broker protocol over Alpaca's trading API (paper or live, as the client was built)."""

    name = "alpaca"

    def __init__(self, client: TradingClientLike, *, paper: bool, limiter: RequestRateLimiter | None = None) -> None:
        self._client = client
        self._paper = paper
        self._limiter = limiter or RequestRateLimiter()
        self._lock = threading.Lock()
        # Alpaca's order id -> our client id: fill activities name the order by Alpaca's id only.
        self._client_ids: dict[str, str] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, settings: AlpacaSettings, *, limiter: RequestRateLimiter | None = None) -> AlpacaBroker:
        """A TradingClient on the paper or live endpoint as `settings.paper` says (the live opt-in
        itself is checked before this, by tradeflow.core.safety)."""
        return cls(trading_client(settings), paper=settings.paper, limiter=limiter)

    def __repr__(self) -> str:
        # The client holds the keys in plain attributes: never let its state into a repr.
        return f"AlpacaBroker(paper={self._paper})"

    __str__ = __repr__

    def close(self) -> None:
        """Close the client's HTTP session (its pooled connections). Idempotent; afterwards every
        call raises BrokerUnavailable, as the protocol says."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session = getattr(self._client, "_session", None)  # alpaca-py's RESTClient keeps one
            if isinstance(session, requests.Session):
                session.close()

    # ------------------------------------------------------------------ Broker protocol

    def submit(self, intent: OrderIntent) -> SubmitResult:
        cid = intent.client_order_id
        self._check_open()  # before the try below: a closed adapter sent nothing, so it is not ambiguous
        request = order_request(intent)  # a bad intent raises here, before anything is sent
        try:
            answer = self._call(self._client.submit_order, request)
            order = self._remember(order_to_domain(answer))
        except APIError as exc:
            status, message = error_parts(exc)
            kind = classify_http_error(status, message)
            reason = f"HTTP {status}: {message}"
            if kind is ErrorKind.DUPLICATE:
                return self._adopt(cid, reason)
            if kind is ErrorKind.RATE_LIMITED:
                return SubmitResult(SubmitOutcome.REJECTED, cid, None, reason, retryable=True)
            if kind is ErrorKind.REJECTED:
                return SubmitResult(SubmitOutcome.REJECTED, cid, None, reason)
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, reason)
        except Exception as exc:
            # The request may have left: a timeout, a dropped connection, or an answer that could
            # not be read after Alpaca acted on it. Only a reconcile by client id can tell.
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"{type(exc).__name__} after sending")
        return SubmitResult(SubmitOutcome.ACCEPTED, cid, order)

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        try:
            answer = self._call(self._client.get_order_by_client_id, client_order_id)
            return self._remember(order_to_domain(answer))
        except APIError as exc:
            status, message = error_parts(exc)
            if classify_http_error(status, message) is ErrorKind.NOT_FOUND:
                return None
            raise BrokerUnavailable(f"alpaca: order lookup failed: HTTP {status}: {message}") from None
        except _QUERY_FAILURES as exc:
            raise BrokerUnavailable(f"alpaca: order lookup failed: {type(exc).__name__}") from None

    def open_orders(self) -> list[BrokerOrder]:
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=OPEN_ORDERS_LIMIT, nested=False)
        answer = self._query("open orders", lambda: self._client.get_orders(request))
        orders = [self._remember(order_to_domain(o)) for o in answer]
        if len(orders) >= OPEN_ORDERS_LIMIT:
            # A full page may hide more: an incomplete list must not pass for the whole book.
            raise BrokerUnavailable(f"alpaca: {len(orders)} open orders fill a page; the list may be incomplete")
        return orders

    def cancel(self, client_order_id: str) -> bool:
        order = self.get_order(client_order_id)
        if order is None:
            return False
        if order.status.is_terminal:
            return True
        try:
            self._call(self._client.cancel_order_by_id, order.broker_order_id)
            return True
        except APIError as exc:
            status, message = error_parts(exc)
            if status == 404:
                return False
            if status == 422:  # "order is not cancelable": it filled or is already being cancelled
                refreshed = self.get_order(client_order_id)
                return refreshed is not None and refreshed.status.is_terminal
            raise BrokerUnavailable(f"alpaca: cancel failed: HTTP {status}: {message}") from None
        except _QUERY_FAILURES as exc:
            raise BrokerUnavailable(f"alpaca: cancel failed: {type(exc).__name__}") from None

    def positions(self) -> dict[str, Position]:
        answer = self._query("positions", self._client.get_all_positions)
        out = {}
        for raw in answer:
            position = self._parse("positions", position_to_domain, raw)
            out[position.symbol] = position
        return out

    def quote(self, symbol: str) -> Decimal | None:
        """None: the adapter does not read live market data yet, so the tick sizes and marks at the
        last completed close (a gap open is then caught by the price band only when a quote exists)."""
        return None

    def account(self) -> Account:
        answer = self._query("account", self._client.get_account)
        return self._parse("account", account_to_domain, answer)

    def executions(self, since: dt.datetime | None = None) -> list[Execution]:
        params: dict[str, Any] = {"direction": "asc", "page_size": ACTIVITY_PAGE_SIZE}
        if since is not None:
            # `after` excludes its own instant; a second earlier plus the local filter keeps `>= since`.
            params["after"] = (since.astimezone(dt.UTC) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out: list[Execution] = []
        while True:
            page = self._query("fill activities", lambda: self._client.get("/account/activities/FILL", dict(params)))
            if not isinstance(page, list):
                raise BrokerUnavailable("alpaca: fill activities answer is not a list")
            for activity in page:
                if activity.get("activity_type", "FILL") != "FILL":
                    continue
                cid = self._client_id_of(str(activity["order_id"]))
                execution = self._parse("fill activities", lambda a=activity, c=cid: fill_activity_to_execution(a, c))
                if since is None or execution.timestamp >= since:
                    out.append(execution)
            if len(page) < ACTIVITY_PAGE_SIZE:
                return out
            params["page_token"] = page[-1]["id"]

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerUnavailable("alpaca: the adapter is closed")

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._check_open()
            self._limiter.acquire()
            return fn(*args)

    def _query(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return self._call(fn)
        except APIError as exc:
            status, message = error_parts(exc)
            raise BrokerUnavailable(f"alpaca: {what} query failed: HTTP {status}: {message}") from None
        except _QUERY_FAILURES as exc:
            raise BrokerUnavailable(f"alpaca: {what} query failed: {type(exc).__name__}") from None

    @staticmethod
    def _parse(what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerUnavailable(f"alpaca: {what} answer unreadable: {exc}") from None

    def _adopt(self, cid: str, reason: str) -> SubmitResult:
        """The client id is taken: fetch that order and adopt it; if it cannot be fetched now, the
        outcome stays ambiguous for the reconcile step (never a resend)."""
        try:
            existing = self.get_order(cid)
        except BrokerUnavailable as exc:
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"{reason}; lookup failed: {exc}")
        if existing is None:
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"{reason}; but no order under that id")
        return SubmitResult(SubmitOutcome.DUPLICATE, cid, existing, reason)

    def _remember(self, order: BrokerOrder) -> BrokerOrder:
        self._client_ids[order.broker_order_id] = order.client_order_id
        return order

    def _client_id_of(self, order_id: str) -> str:
        if order_id not in self._client_ids:
            answer = self._query("order by id", lambda: self._client.get_order_by_id(order_id))
            self._remember(self._parse("order by id", order_to_domain, answer))
        return self._client_ids[order_id]
