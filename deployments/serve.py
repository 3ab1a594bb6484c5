"""`make serve`: the deployments of prefect.yaml, served by this one process (no work pool).

Everything a deployment needs is read from prefect.yaml (entrypoint, parameters, schedules,
concurrency limit, description, tags), so the generated NYSE RRule is defined in one place.

Schedules need a real Prefect server (an ephemeral API has no scheduler). When PREFECT_API_URL is
not set, this starts `prefect server start` on 127.0.0.1:4200 (or reuses a healthy one already
there) and stops it again on exit. Stop with Ctrl-C.

    python deployments/serve.py [--prefect-yaml prefect.yaml] [--host 127.0.0.1] [--port 4200]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, RRule, Schedule
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 120.0


def load_project(path: Path) -> dict[str, Any]:
    project = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(project, dict) or not project.get("deployments"):
        raise ValueError(f"{path} has no deployments")
    return project


def schedule_from_yaml(entry: dict[str, Any]) -> Schedule:
    """One `schedules:` item of prefect.yaml as a Prefect schedule (rrule, cron or interval)."""
    common: dict[str, Any] = {"timezone": entry.get("timezone"), "active": entry.get("active", True)}
    if "rrule" in entry:
        # Prefect's RRule timezone defaults to UTC: prefect.yaml always names it.
        return RRule(entry["rrule"], **common)
    if "cron" in entry:
        return Cron(entry["cron"], day_or=entry.get("day_or", True), **common)
    if "interval" in entry:
        return Interval(entry["interval"], anchor_date=entry.get("anchor_date"), **common)
    raise ValueError(f"unsupported schedule in prefect.yaml: {sorted(entry)}")


def concurrency_from_yaml(value: Any) -> int | ConcurrencyLimitConfig | None:
    """`concurrency_limit: 1` or `{limit: 1, collision_strategy: CANCEL_NEW}` (drop late runs)."""
    if isinstance(value, dict):
        return ConcurrencyLimitConfig(**value)
    return cast(int | None, value)


def build_deployments(project: dict[str, Any], root: Path = REPO_ROOT) -> list[RunnerDeployment]:
    """A RunnerDeployment per prefect.yaml deployment, with the yaml's schedules and limits.

    Call with the working directory at `root`: Prefect records entrypoints relative to it.
    """
    out: list[RunnerDeployment] = []
    for spec in project["deployments"]:
        path, _, func = spec["entrypoint"].partition(":")
        # No placeholder flow: a flow that cannot be imported must fail here, loudly.
        flow: Flow[..., Any] = load_flow_from_entrypoint(f"{root / path}:{func}", use_placeholder_flow=False)
        deployment = flow.to_deployment(  # sync call: a RunnerDeployment, not a coroutine
            name=spec["name"],
            parameters=spec.get("parameters") or {},
            schedules=[schedule_from_yaml(s) for s in spec.get("schedules") or []],
            concurrency_limit=concurrency_from_yaml(spec.get("concurrency_limit")),
            description=spec.get("description"),
            tags=spec.get("tags"),
            # e.g. train-spy/nightly also runs on the learning review's tradeflow.model.degraded event
            triggers=[DeploymentEventTrigger(**t) for t in spec.get("triggers") or []],
        )
        out.append(cast(RunnerDeployment, deployment))
    return out


def api_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(host: str, port: int) -> subprocess.Popen[bytes]:
    """`prefect server start` as a child process; returns once /api/health answers."""
    api_url = f"http://{host}:{port}/api"
    prefect_cli = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen([str(prefect_cli), "server", "start", "--host", host, "--port", str(port)])
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not api_healthy(api_url):
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode} before it was healthy")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"prefect server not healthy at {api_url} after {SERVER_START_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGINT first (Prefect processes shut down cleanly on it), then kill."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the deployments of prefect.yaml locally.")
    parser.add_argument("--prefect-yaml", type=Path, default=REPO_ROOT / "prefect.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--limit", type=int, default=2, help="most flow runs at once")
    args = parser.parse_args(argv)

    project = load_project(args.prefect_yaml.resolve())
    os.chdir(REPO_ROOT)
    server: subprocess.Popen[bytes] | None = None
    api_url = PREFECT_API_URL.value()
    if not api_url:
        api_url = f"http://{args.host}:{args.port}/api"
        if api_healthy(api_url):
            print(f"using the Prefect server already running at {api_url}")
        else:
            print(f"starting a Prefect server at {api_url} ...", flush=True)
            server = start_server(args.host, args.port)
        # Flow runs are child processes: they must reach the same API.
        os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            deployments = build_deployments(project)
            ui_url = PREFECT_UI_URL.value() or api_url.removesuffix("/api")
            names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
            print(f"serving {names}\nPrefect UI: {ui_url}  (deployments: {ui_url}/deployments)", flush=True)
            serve(*deployments, limit=args.limit)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            stop_process(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
