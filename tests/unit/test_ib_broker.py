"""The IB trading adapter on the paper gateway (the real ib_async.IB, its socket replaced): orderRef
idempotency (A1, A3, A5), connection loss and re-fetch (B3, B5), unknown codes (A10), threads and
event loops, and the pure translation tables."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from ib_async import AccountValue, Contract, Order, OrderStatus, Position, Trade, TradeLogEntry

from tests.contract.broker_fixtures import SPY_CLOSE, SteppingClock, intent
from tests.fixtures.recorded.ib_trading.paper_gateway import PaperGateway, ib_error, load
from tradeflow.adapters.ib import parsing as parse
from tradeflow.adapters.ib.execution import IBBroker
from tradeflow.config import IBSettings
from tradeflow.domain import OrderStatus as Status
from tradeflow.domain import Position as DomainPosition
from tradeflow.domain import Side, SubmitOutcome
from tradeflow.errors import BrokerUnavailable

CID = "tf-sma-SPY-20240105-0"


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def gateway(clock: SteppingClock) -> PaperGateway:
    gw = PaperGateway(clock)
    gw.set_price("SPY", float(SPY_CLOSE))
    return gw


def _broker(gateway: PaperGateway, **kwargs: float) -> IBBroker:
    settings = IBSettings(timeout_s=kwargs.pop("timeout_s", 2.0))
    return IBBroker(
        settings, ib_factory=gateway.ib_factory, ack_timeout_s=kwargs.pop("ack_timeout_s", 0.5), poll_s=0.01
    )


@pytest.fixture
def broker(gateway: PaperGateway) -> Iterator[IBBroker]:
    ib = _broker(gateway)
    yield ib
    ib.close()


# ---------------------------------------------------------------- orderRef idempotency


def test_order_carries_the_client_id_in_order_ref_as_a_day_order(gateway: PaperGateway, broker: IBBroker) -> None:
    broker.submit(intent(CID, qty=3, limit=Decimal("450.25")))

    [placed] = gateway.orders
    assert (placed.order.orderRef, placed.order.tif, placed.order.orderType) == (CID, "DAY", "LMT")
    assert (placed.order.action, placed.order.totalQuantity, placed.order.lmtPrice) == ("BUY", 3.0, 450.25)
    assert (placed.contract.symbol, placed.contract.exchange, placed.contract.currency) == ("SPY", "SMART", "USD")


def test_a1_unacknowledged_order_is_ambiguous_then_found_and_never_resent(
    gateway: PaperGateway, broker: IBBroker
) -> None:
    gateway.drop_acks = True

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert "acknowledgement" in result.reason
    gateway.drop_acks = False
    gateway.drop_connections()  # the next call reconnects and fetches the open orders afresh
    found = broker.get_order(CID)
    assert found is not None
    assert found.status is Status.ACCEPTED
    assert broker.submit(intent(CID)).outcome is SubmitOutcome.DUPLICATE
    assert len(gateway.orders_with_ref(CID)) == 1


def test_a5_a_restarted_adapter_adopts_the_filled_order_by_order_ref(gateway: PaperGateway, broker: IBBroker) -> None:
    assert broker.submit(intent(CID)).outcome is SubmitOutcome.ACCEPTED
    broker.close()

    with _broker(gateway) as restarted:
        again = restarted.submit(intent(CID))
        order = restarted.get_order(CID)

    assert again.outcome is SubmitOutcome.DUPLICATE
    assert order is not None
    assert (order.status, order.filled_qty, order.avg_fill_price) == (
        Status.FILLED,
        10,
        SPY_CLOSE,
    )
    assert len(gateway.orders_with_ref(CID)) == 1


def test_rejection_by_ib_is_rejected_with_its_code(gateway: PaperGateway, broker: IBBroker) -> None:
    gateway.reject_next.append(ib_error("rejected_margin"))

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.REJECTED
    assert not result.retryable
    assert "IB error 201" in result.reason
    assert broker.get_order(CID).status is Status.REJECTED  # type: ignore[union-attr]
    assert broker.positions() == {}


def test_a10_a_warning_code_on_a_live_order_is_ambiguous_not_failed(gateway: PaperGateway, broker: IBBroker) -> None:
    gateway.warn_next.append(ib_error("order_message_warning"))

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert "399" in result.reason
    assert gateway.orders_with_ref(CID)[0].live
    assert broker.get_order(CID).status is Status.UNKNOWN  # type: ignore[union-attr]


def test_submit_without_a_gateway_is_a_retryable_rejection_and_sends_nothing(gateway: PaperGateway) -> None:
    gateway.up = False
    with _broker(gateway) as broker:
        result = broker.submit(intent(CID))

    assert (result.outcome, result.retryable) == (SubmitOutcome.REJECTED, True)
    assert gateway.orders == []


# ---------------------------------------------------------------- unknown state and reconnects


@pytest.mark.parametrize("query", ["positions", "account", "open_orders", "executions"])
def test_b3_no_connection_means_broker_unavailable_never_flat(gateway: PaperGateway, query: str) -> None:
    gateway.up = False
    with _broker(gateway) as broker, pytest.raises(BrokerUnavailable, match="cannot connect"):
        getattr(broker, query)()
    assert gateway.connects == 1


def test_b3_a_silent_gateway_times_out_into_broker_unavailable(gateway: PaperGateway) -> None:
    with _broker(gateway, timeout_s=0.3) as broker:
        broker.positions()  # connected and answering
        gateway.silent = True
        with pytest.raises(BrokerUnavailable, match="positions failed"):
            broker.positions()
        gateway.silent = False
        assert broker.positions() == {}  # reconnected


def test_b5_fills_during_a_disconnect_are_fetched_after_reconnecting(gateway: PaperGateway, broker: IBBroker) -> None:
    resting = broker.submit(intent(CID, qty=4, limit=Decimal("460")))
    assert resting.outcome is SubmitOutcome.ACCEPTED
    first_connects = gateway.connects
    gateway.drop_connections()

    gateway.set_price("SPY", 459.0)  # the order fills while nobody listens

    executions = broker.executions()
    assert gateway.connects == first_connects + 1
    assert [(e.client_order_id, e.qty, e.price, e.commission) for e in executions] == [
        (CID, Decimal("4.0"), Decimal("459.0"), Decimal("1.0"))
    ]
    assert broker.get_order(CID).status is Status.FILLED  # type: ignore[union-attr]
    assert broker.positions()["SPY"].qty == 4


def test_commission_of_a_fill_seen_live_is_reported(broker: IBBroker) -> None:
    """ib_async keeps the commission on the Fill it saw live; reqExecutions' copy has none."""
    broker.submit(intent(CID))

    [execution] = broker.executions()

    assert execution.commission == Decimal("1.0")


