"""Interactive Brokers (TWS or IB Gateway) through ib_async (imported only under adapters/ib).

Our client order id travels in `order.orderRef`. IB, unlike Alpaca, does not refuse a second order
with the same orderRef, so the adapter refuses it itself: before placing, it looks the id up among
the trades ib_async holds (this session's orders plus the open and completed orders it fetched when
it connected) and answers DUPLICATE with the order it finds. IB shows a connection only the orders
of its own client id, so every process trading one account must use the same `IBSettings.client_id`.

Threads and event loops: ib_async's blocking calls drive an asyncio loop, which breaks in a thread
whose loop is already running (and ib_insync broke in worker threads without one; ECOSYSTEM.md §5.2).
The adapter keeps one connection in one dedicated thread with a private event loop; every call is
handed to that thread and waited for, so it works from Prefect's worker threads and from async code
alike. Between calls the loop is idle; ib_async reads what arrived when the next call runs it.

Failures: a connection that cannot be made or is lost makes queries raise BrokerUnavailable (B3,
B5); the next call connects again, and a fresh connection fetches open orders, completed orders and
executions anew, so fills that arrived while disconnected are seen. Blocking requests carry
`RequestTimeout`, so a silent gateway is "unknown", not a hang. A submit whose acknowledgement does
not come in time is AMBIGUOUS (A1); one IB refuses outright (error 201 ...) is REJECTED; one that
cannot be sent because there is no connection is REJECTED with retryable=True (nothing left here).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from tradeflow.adapters.ib import parsing as parse
from tradeflow.adapters.ib.client import close_event_loop, disconnect_quietly, new_ib
from tradeflow.config import IBSettings
from tradeflow.domain import Account, BrokerOrder, Execution, OrderIntent, Position, SubmitOutcome, SubmitResult
from tradeflow.errors import BrokerUnavailable

T = TypeVar("T")
# What a lost or refused connection, a timed-out request or an IB request error look like.
_CONNECTION_FAILURES = (ConnectionError, OSError, TimeoutError, asyncio.TimeoutError)


class IBTradingClient(Protocol):
    """What the adapter needs of `ib_async.IB` (tests pass one on a fake socket through `ib_factory`)."""

    RequestTimeout: float
    RaiseRequestErrors: bool

    def connect(self, *args: Any, **kwargs: Any) -> Any: ...

    def isConnected(self) -> bool: ...  # noqa: N802 - ib_async's names

    def disconnect(self) -> Any: ...

    def placeOrder(self, contract: Any, order: Any) -> Any: ...  # noqa: N802

    def cancelOrder(self, order: Any) -> Any: ...  # noqa: N802

    def trades(self) -> list[Any]: ...

    def openTrades(self) -> list[Any]: ...  # noqa: N802

    def fills(self) -> list[Any]: ...

    def reqPositions(self) -> list[Any]: ...  # noqa: N802

    def accountSummary(self, account: str = "") -> list[Any]: ...  # noqa: N802

    def reqExecutions(self, execFilter: Any = None) -> list[Any]: ...  # noqa: N802, N803

    def sleep(self, secs: float) -> Any: ...


def _startup_fetch() -> Any:
    """Positions, open and completed orders, executions; account values come from accountSummary."""
    from ib_async.ib import StartupFetch

    return StartupFetch.POSITIONS | StartupFetch.ORDERS_OPEN | StartupFetch.ORDERS_COMPLETE | StartupFetch.EXECUTIONS


def _request_error() -> type[Exception]:
    from ib_async.wrapper import RequestError

    return RequestError


def _install_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


class IBBroker:
    """The Broker protocol over one IB API connection held in a dedicated thread."""

    name = "ib"

    def __init__(
        self,
        settings: IBSettings,
        *,
        account: str = "",
        ib_factory: Callable[[], IBTradingClient] | None = None,
        ack_timeout_s: float = 5.0,
        poll_s: float = 0.05,
    ) -> None:
        self._settings = settings
        self._account = account
        self._factory = ib_factory or new_ib
        self._ack_polls = max(1, round(ack_timeout_s / poll_s))
        self._poll_s = poll_s
        self._ib: IBTradingClient | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tradeflow-ib-broker", initializer=_install_loop
        )
        self._closed = False

    def __repr__(self) -> str:
        s = self._settings
        return f"IBBroker(host={s.host!r}, port={s.port}, client_id={s.client_id})"

    def close(self) -> None:
        """Disconnect and stop the IB thread (its event loop is closed with it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.submit(self._shutdown_in_thread).result()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> IBBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ Broker protocol

    def submit(self, intent: OrderIntent) -> SubmitResult:
        contract, order = parse.make_contract(intent.symbol), parse.make_order(intent)
        return self._in_thread(lambda: self._submit(intent.client_order_id, contract, order))

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        return self._in_thread(lambda: self._query("order lookup", lambda ib: self._lookup(ib, client_order_id)))

    def open_orders(self) -> list[BrokerOrder]:
        return self._in_thread(
            lambda: self._query(
                "open orders", lambda ib: [parse.trade_to_domain(t) for t in self._settle(ib).openTrades()]
            )
        )

    def cancel(self, client_order_id: str) -> bool:
        return self._in_thread(lambda: self._query("cancel", lambda ib: self._cancel(ib, client_order_id)))

    def positions(self) -> dict[str, Position]:
        return self._in_thread(lambda: self._query("positions", self._positions))

    def quote(self, symbol: str) -> Decimal | None:
        """None: the adapter does not read live market data yet, so the tick sizes and marks at the
        last completed close (a gap open is then caught by the price band only when a quote exists)."""
        return None

    def account(self) -> Account:
        # IB refreshes account-summary values about every 3 minutes. A tick reconciles before it
        # trades, 5 minutes after the previous tick's orders, so the figures it reads include them.
        return self._in_thread(
            lambda: self._query(
                "account", lambda ib: parse.account_from_summary(ib.accountSummary(self._account), self._account)
            )
        )

    def executions(self, since: dt.datetime | None = None) -> list[Execution]:
        return self._in_thread(lambda: self._query("executions", lambda ib: self._executions(ib, since)))

    # ------------------------------------------------------------------ in the IB thread

    def _in_thread(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise BrokerUnavailable("ib: the adapter is closed")
        return self._pool.submit(fn).result()

    def _connected(self) -> IBTradingClient:
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        self._drop()
        s = self._settings
        ib = self._factory()
        # Blocking requests give up after this long instead of waiting forever on a silent gateway,
        # and a failed request raises RequestError instead of answering an empty list ("flat").
        ib.RequestTimeout = s.timeout_s
        ib.RaiseRequestErrors = True
        try:
            ib.connect(
                s.host,
                s.port,
                clientId=s.client_id,
                timeout=s.timeout_s,
                readonly=False,
                account=self._account,
                fetchFields=_startup_fetch(),
            )
        except _CONNECTION_FAILURES as exc:
            raise BrokerUnavailable(f"ib: cannot connect to {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
        self._ib = ib
        return ib

    def _drop(self) -> None:
        if self._ib is not None:
            disconnect_quietly(self._ib)
        self._ib = None

    def _query(self, what: str, fn: Callable[[IBTradingClient], T]) -> T:
        ib = self._connected()
        try:
            return fn(ib)
        except _CONNECTION_FAILURES as exc:
            self._drop()  # the next call connects afresh and re-fetches orders and executions
            raise BrokerUnavailable(f"ib: {what} failed: {type(exc).__name__}: {exc}") from None
        except _request_error() as exc:
            raise BrokerUnavailable(f"ib: {what} failed: {exc}") from None
        except ValueError as exc:  # an answer that cannot be read is no answer
            raise BrokerUnavailable(f"ib: {what} answer unreadable: {exc}") from None

    def _settle(self, ib: IBTradingClient) -> IBTradingClient:
        """Let ib_async take in what arrived since the last call, before reading its state."""
        ib.sleep(0)
        if not ib.isConnected():
            raise ConnectionError("connection lost")
        return ib

    def _lookup(self, ib: IBTradingClient, client_order_id: str) -> BrokerOrder | None:
        trade = parse.find_trade(self._settle(ib).trades(), client_order_id)
        return None if trade is None else parse.trade_to_domain(trade)

    def _submit(self, cid: str, contract: Any, order: Any) -> SubmitResult:
        try:
            ib = self._connected()
            existing = parse.find_trade(self._settle(ib).trades(), cid)
        except (BrokerUnavailable, *_CONNECTION_FAILURES) as exc:
            self._drop()
            return SubmitResult(SubmitOutcome.REJECTED, cid, None, f"not sent: {exc}", retryable=True)
        if existing is not None:
            return SubmitResult(
                SubmitOutcome.DUPLICATE, cid, parse.trade_to_domain(existing), "orderRef already placed"
            )
        try:
            trade = ib.placeOrder(contract, order)
        except _CONNECTION_FAILURES as exc:
            # ib_async raises "Not connected" before writing a byte; anything else may have left.
            self._drop()
            if isinstance(exc, ConnectionError) and "not connected" in str(exc).lower():
                return SubmitResult(SubmitOutcome.REJECTED, cid, None, "not sent: not connected", retryable=True)
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"{type(exc).__name__} while sending")
        try:
            for _ in range(self._ack_polls):
                if trade.orderStatus.status not in parse.PENDING or not ib.isConnected():
                    break
                ib.sleep(self._poll_s)
        except _CONNECTION_FAILURES as exc:
            self._drop()
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"{type(exc).__name__} awaiting IB's answer")
        outcome, reason = parse.submit_outcome(trade, ib.isConnected())
        order_view = parse.trade_to_domain(trade) if outcome is SubmitOutcome.ACCEPTED else None
        return SubmitResult(outcome, cid, order_view, reason)

    def _cancel(self, ib: IBTradingClient, client_order_id: str) -> bool:
        trade = parse.find_trade(self._settle(ib).trades(), client_order_id)
        if trade is None:
            return False
        if trade.orderStatus.status in parse.CANCELLED | {"Filled", "Inactive"}:
            return True
        ib.cancelOrder(trade.order)
        return True

    def _positions(self, ib: IBTradingClient) -> dict[str, Position]:
        out: dict[str, Position] = {}
        for raw in ib.reqPositions():  # a fresh request: it fails or times out rather than go stale
            if self._account and raw.account != self._account:
                continue
            position = parse.position_to_domain(raw)
            if position is not None and position.qty != 0:
                out[position.symbol] = position
        return out

    def _executions(self, ib: IBTradingClient, since: dt.datetime | None) -> list[Execution]:
        from ib_async import ExecutionFilter

        flt = ExecutionFilter(acctCode=self._account, time=parse.exec_filter_time(since) if since else "")
        answer = ib.reqExecutions(flt)
        # ib_async files the commission report on the Fill it saw first; a fill already seen live
        # comes back from reqExecutions with an empty report, so take the commission from there.
        seen = {f.execution.execId: f for f in ib.fills()}
        out: dict[str, Execution] = {}
        for fill in answer:
            known = seen.get(fill.execution.execId, fill)
            execution = parse.fill_to_execution(fill, parse.commission_of(known))
            if since is None or execution.timestamp >= since:
                out[execution.execution_id] = execution
        return sorted(out.values(), key=lambda e: (e.timestamp, e.execution_id))

    def _shutdown_in_thread(self) -> None:
        self._drop()
        loop = asyncio.get_event_loop()
        asyncio.set_event_loop(None)
        close_event_loop(loop)
