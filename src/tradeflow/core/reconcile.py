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
from tradeflow.errors import TradeflowError
from tradeflow.ledger.schema import AuditKind

if TYPE_CHECKING:
    from tradeflow.execution.base import Broker
    from tradeflow.ledger import Ledger

OUR_PREFIX = "tf-"


class UnknownBrokerHistory(TradeflowError):
    """The broker shows tradeflow's orders or positions that the ledger does not know: the ledger was
    lost, truncated or replaced by an older copy. Nothing trades until an operator adopts the broker's
    state (`tradeflow adopt`), because sizing, the breakers and the kill switch read that history."""

    def __init__(self, order_ids: list[str], positions: dict[str, Decimal]) -> None:
        self.order_ids, self.positions = order_ids, positions
        parts = []
        if order_ids:
            shown = ", ".join(order_ids[:5]) + (f" and {len(order_ids) - 5} more" if len(order_ids) > 5 else "")
            parts.append(f"{len(order_ids)} tradeflow order(s) the ledger never journaled ({shown})")
        if positions:
            parts.append(
                "positions in a ledger with no history (" + ", ".join(f"{s} {q}" for s, q in positions.items()) + ")"
            )
        super().__init__(
            "the broker shows " + " and ".join(parts) + ": the ledger was lost or replaced; check the broker, "
            "then run `tradeflow adopt --reason ...` to take its state in"
        )


@dataclass
class BookView:
    positions: dict[str, Position]  # the broker's
    account: Account  # the broker's
    pending: dict[str, Decimal] = field(default_factory=dict)  # signed remaining qty of open broker orders
    unresolved: dict[str, list[str]] = field(default_factory=dict)  # our orders the broker cannot find (yet)
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reconcile(
    broker: Broker,
    ledger: Ledger,
    now: dt.datetime,
    *,
    run_id: str,
    abandon_after: dt.timedelta,
    cash_tolerance: float,
    adopt_reason: str | None = None,
) -> BookView:
    """Bring the ledger up to the broker. Raises UnknownBrokerHistory, before writing anything, when
    the broker shows tradeflow orders the ledger never journaled, or positions while the ledger has
    no history at all: the ledger was lost or replaced (G1), and only an operator may take the
    broker's state in (`adopt_reason`, from `tradeflow adopt`)."""
    run = run_id
    positions = broker.positions()
    account = broker.account()
    open_orders = broker.open_orders()
    since = ledger.last_fill_time()
    executions = broker.executions(since=since - dt.timedelta(seconds=1) if since else None)
    view = BookView(positions, account)
    first_sync = not ledger.orders() and not ledger.fills() and ledger.cash() == 0 and not ledger.positions()

    # Every client id we send is journaled as an intent BEFORE the broker hears of it (tick._submit),
    # so one of ours the ledger does not know means the ledger lost history, not a crash.
    known = {o.client_order_id for o in ledger.orders()}
    foreign = sorted({bo.client_order_id for bo in open_orders} | {ex.client_order_id for ex in executions})
    unknown_ids = [cid for cid in foreign if cid.startswith(OUR_PREFIX) and cid not in known]
    unknown_positions = sorted(s for s, p in positions.items() if p.qty != 0) if first_sync else []
    if (unknown_ids or unknown_positions) and adopt_reason is None:
        raise UnknownBrokerHistory(unknown_ids, {s: positions[s].qty for s in unknown_positions})
    if adopt_reason is not None:
        ledger.audit(
            AuditKind.OPERATOR_ADOPTED,
            {
                "reason": adopt_reason,
                "orders": unknown_ids,
                "positions": {s: str(p.qty) for s, p in positions.items() if p.qty},
                "cash": str(account.cash),
            },
            now,
            run_id=run,
        )
    # Orders the broker holds under our ids that the ledger lost: taken in only on adoption.
    for bo in open_orders:
        if bo.client_order_id.startswith(OUR_PREFIX) and bo.client_order_id not in known:
            ledger.set_order_status(bo.client_order_id, bo.status, now, broker_order=bo, run_id=run)
            view.notes.append(f"adopted broker order {bo.client_order_id} missing from the ledger")
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
        if now - order.created_at >= abandon_after:
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
        if not first_sync and adopt_reason is None:
            view.alerts.append(f"position drift: {why}; adopted the broker's view, REDUCING until acknowledged")
            ledger.set_trading_state(TradingState.REDUCING, f"drift: {why}", now, run_id=run)
    # Compared at the broker's precision: sub-cent digits are rounding, not drift (issue 9, item 8).
    gap = abs(to_cents(ledger.cash()) - to_cents(account.cash))
    if gap > 0:
        ledger.set_cash(account.cash, f"EXTERNAL: broker cash {account.cash}, ledger {ledger.cash()}", now, run_id=run)
        share = gap / account.equity if account.equity > 0 else Decimal(1)
        if not first_sync and adopt_reason is None and share > Decimal(str(cash_tolerance)):
            view.alerts.append(f"cash drift {gap} ({float(share):.2%} of equity); sizing uses the broker's cash")
            if share > 2 * Decimal(str(cash_tolerance)):
                ledger.set_trading_state(TradingState.REDUCING, f"cash drift {float(share):.2%}", now, run_id=run)
    return view


def adopt_broker_state(
    broker: Broker, ledger: Ledger, now: dt.datetime, *, operator: str, reason: str, abandon_after: dt.timedelta
) -> BookView:
    """`tradeflow adopt`: after the ledger was lost or replaced, take the broker's orders, fills,
    positions and cash in, audited with the operator's name and reason. The trading state is NOT
    changed: a latched kill switch or HALTED stays until `tradeflow resume`."""
    if not operator.strip() or not reason.strip():
        raise TradeflowError("adopt needs the operator's name and a reason for the audit trail")
    run_id = "cli-adopt"
    ledger.restore_from_latch(now, run_id=run_id)
    return reconcile(
        broker,
        ledger,
        now,
        run_id=run_id,
        abandon_after=abandon_after,
        cash_tolerance=0.0,
        adopt_reason=f"adopted by {operator}: {reason}",
    )
