"""The SQLite ledger: WAL, append-only audit, fill dedup and position arithmetic, atomic writes that
fail as LedgerError, and state that survives a reopen."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from tradeflow.domain import BrokerOrder, Execution, OrderIntent, OrderStatus, Position, Side, TradingState
from tradeflow.domain.events import AlertRaised, OrderLookedUp, SubmitAttempted
from tradeflow.errors import LedgerError
from tradeflow.ledger import SCHEMA_VERSION, Ledger, make_tick_key

UTC = dt.UTC
NOW = dt.datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
SESSION = dt.date(2025, 3, 3)
D = Decimal


def at(minutes: float) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def intent(cid: str = "tf-sma-SPY-20250303-0", qty: str = "100", side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(cid, "SPY", side, D(qty), SESSION, "sma", 0)


def fill(
    eid: str,
    qty: str,
    price: str,
    side: Side = Side.BUY,
    *,
    cid: str = "tf-sma-SPY-20250303-0",
    minute: float = 1,
    fee: str = "0",
    symbol: str = "SPY",
) -> Execution:
    return Execution(eid, cid, symbol, side, D(qty), D(price), D(fee), at(minute))


def broker_order(cid: str, status: OrderStatus, filled: str = "0", qty: str = "100") -> BrokerOrder:
    return BrokerOrder(cid, "B-1", "SPY", Side.BUY, D(qty), D(filled), None, status)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "ledger.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path) as led:
        yield led


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=0.05)


# --- storage --------------------------------------------------------------------------------


def test_ledger_file_is_in_wal_mode_and_schema_is_versioned(ledger: Ledger, path: Path) -> None:
    conn = raw(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.schema_version() == SCHEMA_VERSION
    conn.close()
    ledger.close()
    with Ledger(path) as again:  # opening twice creates nothing twice
        assert again.schema_version() == SCHEMA_VERSION
    assert raw(path).execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_ledger_written_by_newer_code_is_refused(path: Path) -> None:
    Ledger(path).close()
    raw(path).execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_money_is_stored_as_exact_decimal_text(ledger: Ledger, path: Path) -> None:
    ledger.set_cash(D("0.1"), "deposit", NOW)
    ledger.apply_execution(fill("e1", "3", "0.1", fee="0.2"), NOW)
    assert ledger.cash() == D("-0.4")  # 0.1 - 3*0.1 - 0.2, no float residue
    assert raw(path).execute("SELECT balance, typeof(balance) FROM cash").fetchone() == ("-0.40", "text")  # cents


# --- audit trail (F3) -----------------------------------------------------------------------


def test_f3_audit_rows_refuse_update_and_delete(ledger: Ledger, path: Path) -> None:
    ledger.audit(AlertRaised("hello"), NOW, run_id="run-1")
    conn = raw(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET kind = 'forged'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit")
    rows = ledger.audit_rows()
    assert [(r.kind, r.payload) for r in rows] == [("alert", {"message": "hello"})]


def test_f3_audit_chain_is_ordered_with_utc_timestamps_and_run_id(ledger: Ledger, path: Path) -> None:
    cid = "tf-sma-SPY-20250303-0"
    new_york = dt.timezone(dt.timedelta(hours=-5))
    assert ledger.record_intent(intent(cid), at(0), "run-7")
    ledger.audit(SubmitAttempted(1), at(1), "run-7", cid)
    ledger.set_order_status(cid, OrderStatus.UNKNOWN, at(2), run_id="run-7")
    ledger.audit(OrderLookedUp(True), at(3).astimezone(new_york), "run-7", cid)
    ledger.set_order_status(cid, OrderStatus.ACCEPTED, at(4), broker_order(cid, OrderStatus.ACCEPTED), "run-7")
    ledger.apply_execution(fill("e1", "100", "500", minute=5), at(5), "run-7")

    rows = ledger.audit_rows()
    kinds = ["intent", "submit_attempt", "order_status", "reconcile_lookup", "order_status", "fill"]
    assert [r.kind for r in rows] == kinds
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert [r.ts for r in rows] == [at(m) for m in range(6)]
    assert all(r.ts.utcoffset() == dt.timedelta(0) and r.run_id == "run-7" for r in rows)
    assert all(r.client_order_id == cid for r in rows)
    stored = [t for (t,) in raw(path).execute("SELECT ts FROM audit ORDER BY id")]
    assert stored[3] == "2025-03-03T15:03:00.000000+00:00"  # written in UTC whatever zone came in
    assert ledger.audit_rows(since_id=rows[3].id) == rows[4:]


def test_f2_a_secret_in_an_audit_payload_is_written_as_redacted(ledger: Ledger, path: Path) -> None:
    canary = "CANARY-7f3e-do-not-leak"
    # A typed field is a str, but nothing stops a SecretStr slipping into it at run time.
    ledger.audit(AlertRaised(SecretStr(canary)), NOW)  # type: ignore[arg-type]
    assert ledger.audit_rows()[0].payload["message"] == "REDACTED"
    assert canary not in repr(ledger.dump())
    assert canary.encode() not in path.read_bytes() + path.with_name(path.name + "-wal").read_bytes()


def test_naive_timestamps_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.audit(AlertRaised("x"), dt.datetime(2025, 3, 3, 10, 0))
    assert ledger.audit_rows() == []


# --- orders ---------------------------------------------------------------------------------


def test_a7_record_intent_is_idempotent_on_client_order_id(ledger: Ledger) -> None:
    first = intent()
    assert ledger.record_intent(first, NOW, "run-1") is True
    assert ledger.record_intent(first, at(5), "run-2") is False
    order = ledger.get_order(first.client_order_id)
    assert order is not None
    assert order.status is OrderStatus.INTENDED
    assert order.intent() == first
    assert order.run_id == "run-1"
    assert [r.kind for r in ledger.audit_rows()] == ["intent"]


def test_open_orders_are_the_non_terminal_ones_unknown_included(ledger: Ledger) -> None:
    for n, status in enumerate([OrderStatus.UNKNOWN, OrderStatus.ACCEPTED, OrderStatus.REJECTED]):
        cid = f"tf-sma-SPY-20250303-{n}"
        ledger.record_intent(intent(cid), NOW, "run-1")
        ledger.set_order_status(cid, status, NOW)
    ledger.record_intent(intent("tf-sma-SPY-20250303-9"), NOW, "run-1")
    assert [o.status for o in ledger.open_orders()] == [
        OrderStatus.UNKNOWN,
        OrderStatus.ACCEPTED,
        OrderStatus.INTENDED,
    ]
    assert [o.client_order_id for o in ledger.orders([OrderStatus.REJECTED])] == ["tf-sma-SPY-20250303-2"]


def test_a11_fills_before_the_ack_are_applied_and_the_ack_does_not_double_count(ledger: Ledger) -> None:
    cid = intent().client_order_id
    ledger.record_intent(intent(), NOW, "run-1")
    assert ledger.apply_execution(fill("e1", "40", "500"), at(1))
    stored = ledger.set_order_status(cid, OrderStatus.ACCEPTED, at(2), broker_order(cid, OrderStatus.ACCEPTED, "40"))
    assert stored is OrderStatus.PARTIALLY_FILLED  # an ack never makes a filled order look unfilled
    order = ledger.get_order(cid)
    assert order is not None
    assert (order.filled_qty, order.avg_fill_price, order.broker_order_id) == (D(40), D(500), "B-1")
    assert ledger.positions() == {"SPY": Position("SPY", D(40), D(500))}
    ledger.apply_execution(fill("e2", "60", "510", minute=3), at(3))
    order = ledger.get_order(cid)
    assert order is not None
    assert (order.status, order.filled_qty, order.avg_fill_price) == (OrderStatus.FILLED, D(100), D(506))


def test_a9_partial_fill_then_broker_cancel_records_40_filled(ledger: Ledger) -> None:
    cid = intent().client_order_id
    ledger.record_intent(intent(qty="100"), NOW, "run-1")
    ledger.set_order_status(cid, OrderStatus.ACCEPTED, at(1), broker_order(cid, OrderStatus.ACCEPTED))
    ledger.apply_execution(fill("e1", "40", "500", minute=2), at(2))
    assert ledger.set_order_status(cid, OrderStatus.CANCELLED, at(3)) is OrderStatus.CANCELLED
    # a stale ack delivered after the cancel does not reopen the order
    stale = ledger.set_order_status(cid, OrderStatus.ACCEPTED, at(4), broker_order(cid, OrderStatus.ACCEPTED))
    assert stale is OrderStatus.CANCELLED
    order = ledger.get_order(cid)
    assert order is not None
    assert (order.status, order.filled_qty, order.remaining_qty) == (OrderStatus.CANCELLED, D(40), D(60))
    assert ledger.open_orders() == []
    assert ledger.positions() == {"SPY": Position("SPY", D(40), D(500))}


def test_b4_rejected_order_is_reopened_only_by_a_broker_report(ledger: Ledger) -> None:
    cid = intent().client_order_id
    ledger.record_intent(intent(), NOW, "run-1")
    ledger.set_order_status(cid, OrderStatus.REJECTED, at(1))  # our conclusion after the grace period
    assert ledger.set_order_status(cid, OrderStatus.SUBMITTED, at(2)) is OrderStatus.REJECTED
    report = broker_order(cid, OrderStatus.ACCEPTED)
    assert ledger.set_order_status(cid, OrderStatus.ACCEPTED, at(3), report) is OrderStatus.ACCEPTED


def test_a5_a_broker_order_unknown_to_the_ledger_is_adopted_and_audited(ledger: Ledger) -> None:
    cid = "tf-sma-SPY-20250303-4"
    with pytest.raises(KeyError):
        ledger.set_order_status(cid, OrderStatus.ACCEPTED, NOW)
    report = broker_order(cid, OrderStatus.ACCEPTED, qty="10")
    assert ledger.set_order_status(cid, OrderStatus.ACCEPTED, NOW, report, "run-2") is OrderStatus.ACCEPTED
    order = ledger.get_order(cid)
    assert order is not None
    assert (order.qty, order.broker_order_id, order.session) == (D(10), "B-1", None)
    assert [(r.kind, r.client_order_id) for r in ledger.audit_rows()] == [("adopted", cid)]


# --- fills, positions, cash -----------------------------------------------------------------


def test_a11_the_same_execution_delivered_twice_is_applied_once(ledger: Ledger) -> None:
    ledger.record_intent(intent(), NOW, "run-1")
    assert ledger.apply_execution(fill("e1", "40", "500", fee="1"), at(1)) is True
    assert ledger.apply_execution(fill("e1", "40", "500", fee="1"), at(2)) is False
    assert ledger.apply_execution(fill("e1", "40.0", "500.00", fee="1.0"), at(3)) is False
    assert ledger.positions() == {"SPY": Position("SPY", D(40), D(500))}
    assert ledger.cash() == D(-20001)
    assert len(ledger.fills()) == 1
    order = ledger.get_order(intent().client_order_id)
    assert order is not None
    assert order.filled_qty == D(40)
    assert [r.kind for r in ledger.audit_rows()] == ["intent", "fill"]


def test_a11_a_replayed_execution_id_with_different_content_is_noted_not_applied(ledger: Ledger) -> None:
    ledger.apply_execution(fill("e1", "40", "500"), at(1))
    assert ledger.apply_execution(fill("e1", "41", "500"), at(2)) is False
    assert ledger.positions()["SPY"].qty == D(40)
    assert [r.kind for r in ledger.audit_rows()] == ["fill", "drift"]


def test_position_average_is_weighted_on_increase_kept_on_reduce_and_reset_on_flip(ledger: Ledger) -> None:
    steps = [
        (fill("e1", "10", "100", minute=1), D(10), D(100)),
        (fill("e2", "10", "110", minute=2), D(20), D(105)),
        (fill("e3", "5", "200", Side.SELL, minute=3), D(15), D(105)),
        (fill("e4", "25", "90", Side.SELL, minute=4), D(-10), D(90)),
        (fill("e5", "5", "80", Side.SELL, minute=5), D(-15), D(260) / 3),
    ]
    for execution, qty, avg in steps:
        ledger.apply_execution(execution, execution.timestamp)
        assert ledger.positions()["SPY"] == Position("SPY", qty, avg)
    ledger.apply_execution(fill("e6", "15", "70", minute=6), at(6))
    assert ledger.positions() == {}  # flat symbols are left out
    assert ledger.cash() == D(-1000 - 1100 + 1000 + 2250 + 400 - 1050)
    assert ledger.recompute_positions() == {}
    assert ledger.recompute_cash() == ledger.cash()


def test_a11_late_fills_are_folded_in_time_order_and_recompute_equals_stored(ledger: Ledger) -> None:
    ledger.apply_execution(fill("e2", "10", "110", minute=2), at(2))
    ledger.apply_execution(fill("e3", "5", "200", Side.SELL, minute=3), at(3))
    ledger.apply_execution(fill("e1", "10", "100", minute=1), at(4))  # delivered last, executed first
    ledger.apply_execution(fill("x1", "3", "50", symbol="AAPL", cid="tf-x"), at(5))
    # the broker's order of events: +10@100, +10@110, -5@200 → 15 @ 105
    assert ledger.positions() == {"SPY": Position("SPY", D(15), D(105)), "AAPL": Position("AAPL", D(3), D(50))}
    assert ledger.recompute_positions() == ledger.positions()
    assert ledger.recompute_cash() == ledger.cash() == D(-1000 - 1100 + 1000 - 150)


def test_b1_adopting_the_broker_position_is_audited_and_absorbs_fills_it_already_holds(ledger: Ledger) -> None:
    ledger.apply_execution(fill("e1", "100", "500", minute=1), at(1))
    adopted = ledger.adjust_position("SPY", D(150), D(480), "B1 drift: broker 150, ledger 100", at(10), "run-3")
    assert adopted == Position("SPY", D(150), D(480))
    ledger.apply_execution(fill("e2", "50", "400", minute=5), at(11))  # stamped before the adoption
    assert ledger.positions()["SPY"] == Position("SPY", D(150), D(480))
    ledger.apply_execution(fill("e3", "50", "520", minute=12), at(12))
    assert ledger.positions()["SPY"] == Position("SPY", D(200), D(490))
    assert ledger.recompute_positions() == ledger.positions()
    adjustment = [r for r in ledger.audit_rows() if r.kind == "external_adjustment"]
    assert len(adjustment) == 1
    assert adjustment[0].payload["from_qty"] == "100"
    assert adjustment[0].payload["to_qty"] == "150"
    assert adjustment[0].run_id == "run-3"


def test_b2_a_position_unknown_to_the_ledger_is_adopted(ledger: Ledger) -> None:
    ledger.adjust_position("QQQ", D(-7), D(400), "B2 broker-side position", NOW)
    assert ledger.positions() == {"QQQ": Position("QQQ", D(-7), D(400))}
    assert ledger.recompute_positions() == ledger.positions()


def test_b6_set_cash_is_an_audited_external_adjustment(ledger: Ledger) -> None:
    ledger.apply_execution(fill("e1", "10", "100", minute=1), at(1))
    assert ledger.set_cash(D(50000), "B6 broker cash", at(10)) == D(50000)
    ledger.apply_execution(fill("e2", "10", "100", minute=5), at(11))  # already in the broker's cash
    ledger.apply_execution(fill("e3", "1", "100", Side.SELL, minute=12, fee="1"), at(12))
    assert ledger.cash() == ledger.recompute_cash() == D(50099)
    (row,) = [r for r in ledger.audit_rows() if r.kind == "external_adjustment"]
    assert (row.payload["from"], row.payload["to"], row.payload["reason"]) == ("-1000.00", "50000", "B6 broker cash")


# --- failures: LedgerError and no partial writes (A6) ---------------------------------------


def test_a6_locked_database_raises_ledger_error_and_writes_nothing(path: Path) -> None:
    Ledger(path).close()
    blocker = raw(path)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO daily_pnl (session, start_equity, updated_at) VALUES ('2000-01-03', '1', '')")
    with Ledger(path, busy_timeout_ms=50) as ledger:
        assert ledger.positions() == {}  # readers are not blocked by the writer (WAL)
        with pytest.raises(LedgerError, match="locked") as err:
            ledger.record_intent(intent(), NOW, "run-1")
        assert not isinstance(err.value, sqlite3.Error)
        with pytest.raises(LedgerError, match="locked"):
            ledger.apply_execution(fill("e1", "1", "1"), NOW)
        with pytest.raises(LedgerError, match="locked"):
            ledger.set_trading_state(TradingState.REDUCING, "A6", NOW)
        blocker.execute("ROLLBACK")
        assert ledger.get_order(intent().client_order_id) is None
        assert ledger.fills() == []
        assert ledger.audit_rows() == []
        assert ledger.record_intent(intent(), NOW, "run-1") is True  # healthy again


def test_a6_a_failure_mid_transaction_rolls_back_the_change_and_its_audit_row(ledger: Ledger, path: Path) -> None:
    ledger.record_intent(intent(), NOW, "run-1")
    injector = raw(path)
    injector.execute(
        "CREATE TRIGGER fail_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected I/O error'); END"
    )
    with pytest.raises(LedgerError, match="injected"):
        ledger.apply_execution(fill("e1", "40", "500"), at(1))
    assert ledger.fills() == []
    assert ledger.positions() == {}
    assert ledger.cash() == 0
    order = ledger.get_order(intent().client_order_id)
    assert order is not None
    assert (order.filled_qty, order.status) == (D(0), OrderStatus.INTENDED)
    injector.execute("DROP TRIGGER fail_audit")
    assert ledger.apply_execution(fill("e1", "40", "500"), at(2)) is True  # the replay is not a duplicate


def test_a6_disk_full_raises_ledger_error_and_keeps_the_old_state(ledger: Ledger) -> None:
    ledger.set_cash(D(100), "deposit", NOW)
    # max_page_count caps the file where it stands: the next write that needs a page fails with
    # SQLITE_FULL, the same error a full disk gives.
    conn = ledger._conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(LedgerError, match="full"):
        ledger.set_cash(D(5), "x" * 200_000, at(1))
    assert ledger.cash() == D(100)
    assert [r.kind for r in ledger.audit_rows()] == ["external_adjustment"]


def test_a_closed_ledger_raises_ledger_error(path: Path) -> None:
    ledger = Ledger(path)
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.cash()
    with pytest.raises(LedgerError):
        ledger.audit(AlertRaised("x"), NOW)


# --- state that survives a restart ----------------------------------------------------------


def test_e2_e3_trading_state_persists_across_reopen_and_changes_are_audited(path: Path) -> None:
    with Ledger(path) as ledger:
        assert ledger.trading_state().state is TradingState.ACTIVE
        assert ledger.set_trading_state(TradingState.HALTED, "E3 drawdown 21% > 20%", at(1), "run-1")
        assert not ledger.set_trading_state(TradingState.HALTED, "E3 drawdown 21% > 20%", at(2), "run-2")
    with Ledger(path) as ledger:
        assert ledger.trading_state() == (TradingState.HALTED, "E3 drawdown 21% > 20%", at(1))
        ledger.set_trading_state(TradingState.ACTIVE, "resume by operator", at(3), "cli")
        changes = [(r.payload["from"], r.payload["to"], r.run_id) for r in ledger.audit_rows()]
        assert changes == [("ACTIVE", "HALTED", "run-1"), ("HALTED", "ACTIVE", "cli")]


def test_e2_session_anchor_is_set_once_per_session_and_survives_reopen(path: Path) -> None:
    with Ledger(path) as ledger:
        assert ledger.start_session(SESSION, D("100000"), at(0)) is True
        assert ledger.start_session(SESSION, D("90000"), at(30)) is False  # restart mid-session
    with Ledger(path) as ledger:
        assert ledger.session_start_equity(SESSION) == D("100000")
        assert ledger.session_start_equity(SESSION + dt.timedelta(days=1)) is None
        ledger.record_daily_pnl(SESSION, D("95000"), D("-1000"), D("-4000"), at(400))
        pnl = ledger.daily_pnl(SESSION)
        assert pnl is not None
        assert (pnl.start_equity, pnl.end_equity, pnl.realized, pnl.unrealized) == (
            D(100000),
            D(95000),
            D(-1000),
            D(-4000),
        )
        with pytest.raises(KeyError):
            ledger.record_daily_pnl(SESSION + dt.timedelta(days=1), D(1), D(0), D(0), at(500))


def test_e3_equity_peak_only_rises_and_a_reset_is_audited(path: Path) -> None:
    with Ledger(path) as ledger:
        assert ledger.peak_equity() is None
        assert ledger.update_peak(D(100)) == D(100)
        assert ledger.update_peak(D(90)) == D(100)
        assert ledger.update_peak(D(120)) == D(120)
    with Ledger(path) as ledger:
        assert ledger.peak_equity() == D(120)
        ledger.reset_peak(D(95), "human resume after E3", at(1), "cli")
        assert ledger.peak_equity() == D(95)
        assert [r.kind for r in ledger.audit_rows()] == ["peak_reset"]


def test_a7_a_recorded_tick_is_seen_after_reopen(path: Path) -> None:
    key = make_tick_key("sma", SESSION, dt.datetime(2025, 3, 3, 15, 5, 7, tzinfo=UTC))
    assert key == make_tick_key(
        "sma", SESSION, dt.datetime(2025, 3, 3, 10, 5, 40, tzinfo=dt.timezone(-dt.timedelta(hours=5)))
    )
    assert key != make_tick_key("ppo", SESSION, dt.datetime(2025, 3, 3, 15, 5, tzinfo=UTC))
    with Ledger(path) as ledger:
        assert not ledger.tick_seen(key)
        ledger.record_tick(key, "started", {}, at(5), "run-1")
        ledger.record_tick(key, "completed", {"orders_sent": 2}, at(6), "run-1")
    with Ledger(path) as ledger:
        assert ledger.tick_seen(key)
        assert not ledger.tick_seen(make_tick_key("sma", SESSION, at(10)))
        tick = ledger.last_tick()
        assert tick is not None
        assert (tick.key, tick.status, tick.report, tick.created_at) == (key, "completed", {"orders_sent": 2}, at(5))


def test_dump_shows_every_table(ledger: Ledger) -> None:
    ledger.record_intent(intent(), NOW, "run-1")
    tables = ledger.dump()
    assert {"orders", "fills", "positions", "cash", "trading_state", "daily_pnl", "ticks", "audit"} <= set(tables)
    assert tables["orders"][0]["client_order_id"] == intent().client_order_id


# --- decisions (schema v2, the learning review's context) ----------------------------------


def test_a_v1_ledger_gains_the_decisions_table_and_keeps_its_rows(path: Path) -> None:
    from tradeflow.ledger.schema import MIGRATIONS

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = raw(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("UPDATE cash SET balance = '123'")
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version() == 3  # v2 (decisions) and v3 (their sized quantity) applied
        assert ledger.cash() == D("123")
        assert ledger.decisions() == []


def test_a_decision_keeps_its_sized_position_until_the_target_changes_or_the_broker_moves_it(ledger: Ledger) -> None:
    """While the target weight is unchanged the tick holds the position it sized for (the backtest does
    not re-size a drifting weight); a new target, or an EXTERNAL adjustment after the decision (a
    manual trade, a broker-side liquidation), ends that."""
    from tradeflow.ledger import DecisionRecord

    day = dt.date(2024, 1, 25)
    ledger.record_decision(DecisionRecord("sma", "SPY", day, 0.5, target_qty=D(100)), NOW)
    assert ledger.sized_position("sma", "SPY", 0.5) == D(100)
    assert ledger.sized_position("sma", "SPY", 1.0) is None
    assert ledger.sized_position("sma", "QQQ", 0.5) is None
    ledger.adjust_position("SPY", D(150), D(400), "EXTERNAL: manual buy", NOW + dt.timedelta(minutes=5))
    assert ledger.sized_position("sma", "SPY", 0.5) is None


def test_the_first_decision_of_a_session_is_kept_and_read_back_with_its_context(ledger: Ledger) -> None:
    from tradeflow.ledger import DecisionRecord

    day = dt.date(2024, 1, 25)
    first = DecisionRecord("rsi", "SPY", day, 1.0, {"lower": 45.0}, "test", "exp-1", 13.2, "up")
    assert ledger.record_decision(first, NOW)
    assert not ledger.record_decision(DecisionRecord("rsi", "SPY", day, 0.0), NOW)  # a later tick, same day
    later = DecisionRecord("rsi", "SPY", dt.date(2024, 1, 26), 0.0, vix=float("nan"))
    ledger.record_decision(later, NOW)
    ledger.record_decision(DecisionRecord("sma", "SPY", day, 1.0), NOW)
    assert ledger.decisions("rsi", "SPY") == [first, DecisionRecord("rsi", "SPY", dt.date(2024, 1, 26), 0.0)]
    assert ledger.last_decision("rsi", "SPY") == ledger.decisions("rsi")[-1]
    assert ledger.last_decision("rsi", "SPY", before=dt.date(2024, 1, 26)) == first
    assert ledger.last_decision("macd", "SPY") is None
    assert len(ledger.dump()["decisions"]) == 3
