"""Reconciliation: the broker's view is the truth, the ledger catches up, and anything the two
disagree on is audited (RELIABILITY B1-B6, A4, A5, A11). A query that goes unanswered raises
BrokerUnavailable: the caller must then not trade (B3)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeflow.domain import Account, OrderStatus, Position, TradingState, to_cents

if TYPE_CHECKING:
    from tradeflow.core.tick import TickRuntime

OUR_PREFIX = "tf-"


@dataclass
class BookView:
    positions: dict[str, Position]  # the broker's
    account: Account  # the broker's
    pending: dict[str, Decimal] = field(default_factory=dict)  # signed remaining qty of open broker orders
    unresolved: dict[str, list[str]] = field(default_factory=dict)  # our orders the broker cannot find (yet)
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reconcile(rt: TickRuntime, now: dt.datetime, session: dt.date) -> BookView:
    broker, ledger, run = rt.broker, rt.ledger, rt.run_id
    positions = broker.positions()
    account = broker.account()
    open_orders = broker.open_orders()
    since = ledger.last_fill_time()
    executions = broker.executions(since=since - dt.timedelta(seconds=1) if since else None)
    view = BookView(positions, account)
    first_sync = not ledger.orders() and not ledger.fills() and ledger.cash() == 0

    # Orders the broker holds under our ids that the ledger lost (crash after accept, A5): adopt.
    known = {o.client_order_id for o in ledger.orders()}
    for bo in open_orders:
        if bo.client_order_id.startswith(OUR_PREFIX) and bo.client_order_id not in known:
            ledger.set_order_status(bo.client_order_id, bo.status, now, broker_order=bo, run_id=run)
            view.alerts.append(f"adopted broker order {bo.client_order_id} missing from the ledger")
            known.add(bo.client_order_id)
    # Our unfinished orders first: one targeted lookup each records the broker's order (and its id)
    # before its fills settle it; not found past the grace period is final (A4, A5, B4).
    for order in ledger.open_orders():
        found = broker.get_order(order.client_order_id)
        ledger.audit("reconcile_lookup", {"found": found is not None}, now, run_id=run,
                     client_order_id=order.client_order_id)  # fmt: skip
        if found is not None:
            ledger.set_order_status(order.client_order_id, found.status, now, broker_order=found, run_id=run)
            continue
        if now - order.created_at >= rt.abandon_after:
            final = OrderStatus.ABANDONED if order.status is OrderStatus.INTENDED else OrderStatus.REJECTED
            ledger.set_order_status(order.client_order_id, final, now, run_id=run)
            view.notes.append(f"{order.client_order_id}: not at the broker after the grace period: {final}")
            # Not replaced in the same tick (A4: never re-sent under a new id); the next tick decides afresh.
            view.unresolved.setdefault(order.symbol, []).append(f"{order.client_order_id} ({final} now)")
        else:
            view.unresolved.setdefault(order.symbol, []).append(order.client_order_id)
    # Fills, each applied once whatever the delivery order (A11, B5).
    for ex in executions:
        if ex.client_order_id not in known:
            origin = broker.get_order(ex.client_order_id)
            if origin is None:
                continue  # not ours and not an order: it shows up as position drift below
            ledger.set_order_status(ex.client_order_id, origin.status, now, broker_order=origin, run_id=run)
            known.add(ex.client_order_id)
        ledger.apply_execution(ex, now, run_id=run)
    pending: dict[str, Decimal] = defaultdict(Decimal)
    for bo in open_orders:
        remaining = bo.qty - bo.filled_qty
        pending[bo.symbol] += remaining if bo.side.value == "buy" else -remaining
    view.pending = dict(pending)

    # Positions and cash: adopt the broker's, and stop opening new risk on unexplained drift (B1, B2, B6).
    ledger_positions = ledger.positions()
    for symbol in sorted(set(ledger_positions) | set(positions)):
        ours = ledger_positions[symbol].qty if symbol in ledger_positions else Decimal(0)
        theirs = positions[symbol] if symbol in positions else Position(symbol, Decimal(0), Decimal(0))
        if ours == theirs.qty:
            continue
        why = f"broker shows {theirs.qty} {symbol}, ledger {ours}"
        ledger.adjust_position(symbol, theirs.qty, theirs.avg_price, f"EXTERNAL: {why}", now, run_id=run)
        if not first_sync:
            view.alerts.append(f"position drift: {why}; adopted the broker's view, REDUCING until acknowledged")
            ledger.set_trading_state(TradingState.REDUCING, f"drift: {why}", now, run_id=run)
    # Compared at the broker's precision: sub-cent digits are rounding, not drift (issue 9, item 8).
    gap = abs(to_cents(ledger.cash()) - to_cents(account.cash))
    if gap > 0:
        ledger.set_cash(account.cash, f"EXTERNAL: broker cash {account.cash}, ledger {ledger.cash()}", now, run_id=run)
        share = gap / account.equity if account.equity > 0 else Decimal(1)
        if not first_sync and share > Decimal(str(rt.cash_tolerance)):
            view.alerts.append(f"cash drift {gap} ({float(share):.2%} of equity); sizing uses the broker's cash")
            if share > 2 * Decimal(str(rt.cash_tolerance)):
                ledger.set_trading_state(TradingState.REDUCING, f"cash drift {float(share):.2%}", now, run_id=run)
    return view
