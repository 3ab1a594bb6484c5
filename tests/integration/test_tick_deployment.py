"""trading-tick/market-hours deployed from prefect.yaml to a REAL Prefect server (RELIABILITY F1).

Two runs of the same tick overlap on a process worker. The deployment's
`concurrency_limit {limit: 1, collision_strategy: CANCEL_NEW}` must let exactly one through and
cancel the other, and whatever Prefect does, the sim broker and the ledger must each hold exactly one
order for the tick's client order id. Only the server shows this: the limit is enforced by the
server's orchestration rules, when the worker proposes PENDING.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.prefect_api import PREFECT, REPO_ROOT, api, cli, drop_auto_scheduled_runs, wait_final
from tradeflow.execution.sim import SimBroker
from tradeflow.ledger import Ledger

NOW = "2024-01-25T15:00:00+00:00"  # 10:00 New York, a session: the calendar gate lets it trade
CLIENT_ORDER_ID = "tf-buy_and_hold-SPY-20240125-0"

pytestmark = pytest.mark.slow


def _trigger_pair(api_url: str, deployment_id: str) -> list[str]:
    """Two runs of the same tick, created milliseconds apart, so both wait for the worker's next poll."""
    body = {"parameters": {"now": NOW}}
    return [api(api_url, "POST", f"/deployments/{deployment_id}/create_flow_run", body)["id"] for _ in range(2)]


def _overlapped(runs: list[dict[str, Any]]) -> bool:
    """False only when one run had finished before the other was created: then CANCEL_NEW had
    nothing to cancel and the pair proves nothing about the limit."""
    first, second = sorted(runs, key=lambda r: r["created"])
    end = first["end_time"]
    return end is None or dt.datetime.fromisoformat(second["created"]) < dt.datetime.fromisoformat(end)


def test_f1_overlapping_ticks_cancel_new_lets_one_through_and_the_broker_holds_one_order(
    prefect_server: Any, spawn: Any, tmp_path: Path, real_data: Path
) -> None:
    api_url = prefect_server.api_url
    data_dir = tmp_path / "data"
    env = {
        **prefect_server.env,
        "TRADEFLOW_HOME": str(REPO_ROOT),
        "TRADEFLOW_DATA_DIR": str(data_dir),
        "TRADEFLOW_TRADING__SOURCE": "csv",
        "TRADEFLOW_TRADING__PATH": str(real_data),
        "TRADEFLOW_TRADING__STRATEGY": "buy_and_hold",
    }

    created = cli(env, "work-pool", "create", "local-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = cli(env, "--no-prompt", "deploy", "-n", "market-hours")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    deployment = api(api_url, "GET", "/deployments/name/trading-tick/market-hours")
    assert deployment["concurrency_options"] == {"collision_strategy": "CANCEL_NEW", "grace_period_seconds": None}
    assert deployment["global_concurrency_limit"]["limit"] == 1

    # Only the manual runs below may run: a scheduled tick would read the wall clock.
    paused = cli(env, "--no-prompt", "deployment", "schedule", "pause", "--all")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    deployment = api(api_url, "GET", f"/deployments/{deployment['id']}")
    assert deployment["schedules"]
    assert not any(s["active"] for s in deployment["schedules"])
    drop_auto_scheduled_runs(api_url, deployment["id"])

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        spawn(
            [PREFECT, "worker", "start", "--pool", "local-process"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    runs = wait_final(api_url, _trigger_pair(api_url, deployment["id"]), 60, worker_log)
    if not _overlapped(runs):  # one retry, as the pair's timing is not ours to control
        runs = wait_final(api_url, _trigger_pair(api_url, deployment["id"]), 60, worker_log)
    states = sorted((r["state"]["type"], r["state"]["name"]) for r in runs)
    assert _overlapped(runs), f"the two runs never overlapped: {states}"
    # "Completed", not the calendar gate's "Skipped" (also of type COMPLETED).
    assert states == [("CANCELLED", "Cancelled"), ("COMPLETED", "Completed")], (
        f"{states}\n--- worker ---\n{worker_log.read_text()[-4000:]}"
    )
    cancelled = next(r for r in runs if r["state"]["type"] == "CANCELLED")
    assert "concurrency limit" in (cancelled["state"]["message"] or "").lower()
    # The server stamps start_time on any final state, so the state history is what shows that the
    # cancelled tick never ran.
    history = api(api_url, "GET", f"/flow_run_states/?flow_run_id={cancelled['id']}")
    assert "RUNNING" not in {s["type"] for s in history}, history

    completed = next(r for r in runs if r["state"]["type"] == "COMPLETED")
    artifacts = api(
        api_url,
        "POST",
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": ["trading-tick"]}, "flow_run_id": {"any_": [completed["id"]]}}},
    )
    assert len(artifacts) == 1, artifacts
    assert "TRADED" in artifacts[0]["description"], artifacts[0]["description"]

    with Ledger(data_dir / "ledger" / "ledger.sqlite") as ledger:
        assert [o.client_order_id for o in ledger.orders()] == [CLIENT_ORDER_ID]
    now = dt.datetime.fromisoformat(NOW)
    broker = SimBroker(data_dir / "broker" / "sim-state.json", clock=lambda: now)
    assert len(broker.orders_for(CLIENT_ORDER_ID)) == 1
    assert len(broker.open_orders()) == 0
