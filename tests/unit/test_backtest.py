"""The backtester on real SPY features and on tiny hand-made markets: buy-and-hold earns the dividend-
adjusted return less costs, trades happen exactly when targets change inside the window, the window
starts flat with warm indicators, and round trips carry the P&L worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.backtest import METRIC_KEYS, backtest, evaluate_targets, to_jsonable, window_bounds
from tradeflow.errors import InputError
from tradeflow.features import Features, build_features
from tradeflow.sim import CostModel, MarketArrays
from tradeflow.strategies import make_strategy, strategy_names

FREE = CostModel(
    commission_per_share=0.0,
    commission_min=0.0,
    half_spread_bps=0.0,
    slippage_bps=0.0,
    sec_fee_rate=0.0,
    taf_per_share=0.0,
)


@pytest.fixture(scope="module")
def spy(real_data) -> Features:
    bars = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    return build_features(bars, vix)


def tiny_market(opens: list[float], closes: list[float]) -> MarketArrays:
    n = len(opens)
    o, c = np.asarray(opens, float), np.asarray(closes, float)
    sessions = np.datetime64("2024-01-02", "ns") + np.arange(n).astype("timedelta64[D]")
    return MarketArrays(sessions, o, np.maximum(o, c), np.minimum(o, c), c, np.full(n, 1e6))


def test_buy_and_hold_on_real_spy_earns_the_dividend_adjusted_return_less_costs(spy):
    result = backtest(make_strategy("buy_and_hold"), spy, start="2005-01-01", end="2023-12-31")
    bars = spy.bars.set_index("session")
    first, second, last = result.equity.index[0], result.equity.index[1], result.equity.index[-1]
    assert (first, last) == (pd.Timestamp("2005-01-03"), pd.Timestamp("2023-12-29"))
    factor = bars["adj_close"] / bars["close"]
    # bought at the adjusted open of the second session, held to the last adjusted close
    gross = bars.at[last, "adj_close"] / (bars.at[second, "open"] * factor[second])
    net = result.metrics["total_return"]
    modelled = gross * (1 - 1.5e-4) - 1  # half-spread 0.5 bp + slippage 1 bp on the one buy
    assert net < gross - 1
    assert net == pytest.approx(modelled, abs=1e-4 * gross)  # plus a few dollars of commission
    assert net == pytest.approx(bars.at[last, "adj_close"] / bars.at[first, "adj_close"] - 1, abs=0.05)
    price_only = bars.at[last, "close"] / bars.at[first, "close"] - 1
    assert net > price_only + 1.0  # 19 years of ~2% dividends, reinvested by the adjustment
    assert result.metrics["trades"] == 1
    assert result.metrics["exposure"] == pytest.approx(1 - 1 / len(result.equity))
    assert np.isnan(result.metrics["win_rate"])  # the one round trip is still open
    assert not result.trades["closed"].iloc[0]


@pytest.mark.parametrize("name", strategy_names())
def test_rule_trade_count_equals_target_changes_inside_the_window(spy, name):
    strategy = make_strategy(name)
    result = backtest(strategy, spy, start="2010-01-01", end="2019-12-31")
    i0, i1 = window_bounds(spy.sessions, "2010-01-01", "2019-12-31")
    decided = np.r_[0.0, strategy.targets(spy)[i0 : i1 - 1]]  # flat start; the last target never executes
    changes = np.flatnonzero(np.diff(decided) != 0) + 1  # window rows whose open trades
    assert result.metrics["trades"] == len(changes) == len(result.fills)
    np.testing.assert_array_equal(result.fills["session"].to_numpy(), spy.sessions[i0:i1][changes])
    if name != "buy_and_hold":
        assert len(changes) > 5


def test_window_starts_flat_while_the_strategy_stays_warm(spy):
    strategy = make_strategy("rsi")
    full = strategy.targets(spy)
    # a session inside a long RSI holding that began earlier: the latch state comes from before the window
    held = np.flatnonzero((full[1:] == 1.0) & (full[:-1] == 1.0) & (spy.frame["rsi_30"].to_numpy()[1:] > 45.0)) + 1
    i0 = int(held[held > 3000][0])
    start = pd.Timestamp(spy.sessions[i0])
    result = backtest(strategy, spy, start=start)
    assert result.equity.index[0] == start
    assert result.equity.iloc[0] == 100_000.0
    assert result.position.iloc[0] == 0.0
    np.testing.assert_array_equal(result.targets.to_numpy(), full[i0:])
    assert result.fills["session"].iloc[0] == pd.Timestamp(spy.sessions[i0 + 1])
    assert result.fills["shares"].iloc[0] > 0
    # recomputing the rule on the window alone would have started flat and missed that entry
    assert strategy.targets(spy.slice(i0, len(spy)))[0] == 0.0


def test_round_trip_pnl_by_hand_on_a_tiny_market():
    market = tiny_market([100, 100, 105, 110, 108, 90], [100, 104, 108, 109, 95, 91])
    result = evaluate_targets(np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0]), market, FREE, capital=1000.0)
    # decided at close t, filled at open t+1: buy 10 @ 100 (row 1), sell @ 110 (row 3): +100;
    # buy 1100 / 90 shares @ 90 (row 5), still open at the end
    np.testing.assert_allclose(result.equity, [1000, 1040, 1080, 1100, 1100, 1100 / 90 * 91])
    trades = result.trades
    assert list(trades["closed"]) == [True, False]
    assert trades["pnl"].iloc[0] == pytest.approx(100.0)
    assert trades["return"].iloc[0] == pytest.approx(0.10)
    assert trades["pnl"].iloc[1] == pytest.approx(1100 / 90 * (91 - 90))
    assert trades["exit_session"].iloc[0] == result.equity.index[3]
    assert pd.isna(trades["exit_session"].iloc[1])
    assert result.metrics["win_rate"] == 1.0
    assert result.metrics["exposure"] == pytest.approx(3 / 6)  # long at the closes of rows 1, 2 and 5


def test_a_flip_from_long_to_short_closes_one_round_trip_and_opens_the_next():
    market = tiny_market([100, 100, 120, 90], [100, 110, 115, 80])
    result = evaluate_targets(np.array([1.0, -1.0, -1.0, -1.0]), market, FREE, capital=1000.0)
    trades = result.trades
    assert list(trades["side"]) == [1.0, -1.0]
    assert trades["pnl"].iloc[0] == pytest.approx(200.0)  # 10 shares 100 -> 120
    assert trades["pnl"].iloc[1] == pytest.approx(10 * (120 - 80))  # short 1200 / 120 shares, marked at 80
    assert trades["pnl"].sum() == pytest.approx(result.equity.iloc[-1] - 1000.0)


def test_costs_add_up_over_the_fills(spy):
    result = backtest(make_strategy("macd"), spy, start="2015-01-01", end="2018-12-31")
    assert result.costs["total"] == pytest.approx(result.fills["cost"].sum())
    assert result.costs["total"] == pytest.approx(result.sim.total_costs)
    assert result.costs["total"] == pytest.approx(
        result.costs["commission"] + result.costs["fees"] + result.costs["slippage"]
    )
    assert result.costs["fees"] > 0  # sells pay SEC fee and TAF
    free = backtest(make_strategy("macd"), spy, cost=FREE, start="2015-01-01", end="2018-12-31")
    assert free.costs["total"] == 0.0
    assert free.equity.iloc[-1] > result.equity.iloc[-1]


def test_result_series_are_indexed_by_the_window_sessions(spy):
    result = backtest(make_strategy("sma"), spy, start="2020-03-01", end="2020-06-30")
    assert result.strategy == "sma"
    assert result.equity.index.name == "session"
    assert result.equity.index[0] == pd.Timestamp("2020-03-02")
    assert result.equity.index[-1] == pd.Timestamp("2020-06-30")
    assert len(result.returns) == len(result.equity) - 1
    np.testing.assert_allclose(result.returns.to_numpy(), result.equity.pct_change().to_numpy()[1:])


def test_metrics_are_json_safe_under_the_cli_keys(spy):
    result = backtest(make_strategy("buy_and_hold"), spy, start="2019-01-01", end="2019-12-31")
    payload = json.loads(json.dumps(to_jsonable(result.metrics), allow_nan=False))
    assert set(METRIC_KEYS) <= set(payload)
    assert payload["win_rate"] is None
    assert payload["max_drawdown"] < 0


def test_bad_windows_and_targets_are_input_errors(spy):
    with pytest.raises(InputError, match="need 2"):
        backtest(make_strategy("sma"), spy, start="2030-01-01")
    with pytest.raises(InputError, match="need 2"):
        backtest(make_strategy("sma"), spy, start="2020-01-06", end="2020-01-06")
    with pytest.raises(InputError, match="not a date"):
        backtest(make_strategy("sma"), spy, start="someday")
    with pytest.raises(InputError, match="one value per session"):
        evaluate_targets(np.ones(3), spy.market())


# --- the governor's breakers in a backtest (issue 10) ----------------------------------------------


def test_the_drawdown_breaker_halts_a_backtest_where_live_would_and_blocks_re_entry(spy):
    """SMA over 2007-2010 falls 20% below its peak at the close of 2008-09-17: from there live trading
    is HALTED (only reducing orders), so the backtest may not re-enter either."""
    from decimal import Decimal

    from tradeflow.risk import RiskLimits

    window = {"start": "2007-01-03", "end": "2010-12-31"}
    free = backtest(make_strategy("sma"), spy, **window)
    halted = backtest(make_strategy("sma"), spy, **window, limits=RiskLimits(max_drawdown=Decimal("0.2")))
    [event] = halted.breakers
    assert (event.session, event.breaker, event.state) == ("2008-09-17", "drawdown", "HALTED")
    at = pd.Timestamp(event.session)
    peak = free.equity[:at].cummax()
    assert (peak[at] - free.equity[at]) / peak[at] >= 0.2  # the breach is real, on the free curve
    assert ((peak[:at].iloc[:-1] - free.equity[:at].iloc[:-1]) / peak[:at].iloc[:-1]).max() < 0.2  # and the first
    assert (halted.state[at:] == "HALTED").all()
    assert (halted.state[: at - pd.Timedelta(days=1)] == "ACTIVE").all()
    pd.testing.assert_series_equal(halted.equity[:at], free.equity[:at])  # nothing changes before it
    after = halted.targets[at:].to_numpy()
    assert (np.diff(np.abs(after)) <= 0).all()  # only reductions from the breaker on
    assert halted.metrics["total_return"] != free.metrics["total_return"]  # re-entries were blocked
    assert free.breakers == ()
    assert free.state is None


@given(
    targets=st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]), min_size=2, max_size=40),
    data=st.data(),
)
def test_reduce_only_targets_never_grow_or_flip_after_the_breaker(targets, data):
    from tradeflow.backtest.breakers import reduce_only_from

    w = np.array(targets)
    row = data.draw(st.integers(0, len(w) - 1))
    out = reduce_only_from(w, row)
    np.testing.assert_array_equal(out[:row], w[:row])
    held = w[row - 1] if row > 0 else 0.0
    path = np.concatenate(([held], out[row:]))
    assert (np.diff(np.abs(path)) <= 0).all()
    assert ((path * held) >= 0).all()  # never the other side of the held position
