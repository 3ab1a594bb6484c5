"""The Alpaca trading adapter on the recorded paper API (real alpaca-py, fake socket): submit outcomes
(A1-A3, A10), failing queries (B3), the rate limiter (A2, E5), secrets (F2), and the pure tables."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from decimal import Decimal

import pytest
import requests

from tests.contract.broker_fixtures import (
    CANARY_KEY,
    CANARY_SECRET,
    SPY_CLOSE,
    FakeMonotonic,
    SteppingClock,
    intent,
)
from tests.fixtures.recorded.alpaca_trading.paper_api import AlpacaPaperAPI, load
from tradeflow.adapters.alpaca import execution as alpaca_module
from tradeflow.adapters.alpaca.execution import AlpacaBroker, RequestRateLimiter
from tradeflow.adapters.alpaca.parsing import (
    ErrorKind,
    account_to_domain,
    activity_side,
    classify_http_error,
    order_request,
    order_status,
    order_to_domain,
    position_to_domain,
)
from tradeflow.config import AlpacaSettings
from tradeflow.domain import OrderStatus, Side, SubmitOutcome
from tradeflow.errors import BrokerUnavailable, ConfigError

CID = "tf-sma-SPY-20240105-0"


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def api(clock: SteppingClock) -> AlpacaPaperAPI:
    paper = AlpacaPaperAPI(clock)
    paper.set_price("SPY", SPY_CLOSE)
    return paper


@pytest.fixture
def mono() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def broker(api: AlpacaPaperAPI, mono: FakeMonotonic) -> AlpacaBroker:
    limiter = RequestRateLimiter(monotonic=mono, sleep=mono.sleep)
    return AlpacaBroker(api.client(CANARY_KEY, CANARY_SECRET), paper=True, limiter=limiter)


# ---------------------------------------------------------------- submit outcomes


def test_a1_504_after_accept_is_adopted_through_alpaca_pys_own_retry(api: AlpacaPaperAPI, broker: AlpacaBroker) -> None:
    """alpaca-py resends the POST on 504 by itself; the resend meets 'must be unique' and is adopted."""
    api.fail_next("submit", "accept_then:gateway_timeout")

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.DUPLICATE
    assert result.order is not None
    assert result.order.status is OrderStatus.FILLED
    assert api.submits == 2
    assert len(api.orders_with_client_id(CID)) == 1


def test_a1_504_on_every_attempt_is_ambiguous_and_reconcile_finds_the_order(
    api: AlpacaPaperAPI, broker: AlpacaBroker
) -> None:
    api.fail_next("submit", "accept_then:gateway_timeout", "gateway_timeout", "gateway_timeout", "gateway_timeout")

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert "504" in result.reason
    assert api.submits == 4  # alpaca-py's 3 retries, all carrying the same client_order_id
    found = broker.get_order(CID)
    assert found is not None
    assert found.client_order_id == CID
    assert len(api.orders_with_client_id(CID)) == 1


@pytest.mark.parametrize(
    "failure",
    [requests.ReadTimeout("read timed out"), requests.ConnectionError("connection reset by peer")],
    ids=["read-timeout", "connection-reset"],
)
def test_a1_a_timeout_or_dropped_connection_after_sending_is_ambiguous(
    api: AlpacaPaperAPI, broker: AlpacaBroker, failure: Exception
) -> None:
    api.fail_next("submit", failure)

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert api.submits == 1  # no resend: only the reconcile step may look the order up


def test_a2_429_is_a_retryable_rejection_and_the_same_id_succeeds_later(
    api: AlpacaPaperAPI, broker: AlpacaBroker
) -> None:
    api.fail_next("submit", *["rate_limited"] * 4)

    first = broker.submit(intent(CID))
    later = broker.submit(intent(CID))

    assert (first.outcome, first.retryable) == (SubmitOutcome.REJECTED, True)
    assert later.outcome is SubmitOutcome.ACCEPTED
    assert api.submits == 5  # alpaca-py tried 4 times itself, then our one resend
    assert len(api.orders_with_client_id(CID)) == 1


def test_a3_must_be_unique_adopts_the_existing_order_without_sending_another(
    api: AlpacaPaperAPI, broker: AlpacaBroker
) -> None:
    placed = broker.submit(intent(CID))

    again = broker.submit(intent(CID))

    assert again.outcome is SubmitOutcome.DUPLICATE
    assert "must be unique" in again.reason
    assert again.order == broker.get_order(CID)
    assert placed.order is not None
    assert again.order is not None
    assert again.order.broker_order_id == placed.order.broker_order_id
    assert len(api.orders_with_client_id(CID)) == 1


def test_a3_duplicate_whose_lookup_fails_stays_ambiguous(api: AlpacaPaperAPI, broker: AlpacaBroker) -> None:
    broker.submit(intent(CID))
    api.fail_next("get_order", "internal_error")

    result = broker.submit(intent(CID))

    assert result.outcome is SubmitOutcome.AMBIGUOUS
    assert "lookup failed" in result.reason


@pytest.mark.parametrize(
    ("failure", "outcome", "retryable"),
    [
        ("insufficient_buying_power", SubmitOutcome.REJECTED, False),
        ("unauthorized", SubmitOutcome.REJECTED, False),
        ("internal_error", SubmitOutcome.AMBIGUOUS, False),
        ("unknown_code", SubmitOutcome.AMBIGUOUS, False),  # A10: an unknown code is not a failure
    ],
)
def test_submit_maps_http_errors_to_outcomes(
    api: AlpacaPaperAPI, broker: AlpacaBroker, failure: str, outcome: SubmitOutcome, retryable: bool
) -> None:
    api.fail_next("submit", failure)

    result = broker.submit(intent(CID))

    assert (result.outcome, result.retryable) == (outcome, retryable)
    assert str(load("errors.json")[failure]["status"]) in result.reason


def test_real_insufficient_buying_power_from_the_paper_account_is_rejected(broker: AlpacaBroker) -> None:
    result = broker.submit(intent(CID, qty=1000))

    assert result.outcome is SubmitOutcome.REJECTED
    assert "insufficient buying power" in result.reason


def test_submit_sends_a_day_order_with_our_client_id(api: AlpacaPaperAPI, broker: AlpacaBroker) -> None:
    broker.submit(intent(CID, qty=3, limit=Decimal("450.25")))

    method, path, body = api.requests[-1]
    assert (method, path) == ("POST", "/v2/orders")
    assert body == {
        "symbol": "SPY",
        "qty": 3.0,
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "client_order_id": CID,
        "limit_price": 450.25,
    }


# ---------------------------------------------------------------- queries fail closed (B3)


@pytest.mark.parametrize(
    ("route", "call"),
    [
        ("positions", lambda b: b.positions()),
        ("account", lambda b: b.account()),
        ("orders", lambda b: b.open_orders()),
        ("get_order", lambda b: b.get_order(CID)),
        ("activities", lambda b: b.executions()),
    ],
)
def test_b3_a_failing_query_raises_broker_unavailable(
    api: AlpacaPaperAPI, broker: AlpacaBroker, route: str, call: Callable[[AlpacaBroker], object]
) -> None:
    api.fail_next(route, "internal_error")
    with pytest.raises(BrokerUnavailable, match="HTTP 500"):
        call(broker)

    api.fail_next(route, requests.ConnectionError("connection refused"))
    with pytest.raises(BrokerUnavailable, match="ConnectionError"):
        call(broker)


def test_b3_a_gateway_timeout_on_positions_is_unknown_after_alpaca_pys_retries(
    api: AlpacaPaperAPI, broker: AlpacaBroker
) -> None:
    api.fail_next("positions", *["gateway_timeout"] * 4)

    with pytest.raises(BrokerUnavailable, match="HTTP 504"):
        broker.positions()


def test_open_orders_refuses_a_full_page_that_may_hide_more(
    api: AlpacaPaperAPI, broker: AlpacaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alpaca_module, "OPEN_ORDERS_LIMIT", 2)
    for n in range(2):
        broker.submit(intent(f"tf-sma-SPY-20240105-{n}", qty=1, limit=Decimal("400"), seq=n))

    with pytest.raises(BrokerUnavailable, match="incomplete"):
        broker.open_orders()


def test_executions_page_through_fill_activities_and_name_our_client_ids(
    api: AlpacaPaperAPI, broker: AlpacaBroker, clock: SteppingClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alpaca_module, "ACTIVITY_PAGE_SIZE", 2)
    cids = [f"tf-sma-SPY-20240105-{n}" for n in range(5)]
    for n, cid in enumerate(cids):
        clock.advance(60)
        broker.submit(intent(cid, qty=1, seq=n))
    fresh = AlpacaBroker(api.client(), paper=True)  # knows no order ids yet: must look them up

    executions = fresh.executions()

    assert [e.client_order_id for e in executions] == cids
    assert all(e.commission == 0 and e.price == SPY_CLOSE for e in executions)
    pages = [q for m, p, q in api.requests if p == "/v2/account/activities/FILL"]
    assert len(pages) == 3
    assert "page_token" in pages[1]


def test_cancel_of_a_filled_order_is_true_and_a_refused_cancel_of_a_live_order_is_false(
    api: AlpacaPaperAPI, broker: AlpacaBroker
) -> None:
    broker.submit(intent(CID))
    assert broker.cancel(CID) is True  # already filled: nothing to cancel, nothing left open

    resting = "tf-sma-SPY-20240105-1"
    broker.submit(intent(resting, qty=1, limit=Decimal("400"), seq=1))
    api.fail_next("cancel", "not_cancelable")  # it was being filled as we asked
    assert broker.cancel(resting) is False
    assert broker.get_order(resting).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]


# ---------------------------------------------------------------- rate limit (A2, E5)


def test_limiter_admits_180_at_once_then_waits_out_the_window() -> None:
    mono = FakeMonotonic()
    limiter = RequestRateLimiter(monotonic=mono, sleep=mono.sleep)

    waits = [limiter.acquire() for _ in range(181)]

    assert waits[:180] == [0.0] * 180
    assert waits[180] == pytest.approx(60.0)


def test_limiter_never_lets_more_than_the_budget_into_any_window() -> None:
    mono = FakeMonotonic()
    limiter = RequestRateLimiter(max_requests=20, per_seconds=60.0, monotonic=mono, sleep=mono.sleep)
    rng = random.Random(7)
    stamps = []
    for _ in range(400):
        mono.t += rng.choice([0.0, 0.01, 0.5, 3.0])
        limiter.acquire()
        stamps.append(mono.t)

    worst = max(sum(1 for t in stamps if start <= t < start + 60.0) for start in stamps)
    assert worst == 20


def test_adapter_calls_pass_through_the_limiter(api: AlpacaPaperAPI, mono: FakeMonotonic) -> None:
    limiter = RequestRateLimiter(max_requests=3, per_seconds=60.0, monotonic=mono, sleep=mono.sleep)
    broker = AlpacaBroker(api.client(), paper=True, limiter=limiter)

    broker.account()
    broker.positions()
    broker.submit(intent(CID))
    broker.get_order(CID)

    assert mono.sleeps == [pytest.approx(60.0)]
    assert len(api.requests) == 4


# ---------------------------------------------------------------- secrets (F2) and construction


def test_f2_canary_keys_reach_only_the_request_headers(
    api: AlpacaPaperAPI, broker: AlpacaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.fail_next("submit", "unauthorized")
    api.fail_next("positions", "internal_error")
    api.fail_next("account", requests.ReadTimeout("timed out"))
    seen: list[str] = [repr(broker), str(broker), repr(broker.submit(intent(CID)))]
    for call in (broker.positions, broker.account):
        with pytest.raises(BrokerUnavailable) as info:
            call()
        seen += [str(info.value), repr(info.value)]
    seen += [r.getMessage() for r in caplog.records]

    assert CANARY_KEY in api.seen_headers[0].values()  # the keys were really in use
    for text in seen:
        assert CANARY_KEY not in text
        assert CANARY_SECRET not in text


def test_from_settings_picks_the_endpoint_from_the_paper_flag_and_refuses_missing_keys() -> None:
    with pytest.raises(ConfigError, match="keys are missing"):
        AlpacaBroker.from_settings(AlpacaSettings())

    from alpaca.common.enums import BaseURL

    paper = AlpacaBroker.from_settings(AlpacaSettings(api_key=CANARY_KEY, secret_key=CANARY_SECRET))
    live = AlpacaBroker.from_settings(AlpacaSettings(api_key=CANARY_KEY, secret_key=CANARY_SECRET, paper=False))

    assert repr(paper) == "AlpacaBroker(paper=True)"
    assert repr(live) == "AlpacaBroker(paper=False)"
    assert paper._client._base_url == BaseURL.TRADING_PAPER  # type: ignore[attr-defined]
    assert live._client._base_url == BaseURL.TRADING_LIVE  # type: ignore[attr-defined]


# ---------------------------------------------------------------- pure translation


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("new", "0", OrderStatus.ACCEPTED),
        ("accepted", "0", OrderStatus.ACCEPTED),
        ("pending_new", "0", OrderStatus.ACCEPTED),
        ("partially_filled", "4", OrderStatus.PARTIALLY_FILLED),
        ("pending_cancel", "4", OrderStatus.PARTIALLY_FILLED),
        ("filled", "10", OrderStatus.FILLED),
        ("canceled", "4", OrderStatus.CANCELLED),
        ("expired", "0", OrderStatus.CANCELLED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("something_new", "0", OrderStatus.UNKNOWN),
    ],
)
def test_order_status_table(status: str, filled: str, expected: OrderStatus) -> None:
    assert order_status(status, Decimal(filled)) is expected


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (422, "client_order_id must be unique", ErrorKind.DUPLICATE),
        (429, "rate limit exceeded", ErrorKind.RATE_LIMITED),
        (404, "order not found", ErrorKind.NOT_FOUND),
        (403, "insufficient buying power", ErrorKind.REJECTED),
        (422, "qty must be > 0", ErrorKind.REJECTED),
        (408, "request timeout", ErrorKind.AMBIGUOUS),
        (500, "internal server error occurred", ErrorKind.AMBIGUOUS),
        (504, "<html>504 Gateway Time-out</html>", ErrorKind.AMBIGUOUS),
        (None, "", ErrorKind.AMBIGUOUS),
    ],
)
def test_http_error_table(status: int | None, message: str, kind: ErrorKind) -> None:
    assert classify_http_error(status, message) is kind


def test_recorded_order_parses_through_alpaca_pys_model_to_the_domain() -> None:
    from alpaca.trading.models import Order

    raw = load("order.json")
    raw.update(status="partially_filled", filled_qty="4", filled_avg_price="467.9")

    order = order_to_domain(Order(**raw))

    assert order.client_order_id == "tf-sma-SPY-20240105-0"
    assert (order.qty, order.filled_qty, order.avg_fill_price) == (Decimal(10), Decimal(4), Decimal("467.9"))
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.side is Side.BUY
    assert order.submitted_at == dt.datetime(2024, 1, 5, 14, 30, 0, 118734, tzinfo=dt.UTC)
    assert order_to_domain(raw) == order  # the raw JSON maps the same


def test_short_position_is_negative_and_a_missing_cash_field_is_an_error() -> None:
    raw = load("position.json")
    raw.update(qty="5", side="short")
    assert position_to_domain(raw).qty == -5

    account = load("account.json")
    assert account_to_domain(account).cash == Decimal("100000")
    del account["cash"]
    with pytest.raises(ValueError, match="cash is missing"):
        account_to_domain(account)


def test_order_request_is_day_only_and_carries_the_client_id() -> None:
    request = order_request(intent(CID, Side.SELL, 2))
    assert request.client_order_id == CID
    assert request.time_in_force.value == "day"
    assert request.side.value == "sell"

    gtc = intent(CID)
    object.__setattr__(gtc, "time_in_force", "gtc")
    with pytest.raises(ValueError, match="DAY"):
        order_request(gtc)


def test_fill_sides_include_short_sales() -> None:
    assert activity_side("sell_short") is Side.SELL
    with pytest.raises(ValueError):
        activity_side("exercise")
