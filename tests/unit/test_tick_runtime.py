"""TickRuntime owns what bootstrap opened for one tick, and closes it: the broker, the ledger and the
learning store a governed rule opens (issue 10, item 10). Before, the learning store and IB's
connection thread were left to the garbage collector on the tick path."""

from __future__ import annotations

import pytest

from tests.unit.conftest import OPEN_NOW
from tradeflow.core.tick import run_tick
from tradeflow.errors import BrokerUnavailable, LedgerError, StoreError


def test_tick_runtime_closes_its_broker_ledger_and_the_rules_learning_store(csv_trading):
    from tradeflow.bootstrap import build_tick_runtime
    from tradeflow.config import get_settings

    with build_tick_runtime(get_settings(), mode="paper", broker="sim", strategy="sma", now=OPEN_NOW) as runtime:
        report = run_tick(runtime, OPEN_NOW)
        decider = runtime.decider()  # a governed rule: it opened the learning store for this runtime
        store = decider.store  # type: ignore[attr-defined]
        assert store.running_experiment("sma") is None  # open while the tick runs

    assert report.status in ("TRADED", "NO_ACTION"), report.to_dict()
    with pytest.raises(StoreError, match="closed"):
        store.running_experiment("sma")
    with pytest.raises(LedgerError, match="closed"):
        runtime.ledger.trading_state()
    runtime.close()  # idempotent: a second close (a caller's finally) is harmless


def test_tick_runtime_closes_the_ib_connection_thread_it_was_given(data_dir):
    """IBBroker.close existed but the tick never called it: the adapter's thread outlived the tick."""
    from tradeflow.bootstrap import build_tick_runtime
    from tradeflow.config import get_settings

    with build_tick_runtime(get_settings(), mode="paper", broker="ib", strategy="sma", now=OPEN_NOW) as runtime:
        broker = runtime.broker

    with pytest.raises(BrokerUnavailable, match="closed"):  # not "cannot connect": closed, never asked
        broker.positions()
