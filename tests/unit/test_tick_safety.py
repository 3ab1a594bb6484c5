"""Issue 9's trading-path defects, as RELIABILITY scenarios: G2 gap-day sizing, cash compared at the
broker's precision, and G1 a lost ledger (kill switch and HALTED survive; unknown broker history
blocks trading until an operator adopts it)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from tests.fixtures.strategies import FixedWeight
from tests.unit.conftest import LAST_SESSION, OPEN_NOW
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.core.tick import run_tick
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
    broker.set_price("SPY", Decimal("481.2345"))
    run_tick(runtime(), OPEN_NOW)
    for minutes in (5, 10, 15):
        broker.set_price("SPY", Decimal("481.2345") + Decimal(minutes) / 1000)
        t = OPEN_NOW + pd.Timedelta(minutes=minutes)
        clock.now = t.to_pydatetime()
        decider = (lambda: make_strategy("buy_and_hold")) if minutes == 10 else (lambda: FixedWeight(0.0))
        report = run_tick(runtime(decider=decider), t)
        assert report.status == "TRADED", report.to_dict()
    adjustments = [r for r in ledger.audit_rows() if r.kind == "external_adjustment" and "cash" in str(r.payload)]
    first_sync = adjustments[:1]  # the very first reconcile adopts the broker's opening balance
    assert adjustments == first_sync, [r.payload for r in adjustments]
    assert ledger.cash() == broker.account().cash


# --- G1: a lost ledger ---------------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, dict | str]:
    import json

    from tradeflow.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    text = out.out if out.out.strip() else out.err
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def _sim_position(data_dir) -> Decimal:
    import json

    held = json.loads((data_dir / "broker" / "sim-state.json").read_text())["positions"].get("SPY")
    return Decimal(held["qty"]) if held else Decimal(0)


@pytest.mark.parametrize("damage", ["truncated", "deleted", "older copy"])
def test_g1_lost_ledger_keeps_the_kill_switch_blocks_until_adopted_and_never_buys(capsys, csv_trading, damage):
    """Buy (buy_and_hold), sell (MACD turns flat on 2024-01-03), `stop`; then the ledger file is
    truncated, deleted, or replaced by the copy taken after the buy. The broker still holds both
    orders: the next tick trades nothing (BLOCKED_STATE_UNKNOWN) and still shows the kill switch;
    `adopt` takes the broker's state in and the kill switch still denies buy_and_hold's buy."""
    ledger = csv_trading / "ledger" / "ledger.sqlite"
    code, bought = _cli(capsys, "tick", "--strategy", "buy_and_hold", "--now", "2024-01-02T15:00Z", "--json")
    assert (code, bought["status"]) == (0, "TRADED"), bought
    older = ledger.read_bytes()  # the CLI closed the ledger: its WAL is checkpointed into the file
    code, sold = _cli(capsys, "tick", "--strategy", "macd", "--now", "2024-01-03T15:00Z", "--json")
    assert (code, sold["status"]) == (0, "TRADED"), sold
    assert _sim_position(csv_trading) == 0
    code, _ = _cli(capsys, "stop", "--reason", "operator stop", "--now", "2024-01-03T16:00Z")
    assert code == 0

    for suffix in ("", "-wal", "-shm"):
        (ledger.parent / (ledger.name + suffix)).unlink(missing_ok=True)
    if damage == "truncated":
        ledger.write_bytes(b"")
    elif damage == "older copy":
        ledger.write_bytes(older)

    code, blocked = _cli(capsys, "tick", "--strategy", "buy_and_hold", "--now", "2024-01-04T15:00Z", "--json")
    assert code == 0
    assert blocked["status"] == "BLOCKED_STATE_UNKNOWN", blocked
    assert blocked["orders_sent"] == []
    assert any("tradeflow adopt" in a for a in blocked["alerts"])
    assert blocked["trading_state"] == "HALTED"  # the kill switch survived the ledger
    code, status = _cli(capsys, "status", "--json")
    assert (status["trading_state"], status["reason"]) == ("HALTED", "kill switch: operator stop")

    code, adopted = _cli(
        capsys, "adopt", "--operator", "ops", "--reason", "checked the broker", "--now", "2024-01-04T15:05Z", "--json"
    )
    assert code == 0, adopted
    assert adopted["positions"] == {}
    assert adopted["trading_state"] == "HALTED"

    code, after = _cli(capsys, "tick", "--strategy", "buy_and_hold", "--now", "2024-01-04T15:10Z", "--json")
    assert after["status"] == "NO_ACTION", after
    assert [d["reason"] for d in after["denials"]] == ["KILL_SWITCH"]
    assert _sim_position(csv_trading) == 0  # never bought again


def _fresh(path):
    from tradeflow.ledger import Ledger

    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return Ledger(path, latch_path=path.parent / "safety" / "state.json")


def test_g1_drawdown_halt_and_peak_survive_a_deleted_ledger_file(tmp_path):
    from tradeflow.domain import TradingState
    from tradeflow.ledger import Ledger

    path = tmp_path / "ledger" / "ledger.sqlite"
    now = OPEN_NOW.to_pydatetime()
    with Ledger(path, latch_path=path.parent / "safety" / "state.json") as ledger:
        ledger.update_peak(Decimal(120_000))
        ledger.set_trading_state(TradingState.HALTED, "drawdown", now)
    with _fresh(path) as lost:
        assert lost.trading_state().state is TradingState.HALTED  # read through the latch at once
        assert lost.peak_equity() == Decimal(120_000)
        message = lost.restore_from_latch(now)
        assert "HALTED" in message
        assert "120000" in message
        assert lost.restore_from_latch(now) is None  # restored once, audited once
        assert [r.kind for r in lost.audit_rows()].count("state_restored") == 1
        assert lost.update_peak(Decimal(90_000)) == Decimal(120_000)  # the drawdown is not forgotten


def test_g1_resume_clears_the_latch_too_so_a_later_lost_ledger_stays_active(tmp_path):
    from tradeflow.domain import TradingState
    from tradeflow.ledger import Ledger

    path = tmp_path / "ledger.sqlite"
    now = OPEN_NOW.to_pydatetime()
    with Ledger(path, latch_path=tmp_path / "safety" / "state.json") as ledger:
        ledger.set_trading_state(TradingState.HALTED, "kill switch: test", now)
        ledger.set_trading_state(TradingState.ACTIVE, "resumed by ops", now)
    with _fresh(path) as lost:
        assert lost.trading_state().state is TradingState.ACTIVE


def test_g8_a_damaged_safety_latch_is_a_ledger_error_naming_the_file_never_its_content(tmp_path):
    from tradeflow.errors import LedgerError
    from tradeflow.ledger import Ledger

    latch = tmp_path / "safety" / "state.json"
    latch.parent.mkdir()
    latch.write_text('{"secret": "PK-CANARY-LATCH"')
    with (
        Ledger(tmp_path / "ledger.sqlite", latch_path=latch) as ledger,
        pytest.raises(LedgerError, match=r"safety latch .*state\.json is damaged") as caught,
    ):
        ledger.trading_state()
    assert "PK-CANARY" not in str(caught.value)


def test_a_source_that_cannot_deliver_ends_the_tick_data_unavailable_with_its_report(world):
    """A network failure or an empty answer used to escape the tick as an exception: no report, no
    journal entry. It is a reason not to trade, reported like any other."""
    from tradeflow.errors import EmptyDataError

    _, broker, ledger, runtime, _ = world

    def outage(now):
        raise EmptyDataError("csv: no rows for SPY in /data/SPY.csv")

    report = run_tick(runtime(market_data=outage), OPEN_NOW)
    assert report.status == "DATA_UNAVAILABLE"
    assert any("no rows for SPY" in a for a in report.alerts)
    assert broker.calls["submit"] == 0
    assert ledger.last_tick().status == "DATA_UNAVAILABLE"


# --- one resume rule: `tradeflow resume` is RiskGovernor.resume, persisted -------------------------


def test_cli_resume_from_the_kill_switch_during_a_session_loss_past_the_limit_gives_reducing(capsys, data_dir):
    """The CLI used to set ACTIVE whatever the session's loss; the governor's rule (the only one now)
    gives REDUCING while the session's loss is past the daily limit, and restarts the peak at the
    broker's equity."""
    import datetime as dt

    from tradeflow.bootstrap import open_ledger
    from tradeflow.config import get_settings
    from tradeflow.execution.sim import SimBroker

    settings = get_settings()
    broker = SimBroker(data_dir / "broker" / "sim-state.json", clock=lambda: OPEN_NOW.to_pydatetime())
    with open_ledger(settings) as ledger:
        ledger.start_session(dt.date(2024, 1, 25), broker.account().equity, OPEN_NOW.to_pydatetime())
    broker.external_cash_change(-8_000)  # an 8% loss in the session (the limit is 5%)
    code, _ = _cli(capsys, "stop", "--reason", "turmoil", "--now", "2024-01-25T15:10Z")
    code, out = _cli(capsys, "resume", "--operator", "alice", "--now", "2024-01-25T15:20Z")
    assert code == 0, out
    with open_ledger(settings) as ledger:
        state = ledger.trading_state()
        assert (state.state.value, state.reason) == ("REDUCING", "daily_loss")
        assert ledger.peak_equity() == broker.account().equity
        [resume] = [r for r in ledger.audit_rows() if r.kind == "resume"]
        assert resume.payload["operator"] == "alice"
        assert resume.payload["to"] == "REDUCING"
    code, out = _cli(capsys, "resume", "--operator", "alice", "--now", "2024-01-25T15:30Z")
    assert code == 2  # the daily-loss stop holds for its session: refused, with the governor's reason
    assert "daily-loss stop holds" in out


