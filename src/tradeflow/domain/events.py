"""Typed events of the trading path, as the audit log records them.

Each event is a frozen value with past-tense name, its audit `kind` and `payload()`: the JSON object
stored in the audit row. The payload keys and values are the ones the free-string calls wrote before
these types existed; the learning review, the tests and operators' queries read them, so a field is
only ever added. Values may be Decimal, date, datetime or a StrEnum: the ledger's one JSON encoder
(ledger.schema.to_json) writes those as text.

`AuditKind` is the one list of kinds: the ledger's own methods write these events too, and
`Ledger.audit` accepts nothing but an event, so a kind cannot be misspelt or invented at a call site.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from tradeflow.domain.orders import OrderIntent, OrderStatus, Side, TradingState


class AuditKind(StrEnum):
    """Every kind an audit row can have."""

    TICK_STARTED = "tick_started"
    TICK_RECORDED = "tick_recorded"
    INTENT = "intent"
    SUBMIT_ATTEMPT = "submit_attempt"
    SUBMIT_OUTCOME = "submit_outcome"
    AMBIGUOUS = "ambiguous"
    RECONCILE_LOOKUP = "reconcile_lookup"
    ADOPTED = "adopted"
    ORDER_STATUS = "order_status"
    FILL = "fill"
    DENIAL = "denial"
    STATE_CHANGE = "state_change"
    BREAKER_FIRED = "breaker_fired"  # a risk breaker (or the kill switch) set the trading state
    SESSION_STARTED = "session_started"
    PEAK_RESET = "peak_reset"
    DAILY_PNL = "daily_pnl"
    DRIFT = "drift"
    EXTERNAL_ADJUSTMENT = "external_adjustment"
    ALERT = "alert"
    DUPLICATE_TICK = "duplicate_tick"
    RESUME = "resume"
    STOP = "stop"  # written by ledgers before BREAKER_FIRED named the kill switch; kept for reading them
    STATE_RESTORED = "state_restored"  # the ledger had lost its trading state; the safety latch put it back
    OPERATOR_ADOPTED = "operator_adopted"  # `tradeflow adopt`: the broker's orders, fills and positions taken in


class Breaker(StrEnum):
    """What set a trading state: the governor's breakers (their names are its StateReason values,
    so the audit row and the persisted state reason agree) and the operator's kill switch."""

    DRAWDOWN = "drawdown"
    DAILY_LOSS = "daily_loss"
    ORDER_FLOOD = "order_flood"
    KILL_SWITCH = "kill_switch"


@dataclass(frozen=True)
class AuditEvent:
    """The base of every event; `kind` is fixed per class."""

    kind: ClassVar[AuditKind]

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError


# --- the tick ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickStarted(AuditEvent):
    kind: ClassVar[AuditKind] = AuditKind.TICK_STARTED
    tick: str
    mode: str

    def payload(self) -> dict[str, Any]:
        return {"tick": self.tick, "mode": self.mode}


@dataclass(frozen=True)
class DuplicateTickSkipped(AuditEvent):
    kind: ClassVar[AuditKind] = AuditKind.DUPLICATE_TICK
    tick: str

    def payload(self) -> dict[str, Any]:
        return {"tick": self.tick}


@dataclass(frozen=True)
class AlertRaised(AuditEvent):
    kind: ClassVar[AuditKind] = AuditKind.ALERT
    message: str

    def payload(self) -> dict[str, Any]:
        return {"message": self.message}


# --- orders -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderIntended(AuditEvent):
    """Journaled before anything is sent (A4); written by `Ledger.record_intent` with the order row."""

    kind: ClassVar[AuditKind] = AuditKind.INTENT
    intent: OrderIntent

    def payload(self) -> dict[str, Any]:
        return {"intent": dict(self.intent.__dict__)}


@dataclass(frozen=True)
class OrderDenied(AuditEvent):
    """The risk governor's denial: its reason code (a DenialReason value), detail and denied quantity."""

    kind: ClassVar[AuditKind] = AuditKind.DENIAL
    reason: str
    detail: str
    qty: Decimal
    symbol: str

    def payload(self) -> dict[str, Any]:
        return {"reason": str(self.reason), "detail": self.detail, "qty": str(self.qty), "symbol": self.symbol}


@dataclass(frozen=True)
class SubmitAttempted(AuditEvent):
    kind: ClassVar[AuditKind] = AuditKind.SUBMIT_ATTEMPT
    attempt: int

    def payload(self) -> dict[str, Any]:
        return {"attempt": self.attempt}


