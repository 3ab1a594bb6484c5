"""The pure reconcile diff (core/reconcile.py: snapshot -> diff -> apply), held to its rules on
generated broker snapshots and ledger views: no broker, no database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.core.reconcile import BrokerSnapshot, LedgerView, diff
from tradeflow.domain import Account, BrokerOrder, Execution, OrderStatus, Position, Side
from tradeflow.ledger.schema import LedgerOrder

AT = dt.datetime(2024, 1, 25, 15, 0, tzinfo=dt.UTC)
SYMBOLS = ("SPY", "AAPL", "MSFT")

quantities = st.integers(min_value=-500, max_value=500).map(Decimal)
prices = st.integers(min_value=100, max_value=100_000).map(lambda c: Decimal(c) / 100)
cents = st.integers(min_value=0, max_value=10_000_000).map(lambda c: Decimal(c) / 100)
order_ids = st.integers(min_value=0, max_value=99).map(lambda n: f"tf-sma-SPY-20240125-{n}")


@st.composite
def holdings(draw: st.DrawFn) -> dict[str, Position]:
    chosen = draw(st.lists(st.sampled_from(SYMBOLS), unique=True))
    out = {s: Position(s, draw(quantities.filter(bool)), draw(prices)) for s in chosen}
    return out


def _ledger_order(cid: str, status: OrderStatus) -> LedgerOrder:
    return LedgerOrder(
        client_order_id=cid, symbol="SPY", side=Side.BUY, qty=Decimal(1), session=AT.date(), strategy="sma",
        seq=0, order_type="market", limit_price=None, time_in_force="day", reduce_only=False, status=status,
        broker_order_id="b-" + cid, filled_qty=Decimal(1), avg_fill_price=Decimal(100), run_id="r",
        created_at=AT, updated_at=AT,
    )  # fmt: skip


def _execution(cid: str, n: int) -> Execution:
    return Execution(f"x-{cid}-{n}", cid, "SPY", Side.BUY, Decimal(1), Decimal(100), Decimal(0), AT)


def _open_order(cid: str) -> BrokerOrder:
    return BrokerOrder(cid, "b-" + cid, "SPY", Side.BUY, Decimal(5), Decimal(0), None, OrderStatus.ACCEPTED)


def _account(cash: Decimal) -> Account:
    return Account(cash, cash + Decimal(100_000), cash)


@settings(max_examples=200, deadline=None)
@given(
    known=st.lists(order_ids, unique=True, max_size=5),
    unknown=order_ids,
    as_open_order=st.booleans(),
    positions=holdings(),
    cash=cents,
)
def test_an_unknown_tradeflow_order_id_always_refuses(known, unknown, as_open_order, positions, cash):
    known = [cid for cid in known if cid != unknown]
    view = LedgerView(tuple(_ledger_order(c, OrderStatus.FILLED) for c in known), frozenset(), positions, cash)
    opens = (_open_order(unknown),) if as_open_order else ()
    executions = () if as_open_order else (_execution(unknown, 0),)
    snapshot = BrokerSnapshot(positions, _account(cash), opens, executions)

    plan = diff(snapshot, view, cash_tolerance=0.01)

    assert plan.refusal is not None
    assert unknown in plan.refusal.order_ids
    assert "tradeflow adopt" in str(plan.refusal)
    # An operator's adoption is the only way through, and it takes the order in.
    adopted = diff(snapshot, view, cash_tolerance=0.01, adopt_reason="adopted by alice: ledger lost")
    assert adopted.refusal is None
    assert adopted.adoption is not None
    assert unknown in adopted.adoption.orders


@settings(max_examples=200, deadline=None)
@given(
    positions=holdings(),
    cash=cents,
    orders=st.lists(order_ids, unique=True, max_size=6),
    redelivered=st.integers(min_value=0, max_value=3),
)
def test_a_ledger_equal_to_the_broker_yields_an_empty_plan(positions, cash, orders, redelivered):
    ledger_orders = tuple(_ledger_order(c, OrderStatus.FILLED) for c in orders)
    fills = tuple(_execution(c, 0) for c in orders)
    view = LedgerView(ledger_orders, frozenset(e.execution_id for e in fills), dict(positions), cash)
    # The broker re-sends its newest fills (the snapshot asks from a second before the last one).
    snapshot = BrokerSnapshot(
        dict(positions), _account(cash), (), fills[len(fills) - redelivered :] if redelivered else ()
    )

    plan = diff(snapshot, view, cash_tolerance=0.01)

    assert plan.is_empty, plan
    assert plan.pending == {}


@settings(max_examples=300, deadline=None)
@given(
    broker_cents=st.integers(min_value=0, max_value=10_000_000),
    sub_cent=st.integers(min_value=-49, max_value=49),
    positions=holdings(),
    first_sync=st.booleans(),
)
def test_cash_within_a_cent_of_the_brokers_yields_no_cash_adjustment(broker_cents, sub_cent, positions, first_sync):
    broker_cash = Decimal(broker_cents) / 100
    ledger_cash = broker_cash + Decimal(sub_cent) / 10_000  # the ledger's sub-cent digits are rounding
    orders = () if first_sync else (_ledger_order("tf-sma-SPY-20240124-0", OrderStatus.FILLED),)
    view = LedgerView(orders, frozenset(), dict(positions), ledger_cash)
    snapshot = BrokerSnapshot(dict(positions), _account(broker_cash), (), ())

    plan = diff(snapshot, view, cash_tolerance=0.01)

    assert plan.holdings.cash is None
    # A whole cent more is a real difference: the broker's cash is adopted.
    off = diff(
        BrokerSnapshot(dict(positions), _account(broker_cash + Decimal("0.01")), (), ()), view, cash_tolerance=0.01
    )
    assert off.holdings.cash is not None
    assert off.holdings.cash.cash == broker_cash + Decimal("0.01")
