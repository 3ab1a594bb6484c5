"""The FakeBroker's fault modes (RELIABILITY §4), each with the call counts it must produce, and the
SimBroker core under it: cost-model fills, persisted books, deterministic ids."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract.broker_fixtures import OPEN, SESSION, SteppingClock, intent
from tradeflow.domain import OrderStatus, Side, SubmitOutcome
from tradeflow.errors import BrokerError, BrokerUnavailable
from tradeflow.execution.fake import FakeBroker
from tradeflow.execution.sim import SimBroker
from tradeflow.sim.costs import CostModel

CID = "tf-test-SPY-20240105-0"


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def fake(clock: SteppingClock) -> FakeBroker:
    broker = FakeBroker(clock)
    broker.set_price("SPY", "100")
    return broker


# ---------------------------------------------------------------- fault modes


def test_a1_accept_then_timeout_is_ambiguous_and_the_order_is_found_by_client_id(fake: FakeBroker) -> None:
    fake.accept_then_timeout()

    result = fake.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert result.order is None
    found = fake.get_order(CID)
    assert found is not None
    assert found.status is OrderStatus.FILLED
    assert len(fake.broker_orders_for(CID)) == 1
    assert fake.calls == {"submit": 1, "get_order": 1}


def test_a2_reject_429_accepts_nothing_and_a_resend_with_the_same_id_places_one_order(fake: FakeBroker) -> None:
    fake.reject_429(times=2)

    outcomes = [fake.submit(intent(CID)) for _ in range(3)]

    assert [(r.outcome, r.retryable) for r in outcomes] == [
        (SubmitOutcome.REJECTED, True),
        (SubmitOutcome.REJECTED, True),
        (SubmitOutcome.ACCEPTED, False),
    ]
    assert len(fake.broker_orders_for(CID)) == 1
    assert fake.calls["submit"] == 3


def test_a3_reject_duplicate_client_id_adopts_the_order_an_earlier_attempt_placed(fake: FakeBroker) -> None:
    fake.reject_duplicate_client_id()

    result = fake.submit(intent(CID))

    assert result.outcome is SubmitOutcome.DUPLICATE
    assert result.order is not None
    assert result.order.client_order_id == CID
    assert "must be unique" in result.reason
    assert len(fake.broker_orders_for(CID)) == 1


def test_a9_partial_fill_then_cancel_leaves_40_of_100_filled(fake: FakeBroker) -> None:
    fake.partial_fill_then_cancel(filled=40)

    result = fake.submit(intent(CID, qty=100))

    assert result.outcome is SubmitOutcome.ACCEPTED
    order = fake.get_order(CID)
    assert order is not None
    assert (order.status, order.filled_qty, order.qty) == (OrderStatus.CANCELLED, 40, 100)
    assert fake.positions()["SPY"].qty == 40
    assert sum(e.qty for e in fake.executions()) == 40
    assert fake.open_orders() == []


def test_a10_unknown_error_code_is_ambiguous_while_the_order_is_live(fake: FakeBroker) -> None:
    fake.unknown_error_code(code=10999)

    result = fake.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert "10999" in result.reason
    assert [o.client_order_id for o in fake.open_orders()] == [CID]
    assert fake.get_order(CID).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]


def test_a11_duplicate_execution_delivers_the_same_fill_twice(fake: FakeBroker) -> None:
    fake.submit(intent(CID))
    fake.duplicate_execution()

    delivered = fake.executions()

    assert len(delivered) == 2
    assert len({e.execution_id for e in delivered}) == 1


def test_b5_disconnect_mid_fill_withholds_the_rest_until_reconnect(fake: FakeBroker, clock: SteppingClock) -> None:
    fake.disconnect_mid_fill()
    assert fake.submit(intent(CID, qty=100)).outcome is SubmitOutcome.ACCEPTED

    first = fake.executions()
    assert [e.qty for e in first] == [50]
    with pytest.raises(BrokerUnavailable):
        fake.executions()
    with pytest.raises(BrokerUnavailable):
        fake.positions()
    rejected = fake.submit(intent("tf-test-SPY-20240105-1"))
    assert (rejected.outcome, rejected.retryable) == (SubmitOutcome.REJECTED, True)

    fake.reconnect()
    refetched = fake.executions(since=first[-1].timestamp)

    assert sum(e.qty for e in refetched) == 100
    assert fake.positions()["SPY"].qty == 100
    assert fake.calls["executions"] == 3


def test_b1_position_drift_moves_the_broker_position_without_an_execution(fake: FakeBroker) -> None:
    fake.submit(intent(CID, qty=100))

    fake.position_drift("SPY", 50)

    assert fake.positions()["SPY"].qty == 150
    assert sum(e.qty for e in fake.executions()) == 100


def test_b2_position_drift_on_an_unknown_symbol_shows_a_new_position(fake: FakeBroker) -> None:
    fake.position_drift("AAPL", -20, price=Decimal("185.00"))

    assert fake.positions()["AAPL"].qty == -20
    assert fake.positions()["AAPL"].avg_price == Decimal("185.00")


def test_b6_cash_drift_moves_broker_cash_only(fake: FakeBroker) -> None:
    before = fake.account().cash

    fake.cash_drift("-1250.50")

    assert fake.account().cash == before - Decimal("1250.50")
    assert fake.executions() == []


def test_a8_slow_response_sleeps_through_the_injected_sleep(clock: SteppingClock) -> None:
    slept: list[float] = []
    fake = FakeBroker(clock, sleep=slept.append)
    fake.set_price("SPY", "100")
    fake.slow_response(2.5, methods=("submit", "positions"))

    fake.submit(intent(CID))
    fake.positions()
    fake.account()

    assert slept == [2.5, 2.5]
    assert fake.calls == {"submit": 1, "positions": 1, "account": 1}


def test_b4_not_found_then_found_answers_none_before_the_order(fake: FakeBroker) -> None:
    fake.submit(intent(CID))
    fake.not_found_then_found(times=2)

    answers = [fake.get_order(CID) for _ in range(3)]

    assert answers[:2] == [None, None]
    assert answers[2] is not None
    assert answers[2].client_order_id == CID
    assert fake.calls["get_order"] == 3


def test_b3_query_failure_raises_broker_unavailable_and_never_answers_flat(fake: FakeBroker) -> None:
    fake.submit(intent(CID))
    fake.query_failure(methods=("positions", "account"), times=2)

    for _ in range(2):
        with pytest.raises(BrokerUnavailable):
            fake.positions()
        with pytest.raises(BrokerUnavailable):
            fake.account()
    assert len(fake.executions()) == 1  # other queries still answer

    assert fake.positions()["SPY"].qty == 10  # the failures were counted down
    assert fake.calls["positions"] == 3
    assert fake.calls["account"] == 2


def test_query_failure_refuses_a_name_that_is_not_a_query(fake: FakeBroker) -> None:
    with pytest.raises(ValueError, match="not a query"):
        fake.query_failure(methods=("submit",))


def test_without_unique_client_ids_a_resend_creates_a_second_broker_order(clock: SteppingClock) -> None:
    """What broker_orders_for exists to catch: at IB a resent orderRef is a second order."""
    fake = FakeBroker(clock, unique_client_ids=False)
    fake.set_price("SPY", "100")

    fake.submit(intent(CID))
    fake.submit(intent(CID))

    assert len(fake.broker_orders_for(CID)) == 2
    assert fake.positions()["SPY"].qty == 20


def test_clear_faults_restores_normal_service(fake: FakeBroker) -> None:
    fake.reject_429(times=5).query_failure(methods=("positions",))
    fake.clear_faults()

    assert fake.submit(intent(CID)).outcome is SubmitOutcome.ACCEPTED
    assert fake.positions()["SPY"].qty == 10


# ---------------------------------------------------------------- the SimBroker core


COSTS = CostModel(commission_per_share=0.005, commission_min=1.0, half_spread_bps=0.5, slippage_bps=1.0)


def test_sim_market_buy_fills_at_the_cost_model_price_and_pays_its_commission(clock: SteppingClock) -> None:
    sim = SimBroker(None, clock=clock, cost=COSTS)
    sim.set_price("SPY", "467.92")

    sim.submit(intent(CID, qty=10))

    [execution] = sim.executions()
    assert execution.price == Decimal("467.9902")  # 467.92 * (1 + 1.5 bps), to 4 decimals
    assert execution.commission == Decimal("1.00")  # the 1.00 minimum over 10 * 0.005
    # 100000 - 10 * 467.9902 - 1.00 = 95319.098, booked to the cent
    assert sim.account().cash == Decimal("95319.10")
    assert execution.timestamp == OPEN


def test_sim_sale_pays_sec_fee_and_taf_on_top_of_commission(clock: SteppingClock) -> None:
    sim = SimBroker(None, clock=clock, cost=COSTS)
    sim.set_price("SPY", "100")
    sim.submit(intent(CID, qty=500))

    sim.submit(intent("tf-test-SPY-20240105-1", Side.SELL, 500))

    sale = sim.executions()[-1]
    assert sale.side is Side.SELL
    assert sale.price == Decimal("99.9850")
    proceeds = Decimal(500) * sale.price
    # 2.50 commission + SEC 27.80 per 1M of proceeds + TAF 0.000166 per share
    expected = Decimal("2.50") + proceeds * Decimal("0.0000278") + Decimal("0.083")
    assert sale.commission == expected.quantize(Decimal("0.01"))


def test_sim_market_order_waits_for_a_price_and_fills_on_the_next_one(clock: SteppingClock) -> None:
    sim = SimBroker(None, clock=clock, cost=COSTS)

    result = sim.submit(intent(CID))
    assert result.outcome is SubmitOutcome.ACCEPTED
    assert sim.get_order(CID).status is OrderStatus.ACCEPTED

    fills = sim.set_price("SPY", "101", volume=1e6)

    assert [e.client_order_id for e in fills] == [CID]
    assert sim.get_order(CID).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_sim_refuses_what_the_account_cannot_pay_or_does_not_hold(clock: SteppingClock) -> None:
    sim = SimBroker(None, clock=clock, initial_cash=Decimal("1000"))
    sim.set_price("SPY", "100")

    too_big = sim.submit(intent(CID, qty=20))
    naked_sale = sim.submit(intent("tf-test-SPY-20240105-1", Side.SELL, 1))

    assert too_big.outcome is SubmitOutcome.REJECTED
    assert "buying power" in too_big.reason
    assert naked_sale.outcome is SubmitOutcome.REJECTED
    assert "qty available" in naked_sale.reason
    assert not too_big.retryable
    assert sim.orders_for(CID) == []


def test_sim_day_limit_orders_expire_at_the_end_of_their_session(clock: SteppingClock) -> None:
    sim = SimBroker(None, clock=clock)
    sim.set_price("SPY", "100")
    sim.submit(intent(CID, qty=1, limit=Decimal("90")))

    expired = sim.end_session(SESSION)

    assert expired == [CID]
    assert sim.get_order(CID).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    sim.set_price("SPY", "80")
    assert sim.executions() == []


def test_sim_books_survive_a_restart_and_ids_are_never_reused(tmp_path: Path, clock: SteppingClock) -> None:
    path = tmp_path / "ledger" / "sim_broker.json"
    first = SimBroker(path, clock=clock, cost=COSTS)
    first.set_price("SPY", "100")
    first.submit(intent(CID, qty=10))
    first.submit(intent("tf-test-SPY-20240105-1", qty=1, limit=Decimal("90")))

    again = SimBroker(path, clock=clock, cost=COSTS)

    assert again.positions() == first.positions()
    assert again.account() == first.account()
    assert again.executions() == first.executions()
    assert again.open_orders() == first.open_orders()
    assert again.submit(intent(CID)).outcome is SubmitOutcome.DUPLICATE
    clock.advance(60)
    again.submit(intent("tf-test-SPY-20240105-2", qty=1))
    ids = [o.broker_order_id for o in again.open_orders()] + [e.execution_id for e in again.executions()]
    assert len(ids) == len(set(ids))
    assert again.get_order("tf-test-SPY-20240105-2").broker_order_id == "sim-00000003"  # type: ignore[union-attr]


def test_sim_same_inputs_give_the_same_books(tmp_path: Path) -> None:
    def run(path: Path) -> str:
        sim = SimBroker(path, clock=SteppingClock(), cost=COSTS)
        sim.set_price("SPY", "467.92")
        sim.submit(intent(CID, qty=10))
        sim.submit(intent("tf-test-SPY-20240105-1", Side.SELL, 4))
        return path.read_text()

    assert run(tmp_path / "a.json") == run(tmp_path / "b.json")


def test_sim_unreadable_state_fails_closed_instead_of_starting_empty(tmp_path: Path, clock: SteppingClock) -> None:
    path = tmp_path / "sim_broker.json"
    path.write_text(json.dumps({"version": 1, "cash": "oops"}))

    with pytest.raises(BrokerError, match="unreadable"):
        SimBroker(path, clock=clock)


def test_sim_refuses_a_naive_clock() -> None:
    sim = SimBroker(None, clock=lambda: dt.datetime(2024, 1, 5, 9, 30))
    with pytest.raises(ValueError, match="tz-aware"):
        sim.submit(intent(CID))


def test_sim_short_position_flips_and_averages_correctly(clock: SteppingClock) -> None:
    sim = SimBroker(
        None,
        clock=clock,
        cost=CostModel(commission_min=0, commission_per_share=0, half_spread_bps=0, slippage_bps=0),
        allow_short=True,
    )
    sim.set_price("SPY", "100")
    sim.submit(intent(CID, Side.SELL, 10))
    sim.set_price("SPY", "90")
    sim.submit(intent("tf-test-SPY-20240105-1", Side.SELL, 10))
    assert sim.positions()["SPY"].qty == -20
    assert sim.positions()["SPY"].avg_price == Decimal("95")

    sim.submit(intent("tf-test-SPY-20240105-2", Side.BUY, 30))

    assert sim.positions()["SPY"].qty == 10
    assert sim.positions()["SPY"].avg_price == Decimal("90")