@dataclass(frozen=True)
class OrderSubmitted(AuditEvent):
    """The broker took the order: `outcome` is "accepted", or "duplicate" (it already had the id)."""

    kind: ClassVar[AuditKind] = AuditKind.SUBMIT_OUTCOME
    outcome: str

    def payload(self) -> dict[str, Any]:
        return {"outcome": str(self.outcome)}


@dataclass(frozen=True)
class OrderRejected(AuditEvent):
    """The broker refused the order (retryable or not: the tick decides whether to send it again)."""

    kind: ClassVar[AuditKind] = AuditKind.SUBMIT_OUTCOME
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"outcome": "rejected", "reason": self.reason}


@dataclass(frozen=True)
class OrderOutcomeAmbiguous(AuditEvent):
    """The request may have reached the broker (timeout, 5xx): never resent, looked up instead."""

    kind: ClassVar[AuditKind] = AuditKind.AMBIGUOUS
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True)
class OrderLookedUp(AuditEvent):
    """One targeted lookup of an order at the broker, and whether the broker had it."""

    kind: ClassVar[AuditKind] = AuditKind.RECONCILE_LOOKUP
    found: bool

    def payload(self) -> dict[str, Any]:
        return {"found": self.found}


@dataclass(frozen=True)
class OrderAdopted(AuditEvent):
    """An ambiguous submit the lookup found at the broker: its broker order id is taken in."""

    kind: ClassVar[AuditKind] = AuditKind.ADOPTED
    broker_order_id: str | None

    def payload(self) -> dict[str, Any]:
        return {"broker_order_id": self.broker_order_id}


@dataclass(frozen=True)
class OrderFilled(AuditEvent):
    """A fill journaled once (A11), with the position, cash and order status it left."""

    kind: ClassVar[AuditKind] = AuditKind.FILL
    execution_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    ts: dt.datetime  # the broker's execution time
    position_qty: Decimal
    position_avg_price: Decimal
    cash: Decimal
    order_status: OrderStatus | None  # None: a fill for an order the ledger has not seen yet

    def payload(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id, "symbol": self.symbol, "side": self.side, "qty": self.qty,
            "price": self.price, "commission": self.commission, "ts": self.ts, "position_qty": self.position_qty,
            "position_avg_price": self.position_avg_price, "cash": self.cash, "order_status": self.order_status,
        }  # fmt: skip


# --- the trading state ------------------------------------------------------------------------


@dataclass(frozen=True)
class TradingStateChanged(AuditEvent):
    """Written by `Ledger.set_trading_state` in the transaction that changes the state."""

    kind: ClassVar[AuditKind] = AuditKind.STATE_CHANGE
    previous: TradingState
    state: TradingState
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"from": self.previous, "to": self.state, "reason": self.reason}


@dataclass(frozen=True)
class BreakerFired(AuditEvent):
    """A breaker set the trading state `state`; `detail` is the governor's (or the operator's) why.
    Recorded beside the TradingStateChanged it caused, in the same transaction."""

    kind: ClassVar[AuditKind] = AuditKind.BREAKER_FIRED
    breaker: Breaker
    state: TradingState
    detail: str

    def payload(self) -> dict[str, Any]:
        return {"breaker": self.breaker, "state": self.state, "detail": self.detail}


@dataclass(frozen=True)
class TradingResumed(AuditEvent):
    """`tradeflow resume`: who, why, and the governor's resume rule's outcome."""

    kind: ClassVar[AuditKind] = AuditKind.RESUME
    operator: str
    reason: str
    previous: TradingState
    state: TradingState
    detail: str

    def payload(self) -> dict[str, Any]:
        return {"operator": self.operator, "reason": self.reason, "from": str(self.previous),
                "to": str(self.state), "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class StateRestored(AuditEvent):
    """The ledger had lost its trading state or drawdown peak; the safety latch put them back (G1)."""

    kind: ClassVar[AuditKind] = AuditKind.STATE_RESTORED
    previous: TradingState
    state: TradingState
    reason: str
    peak_equity: Decimal | None  # None: the peak was not lost
    latch: str  # the latch file's path

    def payload(self) -> dict[str, Any]:
        return {"from": self.previous, "to": self.state, "reason": self.reason, "peak_equity": self.peak_equity,
                "latch": self.latch}  # fmt: skip


@dataclass(frozen=True)
class OperatorAdopted(AuditEvent):
    """`tradeflow adopt`: an operator took the broker's orders, positions and cash into the ledger."""

    kind: ClassVar[AuditKind] = AuditKind.OPERATOR_ADOPTED
    reason: str
    orders: tuple[str, ...]  # tradeflow client ids the ledger had lost
    positions: dict[str, str]  # symbol -> quantity, as the broker shows them
    cash: str

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason, "orders": list(self.orders), "positions": dict(self.positions),
                "cash": self.cash}  # fmt: skip
