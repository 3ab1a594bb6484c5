"""Talking to a real Prefect server from the integration tests: its REST API and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def api(api_url: str, method: str, path: str, body: dict[str, Any] | None = None, attempts: int = 5) -> Any:
    """One REST call to the real server. A 503 is Prefect's answer while its SQLite database is busy
    (seen on a loaded 2-core CI machine): retried with back-off, as Prefect's own client does."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(
            f"{api_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREFECT, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def drop_auto_scheduled_runs(api_url: str, deployment_id: str) -> None:
    """The scheduler may have created runs from the cron schedules before they were paused; during
    market hours one of them could take the concurrency slot and cancel the runs under test."""
    runs = api(api_url, "POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})
    for run in runs:
        if run["auto_scheduled"]:
            api(api_url, "DELETE", f"/flow_runs/{run['id']}")


def wait_for(what: str, poll: Callable[[], Any], timeout_s: float, diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Poll until `poll()` returns something truthy; fail with `diagnostics()` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = poll()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout_s} s\n{diagnostics()}")
        time.sleep(0.5)


def wait_final(api_url: str, run_ids: list[str], timeout_s: float, diagnostics: Path) -> list[dict[str, Any]]:
    def poll() -> list[dict[str, Any]] | None:
        runs = [api(api_url, "GET", f"/flow_runs/{rid}") for rid in run_ids]
        return runs if all(r["state"]["type"] in FINAL for r in runs) else None

    def why() -> str:
        states = [(r["id"], r["state"]["type"]) for r in (api(api_url, "GET", f"/flow_runs/{i}") for i in run_ids)]
        return f"{states}\n--- worker ---\n{diagnostics.read_text()[-4000:]}"

    return list(wait_for("runs final", poll, timeout_s, why))
