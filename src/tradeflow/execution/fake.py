"""A Broker for tests that misbehaves on request: the fault modes of RELIABILITY.md §4.

The books are an in-memory SimBroker (frictionless by default, so a test reads fills at the price it
set). Each fault mode is armed by a method, counts down as it fires, and mirrors what a real broker
did to someone (the scenario ids name them). Every protocol call is counted in `calls`, in the
manner of freqtrade's ccxt exception-handler tests, and `broker_orders_for(cid)` shows how many
orders the broker really holds for a client id, the figure behind "exactly 1 broker order".

Modes:
- accept_then_timeout (A1): the order reaches the books (and fills if it can); submit answers AMBIGUOUS.
- reject_429 (A2): submit answers REJECTED retryable; nothing reaches the books.
- reject_duplicate_client_id (A3): an earlier attempt had landed unseen (alpaca-py's own 504
  retry); the broker holds the order and answers "client_order_id must be unique": DUPLICATE.
- partial_fill_then_cancel (A9): the order fills `filled` of its quantity, then the broker cancels it.
- duplicate_execution (A11): executions() delivers every fill twice, as a replay after a reconnect.
- disconnect_mid_fill (B5): the next order fills in two executions; the first executions() call
  delivers only the first, then the connection is down (BrokerUnavailable) until `reconnect()`.
- position_drift (B1/B2): the broker's position changes outside this client.
- cash_drift (B6): the broker's cash changes outside this client.
- slow_response (A8): the named calls first sleep `seconds` through the injected `sleep`.
- unknown_error_code (A10): the order is live at the broker; submit answers AMBIGUOUS (unknown code).
- not_found_then_found (B4): get_order answers None a number of times before the order shows.
- query_failure (B3): the named queries raise BrokerUnavailable.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal

from tradeflow.domain import (
    Account,
    BrokerOrder,
    Execution,
    OrderIntent,
    Position,
    SubmitOutcome,
    SubmitResult,
)
from tradeflow.errors import BrokerUnavailable
from tradeflow.execution.sim import DEFAULT_CASH, Clock, SimBroker, to_decimal
from tradeflow.sim.costs import CostModel

# Fills at exactly the reference price with no commission or fees: the arithmetic in tests stays plain.
FRICTIONLESS = CostModel(
    commission_per_share=0.0,
    commission_min=0.0,
    commission_max_pct=None,
    half_spread_bps=0.0,
    slippage_bps=0.0,
    impact_bps=0.0,
    sec_fee_rate=0.0,
    taf_per_share=0.0,
    taf_max=0.0,
)
QUERIES = ("get_order", "open_orders", "cancel", "positions", "account", "executions")


class FakeBroker:
    """Implements `Broker` over an in-memory SimBroker and injects faults on request."""

    name = "fake"

    def __init__(
        self,
        clock: Clock,
        *,
        cost: CostModel = FRICTIONLESS,
        initial_cash: Decimal = DEFAULT_CASH,
        unique_client_ids: bool = True,
        allow_short: bool = False,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.core = SimBroker(
            None,
            clock=clock,
            cost=cost,
            initial_cash=initial_cash,
            allow_short=allow_short,
            unique_client_ids=unique_client_ids,
        )
        self.calls: Counter[str] = Counter()
        self.slept: list[float] = []
        self._sleep = sleep or self.slept.append
        self.connected = True
        self._armed: Counter[str] = Counter()
        self._partial_qty = Decimal(0)
        self._unknown_code = 0
        self._failing: dict[str, int | None] = {}  # query -> failures left (None: until cleared)
        self._slow: dict[str, float] = {}
        self._duplicate_executions = False
        self._held_back: set[str] = set()  # execution ids not yet delivered (disconnect_mid_fill)

    def __repr__(self) -> str:
        armed = sorted(k for k, v in self._armed.items() if v) + sorted(self._failing)
        return f"FakeBroker(connected={self.connected}, faults={armed})"

    # ------------------------------------------------------------------ fault modes

    def accept_then_timeout(self, times: int = 1) -> FakeBroker:
        self._armed["accept_then_timeout"] += times
        return self

    def reject_429(self, times: int = 1) -> FakeBroker:
        self._armed["reject_429"] += times
        return self

    def reject_duplicate_client_id(self, times: int = 1) -> FakeBroker:
        self._armed["reject_duplicate_client_id"] += times
        return self

    def partial_fill_then_cancel(self, filled: Decimal | int = 40, times: int = 1) -> FakeBroker:
        self._partial_qty = to_decimal(filled)
        self._armed["partial_fill_then_cancel"] += times
        return self

    def duplicate_execution(self, enabled: bool = True) -> FakeBroker:
        self._duplicate_executions = enabled
        return self

    def disconnect_mid_fill(self) -> FakeBroker:
        self._armed["disconnect_mid_fill"] += 1
        return self

    def position_drift(self, symbol: str, qty: Decimal | int, price: Decimal | None = None) -> FakeBroker:
        self.core.external_position_change(symbol, qty, price)
        return self

    def cash_drift(self, amount: Decimal | int | str) -> FakeBroker:
        self.core.external_cash_change(amount)
        return self

    def slow_response(self, seconds: float, methods: Iterable[str] = ("submit",)) -> FakeBroker:
        for method in methods:
            self._slow[method] = seconds
        return self

    def unknown_error_code(self, times: int = 1, code: int = 10999) -> FakeBroker:
        self._unknown_code = code
        self._armed["unknown_error_code"] += times
        return self

    def not_found_then_found(self, times: int = 1) -> FakeBroker:
        self._armed["not_found_then_found"] += times
        return self

    def query_failure(self, methods: Iterable[str] = ("positions", "account"), times: int | None = None) -> FakeBroker:
        for method in methods:
            if method not in QUERIES:
                raise ValueError(f"{method!r} is not a query; choose from {QUERIES}")
            self._failing[method] = times
        return self

    def reconnect(self) -> FakeBroker:
        self.connected = True
        self._held_back.clear()
        return self

    def clear_faults(self) -> FakeBroker:
        self._armed.clear()
        self._failing.clear()
        self._slow.clear()
        self._duplicate_executions = False
        return self.reconnect()

    # ------------------------------------------------------------------ what tests look at

    def set_price(self, symbol: str, price: Decimal | float | str, volume: float = 0.0) -> list[Execution]:
        return self.core.set_price(symbol, price, volume)

    def broker_orders_for(self, client_order_id: str) -> list[BrokerOrder]:
        return self.core.orders_for(client_order_id)

    # ------------------------------------------------------------------ Broker protocol

    def submit(self, intent: OrderIntent) -> SubmitResult:
        self._enter("submit")
        cid = intent.client_order_id
        if not self.connected:
            return SubmitResult(SubmitOutcome.REJECTED, cid, None, "not connected (IB 504)", retryable=True)
        if self._take("reject_429"):
            return SubmitResult(SubmitOutcome.REJECTED, cid, None, "429 rate limit exceeded", retryable=True)
        if self._take("reject_duplicate_client_id"):
            self.core.submit(intent)
            existing = self.core.get_order(cid)
            return SubmitResult(SubmitOutcome.DUPLICATE, cid, existing, "client_order_id must be unique")
        if self._take("accept_then_timeout"):
            self.core.submit(intent)
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, "504 gateway timeout after the order was sent")
        if self._take("unknown_error_code"):
            self.core.submit(intent, fill=False)
            return SubmitResult(SubmitOutcome.AMBIGUOUS, cid, None, f"unknown error code {self._unknown_code}")
        if self._take("partial_fill_then_cancel"):
            result = self.core.submit(intent, fill=False)
            if result.outcome is SubmitOutcome.ACCEPTED:
                self.core.fill_order(cid, min(self._partial_qty, intent.qty))
                self.core.cancel(cid)
            return result
        if self._take("disconnect_mid_fill"):
            result = self.core.submit(intent, fill=False)
            if result.outcome is SubmitOutcome.ACCEPTED:
                first = self.core.fill_order(cid, max(intent.qty // 2, Decimal(1)))
                if intent.qty > first.qty:
                    rest = self.core.fill_order(cid)
                    self._held_back.add(rest.execution_id)
            return result
        return self.core.submit(intent)

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        self._enter("get_order")
        if self._take("not_found_then_found"):
            return None
        return self.core.get_order(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        self._enter("open_orders")
        return self.core.open_orders()

    def cancel(self, client_order_id: str) -> bool:
        self._enter("cancel")
        return self.core.cancel(client_order_id)

    def positions(self) -> dict[str, Position]:
        self._enter("positions")
        return self.core.positions()

    def account(self) -> Account:
        self._enter("account")
        return self.core.account()

    def quote(self, symbol: str) -> Decimal | None:
        self._enter("quote")
        return self.core.quote(symbol)

    def executions(self, since: dt.datetime | None = None) -> list[Execution]:
        self._enter("executions")
        delivered = self.core.executions(since)
        if self._held_back:
            # The connection drops while fills are arriving: this answer misses the rest, and the
            # next calls find the broker unreachable until reconnect() (IB error 1100).
            delivered = [e for e in delivered if e.execution_id not in self._held_back]
            self.connected = False
        if self._duplicate_executions:
            delivered = [e for e in delivered for _ in range(2)]
        return delivered

    def close(self) -> None:
        """Nothing to release (an in-memory book); faults are injected per call, not on close."""

    # ------------------------------------------------------------------ internals

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if method in self._slow:
            self._sleep(self._slow[method])
        if method == "submit":
            return
        if not self.connected:
            raise BrokerUnavailable(f"fake broker: not connected ({method})")
        if method in self._failing:
            left = self._failing[method]
            if left is not None:
                if left <= 1:
                    del self._failing[method]
                else:
                    self._failing[method] = left - 1
            raise BrokerUnavailable(f"fake broker: {method} query failed (injected)")

    def _take(self, mode: str) -> bool:
        if self._armed[mode] > 0:
            self._armed[mode] -= 1
            return True
        return False
