"""The local paper broker (the default): fills at a reference price through the shared cost model and
keeps its books in a JSON file, so a restarted process meets the same broker.

Prices: nothing here looks anything up. The driver hands a reference price to `set_price` (the next
open in a replay, the latest price in a live paper tick); market orders fill at it as soon as there
is one, and DAY limit orders fill when it crosses their limit. The fill price and the commission and
fees come from `tradeflow.sim.CostModel`, the model the backtest and the RL env are judged on, so a
paper replay can reproduce a backtest within cost rounding.

Time: the broker never reads the wall clock; `clock` is called for the timestamp of an order or a
fill (a frozen or simulated clock in tests and replays, the flow's clock live).

Persistence: every change is written whole through `atomic_write_text` (temp file + os.replace), so a
crash leaves the previous state or the new one. Order ids come from persisted counters, so they are
deterministic and never reused after a restart. With `state_path=None` the books live in memory only
(the FakeBroker's core).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from tradeflow.domain import (
    CASH_QUANTUM,
    Account,
    BrokerOrder,
    Execution,
    OrderIntent,
    OrderStatus,
    Position,
    Side,
    SubmitOutcome,
    SubmitResult,
    to_cents,
)
from tradeflow.errors import BrokerError
from tradeflow.infra.files import atomic_write_text
from tradeflow.sim.costs import CostModel

Clock = Callable[[], dt.datetime]
T = TypeVar("T")

STATE_VERSION = 1
DEFAULT_CASH = Decimal("100000")
PRICE_QUANTUM = Decimal("0.0001")
# No paper account, position or price comes near this: a larger amount in the state file is damage
# (1e400 would otherwise load and then overflow the first quantize, deep inside a tick).
MAX_AMOUNT = Decimal("1e15")
_OPEN = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


def to_decimal(value: Decimal | float | int | str) -> Decimal:
    """A finite Decimal from a float, int, str or Decimal (floats through their shortest repr)."""
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not out.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return out


@dataclass
class _Order:
    """The broker's own mutable record of one order; `view()` is what callers get."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: str
    limit_price: Decimal | None
    session: dt.date
    submitted_at: dt.datetime
    status: OrderStatus = OrderStatus.ACCEPTED
    filled_qty: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)  # sum of qty * price over fills, for the average price
    reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    def view(self) -> BrokerOrder:
        avg = (self.filled_value / self.filled_qty).quantize(PRICE_QUANTUM) if self.filled_qty else None
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.broker_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            filled_qty=self.filled_qty,
            avg_fill_price=avg,
            status=self.status,
            submitted_at=self.submitted_at,
        )


# The persisted form of an order or an execution: Decimals as strings (exact), dates ISO, enums by value.
_DECIMAL_FIELDS = frozenset({"qty", "limit_price", "filled_qty", "filled_value", "price", "commission"})
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "side": Side,
    "status": OrderStatus,
    "session": dt.date.fromisoformat,
    "submitted_at": dt.datetime.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
}


def _encode(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, dt.date):  # datetimes too
            value = value.isoformat()
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Decimal):
            value = str(value)
        out[f.name] = value
    return out


class _StateFault(ValueError):
    """What is wrong with a state file, worded to name the field and never to echo its value."""


