"""RELIABILITY F2: with canary Alpaca keys, full ticks through the real alpaca-py client (over the
recorded paper API) with injected 401, 500 and timeout faults leave the canary nowhere: not in
logs, exceptions, tick reports, the ledger (every table) or the audit trail."""

from __future__ import annotations

import json
import logging

import pandas as pd
import requests

from tests.contract.broker_fixtures import CANARY_KEY, CANARY_SECRET, FakeMonotonic, SteppingClock
from tests.fixtures.recorded.alpaca_trading.paper_api import AlpacaPaperAPI
from tradeflow.adapters.alpaca.execution import AlpacaBroker, RequestRateLimiter
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import default_calendar
from tradeflow.core.tick import TickRuntime, run_tick
from tradeflow.features import DEFAULT_SPEC, features_for_live
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits
from tradeflow.strategies import make_strategy

OPEN = pd.Timestamp("2024-01-25 15:00", tz="UTC")


def test_f2_canary_keys_never_leak_through_faulty_ticks(tmp_path, real_data, caplog):
    caplog.set_level(logging.DEBUG)
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    features = features_for_live(spy, vix, DEFAULT_SPEC, session="2024-01-24")
    clock = SteppingClock(OPEN.to_pydatetime())
    api = AlpacaPaperAPI(clock)
    api.set_price("SPY", str(round(float(features.bars["close"].iloc[-1]), 2)))
    mono = FakeMonotonic()
    broker = AlpacaBroker(
        api.client(CANARY_KEY, CANARY_SECRET), paper=True, limiter=RequestRateLimiter(monotonic=mono, sleep=mono.sleep)
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    rt = TickRuntime(
        calendar=default_calendar(),
        broker=broker,
        ledger=ledger,
        governor=RiskGovernor(RiskLimits()),
        decider=lambda: make_strategy("buy_and_hold"),
        market_data=lambda now: features,
        strategy="canary",
        symbol="SPY",
    )
    texts: list[str] = [repr(broker), str(broker)]
    faults = [
        ("positions", "unauthorized"),  # 401 on the reconcile query
        ("submit", "internal_error"),  # 500 on submit
        ("submit", requests.exceptions.ReadTimeout("read timed out")),
    ]
    for i, (route, answer) in enumerate(faults):
        now = OPEN + pd.Timedelta(minutes=5 * i)
        clock.now = now.to_pydatetime()
        api.fail_next(route, answer)
        try:
            report = run_tick(rt, now)
            texts += [json.dumps(report.to_dict()), report.to_markdown()]
        except Exception as exc:  # an escaping exception must not carry the secret either
            texts.append(repr(exc) + str(exc))
    texts.append(json.dumps(ledger.dump(), default=str))
    texts += [json.dumps(r.payload, default=str) for r in ledger.audit_rows()]
    texts.append(caplog.text)
    ledger.close()
    texts.append((tmp_path / "ledger.sqlite").read_bytes().decode("latin-1"))
    blob = "\n".join(texts)
    assert CANARY_KEY not in blob
    assert CANARY_SECRET not in blob
    assert len(blob) > 1000  # the check looked at real content