def test_risk_limits_come_from_settings_and_a_misspelt_limit_is_a_one_line_error(capsys, data_dir, monkeypatch):
    from tradeflow.bootstrap import build_tick_runtime
    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_RISK__MAX_DRAWDOWN", "0.15")
    get_settings.cache_clear()
    with build_tick_runtime(get_settings(), mode="paper", broker="sim", strategy="sma", now=OPEN_NOW) as runtime:
        pass
    assert runtime.governor.limits.max_drawdown == Decimal("0.15")

    monkeypatch.setenv("TRADEFLOW_RISK__MAX_DRAWDON", "0.15")
    get_settings.cache_clear()
    code, out = _cli(capsys, "status")
    assert code == 2
    assert "risk.max_drawdon" in out


def test_the_tick_sizes_at_the_brokers_quote_when_it_has_one_not_the_last_close(world):
    """The order faces the broker's price (a replay sets the sim broker to the session's open; here
    it is 4% above the last close): a flat book buys floor(equity x (1 - buffer) / quote) shares.
    Sized at the last close instead, the buy would cost 103.5% of the cash and be refused."""
    import math

    _, broker, _, runtime, _ = world
    rt = runtime()
    last_close = Decimal(str(float(rt.market_data(OPEN_NOW).bars["close"].iloc[-1])))
    quote = (last_close * Decimal("1.04")).quantize(Decimal("0.01"))
    broker.set_price("SPY", quote)
    report = run_tick(rt, OPEN_NOW)
    assert report.status == "TRADED", report.to_dict()
    assert broker.positions()["SPY"].qty == math.floor(Decimal(100_000) * Decimal("0.995") / quote)


