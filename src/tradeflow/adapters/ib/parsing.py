"""Pure translation between ib_async's objects (Trade, Fill, Position, AccountValue) and the domain.

No connection, no clock, no state. Our client order id travels in `order.orderRef` (IB's free-text
tag, echoed on executions); orders placed elsewhere (TWS by hand) get "ib-perm-<permId>".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from tradeflow.data.bars import is_index_symbol
from tradeflow.domain import Account, BrokerOrder, Execution, OrderIntent, OrderStatus, Position, Side, SubmitOutcome

# Yahoo-style index symbols -> (IB symbol, exchange).
INDEXES: dict[str, tuple[str, str]] = {"^VIX": ("VIX", "CBOE"), "^GSPC": ("SPX", "CBOE"), "^NDX": ("NDX", "NASDAQ")}
# ib_async's "no value" for doubles (util.UNSET_DOUBLE == sys.float_info.max).
_UNSET = 1.7976931348623157e308
# IB statuses (ib_async.OrderStatus): waiting for IB's acknowledgement, live, and done.
PENDING = frozenset({"PendingSubmit", "ApiPending"})
LIVE = frozenset({"PreSubmitted", "Submitted", "PendingCancel", "ApiUpdate"})
CANCELLED = frozenset({"Cancelled", "ApiCancelled"})
# 202 "Order Canceled - reason:" is IB's answer to a cancel request, not a rejection.
_CANCEL_ACK = 202


def make_contract(symbol: str) -> Any:
    """^VIX -> Index('VIX', 'CBOE', 'USD'); stocks and ETFs -> a SMART-routed USD Stock. Share
    classes are written with a space at IB (BRK.B / BRK-B -> 'BRK B'). One table for the data
    source and the broker."""
    from ib_async import Index, Stock

    if is_index_symbol(symbol):
        ib_symbol, exchange = INDEXES.get(symbol, (symbol.lstrip("^"), "CBOE"))
        return Index(ib_symbol, exchange, "USD")
    return Stock(symbol.replace(".", " ").replace("-", " "), "SMART", "USD")


def make_order(intent: OrderIntent) -> Any:
    """A DAY market or limit order tagged with our client id in orderRef."""
    from ib_async import LimitOrder, MarketOrder

    if intent.time_in_force != "day":
        raise ValueError(f"only DAY orders are sent, got time_in_force={intent.time_in_force!r}")
    action = "BUY" if intent.side is Side.BUY else "SELL"
    common = {"orderRef": intent.client_order_id, "tif": "DAY"}
    if intent.order_type == "market":
        return MarketOrder(action, float(intent.qty), **common)
    if intent.order_type == "limit":
        assert intent.limit_price is not None  # OrderIntent enforces it
        return LimitOrder(action, float(intent.qty), float(intent.limit_price), **common)
    raise ValueError(f"unsupported order type {intent.order_type!r}")


def domain_symbol(contract: Any) -> str:
    return str(contract.symbol).replace(" ", ".")


def external_client_id(perm_id: int) -> str:
    return f"ib-perm-{perm_id}"


def client_id_of(order: Any) -> str:
    return str(order.orderRef) if order.orderRef else external_client_id(int(order.permId))


def dec(value: Any) -> Decimal:
    """IB's float as a Decimal without binary noise: 467.91999999999996 -> 467.92 (IB prices and
    quantities carry far fewer than 8 decimals)."""
    return Decimal(str(round(float(value), 8)))


def _number(value: Any) -> Decimal | None:
    """A Decimal for a real number, None for IB's unset, NaN or missing values."""
    if value is None:
        return None
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number == _UNSET:
        return None
    return dec(number)


def side_of(action: str) -> Side:
    """Order actions are BUY/SELL; executions say BOT/SLD."""
    if action in ("BUY", "BOT"):
        return Side.BUY
    if action in ("SELL", "SLD", "SSHORT"):
        return Side.SELL
    raise ValueError(f"ib: unknown side {action!r}")


def filled_qty(trade: Any) -> Decimal:
    """The most IB has told us: the live status, the fills seen, or a completed order's own count
    (after a reconnect a completed order's status says 0 filled)."""
    candidates = [_number(trade.orderStatus.filled), _number(getattr(trade.order, "filledQuantity", None))]
    candidates.append(sum((dec(f.execution.shares) for f in trade.fills), start=Decimal(0)))
    return max((c for c in candidates if c is not None), default=Decimal(0))


def avg_fill_price(trade: Any, filled: Decimal) -> Decimal | None:
    if filled <= 0:
        return None
    status_avg = _number(trade.orderStatus.avgFillPrice)
    if status_avg:
        return status_avg
    shares = sum((dec(f.execution.shares) for f in trade.fills), start=Decimal(0))
    if shares <= 0:
        return None
    value = sum((dec(f.execution.shares) * dec(f.execution.price) for f in trade.fills), Decimal(0))
    return dec(value / shares)


def rejection_of(trade: Any) -> str | None:
    """IB's reason when it refused the order outright: done without ever being live or filled, and
    an error in the log (201 "Order rejected", 203, 10147 ...). None otherwise."""
    if trade.orderStatus.status not in CANCELLED | {"Inactive"} or filled_qty(trade) > 0:
        return None
    if any(entry.status in LIVE for entry in trade.log):
        return None
    for entry in reversed(trade.log):
        if entry.errorCode and entry.errorCode != _CANCEL_ACK:
            return f"IB error {entry.errorCode}: {entry.message}"
    return "Inactive" if trade.orderStatus.status == "Inactive" else None


