"""RELIABILITY F2, through Prefect: canary Alpaca keys in the environment, the trading-tick FLOW run
three times against the recorded Alpaca paper API with an injected 401, 500 and timeout. The canary
appears nowhere Prefect keeps anything: flow parameters and states, task runs and their results,
artifacts, logs, and the Prefect database file itself; nor in the ledger. The config dump shows
REDACTED. (tests/integration/test_f2_canary_secrets.py does the same below Prefect, on run_tick.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.settings import get_current_settings

from flows.trading_tick import trading_tick
from tests.contract.broker_fixtures import CANARY_KEY, CANARY_SECRET, SteppingClock
from tests.fixtures.recorded.alpaca_trading.paper_api import AlpacaPaperAPI
from tradeflow.adapters.alpaca import client as alpaca_client
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.cli import main as cli_main
from tradeflow.config import get_settings
from tradeflow.ledger import Ledger

pytestmark = pytest.mark.usefixtures("prefect_harness")

OPEN = pd.Timestamp("2024-01-25 15:00", tz="UTC")


def _prefect_records(flow_run_id: Any) -> list[str]:
    """Everything the Prefect API holds about one flow run, as text."""
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = client.read_artifacts()
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        states = client.read_flow_run_states(flow_run_id)
    texts = [run.model_dump_json(), *(t.model_dump_json() for t in tasks), *(s.model_dump_json() for s in states)]
    texts += [a.model_dump_json() for a in artifacts if a.flow_run_id == flow_run_id]
    texts += [log.model_dump_json() for log in logs]
    assert tasks, "no task runs recorded: the grep would prove nothing"
    assert logs, "no logs recorded: the grep would prove nothing"
    return texts


def _database_bytes() -> str:
    """The harness's SQLite database (and its WAL) as text: the server's own copy of everything."""
    url = str(get_current_settings().server.database.connection_url.get_secret_value())
    path = Path(url.split("///", 1)[1])
    return "\n".join(p.read_bytes().decode("latin-1") for p in (path, Path(f"{path}-wal")) if p.exists())


def test_f2_canary_keys_never_reach_prefect_the_ledger_or_the_config_dump(
    data_dir: Path, real_data: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TRADEFLOW_ALPACA__API_KEY", CANARY_KEY)
    monkeypatch.setenv("TRADEFLOW_ALPACA__SECRET_KEY", CANARY_SECRET)
    monkeypatch.setenv("TRADEFLOW_TRADING__BROKER", "alpaca")
    monkeypatch.setenv("TRADEFLOW_TRADING__SOURCE", "csv")
    monkeypatch.setenv("TRADEFLOW_TRADING__PATH", str(real_data))
    monkeypatch.setenv("TRADEFLOW_TRADING__STRATEGY", "buy_and_hold")
    get_settings.cache_clear()

    # The production path (AlpacaBroker.from_settings with the keys from the environment) builds
    # alpaca-py's real TradingClient; only its HTTP session is the recorded paper API.
    clock = SteppingClock(OPEN.to_pydatetime())
    api = AlpacaPaperAPI(clock)
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    api.set_price("SPY", str(round(float(spy.loc[spy["session"] <= "2024-01-24", "close"].iloc[-1]), 2)))
    built_with: list[tuple[str, str]] = []

    def trading_client(api_key: str, secret_key: str, paper: bool, raw_data: bool = False) -> Any:
        built_with.append((api_key, secret_key))
        return api.client(api_key, secret_key)

    monkeypatch.setattr(alpaca_client, "TradingClient", trading_client)

    faults = [
        ("positions", "unauthorized"),  # 401 on the reconcile query
        ("submit", "internal_error"),  # 500 on submit
        ("submit", requests.exceptions.ReadTimeout("read timed out")),
    ]
    texts: list[str] = []
    for i, (route, answer) in enumerate(faults):
        now = OPEN + pd.Timedelta(minutes=5 * i)
        clock.now = now.to_pydatetime()
        api.fail_next(route, answer)
        state = trading_tick(now=now.isoformat(), return_state=True)
        texts += [repr(state), str(state.message), repr(state.result(raise_on_failure=False))]
        texts += _prefect_records(state.state_details.flow_run_id)
    assert built_with == [(CANARY_KEY, CANARY_SECRET)] * 3, "the broker must be built from the canary keys"
    assert any(r[0] == "POST" for r in api.requests), "no order ever reached the broker: the faults were not met"

    assert cli_main(["config", "--json"]) == 0
    config_dump = json.loads(capsys.readouterr().out)
    assert config_dump["alpaca"]["api_key"] == config_dump["alpaca"]["secret_key"] == "REDACTED"
    texts.append(json.dumps(config_dump))

    with Ledger(data_dir / "ledger" / "ledger.sqlite") as ledger:
        texts.append(json.dumps(ledger.dump(), default=str))
        assert ledger.audit_rows(), "no audit rows: the ticks never reached the ledger"
    texts.append((data_dir / "ledger" / "ledger.sqlite").read_bytes().decode("latin-1"))
    texts.append(_database_bytes())
    texts.append(caplog.text)
    blob = "\n".join(texts)
    assert CANARY_KEY not in blob
    assert CANARY_SECRET not in blob
    assert "trading-tick" in blob
    assert "REDACTED" in blob
