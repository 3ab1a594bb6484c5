"""The Broker protocol every adapter implements (tests/contract/test_broker_conformance.py).

Rules every adapter follows:
- `submit` never raises for a broker-level outcome: it returns ACCEPTED, DUPLICATE (the client id
  already exists: the existing order is looked up and adopted), REJECTED (definitive, with
  `retryable` for rate limits) or AMBIGUOUS (timeout / 5xx / unknown error after the request left:
  the order may exist; the caller reconciles by client id and never resends under a new id).
- queries (`get_order`, `positions`, `account`, `executions`, `open_orders`) raise BrokerUnavailable
  when they cannot answer: an unanswered query means "unknown", never "empty" or "flat".
- vendor SDK types never leave the adapter; money and quantities are Decimal.
- `close` releases what the adapter holds (a connection, a session, a thread) and is idempotent; the
  tick's runtime calls it when the tick ends. After it, an adapter that held a connection (alpaca,
  ib) raises BrokerUnavailable from every call, so a closed adapter can never answer "flat". sim
  and fake hold nothing: their close is a no-op and their books keep answering.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Protocol, runtime_checkable

from tradeflow.domain import Account, BrokerOrder, Execution, OrderIntent, Position, SubmitResult


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, intent: OrderIntent) -> SubmitResult: ...

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client id, or None when the broker has no such order."""
        ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def cancel(self, client_order_id: str) -> bool:
        """Request cancellation; True when the broker accepted the request (or it is already final)."""
        ...

    def positions(self) -> dict[str, Position]: ...

    def account(self) -> Account: ...

    def executions(self, since: dt.datetime | None = None) -> list[Execution]:
        """Fill reports since `since` (all known when None), for reconciliation after reconnects."""
        ...

    def quote(self, symbol: str) -> Decimal | None:
        """The price a market order in `symbol` would face now, or None when the adapter has no live
        price: the tick then sizes and marks at the last completed close (issue 9, G2)."""
        ...

    def close(self) -> None:
        """Release the connection or session; idempotent."""
        ...
