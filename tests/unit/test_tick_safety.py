"""Issue 9's trading-path defects, as RELIABILITY scenarios: G2 gap-day sizing, cash compared at the
broker's precision, and G1 a lost ledger (kill switch and HALTED survive; unknown broker history
blocks trading until an operator adopts it)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from tests.unit.conftest import LAST_SESSION, OPEN_NOW
from tradeflow.core.decide import RuleDecider
from tradeflow.core.tick import run_tick
from tradeflow.data.sources.files import read_bar_file
from tradeflow.domain import OrderIntent, Side, TradingState
from tradeflow.features import DEFAULT_SPEC, features_for_live
from tradeflow.risk import DenialReason, RiskContext, RiskGovernor, RiskLimits
from tradeflow.strategies import make_strategy


def _gapped_features(real_data, factor: float):
    """The live features of LAST_SESSION with that session's bar moved by `factor` (a gap day)."""
    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    last = spy.index[pd.to_datetime(spy["session"]).dt.date == pd.Timestamp(LAST_SESSION).date()]
    for column in ("open", "high", "low", "close"):
        spy.loc[last, column] = spy.loc[last, column] * factor
    return features_for_live(spy, vix, DEFAULT_SPEC, session=LAST_SESSION)


@pytest.mark.parametrize("factor", [1.3, 0.7])
def test_g2_gap_day_tick_at_target_trades_nothing(world, real_data, factor):
    """The broker's mark is the previous price when the tick starts (as the sim's is until the tick
    hands it the day's price); sizing against that stale equity sold 47 shares on +30% and asked to
    buy to ~141% of real equity on -30%."""
    clock, broker, _, runtime, _ = world
    first = run_tick(runtime(), OPEN_NOW)
    assert first.status == "TRADED"
    held = broker.positions()["SPY"].qty
    gapped = _gapped_features(real_data, factor)
    new_price = Decimal(str(float(gapped.bars["close"].iloc[-1])))

    def market_data(now):
        broker.set_price("SPY", new_price)  # what bootstrap's on_price does for the sim broker
        return gapped

    later = OPEN_NOW + pd.Timedelta(minutes=5)
    clock.now = later.to_pydatetime()
    report = run_tick(runtime(market_data=market_data), later)
    assert report.status == "NO_ACTION", report.to_dict()
    assert report.orders_sent == []
    assert report.denials == []
    assert broker.positions()["SPY"].qty == held
    cash = broker.account().cash
    assert Decimal(report.equity) == cash + held * new_price


def test_g2_order_past_gross_exposure_at_the_current_price_is_denied_by_the_governor():
    """The broker still reports equity at yesterday's close; at today's price (-30%) the buy would take
    gross exposure to ~141% of equity: the governor denies it, whatever the broker would accept."""
    session = pd.Timestamp("2024-01-25").date()
    held, old, new = Decimal(200), Decimal(500), Decimal(350)
    cash = Decimal(100_000) - held * old
    stale_equity = cash + held * old
    buy = OrderIntent("tf-test-SPY-20240125-0", "SPY", Side.BUY, Decimal(82), session, "test", 0)
    ctx = RiskContext(
        now=OPEN_NOW.to_pydatetime(),
        session=session,
        trading_state=TradingState.ACTIVE,
        positions={"SPY": held},
        equity=stale_equity,
        cash=cash,
        session_start_equity=stale_equity,
        equity_peak=stale_equity,
        prices={"SPY": new},
        last_close={"SPY": new},
    )
    limits = RiskLimits(daily_loss_limit=Decimal("0.5"), max_drawdown=Decimal("0.9"), max_position_fraction=Decimal(2))
    decision = RiskGovernor(limits).check([buy], ctx)
    assert decision.approved == []
    assert [d.reason for d in decision.denials] == [DenialReason.GROSS_EXPOSURE]


def test_ledger_and_broker_cash_agree_at_cent_precision_so_ticks_write_no_cash_adjustment(world):
    """Fills at four-decimal prices: the broker books cash in cents per fill; the ledger used to sum
    exact amounts (964.5688 against 964.57) and wrote an EXTERNAL cash adjustment every tick."""
    clock, broker, ledger, runtime, _ = world
    flat = type("Flat", (), {"name": "flat", "targets": lambda self, f: [0.0] * len(f)})()
    broker.set_price("SPY", Decimal("481.2345"))
    run_tick(runtime(), OPEN_NOW)
    for minutes in (5, 10, 15):
        broker.set_price("SPY", Decimal("481.2345") + Decimal(minutes) / 1000)
        t = OPEN_NOW + pd.Timedelta(minutes=minutes)
        clock.now = t.to_pydatetime()
        decider = (lambda: RuleDecider(make_strategy("buy_and_hold"))) if minutes == 10 else (lambda: RuleDecider(flat))
        report = run_tick(runtime(decider=decider), t)
        assert report.status == "TRADED", report.to_dict()
    adjustments = [r for r in ledger.audit_rows() if r.kind == "external_adjustment" and "cash" in str(r.payload)]
    first_sync = adjustments[:1]  # the very first reconcile adopts the broker's opening balance
    assert adjustments == first_sync, [r.payload for r in adjustments]
    assert ledger.cash() == broker.account().cash
