"""Reconciliation: the broker's view is the truth, the ledger catches up, and anything the two
disagree on is audited (RELIABILITY B1-B6, A4, A5, A11). A query that goes unanswered raises
BrokerUnavailable: the caller must then not trade (B3).

Three steps: `take_snapshot` asks the broker once; `diff(snapshot, ledger view)` decides, purely,
what the ledger must take in (so its rules are property-tested without a broker or a database);
`apply` writes it, asking the broker only the per-order lookups the plan names."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeflow.domain import Account, BrokerOrder, Execution, OrderStatus, Position, TradingState, to_cents
from tradeflow.domain.events import OperatorAdopted, OrderLookedUp
from tradeflow.errors import TradeflowError
from tradeflow.ledger.schema import LedgerOrder

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


# --- snapshot: what the broker says, asked once ----------------------------------------------


@dataclass(frozen=True)
class BrokerSnapshot:
    positions: dict[str, Position]
    account: Account
    open_orders: tuple[BrokerOrder, ...]
    executions: tuple[Execution, ...]


def take_snapshot(broker: Broker, ledger: Ledger) -> BrokerSnapshot:
    """The broker's positions, account, open orders and the executions since the ledger's newest fill
    (a second early: a fill at that very time is fetched again rather than lost, and deduplicated).
    Raises BrokerUnavailable when any query goes unanswered (B3)."""
    positions = broker.positions()
    account = broker.account()
    open_orders = broker.open_orders()
    since = ledger.last_fill_time()
    executions = broker.executions(since=since - dt.timedelta(seconds=1) if since else None)
    return BrokerSnapshot(positions, account, tuple(open_orders), tuple(executions))


@dataclass(frozen=True)
class LedgerView:
    """What the diff needs of the ledger, read once before anything is written."""

    orders: tuple[LedgerOrder, ...]  # by (created_at, client id), as the ledger lists them
    fill_ids: frozenset[str]
    positions: dict[str, Position]
    cash: Decimal

    @property
    def order_ids(self) -> frozenset[str]:
        return frozenset(o.client_order_id for o in self.orders)

    @property
    def open_orders(self) -> tuple[LedgerOrder, ...]:
        return tuple(o for o in self.orders if not o.status.is_terminal)

    @property
    def first_sync(self) -> bool:
        """A ledger with no history at all: a new installation, or one whose file was lost (G1)."""
        return not self.orders and not self.fill_ids and self.cash == 0 and not self.positions


def read_ledger_view(ledger: Ledger) -> LedgerView:
    return LedgerView(
        tuple(ledger.orders()), frozenset(e.execution_id for e in ledger.fills()), ledger.positions(), ledger.cash()
    )


# --- diff: pure ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionAdjustment:
    symbol: str
    qty: Decimal
    avg_price: Decimal
    why: str
    drift: bool  # unexplained: alert, and REDUCING until acknowledged


@dataclass(frozen=True)
class CashAdjustment:
    cash: Decimal
    reason: str
    alert: str | None
    reducing: str | None  # the REDUCING reason when the gap is more than twice the tolerance


@dataclass(frozen=True)
class HoldingsPlan:
    positions: tuple[PositionAdjustment, ...] = ()
    cash: CashAdjustment | None = None

    @property
    def is_empty(self) -> bool:
        return not self.positions and self.cash is None


@dataclass(frozen=True)
class ReconcilePlan:
    """What reconcile will do, decided from a snapshot and a ledger view without touching either."""

    snapshot: BrokerSnapshot
    refusal: UnknownBrokerHistory | None  # raised by `apply` before anything is written (G1)
    adoption: OperatorAdopted | None  # the audit event, when an operator adopts
    adopt_orders: tuple[BrokerOrder, ...]  # our open broker orders the ledger lost
    lookups: tuple[LedgerOrder, ...]  # our unfinished orders: one lookup by client id each
    known_orders: frozenset[str]  # client ids the ledger holds once the adoptions are in
    fills: tuple[Execution, ...]  # in the broker's order; the ledger applies each execution id once
    new_fill_ids: frozenset[str]  # those of `fills` the ledger does not hold yet
    pending: dict[str, Decimal]  # signed remaining qty of open broker orders per symbol
    holdings: HoldingsPlan  # against the ledger as viewed; re-diffed by `apply` after new fills
    first_sync: bool
    adopting: bool
    cash_tolerance: float

    @property
    def is_empty(self) -> bool:
        """Nothing to write: the ledger already equals the broker."""
        return (
            self.refusal is None
            and self.adoption is None
            and not self.adopt_orders
            and not self.lookups
            and not self.new_fill_ids
            and self.holdings.is_empty
        )


def diff_holdings(
    snapshot: BrokerSnapshot,
    positions: dict[str, Position],
    cash: Decimal,
    *,
    first_sync: bool,
    adopting: bool,
    cash_tolerance: float,
) -> HoldingsPlan:
    """Adopt the broker's positions and cash; unexplained drift alerts and stops new risk (B1, B2, B6).
    Nothing is drift on a first sync or an operator's adoption: the broker's state is taken in."""
    adjustments = []
    for symbol in sorted(set(positions) | set(snapshot.positions)):
        ours = positions[symbol].qty if symbol in positions else Decimal(0)
        theirs = snapshot.positions.get(symbol, Position(symbol, Decimal(0), Decimal(0)))
        if ours == theirs.qty:
            continue
        why = f"broker shows {theirs.qty} {symbol}, ledger {ours}"
        adjustments.append(
            PositionAdjustment(symbol, theirs.qty, theirs.avg_price, why, not first_sync and not adopting)
        )
    account = snapshot.account
    # Compared at the broker's precision: sub-cent digits are rounding, not drift (issue 9, item 8).
    gap = abs(to_cents(cash) - to_cents(account.cash))
    cash_plan = None
    if gap > 0:
        share = gap / account.equity if account.equity > 0 else Decimal(1)
        alert = reducing = None
        if not first_sync and not adopting and share > Decimal(str(cash_tolerance)):
            alert = f"cash drift {gap} ({float(share):.2%} of equity); sizing uses the broker's cash"
            if share > 2 * Decimal(str(cash_tolerance)):
                reducing = f"cash drift {float(share):.2%}"
        cash_plan = CashAdjustment(
            account.cash, f"EXTERNAL: broker cash {account.cash}, ledger {cash}", alert, reducing
        )
    return HoldingsPlan(tuple(adjustments), cash_plan)


def diff(
    snapshot: BrokerSnapshot, view: LedgerView, *, cash_tolerance: float, adopt_reason: str | None = None
) -> ReconcilePlan:
    """The plan that brings the ledger up to the broker. Refuses (plan.refusal) when the broker shows
    tradeflow orders the ledger never journaled, or positions while the ledger has no history at all:
    the ledger was lost or replaced (G1), and only an operator may take the broker's state in."""
    first_sync = view.first_sync
    # Every client id we send is journaled as an intent BEFORE the broker hears of it (tick._submit),
    # so one of ours the ledger does not know means the ledger lost history, not a crash.
    known = view.order_ids
    foreign = sorted(
        {bo.client_order_id for bo in snapshot.open_orders} | {ex.client_order_id for ex in snapshot.executions}
    )
    unknown_ids = [cid for cid in foreign if cid.startswith(OUR_PREFIX) and cid not in known]
    unknown_positions = sorted(s for s, p in snapshot.positions.items() if p.qty != 0) if first_sync else []
    refusal = None
    if (unknown_ids or unknown_positions) and adopt_reason is None:
        refusal = UnknownBrokerHistory(unknown_ids, {s: snapshot.positions[s].qty for s in unknown_positions})
    adoption: OperatorAdopted | None = None
    if adopt_reason is not None:
        adoption = OperatorAdopted(
            reason=adopt_reason,
            orders=tuple(unknown_ids),
            positions={s: str(p.qty) for s, p in snapshot.positions.items() if p.qty},
            cash=str(snapshot.account.cash),
        )
    # Orders the broker holds under our ids that the ledger lost: taken in only on adoption.
    adopt_orders: list[BrokerOrder] = []
    adopted: set[str] = set()
    for bo in snapshot.open_orders:
        if bo.client_order_id.startswith(OUR_PREFIX) and bo.client_order_id not in known | adopted:
            adopt_orders.append(bo)
            adopted.add(bo.client_order_id)
    pending: dict[str, Decimal] = defaultdict(Decimal)
    for bo in snapshot.open_orders:
        remaining = bo.qty - bo.filled_qty
        pending[bo.symbol] += remaining if bo.side.value == "buy" else -remaining
    return ReconcilePlan(
        snapshot=snapshot,
        refusal=refusal,
        adoption=adoption,
        adopt_orders=tuple(adopt_orders),
        lookups=view.open_orders,
        known_orders=known | adopted,
        fills=snapshot.executions,
        new_fill_ids=frozenset(ex.execution_id for ex in snapshot.executions) - view.fill_ids,
        pending=dict(pending),
        holdings=diff_holdings(
            snapshot,
            view.positions,
            view.cash,
            first_sync=first_sync,
            adopting=adopt_reason is not None,
            cash_tolerance=cash_tolerance,
        ),
        first_sync=first_sync,
        adopting=adopt_reason is not None,
        cash_tolerance=cash_tolerance,
    )


