"""The trading-tick flow under Prefect: a closed market ends Completed("Skipped"); an open one runs
one tick and publishes its report; the order-sending task is never retried (RELIABILITY A8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.trading_tick import trading_tick
from tasks import tick as tick_tasks
from tests.integration.test_ingest_flow import _artifacts
from tradeflow.config import get_settings
from tradeflow.ledger import Ledger

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def csv_trading(data_dir: Path, real_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADEFLOW_TRADING__SOURCE", "csv")
    monkeypatch.setenv("TRADEFLOW_TRADING__PATH", str(real_data))
    monkeypatch.setenv("TRADEFLOW_TRADING__STRATEGY", "buy_and_hold")
    get_settings.cache_clear()
    return data_dir


def test_a8_the_order_sending_task_has_no_retries_and_no_timeout():
    # A retry (or a timeout that abandons a thread still in flight) could race the first attempt.
    assert tick_tasks.tick.retries == 0
    assert tick_tasks.tick.timeout_seconds is None


def test_closed_market_tick_completes_as_skipped_without_a_ledger(csv_trading: Path):
    state = trading_tick(now="2024-01-27T15:00:00+00:00", return_state=True)  # a Saturday
    assert state.is_completed()
    assert state.name == "Skipped"
    assert not (csv_trading / "ledger").exists()


def test_open_market_tick_trades_once_and_publishes_its_report(csv_trading: Path):
    state = trading_tick(now="2024-01-25T15:00:00+00:00", return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert report["status"] == "TRADED"
    [artifact] = _artifacts(state, tick_tasks.TICK_ARTIFACT_KEY)
    assert "TRADED" in str(artifact.data)
    again = trading_tick(now="2024-01-25T15:00:00+00:00", return_state=True).result()
    assert again["status"] == "DUPLICATE_TICK"
    with Ledger(csv_trading / "ledger" / "ledger.sqlite") as ledger:
        assert [o.client_order_id for o in ledger.orders()] == ["tf-buy_and_hold-SPY-20240125-0"]