def order_status(trade: Any) -> OrderStatus:
    status = trade.orderStatus.status
    filled = filled_qty(trade)
    if status == "Filled" or (filled > 0 and filled >= dec(trade.order.totalQuantity)):
        return OrderStatus.FILLED
    if rejection_of(trade) is not None:
        return OrderStatus.REJECTED
    if status in CANCELLED or status == "Inactive":
        return OrderStatus.CANCELLED
    if status in PENDING:
        return OrderStatus.SUBMITTED
    if status in LIVE:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
    # "ValidationError" (a warning on a live order) and anything new: unknown, reconcile.
    return OrderStatus.UNKNOWN


def trade_to_domain(trade: Any) -> BrokerOrder:
    order = trade.order
    filled = filled_qty(trade)
    submitted = trade.log[0].time if trade.log else None
    if isinstance(submitted, dt.datetime) and submitted.tzinfo is not None and submitted.year > 1970:
        submitted = submitted.astimezone(dt.UTC)
    else:
        submitted = None
    return BrokerOrder(
        client_order_id=client_id_of(order),
        broker_order_id=str(order.permId) if order.permId else f"{order.clientId}:{order.orderId}",
        symbol=domain_symbol(trade.contract),
        side=side_of(order.action),
        qty=dec(order.totalQuantity),
        filled_qty=filled,
        avg_fill_price=avg_fill_price(trade, filled),
        status=order_status(trade),
        submitted_at=submitted,
    )


def submit_outcome(trade: Any, connected: bool) -> tuple[SubmitOutcome, str]:
    """What a placed order's state says about the submit once the wait for IB's answer ended."""
    status = trade.orderStatus.status
    reason = rejection_of(trade)
    if reason is not None:
        return SubmitOutcome.REJECTED, reason
    if status in LIVE or status == "Filled" or filled_qty(trade) > 0:
        return SubmitOutcome.ACCEPTED, status
    if status in PENDING:
        where = "no acknowledgement from IB in time" if connected else "connection lost before IB acknowledged"
        return SubmitOutcome.AMBIGUOUS, where
    # Cancelled with no error logged, ValidationError on a live order, or a status not known here.
    logged = [f"{e.errorCode}: {e.message}" for e in trade.log if e.errorCode]
    return SubmitOutcome.AMBIGUOUS, f"IB status {status}" + (f" ({logged[-1]})" if logged else "")


def commission_of(fill: Any) -> Decimal:
    """The fill's commission, 0 while IB's commission report has not arrived (it comes separately)."""
    report = getattr(fill, "commissionReport", None)
    value = _number(getattr(report, "commission", None))
    return value if value is not None else Decimal(0)


def fill_to_execution(fill: Any, commission: Decimal | None = None) -> Execution:
    execution = fill.execution
    stamp = execution.time
    if not isinstance(stamp, dt.datetime) or stamp.tzinfo is None:
        raise ValueError(f"ib: execution {execution.execId} without an aware time")
    return Execution(
        execution_id=str(execution.execId),
        client_order_id=str(execution.orderRef) if execution.orderRef else external_client_id(int(execution.permId)),
        symbol=domain_symbol(fill.contract),
        side=side_of(execution.side),
        qty=dec(execution.shares),
        price=dec(execution.price),
        commission=commission_of(fill) if commission is None else commission,
        timestamp=stamp.astimezone(dt.UTC),
    )


def position_to_domain(position: Any) -> Position | None:
    """A stock position; None for other security types, which this system does not trade."""
    if position.contract.secType != "STK":
        return None
    avg = _number(position.avgCost)
    return Position(
        symbol=domain_symbol(position.contract),
        qty=dec(position.position),
        avg_price=avg if avg is not None else Decimal(0),
    )


def account_from_summary(values: Iterable[Any], account: str = "", currency: str = "USD") -> Account:
    """Cash, equity and buying power from accountSummary's AccountValues; a missing tag raises."""
    wanted = {"TotalCashValue": "cash", "NetLiquidation": "equity", "BuyingPower": "buying_power"}
    rows = [v for v in values if v.currency == currency and (not account or v.account == account)]
    accounts = sorted({v.account for v in rows})
    if len(accounts) != 1:
        raise ValueError(f"ib: expected one account in the summary, got {accounts or 'none'}; set the account")
    found: dict[str, Decimal] = {}
    for value in rows:
        if value.tag in wanted:
            found[wanted[value.tag]] = Decimal(value.value)
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise ValueError(f"ib: account summary lacks {missing}")
    return Account(**found)


def exec_filter_time(since: dt.datetime) -> str:
    """ExecutionFilter.time: 'yyyymmdd-hh:mm:ss' in UTC."""
    return since.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S")


def find_trade(trades: Sequence[Any], client_order_id: str) -> Any | None:
    """The newest trade tagged with `client_order_id` (by permId, then orderId)."""
    tagged = [t for t in trades if t.order.orderRef == client_order_id]
    return max(tagged, key=lambda t: (t.order.permId, t.order.orderId), default=None)