def settle_lookup(
    order: LedgerOrder, found: BrokerOrder | None, now: dt.datetime, abandon_after: dt.timedelta
) -> OrderStatus | None:
    """The status a looked-up order takes: the broker's when found; not found past the grace period
    is final (ABANDONED for an intent never sent, REJECTED for one sent: A4, B4); else None (wait)."""
    if found is not None:
        return found.status
    if now - order.created_at >= abandon_after:
        return OrderStatus.ABANDONED if order.status is OrderStatus.INTENDED else OrderStatus.REJECTED
    return None


# --- apply: the writes, in the order the ledger's audit trail shows them -------------------------


def apply(
    plan: ReconcilePlan, broker: Broker, ledger: Ledger, now: dt.datetime, *, run_id: str, abandon_after: dt.timedelta
) -> BookView:
    """Carry the plan out: the refusal before any write, then adoption, the lookups (the broker is
    asked once per unfinished order), the fills, and the broker's positions and cash."""
    if plan.refusal is not None:
        raise plan.refusal
    run = run_id
    snapshot = plan.snapshot
    view = BookView(snapshot.positions, snapshot.account, pending=dict(plan.pending))
    if plan.adoption is not None:
        ledger.audit(plan.adoption, now, run_id=run)
    for bo in plan.adopt_orders:
        ledger.set_order_status(bo.client_order_id, bo.status, now, broker_order=bo, run_id=run)
        view.notes.append(f"adopted broker order {bo.client_order_id} missing from the ledger")
    # An adopted order still open at the broker is settled like ours, in the ledger's order: the
    # ledger decides the status it stores, so its list is read again.
    lookups = ledger.open_orders() if plan.adopt_orders else plan.lookups
    # Our unfinished orders first: one targeted lookup each records the broker's order (and its id)
    # before its fills settle it; not found past the grace period is final (A4, A5, B4).
    for order in lookups:
        found = broker.get_order(order.client_order_id)
        ledger.audit(OrderLookedUp(found is not None), now, run_id=run, client_order_id=order.client_order_id)
        status = settle_lookup(order, found, now, abandon_after)
        if found is not None:
            ledger.set_order_status(order.client_order_id, found.status, now, broker_order=found, run_id=run)
        elif status is not None:
            ledger.set_order_status(order.client_order_id, status, now, run_id=run)
            view.notes.append(f"{order.client_order_id}: not at the broker after the grace period: {status}")
            # Not replaced in the same tick (A4: never re-sent under a new id); the next tick decides afresh.
            view.unresolved.setdefault(order.symbol, []).append(f"{order.client_order_id} ({status} now)")
        else:
            view.unresolved.setdefault(order.symbol, []).append(order.client_order_id)
    # Fills, each applied once whatever the delivery order (A11, B5); a redelivered one is passed on
    # too, so the ledger can flag a report that changed under the same execution id.
    known = set(plan.known_orders)
    applied = False
    for ex in plan.fills:
        if ex.client_order_id not in known:
            origin = broker.get_order(ex.client_order_id)
            if origin is None:
                continue  # not ours and not an order: it shows up as position drift below
            ledger.set_order_status(ex.client_order_id, origin.status, now, broker_order=origin, run_id=run)
            known.add(ex.client_order_id)
        applied = ledger.apply_execution(ex, now, run_id=run) or applied
    holdings = plan.holdings
    if applied:  # the fills moved the ledger's positions and cash: compare what it holds now
        holdings = diff_holdings(
            snapshot,
            ledger.positions(),
            ledger.cash(),
            first_sync=plan.first_sync,
            adopting=plan.adopting,
            cash_tolerance=plan.cash_tolerance,
        )
    for adj in holdings.positions:
        ledger.adjust_position(adj.symbol, adj.qty, adj.avg_price, f"EXTERNAL: {adj.why}", now, run_id=run)
        if adj.drift:
            view.alerts.append(f"position drift: {adj.why}; adopted the broker's view, REDUCING until acknowledged")
            ledger.set_trading_state(TradingState.REDUCING, f"drift: {adj.why}", now, run_id=run)
    if holdings.cash is not None:
        ledger.set_cash(holdings.cash.cash, holdings.cash.reason, now, run_id=run)
        if holdings.cash.alert is not None:
            view.alerts.append(holdings.cash.alert)
        if holdings.cash.reducing is not None:
            ledger.set_trading_state(TradingState.REDUCING, holdings.cash.reducing, now, run_id=run)
    return view


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
    """Bring the ledger up to the broker: snapshot -> pure diff -> apply. Raises UnknownBrokerHistory,
    before writing anything, when the broker shows tradeflow orders the ledger never journaled, or
    positions while the ledger has no history at all: the ledger was lost or replaced (G1), and only
    an operator may take the broker's state in (`adopt_reason`, from `tradeflow adopt`)."""
    snapshot = take_snapshot(broker, ledger)
    plan = diff(snapshot, read_ledger_view(ledger), cash_tolerance=cash_tolerance, adopt_reason=adopt_reason)
    return apply(plan, broker, ledger, now, run_id=run_id, abandon_after=abandon_after)


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
