"""Typed audit events (domain.events): each writes its kind and today's payload keys through the real
ledger, and the ledger takes nothing but an event."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradeflow.domain import OrderIntent, OrderStatus, Side, TradingState
from tradeflow.domain.events import (
    AlertRaised,
    AuditEvent,
    Breaker,
    BreakerFired,
    DuplicateTickSkipped,
    OperatorAdopted,
    OrderAdopted,
    OrderDenied,
    OrderFilled,
    OrderIntended,
    OrderLookedUp,
    OrderOutcomeAmbiguous,
    OrderRejected,
    OrderSubmitted,
    StateRestored,
    SubmitAttempted,
    TickStarted,
    TradingResumed,
    TradingStateChanged,
)
from tradeflow.ledger import Ledger

D = Decimal
NOW = dt.datetime(2025, 3, 3, 15, 0, tzinfo=dt.UTC)
SESSION = dt.date(2025, 3, 3)
INTENT = OrderIntent("tf-sma-SPY-20250303-0", "SPY", Side.BUY, D(10), SESSION, "sma", 0)

# (event, the audit kind, the payload as read back: the keys and values the free-string calls wrote)
CASES: list[tuple[AuditEvent, str, dict[str, Any]]] = [
    (TickStarted("sma|2025-03-03|15:00Z", "paper"), "tick_started", {"tick": "sma|2025-03-03|15:00Z", "mode": "paper"}),
    (DuplicateTickSkipped("k"), "duplicate_tick", {"tick": "k"}),
    (AlertRaised("broker 401"), "alert", {"message": "broker 401"}),
    (
        OrderIntended(INTENT),
        "intent",
        {
            "intent": {
                "client_order_id": "tf-sma-SPY-20250303-0",
                "symbol": "SPY",
                "side": "buy",
                "qty": "10",
                "session": "2025-03-03",
                "strategy": "sma",
                "seq": 0,
                "order_type": "market",
                "limit_price": None,
                "time_in_force": "day",
                "reduce_only": False,
            }
        },
    ),
    (
        OrderDenied("POSITION_LIMIT", "position 120% > 100%", D("5"), "SPY"),
        "denial",
        {"reason": "POSITION_LIMIT", "detail": "position 120% > 100%", "qty": "5", "symbol": "SPY"},
    ),
    (SubmitAttempted(2), "submit_attempt", {"attempt": 2}),
    (OrderSubmitted("accepted"), "submit_outcome", {"outcome": "accepted"}),
    (OrderRejected("429 too many"), "submit_outcome", {"outcome": "rejected", "reason": "429 too many"}),
    (OrderOutcomeAmbiguous("timeout"), "ambiguous", {"reason": "timeout"}),
    (OrderLookedUp(False), "reconcile_lookup", {"found": False}),
    (OrderAdopted("b-17"), "adopted", {"broker_order_id": "b-17"}),
    (
        OrderFilled(
            "e1",
            "SPY",
            Side.BUY,
            D(10),
            D("500.25"),
            D("0.01"),
            NOW,
            D(10),
            D("500.25"),
            D("94997.49"),
            OrderStatus.FILLED,
        ),
        "fill",
        {
            "execution_id": "e1",
            "symbol": "SPY",
            "side": "buy",
            "qty": "10",
            "price": "500.25",
            "commission": "0.01",
            "ts": "2025-03-03T15:00:00.000000+00:00",
            "position_qty": "10",
            "position_avg_price": "500.25",
            "cash": "94997.49",
            "order_status": "filled",
        },
    ),
    (
        TradingStateChanged(TradingState.ACTIVE, TradingState.HALTED, "drawdown"),
        "state_change",
        {"from": "ACTIVE", "to": "HALTED", "reason": "drawdown"},
    ),
    (
        BreakerFired(Breaker.DRAWDOWN, TradingState.HALTED, "drawdown 21.00% from peak 100000 >= 20.00%"),
        "breaker_fired",
        {"breaker": "drawdown", "state": "HALTED", "detail": "drawdown 21.00% from peak 100000 >= 20.00%"},
    ),
    (
        TradingResumed("alice", "checked", TradingState.HALTED, TradingState.ACTIVE, "resumed by alice"),
        "resume",
        {"operator": "alice", "reason": "checked", "from": "HALTED", "to": "ACTIVE", "detail": "resumed by alice"},
    ),
    (
        StateRestored(TradingState.ACTIVE, TradingState.HALTED, "kill switch: x", D(120_000), "/d/ledger.latch.json"),
        "state_restored",
        {
            "from": "ACTIVE",
            "to": "HALTED",
            "reason": "kill switch: x",
            "peak_equity": "120000",
            "latch": "/d/ledger.latch.json",
        },
    ),
    (
        OperatorAdopted("ledger restored from backup", ("tf-a",), {"SPY": "10"}, "5000.00"),
        "operator_adopted",
        {"reason": "ledger restored from backup", "orders": ["tf-a"], "positions": {"SPY": "10"}, "cash": "5000.00"},
    ),
]


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


@pytest.mark.parametrize(("event", "kind", "payload"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_event_is_audited_with_its_kind_and_the_payload_keys_readers_use(
    ledger: Ledger, event: AuditEvent, kind: str, payload: dict[str, Any]
) -> None:
    assert event.kind == kind
    ledger.audit(event, NOW, run_id="run-1", client_order_id="tf-x")
    [row] = ledger.audit_rows()
    assert (row.kind, row.payload, row.run_id, row.client_order_id) == (kind, payload, "run-1", "tf-x")


def test_ledger_audit_refuses_a_free_string_kind_and_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match=r"domain\.events"):
        ledger.audit("alert", {"message": "typo-prone"}, NOW)  # type: ignore[arg-type,call-arg]
    assert ledger.audit_rows() == []


def test_the_ledgers_own_writes_are_the_typed_events(ledger: Ledger) -> None:
    """record_intent, apply_execution and set_trading_state write the same rows as their events."""
    from tradeflow.domain import Execution

    ledger.record_intent(INTENT, NOW, "run-1")
    ledger.apply_execution(Execution("e1", INTENT.client_order_id, "SPY", Side.BUY, D(10), D(500), D(0), NOW), NOW)
    ledger.set_trading_state(TradingState.HALTED, "kill switch: test", NOW)
    intent_row, fill_row, state_row = [r for r in ledger.audit_rows() if r.kind in ("intent", "fill", "state_change")]
    assert intent_row.payload == next(c[2] for c in CASES if c[1] == "intent")
    assert set(fill_row.payload) == set(next(c[2] for c in CASES if c[1] == "fill"))
    assert state_row.payload == {"from": "ACTIVE", "to": "HALTED", "reason": "kill switch: test"}


def test_a_state_change_records_the_breakers_that_caused_it_in_the_same_write(ledger: Ledger) -> None:
    fired = BreakerFired(Breaker.ORDER_FLOOD, TradingState.HALTED, "order flood: 9 opening orders")
    assert ledger.set_trading_state(TradingState.HALTED, "order_flood", NOW, run_id="run-1", cause=(fired,))
    # Nothing changes the second time: no state row, and no breaker row claiming it did.
    assert not ledger.set_trading_state(TradingState.HALTED, "order_flood", NOW, run_id="run-1", cause=(fired,))
    rows = ledger.audit_rows()
    assert [r.kind for r in rows] == ["breaker_fired", "state_change"]
    assert rows[0].payload == {"breaker": "order_flood", "state": "HALTED", "detail": "order flood: 9 opening orders"}