def test_an_unchanged_target_holds_the_sized_position_instead_of_re_sizing_a_drifting_weight(world, real_data):
    """The backtest holds its shares until the target changes; so does the tick (issue 10, one
    kernel). At a 50% target, a +40% move lifts the position to ~58% of equity: the tick used to sell
    the 8% back (over the 5% band); now it holds, and only a new target re-sizes."""
    clock, broker, ledger, runtime, _ = world
    half = FixedWeight(0.5)
    first = run_tick(runtime(decider=lambda: half), OPEN_NOW)
    assert first.status == "TRADED"
    held = broker.positions()["SPY"].qty
    assert [d.target_qty for d in ledger.decisions()] == [held]
    gapped = _gapped_features(real_data, 1.4)
    new_price = Decimal(str(float(gapped.bars["close"].iloc[-1])))

    def market_data(now):
        broker.set_price("SPY", new_price)
        return gapped

    later = OPEN_NOW + pd.Timedelta(minutes=5)
    clock.now = later.to_pydatetime()
    drifted = run_tick(runtime(decider=lambda: half, market_data=market_data), later)
    assert drifted.status == "NO_ACTION", drifted.to_dict()
    assert broker.positions()["SPY"].qty == held
    half.weight = 0.25  # a new target is sized afresh, against today's equity
    clock.now = (later + pd.Timedelta(minutes=5)).to_pydatetime()
    resized = run_tick(runtime(decider=lambda: half, market_data=market_data), later + pd.Timedelta(minutes=5))
    assert resized.status == "TRADED"
    assert broker.positions()["SPY"].qty < held


def test_a_tick_trades_a_settings_universe_in_equal_sleeves_and_then_holds(capsys, csv_trading, monkeypatch):
    """TRADEFLOW_TRADING__UNIVERSE: one tick decides for SPY, AAPL and MSFT (buy_and_hold: a third
    each), sizes every instrument with the one sizing and sends one order per instrument; the next
    tick holds what it sized."""
    import json

    from tradeflow.config import get_settings

    monkeypatch.setenv("TRADEFLOW_TRADING__UNIVERSE", '["SPY","AAPL","MSFT"]')
    get_settings.cache_clear()
    code, first = _cli(capsys, "tick", "--strategy", "buy_and_hold", "--now", "2023-05-24T15:00Z", "--json")
    assert (code, first["status"]) == (0, "TRADED"), first
    assert first["targets"] == pytest.approx({"SPY": 1 / 3, "AAPL": 1 / 3, "MSFT": 1 / 3})
    assert sorted(cid.split("-")[2] for cid in first["orders_sent"]) == ["AAPL", "MSFT", "SPY"]
    state = json.loads((csv_trading / "broker" / "sim-state.json").read_text())
    assert set(state["positions"]) == {"SPY", "AAPL", "MSFT"}
    code, second = _cli(capsys, "tick", "--strategy", "buy_and_hold", "--now", "2023-05-24T15:05Z", "--json")
    assert (code, second["status"]) == (0, "NO_ACTION"), second
