"""Fixtures of the trading-tick tests: real SPY/VIX features, a frozen clock, a FakeBroker, a real
ledger and governor, and a TickRuntime factory over them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import default_calendar
from tradeflow.core.tick import TickRuntime
from tradeflow.execution.fake import FakeBroker
from tradeflow.features import DEFAULT_SPEC, features_for_live
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits
from tradeflow.strategies import make_strategy

OPEN_NOW = pd.Timestamp("2024-01-25 15:00", tz="UTC")  # 10:00 New York, a session
LAST_SESSION = "2024-01-24"


@pytest.fixture(scope="module")
def live_features(real_data):
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    return features_for_live(spy, vix, DEFAULT_SPEC, session=LAST_SESSION)


class Clock:
    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now.to_pydatetime()

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def world(tmp_path, live_features):
    clock = Clock(OPEN_NOW)
    broker = FakeBroker(clock)
    broker.set_price("SPY", Decimal(str(live_features.bars["close"].iloc[-1])))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    strategy = {"name": "buy_and_hold"}

    def runtime(**overrides):
        base = dict(
            calendar=default_calendar(),
            broker=broker,
            ledger=ledger,
            governor=RiskGovernor(RiskLimits()),
            decider=lambda: make_strategy(strategy["name"]),
            market_data=lambda now: live_features,
            strategy="test",
            symbol="SPY",
        )
        base.update(overrides)
        return TickRuntime(**base)

    yield clock, broker, ledger, runtime, strategy
    ledger.close()


@pytest.fixture
def csv_trading(real_data, data_dir, monkeypatch):
    """The CLI and bootstrap trading on the sim broker over the real SPY/VIX files (their last bar is
    the session before OPEN_NOW), as an operator runs them."""
    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_TRADING__SOURCE", "csv")
    monkeypatch.setenv("TRADEFLOW_TRADING__PATH", str(real_data))
    get_settings.cache_clear()
    return data_dir
