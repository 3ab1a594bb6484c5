"""Pure translation between alpaca-py's trading objects (or the REST JSON behind them) and the domain.

No requests, no clock, no state: every function maps values, so the tables below can be tested on
their own and replayed against recorded answers. Quantities and money become Decimal through their
string form (the API sends strings; alpaca-py keeps some as float).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from tradeflow.adapters.alpaca.client import quiet_sdk_import
from tradeflow.domain import Account, BrokerOrder, Execution, OrderIntent, OrderStatus, Position, Side

with quiet_sdk_import():
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

DUPLICATE_MESSAGE = "client_order_id must be unique"

# Alpaca order statuses (docs "Orders at Alpaca", alpaca.trading.enums.OrderStatus). The ones not
# listed as final or rejected are live at the broker: accepted, or partially filled when shares traded.
_FINAL = {
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "expired": OrderStatus.CANCELLED,
    "replaced": OrderStatus.CANCELLED,  # this order is over; its replacement carries on
    "rejected": OrderStatus.REJECTED,
}
_LIVE = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "accepted_for_bidding",
        "partially_filled",
        "done_for_day",
        "pending_cancel",
        "pending_replace",
        "pending_review",
        "stopped",
        "suspended",
        "calculated",
        "held",
    }
)


class ErrorKind(StrEnum):
    """What an HTTP error from the trading API means for the caller."""

    DUPLICATE = "duplicate"  # the client id is taken: the order exists (A3)
    RATE_LIMITED = "rate_limited"  # 429: definitively not accepted; resend the same id later (A2)
    NOT_FOUND = "not_found"  # 404
    REJECTED = "rejected"  # a business or request rejection: definitively not accepted
    AMBIGUOUS = "ambiguous"  # 5xx, 408, no status: the request may have been acted on (A1, A10)


def classify_http_error(status: int | None, message: str) -> ErrorKind:
    if DUPLICATE_MESSAGE in message.lower():
        return ErrorKind.DUPLICATE
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status is not None and 400 <= status < 500 and status != 408:
        return ErrorKind.REJECTED
    return ErrorKind.AMBIGUOUS


def error_parts(exc: BaseException) -> tuple[int | None, str]:
    """(HTTP status, message) of an alpaca-py APIError, safely: its `.message` parses the body as
    JSON and raises on the HTML pages gateways send with a 502 or 504."""
    status = getattr(exc, "status_code", None)
    try:
        message = str(exc.message)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, KeyError, TypeError):
        message = str(exc)
    return (int(status) if status is not None else None), " ".join(message.split())[:200]


def decimal_of(value: Any, field: str) -> Decimal:
    if value is None:
        raise ValueError(f"alpaca: {field} is missing")
    try:
        out = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"alpaca: {field} is not a number: {value!r}") from exc
    if not out.is_finite():
        raise ValueError(f"alpaca: {field} is not finite: {value!r}")
    return out


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _text(value: Any) -> str:
    """An enum's value or a plain string (alpaca-py models hold enums, the JSON holds strings)."""
    return str(getattr(value, "value", value) or "")


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"alpaca: naive timestamp {value!r}")
    return stamp.astimezone(dt.UTC)


def order_request(intent: OrderIntent) -> MarketOrderRequest | LimitOrderRequest:
    """The alpaca-py request for an intent: always our deterministic client_order_id, always DAY."""
    if intent.time_in_force != "day":
        raise ValueError(f"only DAY orders are sent, got time_in_force={intent.time_in_force!r}")
    common: dict[str, Any] = {
        "symbol": intent.symbol,
        "qty": float(intent.qty),
        "side": OrderSide.BUY if intent.side is Side.BUY else OrderSide.SELL,
        "time_in_force": TimeInForce.DAY,
        "client_order_id": intent.client_order_id,
    }
    if intent.order_type == "market":
        return MarketOrderRequest(**common)
    if intent.order_type == "limit":
        assert intent.limit_price is not None  # OrderIntent enforces it
        return LimitOrderRequest(**common, limit_price=float(intent.limit_price))
    raise ValueError(f"unsupported order type {intent.order_type!r}")


def order_status(status: str, filled_qty: Decimal) -> OrderStatus:
    if status in _FINAL:
        return _FINAL[status]
    if status in _LIVE:
        return OrderStatus.PARTIALLY_FILLED if filled_qty > 0 else OrderStatus.ACCEPTED
    return OrderStatus.UNKNOWN  # a status this table does not know: reconcile, never guess


def order_to_domain(order: Any) -> BrokerOrder:
    """An alpaca-py Order (or its JSON) as a BrokerOrder."""
    filled = decimal_of(_get(order, "filled_qty") or "0", "filled_qty")
    avg = _get(order, "filled_avg_price")
    return BrokerOrder(
        client_order_id=str(_get(order, "client_order_id")),
        broker_order_id=str(_get(order, "id")),
        symbol=str(_get(order, "symbol")),
        side=Side(_text(_get(order, "side"))),
        qty=decimal_of(_get(order, "qty"), "qty"),
        filled_qty=filled,
        avg_fill_price=decimal_of(avg, "filled_avg_price") if avg not in (None, "") and filled > 0 else None,
        status=order_status(_text(_get(order, "status")), filled),
        submitted_at=_utc(_get(order, "submitted_at")),
    )


def position_to_domain(position: Any) -> Position:
    qty = decimal_of(_get(position, "qty"), "qty")
    if _text(_get(position, "side")) == "short" and qty > 0:
        qty = -qty
    return Position(
        symbol=str(_get(position, "symbol")),
        qty=qty,
        avg_price=decimal_of(_get(position, "avg_entry_price"), "avg_entry_price"),
    )


def account_to_domain(account: Any) -> Account:
    """Cash, equity and buying power; any of them missing is an error, never a zero."""
    return Account(
        cash=decimal_of(_get(account, "cash"), "cash"),
        equity=decimal_of(_get(account, "equity"), "equity"),
        buying_power=decimal_of(_get(account, "buying_power"), "buying_power"),
    )


def activity_side(side: str) -> Side:
    """A fill activity's side: buy, sell, or sell_short (a sale that opens or adds to a short)."""
    if side == "buy":
        return Side.BUY
    if side in ("sell", "sell_short"):
        return Side.SELL
    raise ValueError(f"alpaca: unknown fill side {side!r}")


def fill_activity_to_execution(activity: Mapping[str, Any], client_order_id: str) -> Execution:
    """A FILL account activity (GET /v2/account/activities/FILL) as an Execution.

    The activity names the order by Alpaca's id only; the caller supplies its client id. US equities
    trade commission-free at Alpaca; the regulatory fees arrive separately as FEE activities.
    """
    stamp = _utc(activity.get("transaction_time"))
    if stamp is None:
        raise ValueError("alpaca: fill activity without transaction_time")
    return Execution(
        execution_id=str(activity["id"]),
        client_order_id=client_order_id,
        symbol=str(activity["symbol"]),
        side=activity_side(str(activity["side"])),
        qty=decimal_of(activity.get("qty"), "qty"),
        price=decimal_of(activity.get("price"), "price"),
        commission=Decimal(0),
        timestamp=stamp,
    )
