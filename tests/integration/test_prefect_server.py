"""ingest/daily deployed from prefect.yaml to a REAL Prefect server and run by a process worker.

Guards what only a real server shows: prefect.yaml deploys as written (pull step, work pool,
parameters), a worker runs the flow from the checkout, and the scheduler creates runs from the
generated RRule (with sqlalchemy 2.1 it silently creates none; ECOSYSTEM §0.2).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.prefect_api import PREFECT, REPO_ROOT, api, cli
from tradeflow.calendar import NEW_YORK, default_calendar

NY = ZoneInfo(NEW_YORK)

pytestmark = pytest.mark.slow


def _scheduled_runs(api_url: str, deployment_id: str) -> list[dict[str, Any]]:
    runs = api(
        api_url,
        "POST",
        "/flow_runs/filter",
        {
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC",
        },
    )
    return [r for r in runs if r["auto_scheduled"]]


def test_daily_deployment_runs_on_a_worker_and_the_server_schedules_nyse_sessions(
    prefect_server: Any, spawn: Any, tmp_path: Path
) -> None:
    yaml_before = (REPO_ROOT / "prefect.yaml").read_text()
    data_dir = tmp_path / "data"
    env = {**prefect_server.env, "TRADEFLOW_HOME": str(REPO_ROOT), "TRADEFLOW_DATA_DIR": str(data_dir)}

    created = cli(env, "work-pool", "create", "local-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = cli(env, "--no-prompt", "deploy", "-n", "daily")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert (REPO_ROOT / "prefect.yaml").read_text() == yaml_before, "prefect deploy rewrote prefect.yaml"

    deployment = api(prefect_server.api_url, "GET", "/deployments/name/ingest/daily")
    assert deployment["parameters"] == {"source": "sample", "symbols": ["SPY", "^VIX"]}
    assert deployment["work_pool_name"] == "local-process"
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO_ROOT)

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        spawn(
            [PREFECT, "worker", "start", "--pool", "local-process"],
            cwd=tmp_path,  # the pull step, not the worker's cwd, must put the run in the checkout
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = cli(env, "deployment", "run", "ingest/daily", "--watch", "--watch-timeout", "120", timeout=150)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output + "\n--- worker ---\n" + worker_log.read_text()[-4000:]
    assert "Completed" in output
    snapshots = sorted((data_dir / "snapshots").rglob("*.parquet"))
    assert {p.parent.name for p in snapshots} == {"SPY", "_VIX"}, snapshots

    # The scheduler (loop shortened in the fixture) fills the next runs from the generated RRule.
    deadline = time.monotonic() + 30
    scheduled = _scheduled_runs(prefect_server.api_url, deployment["id"])
    while len(scheduled) < 3 and time.monotonic() < deadline:
        time.sleep(1)
        scheduled = _scheduled_runs(prefect_server.api_url, deployment["id"])
    assert len(scheduled) >= 3, "the server created no scheduled runs:\n" + prefect_server.log.read_text()[-3000:]
    starts = [dt.datetime.fromisoformat(r["expected_start_time"]).astimezone(NY) for r in scheduled]
    assert {(s.hour, s.minute) for s in starts} == {(17, 15)}
    days = [s.date() for s in starts]
    # Consecutive NYSE sessions: no holiday scheduled, no session skipped.
    assert days == [d.date() for d in default_calendar().sessions(days[0], days[-1])], days
