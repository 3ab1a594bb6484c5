"""Orders, fills, positions and the trading state: plain frozen dataclasses, no vendor types."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    INTENDED = "intended"  # written to the ledger, not yet sent
    SUBMITTED = "submitted"  # the send started; outcome not yet known
    ACCEPTED = "accepted"  # the broker holds it (new / open)
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # ambiguous outcome (timeout after send, unknown error): reconcile, never resend
    ABANDONED = "abandoned"  # an intent the broker never received, given up after the grace period

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ABANDONED)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # everything allowed within limits
    REDUCING = "REDUCING"  # only cancels and position-reducing orders
    HALTED = "HALTED"  # only cancels and reduce-only orders, until a human resumes


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def make_client_order_id(strategy: str, symbol: str, session: dt.date, seq: int) -> str:
    """Deterministic id from (strategy, symbol, session, intent sequence): a retry, a re-run of the
    same tick or a restart computes the same id, so the broker can never hold two orders for one
    intent (Alpaca rejects a duplicate client_order_id; IB carries it in orderRef)."""
    parts = [_ID_UNSAFE.sub("_", strategy), _ID_UNSAFE.sub("_", symbol), session.strftime("%Y%m%d"), str(seq)]
    cid = "tf-" + "-".join(parts)
    if len(cid) > 128:  # Alpaca's limit
        raise ValueError(f"client order id too long ({len(cid)} > 128): {cid[:40]}...")
    return cid


@dataclass(frozen=True)
class OrderIntent:
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    session: dt.date
    strategy: str
    seq: int = 0
    order_type: str = "market"  # "market" | "limit"
    limit_price: Decimal | None = None
    time_in_force: str = "day"
    reduce_only: bool = False  # only ever shrinks an existing position

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"order quantity must be positive, got {self.qty}")
        if self.order_type == "limit" and self.limit_price is None:
            raise ValueError("a limit order needs a limit price")

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass(frozen=True)
class BrokerOrder:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    status: OrderStatus
    submitted_at: dt.datetime | None = None


@dataclass(frozen=True)
class Execution:
    """One fill report; execution_id is unique per broker (fills are deduplicated by it)."""

    execution_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    timestamp: dt.datetime

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: Decimal  # signed: negative is short
    avg_price: Decimal


# Account cash moves in whole cents, as brokers book it: a fill's cash is rounded once, half up, and
# money from two sides is compared at this precision (a ledger holding 964.5688 against a broker's
# 964.57 is not a discrepancy).
CASH_QUANTUM = Decimal("0.01")


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CASH_QUANTUM, ROUND_HALF_UP)


@dataclass(frozen=True)
class Account:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal


class SubmitOutcome(StrEnum):
    ACCEPTED = "accepted"  # the broker holds the order
    DUPLICATE = "duplicate"  # the broker already had this client id: adopted, not re-sent
    REJECTED = "rejected"  # definitively not accepted (e.g. insufficient buying power, 429 before acceptance)
    AMBIGUOUS = "ambiguous"  # may or may not have been accepted (timeout, 504, unknown error): reconcile


@dataclass(frozen=True)
class SubmitResult:
    outcome: SubmitOutcome
    client_order_id: str
    order: BrokerOrder | None = None
    reason: str = ""
    retryable: bool = False  # only for REJECTED: the same id may be sent again after back-off (429)
