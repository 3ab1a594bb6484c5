"""Crash tests (RELIABILITY §4, A4, A5): a paper tick runs in a subprocess against a persistent
SimBroker and the real SQLite ledger, is SIGKILLed at a named checkpoint of the submit path, and a
second process restarts on the very files the kill left behind (a hot WAL included).

The state the kill left is inspected on a copy of the files, so opening the ledger here cannot
checkpoint its WAL before the restarted process meets it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tradeflow.domain import OrderStatus, make_client_order_id
from tradeflow.execution.sim import SimBroker
from tradeflow.ledger import Ledger
from tradeflow.ledger.schema import AuditRow

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("crash_tick_child.py")
SESSION = dt.date(2024, 1, 25)
T0 = "2024-01-25T15:00Z"  # 10:00 New York: the tick that is killed
T_WITHIN_GRACE = "2024-01-25T15:05Z"  # the restart, 5 minutes later (grace period: 10 minutes)
T_PAST_GRACE = "2024-01-25T15:15Z"
CID0 = make_client_order_id("crash", "SPY", SESSION, 0)  # the child's first intent of the session


def run_child(workdir: Path, data: Path, now: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(CHILD), "--dir", str(workdir), "--now", now, "--data", str(data)]
    if crash_at:
        args += ["--crash-at", crash_at]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def crash(workdir: Path, data: Path, checkpoint: str) -> None:
    proc = run_child(workdir, data, T0, crash_at=checkpoint)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == ""  # killed before it could report anything


def restart(workdir: Path, data: Path, now: str) -> dict[str, Any]:
    proc = run_child(workdir, data, now)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@dataclass
class Snapshot:
    """The ledger and broker as of one moment, read from a copy of the files."""

    order_status: OrderStatus | None
    broker_order_id: str | None
    ledger_fills: int
    last_audit_id: int
    audit: list[AuditRow]
    broker_orders: list[dict[str, Any]]  # every order in the broker's books, whatever its client id


def snapshot(workdir: Path, into: Path) -> Snapshot:
    into.mkdir()
    for f in workdir.iterdir():
        shutil.copy2(f, into / f.name)
    ledger = Ledger(into / "ledger.sqlite")
    try:
        order = ledger.get_order(CID0)
        rows = ledger.audit_rows()
        return Snapshot(
            order_status=None if order is None else order.status,
            broker_order_id=None if order is None else order.broker_order_id,
            ledger_fills=len(ledger.fills()),
            last_audit_id=rows[-1].id if rows else 0,
            audit=rows,
            broker_orders=json.loads((into / "broker.json").read_text())["orders"],
        )
    finally:
        ledger.close()


def open_broker(workdir: Path) -> SimBroker:
    def frozen() -> dt.datetime:
        raise AssertionError("the test only reads the broker's books")

    return SimBroker(workdir / "broker.json", clock=frozen)


def kinds(rows: list[AuditRow], cid: str) -> list[str]:
    return [r.kind for r in rows if r.client_order_id == cid]


# --- A4: killed after the intent is journaled, before the broker call -----------------------------


def test_a4_kill_after_intent_waits_within_grace_then_abandons_and_never_sends_that_id(
    tmp_path: Path, real_data: Path
) -> None:
    work = tmp_path / "run"
    work.mkdir()
    crash(work, real_data, "after_intent")

    before = snapshot(work, tmp_path / "after-kill")
    assert before.order_status is OrderStatus.INTENDED
    assert kinds(before.audit, CID0) == ["intent"]  # journaled, never attempted
    assert before.broker_orders == []  # the broker never heard of it

    # Restart within the grace period: one lookup, not found, and the tick waits on it.
    waiting = restart(work, real_data, T_WITHIN_GRACE)
    assert waiting["status"] == "NO_ACTION"
    assert waiting["orders_sent"] == []
    assert any(CID0 in note and "unresolved" in note for note in waiting["notes"]), waiting["notes"]
    mid = snapshot(work, tmp_path / "within-grace")
    assert mid.order_status is OrderStatus.INTENDED
    assert mid.broker_orders == []
    lookups = [r for r in mid.audit if r.id > before.last_audit_id and r.client_order_id == CID0]
    assert [(r.kind, r.payload) for r in lookups] == [("reconcile_lookup", {"found": False})]

    # Past the grace period: ABANDONED, and that id never reaches the broker.
    late = restart(work, real_data, T_PAST_GRACE)
    assert CID0 not in late["orders_sent"]
    after = snapshot(work, tmp_path / "past-grace")
    assert after.order_status is OrderStatus.ABANDONED
    restart_rows = [r for r in after.audit if r.id > mid.last_audit_id and r.client_order_id == CID0]
    assert [r.kind for r in restart_rows] == ["reconcile_lookup", "order_status"]
    assert restart_rows[0].payload == {"found": False}
    assert restart_rows[1].payload["to"] == OrderStatus.ABANDONED.value
    assert "submit_attempt" not in kinds(after.audit, CID0)
    broker = open_broker(work)
    assert broker.orders_for(CID0) == []
    # Whatever the late tick decided afresh went out under its own id, once.
    cids = [o["client_order_id"] for o in after.broker_orders]
    assert len(cids) == len(set(cids)) == len(late["orders_sent"]) <= 1


# --- A5: killed after the broker accepted (and filled), before or after the ack was written -------


@dataclass
class A5Run:
    checkpoint: str
    work: Path
    at_kill: Snapshot
    report: dict[str, Any]
    after: Snapshot


@pytest.fixture(scope="module", params=["after_submit", "after_ack"])
def a5_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> A5Run:
    """Kill at the checkpoint, then restart 5 minutes later in the same session (run once per
    checkpoint and shared by the tests below: each child process costs seconds)."""
    base = tmp_path_factory.mktemp(f"a5-{request.param}")
    work = base / "run"
    work.mkdir()
    crash(work, real_data, request.param)
    at_kill = snapshot(work, base / "after-kill")
    report = restart(work, real_data, T_WITHIN_GRACE)
    return A5Run(request.param, work, at_kill, report, snapshot(work, base / "after-restart"))


def test_a5_kill_after_broker_accept_left_an_order_the_ledger_has_not_settled(a5_run: A5Run) -> None:
    at_kill = a5_run.at_kill
    [order] = at_kill.broker_orders
    assert order["client_order_id"] == CID0
    assert order["status"] == OrderStatus.FILLED.value  # the sim fills a market order at once
    assert at_kill.ledger_fills == 0
    expected = OrderStatus.SUBMITTED if a5_run.checkpoint == "after_submit" else OrderStatus.ACCEPTED
    assert at_kill.order_status is expected


def test_a5_restart_adopts_the_broker_order_and_ledger_equals_broker_without_resending(a5_run: A5Run) -> None:
    report, broker = a5_run.report, open_broker(a5_run.work)
    ledger = Ledger(a5_run.work / "ledger.sqlite")
    try:
        assert report["orders_sent"] == []
        assert report["status"] == "NO_ACTION"
        assert report["alerts"] == []  # no drift: the restart explained everything the broker shows
        assert report["trading_state"] == "ACTIVE"
        [at_broker] = broker.orders_for(CID0)
        assert len(a5_run.after.broker_orders) == 1  # and no other order either
        ours = ledger.get_order(CID0)
        assert ours is not None
        assert ours.status is at_broker.status is OrderStatus.FILLED
        assert ours.filled_qty == at_broker.filled_qty == at_broker.qty
        assert ours.avg_fill_price == at_broker.avg_fill_price
        assert ledger.positions() == broker.positions()
        assert ledger.positions()["SPY"].qty == at_broker.qty
        assert ledger.cash() == broker.account().cash
        assert ledger.recompute_positions() == ledger.positions()
        assert [e.execution_id for e in ledger.fills()] == [e.execution_id for e in broker.executions()]
    finally:
        ledger.close()


def test_a5_restart_audits_the_lookup_then_the_adoption_of_the_broker_order_id(a5_run: A5Run) -> None:
    at_broker = open_broker(a5_run.work).get_order(CID0)
    assert at_broker is not None
    rows = [r for r in a5_run.after.audit if r.id > a5_run.at_kill.last_audit_id and r.client_order_id == CID0]
    chain = [r.kind for r in rows]
    assert "submit_attempt" not in chain  # the restart sent nothing
    assert "fill" in chain
    lookup = chain.index("reconcile_lookup") if "reconcile_lookup" in chain else -1
    assert lookup >= 0, chain
    assert rows[lookup].payload == {"found": True}
    adoption = [
        i
        for i, r in enumerate(rows)
        if i > lookup and r.kind == "order_status" and r.payload.get("broker_order_id") == at_broker.broker_order_id
    ]
    assert adoption, chain
    assert a5_run.after.broker_order_id == at_broker.broker_order_id