def _amount(value: Any, where: str) -> Decimal:
    """A finite Decimal within MAX_AMOUNT from a persisted amount (a string as written, or a number)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _StateFault(f"{where} is not a number")
    try:
        out = to_decimal(value)
    except ValueError:
        raise _StateFault(f"{where} is not a finite number") from None
    if abs(out) >= MAX_AMOUNT:
        raise _StateFault(f"{where} is out of range (at most {MAX_AMOUNT:.0e} in size)")
    return out


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _StateFault(f"{where} is not a JSON object")
    return value


def _field(raw: dict[str, Any], name: str, where: str) -> Any:
    if name not in raw:
        raise _StateFault(f"{where} lacks the field {name!r}")
    return raw[name]


def _decode(cls: type[T], raw: Any, where: str) -> T:
    kwargs: dict[str, Any] = {}
    for name, value in _mapping(raw, where).items():
        if value is not None and name in _DECIMAL_FIELDS:
            value = _amount(value, f"{where}.{name}")
        elif value is not None and name in _DECODERS:
            try:
                value = _DECODERS[name](value)
            except (TypeError, ValueError):
                raise _StateFault(f"{where}.{name} is not a valid {name}") from None
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError:
        raise _StateFault(f"{where} does not have the fields of {cls.__name__.lstrip('_').lower()}") from None


class SimBroker:
    """A paper broker on the shared cost model, with persisted books. Implements `Broker`.

    `unique_client_ids=False` makes it accept a second order under a client id it already holds, as
    IB does (orderRef is free text): tests use that to prove the caller never resends.
    """

    name = "sim"

    def __init__(
        self,
        state_path: Path | None,
        *,
        clock: Clock,
        cost: CostModel | None = None,
        initial_cash: Decimal = DEFAULT_CASH,
        allow_short: bool = False,
        unique_client_ids: bool = True,
    ) -> None:
        self._path = state_path
        self._clock = clock
        self._cost = cost or CostModel()
        self._allow_short = allow_short
        self._unique = unique_client_ids
        self._lock = threading.RLock()
        self._cash = to_decimal(initial_cash)
        self._orders: list[_Order] = []
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, avg price)
        self._executions: list[Execution] = []
        self._prices: dict[str, tuple[Decimal, float]] = {}  # symbol -> (reference price, day volume)
        self._next_order = 1
        self._next_execution = 1
        if self._path is not None and self._path.exists():
            self._load(self._path)

    def __repr__(self) -> str:
        return f"SimBroker(state_path={str(self._path)!r}, orders={len(self._orders)})"

    # ------------------------------------------------------------------ Broker protocol

    def submit(self, intent: OrderIntent, *, fill: bool = True) -> SubmitResult:
        """Accept (and, with a price and `fill`, fill) the order; DUPLICATE for a known client id.

        `fill=False` leaves even a marketable order resting, for test doubles that fill it later
        through `fill_order` (partial fills, fills split across a disconnect).
        """
        with self._lock:
            cid = intent.client_order_id
            existing = self._latest(cid)
            if existing is not None and self._unique:
                return SubmitResult(SubmitOutcome.DUPLICATE, cid, existing.view(), "client_order_id must be unique")
            problem = self._check_affordable(intent)
            if problem:
                return SubmitResult(SubmitOutcome.REJECTED, cid, None, problem)
            order = _Order(
                client_order_id=cid,
                broker_order_id=f"sim-{self._next_order:08d}",
                symbol=intent.symbol,
                side=intent.side,
                qty=intent.qty,
                order_type=intent.order_type,
                limit_price=intent.limit_price,
                session=intent.session,
                submitted_at=self._now(),
            )
            self._next_order += 1
            self._orders.append(order)
            accepted = order.view()
            if fill:
                self._try_fill(order)
            self._save()
            return SubmitResult(SubmitOutcome.ACCEPTED, cid, accepted)

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            order = self._latest(client_order_id)
            return None if order is None else order.view()

    def open_orders(self) -> list[BrokerOrder]:
        with self._lock:
            return [o.view() for o in self._orders if o.status in _OPEN]

    def cancel(self, client_order_id: str) -> bool:
        with self._lock:
            order = self._latest(client_order_id)
            if order is None:
                return False
            if order.status in _OPEN:
                order.status = OrderStatus.CANCELLED
                order.reason = "cancelled by request"
                self._save()
            return True

    def positions(self) -> dict[str, Position]:
        with self._lock:
            return {s: Position(s, q, p) for s, (q, p) in sorted(self._positions.items()) if q != 0}

    def account(self) -> Account:
        with self._lock:
            value = sum(
                (q * self._prices.get(s, (p, 0.0))[0] for s, (q, p) in self._positions.items()),
                start=Decimal(0),
            )
            equity = (self._cash + value).quantize(CASH_QUANTUM, ROUND_HALF_UP)
            # No margin: a sale's proceeds and the cash on hand are all there is to spend.
            return Account(cash=self._cash, equity=equity, buying_power=max(self._cash, Decimal(0)))

    def executions(self, since: dt.datetime | None = None) -> list[Execution]:
        # `>=`: a fill stamped exactly at `since` is returned again rather than lost; callers
        # deduplicate by execution id anyway.
        with self._lock:
            return [e for e in self._executions if since is None or e.timestamp >= since]

    def close(self) -> None:
        """Nothing to release: every change is already saved to the state file when it happens."""

    # ------------------------------------------------------------------ the market and test hooks

    def quote(self, symbol: str) -> Decimal | None:
        """The reference price market orders fill at (before spread, slippage and impact)."""
        with self._lock:
            known = self._prices.get(symbol)
            return None if known is None else known[0]

    def set_price(self, symbol: str, price: Decimal | float | str, volume: float = 0.0) -> list[Execution]:
        """The reference price for `symbol` (+ the day's volume for the impact term). Resting orders
        that can fill at it fill now; returns the new executions."""
        ref = to_decimal(price)
        if ref <= 0:
            raise ValueError(f"reference price must be positive, got {price!r}")
        with self._lock:
            self._prices[symbol] = (ref, float(volume))
            before = len(self._executions)
            for order in list(self._orders):
                if order.symbol == symbol and order.status in _OPEN:
                    self._try_fill(order)
            self._save()
            return self._executions[before:]

    def fill_order(self, client_order_id: str, qty: Decimal | int | None = None) -> Execution:
        """Fill `qty` (default: all that remains) of an open order now at the reference price,
        limit or not: for test doubles that script fills (40 of 100, a fill split by a disconnect)."""
        with self._lock:
            order = self._latest(client_order_id)
            if order is None or order.status not in _OPEN:
                raise BrokerError(f"no open order {client_order_id!r} to fill")
            price = self._prices.get(order.symbol)
            if price is None:
                raise BrokerError(f"no reference price for {order.symbol}")
            amount = order.remaining if qty is None else min(to_decimal(qty), order.remaining)
            execution = self._fill(order, amount, price)
            self._save()
            return execution

    def end_session(self, session: dt.date) -> list[str]:
        """Expire the DAY orders of `session` and earlier that are still open; returns their ids."""
        with self._lock:
            expired = [o for o in self._orders if o.status in _OPEN and o.session <= session]
            for order in expired:
                order.status = OrderStatus.CANCELLED
                order.reason = "expired at the end of the day"
            self._save()
            return [o.client_order_id for o in expired]

    def external_position_change(self, symbol: str, qty: Decimal | int, price: Decimal | None = None) -> None:
        """A position change made outside this client (a manual trade, an exercise, a transfer in):
        no order, no execution and no cash movement here, exactly what drift detection must catch."""
        with self._lock:
            held, avg = self._positions.get(symbol, (Decimal(0), Decimal(0)))
            delta = to_decimal(qty)
            new = held + delta
            if held == 0 or (held > 0) != (new > 0):
                avg = price if price is not None else self._prices.get(symbol, (Decimal(0), 0.0))[0]
            self._set_position(symbol, new, avg)
            self._save()

    def external_cash_change(self, amount: Decimal | int | str) -> None:
        """Cash moved outside the trades of this client (a fee, a deposit, interest)."""
        with self._lock:
            self._cash += to_decimal(amount)
            self._save()

    def orders_for(self, client_order_id: str) -> list[BrokerOrder]:
        """Every order the broker holds under `client_order_id` (more than one only without
        unique client ids): what tests count to prove "exactly one broker order"."""
        with self._lock:
            return [o.view() for o in self._orders if o.client_order_id == client_order_id]

    def reference_price(self, symbol: str) -> Decimal | None:
        with self._lock:
            entry = self._prices.get(symbol)
            return None if entry is None else entry[0]

    # ------------------------------------------------------------------ internals

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the sim broker's clock must return tz-aware datetimes")
        return now.astimezone(dt.UTC)

    def _latest(self, client_order_id: str) -> _Order | None:
        for order in reversed(self._orders):
            if order.client_order_id == client_order_id:
                return order
        return None

    def _fill_price(self, side: Side, qty: Decimal, ref: Decimal, volume: float) -> Decimal:
        impact = to_decimal(self._cost.price_impact(float(qty), volume))
        raw = ref * (1 + impact) if side is Side.BUY else ref * (1 - impact)
        return raw.quantize(PRICE_QUANTUM, ROUND_HALF_UP)

    def _costs(self, side: Side, qty: Decimal, price: Decimal) -> Decimal:
        """Commission plus, on sales, the SEC fee and FINRA TAF: everything not in the price."""
        total = self._cost.commission(float(qty), float(price))
        if side is Side.SELL:
            total += self._cost.sell_fees(float(qty), float(price))
        return to_decimal(total).quantize(CASH_QUANTUM, ROUND_HALF_UP)

    def _check_affordable(self, intent: OrderIntent) -> str:
        if intent.side is Side.SELL and not self._allow_short:
            held = self._positions.get(intent.symbol, (Decimal(0), Decimal(0)))[0]
            reserved = sum(
                (
                    o.remaining
                    for o in self._orders
                    if o.symbol == intent.symbol and o.side is Side.SELL and o.status in _OPEN
                ),
                start=Decimal(0),
            )
            if intent.qty > held - reserved:
                return f"insufficient qty available for order (held {held}, reserved {reserved}, asked {intent.qty})"
        entry = self._prices.get(intent.symbol)
        if intent.side is Side.BUY and entry is not None:
            price = intent.limit_price if intent.order_type == "limit" else None
            estimate = price or self._fill_price(Side.BUY, intent.qty, entry[0], entry[1])
            need = intent.qty * estimate + self._costs(Side.BUY, intent.qty, estimate)
            if need > self._cash:
                return f"insufficient buying power (need {need:.2f}, have {self._cash:.2f})"
        return ""

    def _try_fill(self, order: _Order) -> None:
        entry = self._prices.get(order.symbol)
        if entry is None:
            return  # a market order waits for the first price
        ref, volume = entry
        if order.order_type == "limit":
            assert order.limit_price is not None
            crosses = ref <= order.limit_price if order.side is Side.BUY else ref >= order.limit_price
            if not crosses:
                return
        if order.side is Side.BUY:
            price = self._fill_price(Side.BUY, order.remaining, ref, volume)
            if order.limit_price is not None:
                price = min(price, order.limit_price)
            if order.remaining * price + self._costs(Side.BUY, order.remaining, price) > self._cash:
                order.status = OrderStatus.CANCELLED
                order.reason = "insufficient buying power at fill time"
                return
        self._fill(order, order.remaining, entry)

    def _fill(self, order: _Order, qty: Decimal, entry: tuple[Decimal, float]) -> Execution:
        ref, volume = entry
        price = self._fill_price(order.side, qty, ref, volume)
        if order.limit_price is not None:
            better = min if order.side is Side.BUY else max
            price = better(price, order.limit_price)
        costs = self._costs(order.side, qty, price)
        signed = qty if order.side is Side.BUY else -qty
        # The same cent rounding as the ledger's cash fold (domain.to_cents): one rule, one result.
        self._cash += to_cents(-signed * price - costs)
        self._apply_to_position(order.symbol, signed, price)
        order.filled_qty += qty
        order.filled_value += qty * price
        order.status = OrderStatus.FILLED if order.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        execution = Execution(
            execution_id=f"sim-exec-{self._next_execution:08d}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            commission=costs,
            timestamp=self._now(),
        )
        self._next_execution += 1
        self._executions.append(execution)
        return execution

    def _apply_to_position(self, symbol: str, signed: Decimal, price: Decimal) -> None:
        held, avg = self._positions.get(symbol, (Decimal(0), Decimal(0)))
        new = held + signed
        if held == 0 or ((held > 0) != (new > 0) and new != 0):
            avg = price  # opened, or flipped through zero: the new side starts at this price
        elif (held > 0) == (signed > 0):
            avg = ((held * avg + signed * price) / new).quantize(PRICE_QUANTUM, ROUND_HALF_UP)
        # reducing keeps the average entry price
        self._set_position(symbol, new, avg)

    def _set_position(self, symbol: str, qty: Decimal, avg: Decimal) -> None:
        if qty == 0:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = (qty, avg)

    def _save(self) -> None:
        if self._path is None:
            return
        state = {
            "version": STATE_VERSION,
            "cash": str(self._cash),
            "next_order": self._next_order,
            "next_execution": self._next_execution,
            "orders": [_encode(o) for o in self._orders],
            "positions": {s: {"qty": str(q), "avg_price": str(p)} for s, (q, p) in self._positions.items()},
            "executions": [_encode(e) for e in self._executions],
            "prices": {s: {"price": str(p), "volume": v} for s, (p, v) in self._prices.items()},
        }
        atomic_write_text(self._path, json.dumps(state, indent=1, sort_keys=True))

    def _load(self, path: Path) -> None:
        """Read the books back, checking every field: a damaged file (not JSON, null, a list, a missing
        field, a cash of NaN, Inf or 1e400) is one BrokerError naming the file and the field."""
        try:
            state = _mapping(json.loads(path.read_text(encoding="utf-8")), "the state")
            if state.get("version") != STATE_VERSION:
                raise _StateFault(f"the state version is not {STATE_VERSION}")
            cash = _amount(_field(state, "cash", "the state"), "cash")
            counters = []
            for name in ("next_order", "next_execution"):
                value = _field(state, name, "the state")
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise _StateFault(f"{name} is not a positive integer")
                counters.append(value)
            orders = _field(state, "orders", "the state")
            executions = _field(state, "executions", "the state")
            if not isinstance(orders, list) or not isinstance(executions, list):
                raise _StateFault("orders and executions must be JSON lists")
            positions: dict[str, tuple[Decimal, Decimal]] = {}
            for sym, raw in _mapping(_field(state, "positions", "the state"), "positions").items():
                entry = _mapping(raw, f"positions.{sym}")
                qty = _amount(_field(entry, "qty", f"positions.{sym}"), f"positions.{sym}.qty")
                avg = _amount(_field(entry, "avg_price", f"positions.{sym}"), f"positions.{sym}.avg_price")
                positions[sym] = (qty, avg)
            prices: dict[str, tuple[Decimal, float]] = {}
            for sym, raw in _mapping(_field(state, "prices", "the state"), "prices").items():
                entry = _mapping(raw, f"prices.{sym}")
                price = _amount(_field(entry, "price", f"prices.{sym}"), f"prices.{sym}.price")
                volume = _amount(_field(entry, "volume", f"prices.{sym}"), f"prices.{sym}.volume")
                prices[sym] = (price, float(volume))
            decoded_orders = [_decode(_Order, o, f"orders[{i}]") for i, o in enumerate(orders)]
            decoded_executions = [_decode(Execution, e, f"executions[{i}]") for i, e in enumerate(executions)]
        except FileNotFoundError:
            raise BrokerError(f"sim broker state {path} vanished while being read") from None
        except OSError as exc:
            raise BrokerError(f"sim broker state {path} is unreadable: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise BrokerError(f"sim broker state {path} is unreadable: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise BrokerError(
                f"sim broker state {path} is unreadable: not JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        except _StateFault as exc:
            # Fail closed: a broker whose books cannot be read must not start from an empty account.
            raise BrokerError(f"sim broker state {path} is unreadable: {exc}") from None
        self._cash = cash
        self._next_order, self._next_execution = counters
        self._orders, self._executions = decoded_orders, decoded_executions
        self._positions, self._prices = positions, prices
