"""The Broker contract (execution/base.py), held against every adapter in the manner of Lean's
BrokerageTests: sim, fake (no faults), alpaca (recorded paper API) and ib (paper gateway); see
broker_fixtures.py. Each test starts from a flat account and a known SPY price."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract.broker_fixtures import BROKER_CASES, SPY_CLOSE, BrokerCase, intent, make_case
from tradeflow.domain import OrderStatus, Side, SubmitOutcome
from tradeflow.errors import BrokerUnavailable
from tradeflow.execution.base import Broker


@pytest.fixture(params=BROKER_CASES)
def broker_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerCase]:
    case = make_case(request.param, tmp_path)
    case.set_price("SPY", SPY_CLOSE)
    yield case
    case.close()


def _filled(case: BrokerCase, cid: str) -> None:
    order = case.broker.get_order(cid)
    assert order is not None
    assert order.status is OrderStatus.FILLED, order


def test_adapter_satisfies_the_broker_protocol(broker_case: BrokerCase) -> None:
    assert isinstance(broker_case.broker, Broker)
    assert broker_case.broker.name == broker_case.name


def test_long_from_zero_fills_and_shows_the_position_and_the_cash_spent(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    assert broker.positions() == {}
    cash_before = broker.account().cash

    result = broker.submit(intent("tf-conf-SPY-20240105-1"))

    assert result.outcome is SubmitOutcome.ACCEPTED, result
    assert result.order is not None
    assert result.order.client_order_id == "tf-conf-SPY-20240105-1"
    _filled(broker_case, "tf-conf-SPY-20240105-1")
    position = broker.positions()["SPY"]
    assert position.qty == 10
    assert broker.account().cash <= cash_before - 10 * SPY_CLOSE


def test_close_from_long_leaves_no_position(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    assert broker.submit(intent("tf-conf-SPY-20240105-1")).outcome is SubmitOutcome.ACCEPTED
    broker_case.clock.advance(60)

    result = broker.submit(intent("tf-conf-SPY-20240105-2", Side.SELL, seq=2))

    assert result.outcome is SubmitOutcome.ACCEPTED, result
    _filled(broker_case, "tf-conf-SPY-20240105-2")
    assert "SPY" not in broker.positions()


def test_cancel_an_open_limit_order_takes_it_off_the_book(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    cid = "tf-conf-SPY-20240105-3"
    result = broker.submit(intent(cid, qty=1, limit=Decimal("400.00")))
    assert result.outcome is SubmitOutcome.ACCEPTED, result
    resting = broker.get_order(cid)
    assert resting is not None
    assert resting.status is OrderStatus.ACCEPTED
    assert [o.client_order_id for o in broker.open_orders()] == [cid]

    assert broker.cancel(cid) is True

    cancelled = broker.get_order(cid)
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_qty == 0
    assert broker.open_orders() == []
    assert broker.positions() == {}


def test_limit_order_fills_when_the_price_crosses(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    cid = "tf-conf-SPY-20240105-4"
    assert broker.submit(intent(cid, qty=2, limit=Decimal("460.00"))).outcome is SubmitOutcome.ACCEPTED
    broker_case.set_price("SPY", Decimal("465.00"))
    assert broker.get_order(cid).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]

    broker_case.set_price("SPY", Decimal("459.50"))

    order = broker.get_order(cid)
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert order.avg_fill_price is not None
    assert order.avg_fill_price <= Decimal("460.00")
    assert broker.positions()["SPY"].qty == 2


def test_holdings_round_trip_positions_equal_the_sum_of_executions(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    steps = [(Side.BUY, 10, "467.92"), (Side.BUY, 6, "470.10"), (Side.SELL, 4, "471.00"), (Side.BUY, 3, "466.50")]
    for n, (side, qty, price) in enumerate(steps):
        broker_case.clock.advance(60)
        broker_case.set_price("SPY", Decimal(price))
        result = broker.submit(intent(f"tf-conf-SPY-20240105-{10 + n}", side, qty, seq=10 + n))
        assert result.outcome is SubmitOutcome.ACCEPTED, result

    executions = broker.executions()
    assert len({e.execution_id for e in executions}) == len(executions) == len(steps)
    net = sum((e.signed_qty for e in executions), start=Decimal(0))
    position = broker.positions()["SPY"]
    assert position.qty == net == 15
    # Buys after the sale keep a weighted average of the remaining lots; recompute it from the fills.
    held, avg = Decimal(0), Decimal(0)
    for e in sorted(executions, key=lambda e: e.timestamp):
        if e.side is Side.BUY:
            cost = e.qty * e.price + (e.commission if broker_case.avg_includes_commission else 0)
            avg = (held * avg + cost) / (held + e.qty)
            held += e.qty
        else:
            held -= e.qty
    assert abs(position.avg_price - avg) <= Decimal("0.0001"), (position.avg_price, avg)


def test_executions_since_returns_the_fills_from_that_time_on(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    broker.submit(intent("tf-conf-SPY-20240105-20", seq=20))
    later = broker_case.clock.advance(3600)
    broker.submit(intent("tf-conf-SPY-20240105-21", qty=5, seq=21))

    recent = broker.executions(since=later)

    assert [e.client_order_id for e in recent] == ["tf-conf-SPY-20240105-21"]
    assert recent[0].qty == 5
    assert recent[0].timestamp >= later
    assert len(broker.executions()) == 2


def test_lookup_by_client_id_returns_the_order_as_sent(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    cid = "tf-conf-SPY-20240105-30"
    broker.submit(intent(cid, Side.BUY, 7, seq=30))

    order = broker.get_order(cid)

    assert order is not None
    assert (order.client_order_id, order.symbol, order.side, order.qty) == (cid, "SPY", Side.BUY, 7)
    assert order.filled_qty == 7
    assert order.avg_fill_price is not None
    assert order.broker_order_id


def test_a3_duplicate_submit_is_adopted_and_the_broker_still_holds_one_order(broker_case: BrokerCase) -> None:
    broker = broker_case.broker
    cid = "tf-conf-SPY-20240105-40"
    first = broker.submit(intent(cid, seq=40))

    again = broker.submit(intent(cid, seq=40))

    assert again.outcome is SubmitOutcome.DUPLICATE, again
    assert again.order is not None
    assert first.order is not None
    assert again.order.broker_order_id == first.order.broker_order_id
    assert broker_case.broker_orders(cid) == 1
    assert broker.positions()["SPY"].qty == 10


def test_a_quote_is_the_price_a_market_order_faces_or_none_when_the_adapter_has_no_market_data(
    broker_case: BrokerCase,
) -> None:
    """The tick sizes and marks at the quote (G2); an adapter without live prices says None, never 0."""
    quote = broker_case.broker.quote("SPY")
    if broker_case.name in ("sim", "fake"):
        assert quote == SPY_CLOSE
        assert broker_case.broker.quote("UNPRICED") is None
    else:
        assert quote is None


def test_unknown_client_id_is_none_not_an_error(broker_case: BrokerCase) -> None:
    assert broker_case.broker.get_order("tf-conf-SPY-20240105-999") is None
    assert broker_case.broker.cancel("tf-conf-SPY-20240105-999") is False


def test_f2_secrets_never_appear_in_repr_or_str(broker_case: BrokerCase) -> None:
    if not broker_case.secrets:
        pytest.skip(f"the {broker_case.name} adapter holds no secrets")
    broker = broker_case.broker
    result = broker.submit(intent("tf-conf-SPY-20240105-50", seq=50))
    shown = " ".join([repr(broker), str(broker), repr(result), repr(broker.positions()), repr(broker.account())])
    for secret in broker_case.secrets:
        assert secret not in shown


def test_close_is_idempotent_and_a_closed_adapter_never_answers_from_a_dead_connection(
    broker_case: BrokerCase,
) -> None:
    broker = broker_case.broker
    cid = "tf-conf-SPY-20240105-60"
    assert broker.submit(intent(cid, seq=60)).outcome is SubmitOutcome.ACCEPTED

    broker.close()
    broker.close()  # a runtime and a caller's finally may both close: the second is a no-op

    queries = (broker.positions, broker.account, broker.open_orders, broker.executions, lambda: broker.get_order(cid))
    if broker_case.holds_connection:
        # A query after close must say "unknown", never answer "flat" or "no orders" (B3).
        for query in queries:
            with pytest.raises(BrokerUnavailable, match="closed"):
                query()
    else:
        # Documented in execution/base.py: sim and fake hold no connection, so close releases
        # nothing and their books keep answering; the order and its position are still there.
        assert broker.positions()["SPY"].qty == 10
        order = broker.get_order(cid)
        assert order is not None
        assert order.status is OrderStatus.FILLED