def test_account_and_positions_come_from_the_gateway(broker: IBBroker) -> None:
    broker.submit(intent(CID))

    account = broker.account()
    position = broker.positions()["SPY"]

    assert account.cash == Decimal("100000") - 10 * SPY_CLOSE - 1
    assert account.equity == account.cash + 10 * SPY_CLOSE
    assert position.qty == 10
    assert position.avg_price == SPY_CLOSE + Decimal("0.1")


# ---------------------------------------------------------------- threads and loops


def test_calls_work_from_worker_threads_and_from_inside_a_running_event_loop(broker: IBBroker) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda n: broker.submit(intent(f"{CID}-{n}", qty=1)).outcome, range(4)))

    async def inside_a_loop() -> int:
        return len(broker.executions())

    assert outcomes == [SubmitOutcome.ACCEPTED] * 4
    assert asyncio.run(inside_a_loop()) == 4


def test_close_disconnects_and_stops_the_thread(gateway: PaperGateway) -> None:
    broker = _broker(gateway)
    broker.positions()
    assert len(gateway.sockets) == 1

    broker.close()
    broker.close()

    assert gateway.sockets == []
    with pytest.raises(BrokerUnavailable, match="closed"):
        broker.positions()


# ---------------------------------------------------------------- pure translation


def _trade(status: str, *, filled: float = 0.0, log: list[TradeLogEntry] | None = None, **order: object) -> Trade:
    contract = Contract(**load("contract_SPY.json"))
    o = Order(action="BUY", totalQuantity=10.0, orderRef=CID, permId=7, **order)
    return Trade(contract, o, OrderStatus(status=status, filled=filled), [], log or [])


