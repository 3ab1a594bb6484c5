"""Hypothesis over whole ticks: random target streams, price moves and broker faults never breach a
risk limit and never put two broker orders behind one client order id. The broker accepts a
repeated client id (as IB does), so a resend by tradeflow would show up as a second order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.strategies import FixedWeight
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import default_calendar
from tradeflow.core.tick import TickRuntime, run_tick
from tradeflow.execution.fake import FakeBroker
from tradeflow.features import DEFAULT_SPEC, Features, features_for_live
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits

OPEN = pd.Timestamp("2024-01-25 15:00", tz="UTC")
LIMITS = RiskLimits(max_orders_per_tick=2, max_orders_per_day=6)
FAULTS = ["none", "accept_then_timeout", "reject_429", "unknown_error_code", "duplicate_execution",
          "partial_fill_then_cancel", "not_found_then_found", "query_failure", "position_drift"]  # fmt: skip


@pytest.fixture(scope="module")
def features(real_data) -> Features:
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    return features_for_live(spy, vix, DEFAULT_SPEC, session="2024-01-24")


step = st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 1.0]),  # target weight
    st.floats(0.97, 1.03),  # price move since the last close
    st.sampled_from(FAULTS),
    st.booleans(),  # run the same tick twice
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=6))
def test_random_streams_never_breach_limits_or_double_an_order(features, tmp_path_factory, steps):
    now = {"t": OPEN.to_pydatetime()}
    broker = FakeBroker(lambda: now["t"], unique_client_ids=False)
    close = Decimal(str(float(features.bars["close"].iloc[-1])))
    ledger = Ledger(tmp_path_factory.mktemp("tick") / "ledger.sqlite")
    decider = FixedWeight(0.0, name="scripted")  # the test sets its weight before each tick
    rt = TickRuntime(
        calendar=default_calendar(),
        broker=broker,
        ledger=ledger,
        governor=RiskGovernor(LIMITS),
        decider=lambda: decider,
        market_data=lambda when: features,
        strategy="prop",
        symbol="SPY",
    )
    try:
        for i, (weight, move, fault, twice) in enumerate(steps):
            now["t"] = (OPEN + pd.Timedelta(minutes=5 * i)).to_pydatetime()
            price = (close * Decimal(str(move))).quantize(Decimal("0.01"))
            broker.clear_faults()
            broker.set_price("SPY", price)
            if fault == "query_failure":
                broker.query_failure(("positions",), times=1)
            elif fault == "position_drift":
                broker.position_drift("SPY", 3)
            elif fault != "none":
                getattr(broker, fault)()
            decider.weight = weight
            reports = [run_tick(rt, now["t"])]
            if twice:
                reports.append(run_tick(rt, now["t"]))
            for report in reports:
                assert len(report.orders_sent) <= LIMITS.max_orders_per_tick
            # Never two broker orders for one client id, whatever the faults.
            for order in ledger.orders():
                assert len(broker.broker_orders_for(order.client_order_id)) <= 1, order.client_order_id
            # Never past the exposure limit (long-only, weight <= 1, sized on the broker's equity).
            account = broker.account()
            pos = broker.positions().get("SPY")
            if pos is not None and account.equity > 0:
                exposure = abs(pos.qty) * price / account.equity
                assert exposure <= LIMITS.max_gross_exposure * Decimal("1.05"), exposure
        sent_today = [o for o in ledger.orders() if o.session == dt.date(2024, 1, 25)]
        assert len({o.client_order_id for o in sent_today}) <= LIMITS.max_orders_per_day
    finally:
        ledger.close()
