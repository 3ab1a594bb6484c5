"""RELIABILITY F1, the zombie half, on a REAL Prefect server with the automations of
deployments/automations.py applied.

A tick is stuck inside the order section's data step (a manual ingest holds the snapshot store's
lock), then its worker and its process are SIGKILLed: the run stays RUNNING and holds the
deployment's only concurrency slot. While it does:
- every new tick is cancelled by CANCEL_NEW, and the third cancellation fires the starvation alert
  through a real notification block (a custom webhook, received by this test);
- its heartbeats stop, and the zombie automation marks it CRASHED within its window;
- which frees the slot: the next tick runs and trades, exactly once.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port
from tests.integration.prefect_api import PREFECT, REPO_ROOT, api, cli, drop_auto_scheduled_runs, wait_final, wait_for
from tradeflow.ledger import Ledger

NOW = "2024-01-25T15:00:00+00:00"  # 10:00 New York, a session
ZOMBIE_AFTER_S = 50  # > the 30-second heartbeat (prefect.yaml); production uses 90

pytestmark = pytest.mark.slow


class _Alerts:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        port = free_port()
        alerts = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                alerts.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/alert"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def alerts() -> Iterator[_Alerts]:
    receiver = _Alerts()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


def _run(api_url: str, deployment_id: str) -> str:
    run = api(api_url, "POST", f"/deployments/{deployment_id}/create_flow_run", {"parameters": {"now": NOW}})
    return str(run["id"])


def _state(api_url: str, run_id: str) -> dict[str, Any]:
    return dict(api(api_url, "GET", f"/flow_runs/{run_id}")["state"])


def _flow_process_pid(api_url: str, run_id: str) -> int:
    """The process worker records '<host>:<pid>' (or just the pid) of the run's own process."""
    pid = api(api_url, "GET", f"/flow_runs/{run_id}")["infrastructure_pid"]
    assert pid, "the worker recorded no process id for the run"
    return int(str(pid).rsplit(":", 1)[-1])


def test_f1_a_zombie_tick_is_crashed_by_missed_heartbeats_freeing_the_slot_and_starved_ticks_alert(
    prefect_server: Any, spawn: Any, tmp_path: Path, real_data: Path, alerts: _Alerts
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
    assert cli(env, "work-pool", "create", "local-process", "--type", "process").returncode == 0
    deployed = cli(env, "--no-prompt", "deploy", "-n", "market-hours")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    deployment = api(api_url, "GET", "/deployments/name/trading-tick/market-hours")
    assert cli(env, "--no-prompt", "deployment", "schedule", "pause", "--all").returncode == 0
    drop_auto_scheduled_runs(api_url, deployment["id"])

    # The alert channel: a real notification block the server's actions service posts to.
    make_block = (
        "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B;"
        f"B(name='tradeflow-alerts', url={alerts.url!r}, allow_private_urls=True,"
        " json_data={'subject': '{{subject}}', 'body': '{{body}}'}).save('tradeflow-alerts')"
    )
    made = subprocess.run([sys.executable, "-c", make_block], env=env, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    applied = subprocess.run(
        [
            sys.executable,
            "deployments/automations.py",
            "--alert-block",
            "custom-webhook/tradeflow-alerts",
            "--zombie-after-s",
            str(ZOMBIE_AFTER_S),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(api(api_url, "POST", "/automations/filter", {})) == 2

    worker_log = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        with worker_log.open("ab") as out:
            return spawn(  # type: ignore[no-any-return]
                [PREFECT, "worker", "start", "--pool", "local-process"],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def why() -> str:
        return f"--- worker ---\n{worker_log.read_text()[-4000:]}"

    # 1. A tick that hangs: a manual ingest holds the snapshot store's lock, the tick's ingest waits.
    lock_path = data_dir / "snapshots" / ".lock"
    lock_path.parent.mkdir(parents=True)
    lock = lock_path.open("a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    worker = start_worker()
    zombie = _run(api_url, deployment["id"])
    wait_for("the stuck tick RUNNING", lambda: _state(api_url, zombie)["type"] == "RUNNING", 90, why)
    beats = {"event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{zombie}"]}}
    first_beat = lambda: api(api_url, "POST", "/events/filter", {"filter": beats})["events"]  # noqa: E731
    wait_for("the stuck tick's first heartbeat", first_beat, 30, why)

    # 2. The worker dies, then the run's own process: nobody is left to report the run's end.
    flow_pid = _flow_process_pid(api_url, zombie)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    os.kill(flow_pid, signal.SIGKILL)
    killed_at = dt.datetime.now(dt.UTC)
    assert _state(api_url, zombie)["type"] == "RUNNING"

    # 3. A new worker; ticks keep coming and are cancelled while the zombie holds the slot. The
    # third cancellation fires the starvation alert.
    start_worker()
    cancelled = []
    for _ in range(3):
        [run] = wait_final(api_url, [_run(api_url, deployment["id"])], 60, worker_log)
        cancelled.append(run)
    assert [r["state"]["type"] for r in cancelled] == ["CANCELLED"] * 3, cancelled
    wait_for("the starvation alert", lambda: alerts.received, 60, why)
    alert = alerts.received[0]
    assert "trading-tick starved" in alert["subject"]
    assert "cancelled by the deployment's concurrency limit" in alert["body"]

    # 4. No heartbeat for ZOMBIE_AFTER_S: the automation marks the zombie CRASHED.
    def zombie_crashed() -> dict[str, Any] | None:
        state = _state(api_url, zombie)
        return state if state["type"] == "CRASHED" else None

    crashed = wait_for("the zombie CRASHED", zombie_crashed, ZOMBIE_AFTER_S + 60, why)
    assert "no heartbeat" in crashed["message"]
    crashed_after = (dt.datetime.fromisoformat(crashed["timestamp"]) - killed_at).total_seconds()
    assert crashed_after < ZOMBIE_AFTER_S + 30, f"crashed {crashed_after:.0f} s after the kill"

    # 5. The slot is free: the next tick runs and trades, once (the zombie never reached the order step).
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    [after] = wait_final(api_url, [_run(api_url, deployment["id"])], 90, worker_log)
    assert after["state"]["type"] == "COMPLETED", (after["state"], why())
    with Ledger(data_dir / "ledger" / "ledger.sqlite") as ledger:
        assert [o.client_order_id for o in ledger.orders()] == ["tf-buy_and_hold-SPY-20240125-0"]
