"""Fixtures for tests that run flows through Prefect.

`prefect_harness` (a temporary Prefect API on SQLite, one per session) is opt-in: only tests that
run flows request it, so the rest of the suite never pays its start-up. `prefect_server` starts a
real `prefect server start` subprocess with its own PREFECT_HOME.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployments.serve import api_healthy, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
# flows/, tasks/ and deployments/ are not installed packages: pytest's `pythonpath = ["."]`
# (pyproject.toml) imports them from the checkout.

VENV_BIN = Path(sys.executable).parent
PREFECT = str(VENV_BIN / "prefect")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # A cold SQLite database can take longer than the default 20 s to create (ECOSYSTEM §0, §1.12).
    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Spawn = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Popen that is always torn down after the test (SIGINT, then kill), whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, **kwargs)
        procs.append(proc)
        return proc

    try:
        yield _spawn
    finally:
        for proc in reversed(procs):
            stop_process(proc)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    env: dict[str, str]  # what a CLI subprocess needs to talk to this server
    home: Path
    log: Path


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tradeflow",
        # Schedule soon after a deployment appears, and far enough ahead to reach a holiday.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "8",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    # Creating the SQLite schema cold takes 15-25 s; do it before the server's start-up clock runs.
    subprocess.run(
        [PREFECT, "--no-prompt", "server", "database", "upgrade", "-y"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not api_healthy(api_url):
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield PrefectServer(api_url, env, home, log)
    finally:
        stop_process(proc)
