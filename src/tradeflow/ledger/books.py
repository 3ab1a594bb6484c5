"""How fills become positions, cash and order progress: pure arithmetic, and the folds over the
ledger's fill and adjustment rows that the store runs inside its transactions.

A position or a cash balance means a fold over events in time order: fills by (ts, execution_id),
and adoptions of the broker's view (adjustments) as absolute resets that contain every fill stamped
strictly before them. Reconcile applies every fill it can see before it adopts, so a fill stamped
at the adoption instant itself (a frozen or coarse clock) is a new one, not part of the snapshot.
The store applies an in-order fill incrementally and re-folds a symbol only for a late one, so the
stored rows always equal the fold.
"""

from __future__ import annotations

import sqlite3
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from tradeflow.domain import Execution, OrderStatus, Position, Side, to_cents
from tradeflow.ledger.schema import dec_text

# Averages divide; a fixed context keeps the stored digits independent of whatever global decimal
# context a caller may have set.
_MATH = Context(prec=28, rounding=ROUND_HALF_EVEN)
_ZERO = Decimal(0)
_NOT_FILLED = (OrderStatus.INTENDED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.UNKNOWN)


def apply_fill(qty: Decimal, avg: Decimal, signed_qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
    """One fill folded into a signed position: the average is weighted on increases, unchanged on
    reductions, reset to the fill price when the position flips side, and zero when flat."""
    with localcontext(_MATH):
        new = qty + signed_qty
        if new == 0:
            return _ZERO, _ZERO
        if qty == 0:
            return new, price
        if (qty > 0) == (signed_qty > 0):
            return new, (abs(qty) * avg + abs(signed_qty) * price) / abs(new)
        if (new > 0) == (qty > 0):
            return new, avg
        return new, price


def cash_delta(execution: Execution) -> Decimal:
    """What a fill does to cash, rounded to the cent once per fill as the broker books it: summing
    unrounded fills would drift from the broker's balance by a fraction of a cent per fill."""
    with localcontext(_MATH):
        return to_cents(-execution.signed_qty * execution.price - execution.commission)


def resolve_status(
    current: OrderStatus | None, requested: OrderStatus, filled: Decimal, qty: Decimal, broker_report: bool
) -> OrderStatus:
    """The status to store. Fills are facts: a fully filled order is FILLED and a partly filled one
    is never shown as unfilled (so an acknowledgement arriving after its fills changes nothing).
    FILLED and CANCELLED are the broker's final word and no later event reopens them; REJECTED and
    ABANDONED can be our own conclusions (B4, A4 grace periods), so a report from the broker about
    the order, or a fill, may reopen them."""
    if filled > 0 and filled >= qty:
        return OrderStatus.FILLED
    reopening = current is not None and current.is_terminal and not requested.is_terminal
    if reopening and (current in (OrderStatus.FILLED, OrderStatus.CANCELLED) or not broker_report):
        assert current is not None
        return current
    if filled > 0 and requested in _NOT_FILLED:
        return OrderStatus.PARTIALLY_FILLED
    return requested


def same_fill(stored: tuple[Any, ...], received: tuple[Any, ...]) -> bool:
    """Same report, compared as values: "100" and "100.0" are one quantity."""
    texts, amounts = slice(0, 4), slice(4, 7)
    return (
        tuple(stored[texts]) == tuple(received[texts])
        and all(Decimal(a) == Decimal(b) for a, b in zip(stored[amounts], received[amounts], strict=True))
        and stored[7] == received[7]
    )


def order_fill_totals(c: sqlite3.Connection, cid: str) -> tuple[Decimal, Decimal | None]:
    rows = c.execute("SELECT qty, price FROM fills WHERE client_order_id = ?", (cid,)).fetchall()
    if not rows:
        return _ZERO, None
    with localcontext(_MATH):
        qty = sum((Decimal(q) for q, _ in rows), _ZERO)
        notional = sum((Decimal(q) * Decimal(p) for q, p in rows), _ZERO)
        return qty, notional / qty


def fold_fill_into_position(c: sqlite3.Connection, e: Execution, ts: str, at: str) -> Position:
    row = c.execute(
        "SELECT qty, avg_price, last_ts, last_execution_id FROM positions WHERE symbol = ?", (e.symbol,)
    ).fetchone()
    absorbed = c.execute(
        "SELECT 1 FROM position_adjustments WHERE symbol = ? AND ts > ? LIMIT 1", (e.symbol, ts)
    ).fetchone()
    if absorbed and row is not None:  # an adjustment always leaves a positions row
        return Position(e.symbol, Decimal(row[0]), Decimal(row[1]))  # the adopted view contains it
    if row is not None and row[2] is not None and (ts, e.execution_id) <= (row[2], row[3]):
        # Out of time order (a replay after a reconnect): re-fold the symbol; the new fill is
        # already in `fills`.
        return store_position(c, fold_symbol(c, e.symbol), at)
    qty, avg = (_ZERO, _ZERO) if row is None else (Decimal(row[0]), Decimal(row[1]))
    qty, avg = apply_fill(qty, avg, e.signed_qty, e.price)
    return store_position(c, (Position(e.symbol, qty, avg), ts, e.execution_id), at)


def fold_symbol(c: sqlite3.Connection, symbol: str) -> tuple[Position, str | None, str | None]:
    """The position from events alone: the latest adoption of the broker's view, then every
    fill stamped after it, in (ts, execution_id) order."""
    adj = c.execute(
        "SELECT qty, avg_price, ts FROM position_adjustments WHERE symbol = ? ORDER BY ts DESC, id DESC LIMIT 1",
        (symbol,),
    ).fetchone()
    qty, avg, last_ts, last_id = _ZERO, _ZERO, None, None
    sql, args = "SELECT side, qty, price, ts, execution_id FROM fills WHERE symbol = ?", [symbol]
    if adj is not None:
        qty, avg, last_ts, last_id = Decimal(adj[0]), Decimal(adj[1]), adj[2], ""
        sql, args = sql + " AND ts >= ?", [symbol, adj[2]]
    for side, q, p, ts, eid in c.execute(sql + " ORDER BY ts, execution_id", args):
        signed = Decimal(q) if side == Side.BUY.value else -Decimal(q)
        qty, avg = apply_fill(qty, avg, signed, Decimal(p))
        last_ts, last_id = ts, eid
    return Position(symbol, qty, avg), last_ts, last_id


def store_position(c: sqlite3.Connection, folded: tuple[Position, str | None, str | None], at: str) -> Position:
    pos, last_ts, last_id = folded
    c.execute(
        "INSERT INTO positions (symbol, qty, avg_price, last_ts, last_execution_id, updated_at) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT(symbol) DO UPDATE SET qty = excluded.qty, "
        "avg_price = excluded.avg_price, last_ts = excluded.last_ts, "
        "last_execution_id = excluded.last_execution_id, updated_at = excluded.updated_at",
        (pos.symbol, dec_text(pos.qty), dec_text(pos.avg_price), last_ts, last_id, at),
    )
    return pos


def fold_fill_into_cash(c: sqlite3.Connection, e: Execution, ts: str, at: str) -> Decimal:
    balance, as_of = c.execute("SELECT balance, as_of FROM cash WHERE id = 1").fetchone()
    if as_of is not None and ts < as_of:
        return Decimal(balance)  # the adopted broker balance already contains this fill
    with localcontext(_MATH):
        new = Decimal(balance) + cash_delta(e)
    c.execute("UPDATE cash SET balance = ?, updated_at = ? WHERE id = 1", (dec_text(new), at))
    return new


def fold_cash(c: sqlite3.Connection) -> tuple[Decimal, str | None]:
    adj = c.execute("SELECT balance, ts FROM cash_adjustments ORDER BY ts DESC, id DESC LIMIT 1").fetchone()
    balance, as_of = (_ZERO, None) if adj is None else (Decimal(adj[0]), adj[1])
    sql, args = "SELECT side, qty, price, commission FROM fills WHERE ts >= ?", ("",)
    if as_of is not None:
        args = (as_of,)
    with localcontext(_MATH):
        for side, q, p, fee in c.execute(sql + " ORDER BY ts, execution_id", args):
            signed = Decimal(q) if side == Side.BUY.value else -Decimal(q)
            balance += to_cents(-signed * Decimal(p) - Decimal(fee))
    return balance, as_of


def fold_fill_into_order(c: sqlite3.Connection, cid: str, at: str) -> OrderStatus | None:
    found = c.execute("SELECT status, qty FROM orders WHERE client_order_id = ?", (cid,)).fetchone()
    if found is None:
        return None  # an order the ledger has not seen yet: counted when its row is written
    filled, avg = order_fill_totals(c, cid)
    status = resolve_status(
        OrderStatus(found[0]), OrderStatus.PARTIALLY_FILLED, filled, Decimal(found[1]), broker_report=True
    )
    c.execute(
        "UPDATE orders SET filled_qty = ?, avg_fill_price = ?, status = ?, updated_at = ? WHERE client_order_id = ?",
        (dec_text(filled), None if avg is None else dec_text(avg), status.value, at, cid),
    )
    return status
