"""run_tick against the FakeBroker's fault modes, the real ledger, the real risk governor and real
SPY features (RELIABILITY A, B, C, D3, E1, F3)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from tests.fixtures.strategies import FixedWeight
from tests.unit.conftest import LAST_SESSION, OPEN_NOW
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.core.tick import run_tick, stop_trading
from tradeflow.domain import OrderStatus, TradingState
from tradeflow.features import DEFAULT_SPEC, features_for_live


def kinds(ledger, cid):
    return [r.kind for r in ledger.audit_rows() if r.client_order_id == cid]


def test_c1_closed_market_tick_is_skipped_without_touching_the_broker(world):
    _, broker, _, runtime, _ = world
    report = run_tick(runtime(), pd.Timestamp("2024-01-27 15:00", tz="UTC"))  # a Saturday
    assert report.status == "SKIPPED_MARKET_CLOSED"
    assert sum(broker.calls.values()) == 0


def test_first_tick_buys_to_target_and_ledger_matches_the_broker(world):
    _, broker, ledger, runtime, _ = world
    report = run_tick(runtime(), OPEN_NOW)
    assert report.status == "TRADED"
    [cid] = report.orders_sent
    assert len(broker.broker_orders_for(cid)) == 1
    assert ledger.positions()["SPY"].qty == broker.positions()["SPY"].qty > 0
    assert report.target_weight == 1.0


def test_a7_same_tick_twice_sends_orders_once_and_notes_the_duplicate(world):
    _, broker, ledger, runtime, _ = world
    first = run_tick(runtime(), OPEN_NOW)
    second = run_tick(runtime(), OPEN_NOW)
    assert second.status == "DUPLICATE_TICK"
    assert second.orders_sent == []
    assert broker.calls["submit"] == 1
    assert "duplicate_tick" in [r.kind for r in ledger.audit_rows()]
    later = run_tick(runtime(), OPEN_NOW + pd.Timedelta(minutes=5))  # a later tick, same session
    assert later.status == "NO_ACTION"
    assert len(broker.broker_orders_for(first.orders_sent[0])) == 1


def test_a1_timeout_after_accept_is_ambiguous_then_adopted_with_one_broker_order_and_f3_chain(world):
    _, broker, ledger, runtime, _ = world
    broker.accept_then_timeout()
    report = run_tick(runtime(), OPEN_NOW)
    [cid] = report.orders_sent
    assert len(broker.broker_orders_for(cid)) == 1
    assert broker.calls["submit"] == 1  # never resent
    chain = kinds(ledger, cid)
    for earlier, later in [("intent", "submit_attempt"), ("submit_attempt", "ambiguous"),
                           ("ambiguous", "reconcile_lookup"), ("reconcile_lookup", "adopted")]:  # fmt: skip
        assert chain.index(earlier) < chain.index(later), chain
    rows = [r for r in ledger.audit_rows() if r.client_order_id == cid]
    assert all(r.run_id == "local" for r in rows)
    assert ledger.get_order(cid).status is not OrderStatus.UNKNOWN


def test_a2_429_backs_off_and_resends_under_the_same_client_id(world):
    _, broker, _, runtime, _ = world
    broker.reject_429(times=2)
    slept: list[float] = []
    report = run_tick(runtime(sleep=slept.append), OPEN_NOW)
    [cid] = report.orders_sent
    assert broker.calls["submit"] == 3
    assert len(broker.broker_orders_for(cid)) == 1
    assert slept == [2.0, 4.0]


def test_a3_duplicate_client_id_is_adopted_not_resent(world):
    _, broker, ledger, runtime, _ = world
    broker.reject_duplicate_client_id()
    report = run_tick(runtime(), OPEN_NOW)
    [cid] = report.orders_sent
    assert len(broker.broker_orders_for(cid)) == 1
    assert ledger.get_order(cid).broker_order_id is not None


def test_b3_unanswered_position_query_blocks_trading(world):
    _, broker, _, runtime, _ = world
    broker.query_failure(("positions",))
    report = run_tick(runtime(), OPEN_NOW)
    assert report.status == "BLOCKED_STATE_UNKNOWN"
    assert broker.calls["submit"] == 0
    assert report.alerts


def test_b1_manual_trade_drift_is_adopted_audited_and_sets_reducing(world):
    clock, broker, ledger, runtime, _ = world
    run_tick(runtime(), OPEN_NOW)
    held = broker.positions()["SPY"].qty
    broker.position_drift("SPY", 50)
    clock.now = (OPEN_NOW + pd.Timedelta(minutes=5)).to_pydatetime()
    report = run_tick(runtime(), OPEN_NOW + pd.Timedelta(minutes=5))
    assert ledger.positions()["SPY"].qty == held + 50
    assert any("drift" in a for a in report.alerts)
    assert ledger.trading_state().state is TradingState.REDUCING
    assert "external_adjustment" in [r.kind for r in ledger.audit_rows()] or any(
        "EXTERNAL" in str(r.payload) for r in ledger.audit_rows()
    )


def test_d3_stale_data_means_no_trade(world, real_data):
    _, broker, _, runtime, _ = world
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    cached = spy[spy["session"] <= "2024-01-22"].reset_index(drop=True)  # a provider's stale cache

    def stale(now):
        return features_for_live(cached, vix, DEFAULT_SPEC, session=LAST_SESSION)

    report = run_tick(runtime(market_data=stale), OPEN_NOW)
    assert report.status == "DATA_STALE"
    assert broker.calls["submit"] == 0


def test_e1_kill_switch_lets_a_closing_order_through(world):
    _, broker, ledger, runtime, _ = world
    run_tick(runtime(), OPEN_NOW)
    stop_trading(ledger, "operator pressed stop", OPEN_NOW)
    # A flat target reduces the position: allowed through the kill switch (a "flatten").
    report = run_tick(runtime(decider=lambda: FixedWeight(0.0)), OPEN_NOW + pd.Timedelta(minutes=10))
    assert report.status == "TRADED", report.to_dict()
    assert report.trading_state == "HALTED"
    assert broker.positions().get("SPY") is None or broker.positions()["SPY"].qty == 0


def test_e1_kill_switch_denies_an_opening_order_with_a_reason_code(world):
    _, broker, ledger, runtime, _ = world
    stop_trading(ledger, "maintenance", OPEN_NOW)
    report = run_tick(runtime(), OPEN_NOW)
    assert broker.calls["submit"] == 0
    assert report.denials
    assert report.denials[0]["reason"] == "KILL_SWITCH"


def test_a9_partial_fill_then_cancel_sizes_the_follow_up_from_the_broker_position(world):
    clock, broker, ledger, runtime, _ = world
    broker.partial_fill_then_cancel(filled=40)
    first = run_tick(runtime(), OPEN_NOW)
    [cid] = first.orders_sent
    later = OPEN_NOW + pd.Timedelta(minutes=5)
    clock.now = later.to_pydatetime()
    second = run_tick(runtime(), later)
    order = ledger.get_order(cid)
    assert order.filled_qty == 40
    assert order.status is OrderStatus.CANCELLED
    [follow_up] = second.orders_sent
    assert follow_up != cid
    assert ledger.get_order(follow_up).qty == ledger.get_order(cid).qty - 40
    assert broker.positions()["SPY"].qty == ledger.positions()["SPY"].qty


def later(clock, minutes: int) -> pd.Timestamp:
    t = OPEN_NOW + pd.Timedelta(minutes=minutes)
    clock.now = t.to_pydatetime()
    return t


def test_a6_ledger_failure_after_accept_goes_reducing_and_the_next_tick_reconciles_the_fill(world, monkeypatch):
    from tradeflow.errors import LedgerError

    clock, broker, ledger, runtime, _ = world
    real = ledger.set_order_status

    def failing(cid, status, now, broker_order=None, run_id=None):
        if broker_order is not None:  # the write of the broker's acknowledgement
            raise LedgerError("database is locked")
        return real(cid, status, now, broker_order=broker_order, run_id=run_id)

    monkeypatch.setattr(ledger, "set_order_status", failing)
    report = run_tick(runtime(), OPEN_NOW)
    assert report.status == "LEDGER_UNAVAILABLE"
    assert report.alerts
    assert ledger.trading_state().state is TradingState.REDUCING
    assert broker.calls["submit"] == 1
    monkeypatch.setattr(ledger, "set_order_status", real)
    nxt = run_tick(runtime(), later(clock, 5))
    assert ledger.positions()["SPY"].qty == broker.positions()["SPY"].qty
    assert ledger.trading_state().state is TradingState.ACTIVE
    assert broker.calls["submit"] == 1, nxt.to_dict()  # reconciled, not re-sent


def test_a10_unknown_error_code_is_ambiguous_reconciled_and_not_a_failure(world):
    _, broker, ledger, runtime, _ = world
    broker.unknown_error_code()
    report = run_tick(runtime(), OPEN_NOW)
    [cid] = report.orders_sent
    assert len(broker.broker_orders_for(cid)) == 1
    assert ledger.get_order(cid).status is not OrderStatus.REJECTED
    assert "ambiguous" in kinds(ledger, cid)


def test_a11_duplicated_executions_are_applied_once(world):
    clock, broker, ledger, runtime, _ = world
    broker.duplicate_execution()
    run_tick(runtime(), OPEN_NOW)
    run_tick(runtime(), later(clock, 5))
    assert ledger.positions()["SPY"].qty == broker.positions()["SPY"].qty
    assert ledger.recompute_positions()["SPY"].qty == broker.positions()["SPY"].qty


def test_b2_broker_side_liquidation_is_adopted_and_the_next_order_sized_from_the_broker(world):
    clock, broker, ledger, runtime, _ = world
    run_tick(runtime(), OPEN_NOW)
    held = broker.positions()["SPY"].qty
    price = broker.core.reference_price("SPY")
    broker.position_drift("SPY", -held)  # liquidated at the broker: shares gone, proceeds credited
    broker.cash_drift(held * price)
    report = run_tick(runtime(), later(clock, 5))
    assert ledger.positions().get("SPY") is None or ledger.positions()["SPY"].qty == 0
    assert any("drift" in a for a in report.alerts)
    assert ledger.trading_state().state is TradingState.REDUCING
    assert report.orders_sent == []  # REDUCING: no re-entry until acknowledged


def test_b4_submitted_order_not_found_then_found_is_adopted_never_resent(world):
    clock, broker, ledger, runtime, _ = world
    broker.accept_then_timeout().not_found_then_found(times=1)
    first = run_tick(runtime(), OPEN_NOW)
    assert first.orders_sent == []
    [order] = ledger.orders()
    assert order.status is OrderStatus.UNKNOWN
    second = run_tick(runtime(), later(clock, 5))
    assert ledger.get_order(order.client_order_id).status is not OrderStatus.UNKNOWN
    assert len(broker.broker_orders_for(order.client_order_id)) == 1
    assert broker.calls["submit"] == 1, second.to_dict()


def test_b5_disconnect_mid_fill_blocks_then_refetches_missed_fills(world):
    clock, broker, ledger, runtime, _ = world
    broker.disconnect_mid_fill()
    run_tick(runtime(), OPEN_NOW)
    blocked = run_tick(runtime(), later(clock, 5))
    assert blocked.status == "BLOCKED_STATE_UNKNOWN"
    broker.reconnect()
    run_tick(runtime(), later(clock, 10))
    assert ledger.positions()["SPY"].qty == broker.positions()["SPY"].qty
    assert sorted(f.execution_id for f in ledger.fills()) == sorted(e.execution_id for e in broker.core.executions())


def test_b6_cash_drift_alerts_sizes_from_broker_cash_and_large_drift_sets_reducing(world):
    clock, broker, ledger, runtime, _ = world
    run_tick(runtime(), OPEN_NOW)
    broker.cash_drift(-5_000)  # 5% of equity vanished at the broker
    report = run_tick(runtime(), later(clock, 5))
    assert any("cash drift" in a for a in report.alerts)
    assert ledger.cash() == broker.account().cash
    assert ledger.trading_state().state is TradingState.REDUCING


def test_f1_a_second_tick_finds_the_order_section_locked_and_skips(tmp_path):
    from tradeflow.core.tick import tick_lock

    with tick_lock(tmp_path) as first:
        assert first
        with tick_lock(tmp_path) as second:
            assert not second  # held by the running tick: skip, do not race it
    with tick_lock(tmp_path) as again:
        assert again  # released when the first tick ended


def test_f1_a_killed_tick_never_keeps_the_lock(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, signal, sys; from pathlib import Path; from tradeflow.core.tick import tick_lock\n"
        "with tick_lock(Path(sys.argv[1])) as held:\n    assert held\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60)
    assert proc.returncode == -9
    from tradeflow.core.tick import tick_lock

    with tick_lock(tmp_path) as held:
        assert held


# --- issue 9: damaged state ends the tick with a report and no order (G8) ------------------------


def _registered_champion(data_dir, model_zip: bytes):
    """A champion whose meta.json is valid and whose model.zip holds `model_zip`."""
    import json

    from tradeflow.registry import ModelRegistry
    from tradeflow.rl.config import EnvConfig, PPOConfig
    from tradeflow.sim.costs import CostModel

    artifact = data_dir.parent / "artifact"
    artifact.mkdir()
    (artifact / "model.zip").write_bytes(model_zip)
    (artifact / "vecnormalize.pkl").write_bytes(b"")
    meta = {
        "format": 1, "observation_size": 10, "feature_spec": {"names": ["a"]},
        "env_config": EnvConfig().model_dump(mode="json"), "ppo_config": PPOConfig().model_dump(mode="json"),
        "cost_model": CostModel().model_dump(mode="json"),
    }  # fmt: skip
    (artifact / "meta.json").write_text(json.dumps(meta))
    registry = ModelRegistry.for_data_dir(data_dir)
    lineage = {"data_hash": "ab", "feature_spec": "v1", "config": {}, "seed": 0}
    mv = registry.register(artifact, metrics={}, lineage=lineage, created_at="2024-01-24T22:00:00+00:00")
    registry.set_champion(mv.version, reason="test", decided_at="2024-01-24T22:00:00+00:00")
    return registry, mv


@pytest.mark.parametrize("damage", ["truncated_model_zip", "pointer_null", "corrupt_version_json", "missing_version"])
def test_g8_a_damaged_champion_ends_the_tick_no_model_naming_the_file_and_sends_nothing(world, tmp_path, damage):
    import shutil

    from tradeflow.bootstrap import make_tick_strategy
    from tradeflow.config import Settings

    _, broker, ledger, runtime, _ = world
    settings = Settings(data_dir=tmp_path / "data")
    registry, mv = _registered_champion(settings.data_dir, b"PK\x03\x04 a zip cut short")
    named = {
        "truncated_model_zip": mv.path / "model.zip",
        "pointer_null": registry.champion_path,
        "corrupt_version_json": mv.path / "version.json",
        "missing_version": registry.champion_path,
    }[damage]
    if damage == "pointer_null":
        registry.champion_path.write_text("null")
    elif damage == "corrupt_version_json":
        (mv.path / "version.json").write_text("{")
    elif damage == "missing_version":
        shutil.rmtree(mv.path)

    report = run_tick(runtime(decider=lambda: make_tick_strategy(settings, "champion")), OPEN_NOW)

    assert report.status == "NO_MODEL"
    assert report.orders_sent == []
    assert broker.open_orders() == []
    assert broker.executions() == []
    assert ledger.orders() == []
    assert any(str(named) in note and "champion model unusable" in note for note in report.notes), report.notes
    assert any(str(named) in alert for alert in report.alerts), report.alerts


def test_a_corrupt_stored_snapshot_ends_the_tick_data_rejected_naming_the_file(world, tmp_path, real_data):
    from tradeflow.data.store import SnapshotStore

    _, broker, ledger, runtime, _ = world
    store = SnapshotStore(tmp_path / "snapshots")
    info = store.write("SPY", read_bar_file(real_data / "SPY.csv", "SPY"), source="csv", created_at="2024-01-24")
    (store.root / info.file).write_bytes(b"not parquet")

    report = run_tick(runtime(market_data=lambda now: store.load("SPY")), OPEN_NOW)

    assert report.status == "DATA_REJECTED"
    assert report.orders_sent == []
    assert broker.executions() == []
    assert any(info.file.split("/")[-1] in alert for alert in report.alerts), report.alerts
    assert ledger.last_tick().status == "DATA_REJECTED"


def test_a_drawdown_halt_in_a_tick_records_the_drawdown_breaker_with_the_state_change(world):
    clock, broker, ledger, runtime, _ = world
    run_tick(runtime(), OPEN_NOW)  # fully invested: the peak is this tick's equity
    broker.set_price("SPY", broker.quote("SPY") * Decimal("0.7"))
    later = OPEN_NOW + pd.Timedelta(minutes=5)
    clock.now = later.to_pydatetime()
    report = run_tick(runtime(), later)
    assert report.trading_state == "HALTED"
    rows = ledger.audit_rows()
    fired = [r for r in rows if r.kind == "breaker_fired"]
    assert [(r.payload["breaker"], r.payload["state"]) for r in fired] == [("drawdown", "HALTED")]
    assert fired[0].payload["detail"].startswith("drawdown ")
    [change] = [r for r in rows if r.kind == "state_change" and r.payload["to"] == "HALTED"]
    assert change.id == fired[0].id + 1  # written together, the cause first
    assert (change.payload["reason"], change.run_id) == ("drawdown", fired[0].run_id)
    assert any(r.kind == "alert" and "HALTED" in r.payload["message"] for r in rows)  # the alert row stays


def test_the_kill_switch_is_recorded_as_a_breaker_naming_the_operators_reason(world):
    _, _, ledger, _, _ = world
    stop_trading(ledger, "maintenance", OPEN_NOW)
    fired, change = ledger.audit_rows()
    assert (fired.kind, fired.payload) == (
        "breaker_fired",
        {"breaker": "kill_switch", "state": "HALTED", "detail": "maintenance"},
    )
    assert (change.kind, change.payload["reason"]) == ("state_change", "kill switch: maintenance")
