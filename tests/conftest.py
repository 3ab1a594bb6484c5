"""Shared fixtures: real-data paths and an isolated data directory per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (ROOT / ".." / "shared" / "data" / "real").resolve()

# Keep GX and Prefect quiet and local for every test process.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Once a test has imported prefect, the `tradeflow` logger carries Prefect's API handler (the
# Makefile exports PREFECT_LOGGING_EXTRA_LOGGERS); library calls made outside a flow run, as unit
# tests make, must not warn about it.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL_DATA / "SPY.csv").exists():
        pytest.fail(f"real data fixtures missing at {REAL_DATA} (../shared/data/real must sit beside the repo)")
    return REAL_DATA


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TRADEFLOW_DATA_DIR; settings are re-read so nothing leaks between tests."""
    from tradeflow.config import get_settings

    d = tmp_path / "data"
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(d))
    get_settings.cache_clear()
    yield d
    get_settings.cache_clear()