T0 = dt.datetime(2024, 1, 5, 14, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("PendingSubmit", 0.0, Status.SUBMITTED),
        ("PreSubmitted", 0.0, Status.ACCEPTED),
        ("Submitted", 4.0, Status.PARTIALLY_FILLED),
        ("Filled", 10.0, Status.FILLED),
        ("Cancelled", 4.0, Status.CANCELLED),
        ("ValidationError", 0.0, Status.UNKNOWN),
    ],
)
def test_order_status_table(status: str, filled: float, expected: Status) -> None:
    assert parse.order_status(_trade(status, filled=filled)) is expected


def test_a_cancel_after_being_live_is_cancelled_but_an_error_before_is_rejected() -> None:
    live_then_cancelled = _trade(
        "Cancelled",
        log=[TradeLogEntry(T0, "Submitted"), TradeLogEntry(T0, "Cancelled", "Order Canceled - reason:", 202)],
    )
    refused = _trade("Cancelled", log=[TradeLogEntry(T0, "PendingSubmit"), TradeLogEntry(T0, "Cancelled", "no", 201)])

    assert parse.order_status(live_then_cancelled) is Status.CANCELLED
    assert parse.order_status(refused) is Status.REJECTED
    assert parse.rejection_of(refused) == "IB error 201: no"


def test_a_completed_order_after_reconnect_counts_its_own_filled_quantity() -> None:
    trade = _trade("Filled", filledQuantity=10.0)
    assert parse.filled_qty(trade) == 10
    assert parse.trade_to_domain(trade).status is Status.FILLED


def test_fill_translation_from_the_recorded_execution() -> None:
    from ib_async import CommissionReport, Execution, Fill

    raw = load("execution_SPY_BOT.json")
    execution = Execution(**{**raw["execution"], "time": T0})
    fill = Fill(Contract(**load("contract_SPY.json")), execution, CommissionReport(**raw["commissionReport"]), T0)

    out = parse.fill_to_execution(fill)

    assert (out.execution_id, out.client_order_id, out.side) == (
        "0000e0d5.65a0f3c2.01.01",
        "tf-sma-SPY-20240105-0",
        Side.BUY,
    )
    assert (out.qty, out.price, out.commission, out.timestamp) == (Decimal(10), SPY_CLOSE, Decimal(1), T0)


def test_orders_placed_by_hand_get_an_external_client_id() -> None:
    assert parse.client_id_of(Order(orderRef="", permId=99)) == "ib-perm-99"


def test_account_summary_needs_one_account_and_every_tag() -> None:
    values = [AccountValue(r["account"], r["tag"], r["value"], r["currency"], "") for r in load("account_summary.json")]
    account = parse.account_from_summary(values)
    assert (account.cash, account.equity, account.buying_power) == (
        Decimal("100000.00"),
        Decimal("100000.00"),
        Decimal("400000.00"),
    )

    with pytest.raises(ValueError, match="lacks"):
        parse.account_from_summary([v for v in values if v.tag != "TotalCashValue"])
    other = [v._replace(account="DU7654321") for v in values]
    with pytest.raises(ValueError, match="one account"):
        parse.account_from_summary(values + other)
    assert parse.account_from_summary(values + other, account="DU7654321").cash == Decimal("100000.00")


def test_only_stock_positions_are_translated() -> None:
    raw = load("position_SPY.json")
    stock = Position(raw["account"], Contract(**load("contract_SPY.json")), raw["position"], raw["avgCost"])
    option = stock._replace(contract=Contract(secType="OPT", symbol="SPY"))

    assert parse.position_to_domain(stock) == DomainPosition("SPY", Decimal(10), Decimal("468.0200004"))
    assert parse.position_to_domain(option) is None


def test_share_classes_and_execution_filter_time() -> None:
    assert parse.make_contract("BRK.B").symbol == "BRK B"
    assert parse.domain_symbol(Contract(symbol="BRK B")) == "BRK.B"
    assert (
        parse.exec_filter_time(dt.datetime(2024, 1, 5, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
        == "20240105-14:30:00"
    )
