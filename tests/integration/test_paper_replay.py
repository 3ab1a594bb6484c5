"""Paper replay parity (issue 4, item 7): the real tick, run day by day with the sim broker and a
simulated clock over H1 2023 of real SPY, reproduces the backtest's equity curve within cost rounding.

Tolerances, and why they are not zero (against the research backtest, which trades fractions):
- the tick holds whole shares and keeps CASH_BUFFER of equity back, while the research backtest
  trades fractional shares at 100% (the vector engine with the trading path's sizing rules agrees
  with the replay to under 0.01 bp: see the 2015-2019 test). Exposure differs by at most the buffer
  + one share (~1% + 0.4%), so a daily return differs by under ~1.5% of SPY's move that day (<= ~3 bps here), plus a $1
  commission per whole-share resize (0.1 bp). DAILY_RETURN_TOL = 10 bps keeps a 3x margin and still
  fails on a one-day timing slip, which moves a return by a whole day's move (~50 bps on 2023-01-04).
- the equity gap compounds those; EQUITY_TOL = 0.5% of equity over ~120 sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.backtest.engine import backtest, evaluate_targets
from tradeflow.core.replay import LiveBars, ReplayResult, replay
from tradeflow.features import DEFAULT_SPEC, build_features
from tradeflow.sim import MarketArrays
from tradeflow.strategies import make_strategy

START, END = "2023-01-03", "2023-06-30"
CASH_BUFFER = 0.01
DAILY_RETURN_TOL = 0.001
EQUITY_TOL = 0.005


@pytest.fixture(scope="module")
def spy_vix(real_data):
    return read_bar_file(real_data / "SPY.csv", "SPY"), read_bar_file(real_data / "VIX.csv", "^VIX")


@pytest.fixture(scope="module")
def features(spy_vix):
    return build_features(*spy_vix, DEFAULT_SPEC)


def position_changes(shares: pd.Series) -> list[pd.Timestamp]:
    """Sessions where the position leaves zero or returns to it: the strategy's own decisions."""
    held = shares.to_numpy() != 0
    before = np.concatenate(([False], held[:-1]))
    return list(shares.index[held != before])


def replay_positions(result: ReplayResult) -> pd.Series:
    per_session = result.fills.groupby("session")["shares"].sum()
    return per_session.reindex(result.equity.index, fill_value=0.0).cumsum()


@pytest.mark.parametrize("adjusted", [True, False], ids=["dividend-adjusted", "raw-prices"])
def test_paper_replay_reproduces_the_backtest_equity_within_cost_rounding(features, adjusted):
    strategy = make_strategy("sma")
    result = replay(features, strategy, START, END, cash_buffer=CASH_BUFFER, adjust_dividends=adjusted)
    if adjusted:
        bt = backtest(strategy, features, start=START, end=END)
    else:
        raw = MarketArrays.from_bars(features.bars, adjust_dividends=False)
        bt = evaluate_targets(strategy.targets(features), raw, start=START, end=END, name="sma")

    assert result.equity.index.equals(bt.equity.index)
    assert len(result.equity) > 100
    assert result.statuses().keys() <= {"TRADED", "NO_ACTION"}
    assert not [r for r in result.reports if r.denials or r.alerts]
    # The strategy's entries and exits happen at the same opens on both sides...
    bt_changes = position_changes(bt.position)
    assert len(bt_changes) >= 4
    assert position_changes(replay_positions(result)) == bt_changes
    assert list(bt.fills["session"]) == bt_changes
    # ... at the same price: the open of that session through the same cost model.
    entries = result.fills.set_index("session").loc[bt_changes, "price"].to_numpy()
    np.testing.assert_allclose(entries, bt.fills["price"].to_numpy(), atol=1e-3)
    # The curves agree within whole-share rounding, the cash buffer and the resize commissions.
    assert (result.returns - bt.returns).abs().max() < DAILY_RETURN_TOL
    assert (result.equity / bt.equity - 1).abs().max() < EQUITY_TOL


def test_paper_replay_from_bars_rebuilds_live_features_and_matches_the_precomputed_ones(features, spy_vix):
    # Every tick calls features_for_live on the bars up to the previous session, as a live tick does.
    strategy = make_strategy("sma")
    live = replay(LiveBars(*spy_vix), strategy, "2023-03-01", "2023-03-31", cash_buffer=CASH_BUFFER)
    precomputed = replay(features, strategy, "2023-03-01", "2023-03-31", cash_buffer=CASH_BUFFER)
    assert live.fills["session"].nunique() >= 2  # an exit and resizes happen in March 2023
    pd.testing.assert_series_equal(live.equity, precomputed.equity)
    pd.testing.assert_frame_equal(live.fills, precomputed.fills)


def test_paper_replay_without_a_cash_buffer_enters_on_the_backtests_session(features):
    # The tick sizes at the broker's price (the open, in a replay) with the one sizing's cash cap, so
    # a fully invested buy on a gap-up open (2023-01-04 opened +0.9%) is affordable and fills that day,
    # where the tick once sized on the previous close and was refused for a day.
    strategy = make_strategy("sma")
    result = replay(features, strategy, START, "2023-01-10", cash_buffer=0.0)
    first = result.reports[0]
    assert first.session == "2023-01-04"
    assert first.status == "TRADED"
    assert result.fills["session"].iloc[0] == pd.Timestamp("2023-01-04")


def test_replay_and_the_vector_engine_agree_within_10_bps_over_2015_2019(features):
    """Issue 10: one kernel. The vector engine sized by the trading path's rules (whole shares, no
    buffer here) and the real tick replayed day by day on the sim broker: total returns within 10 bps
    (measured: under 0.01 bp), and the fills on the same sessions."""
    from tradeflow.sim import SizingRules

    strategy = make_strategy("sma")
    replayed = replay(features, strategy, "2015-01-02", "2019-12-31", cash_buffer=0.0)
    vector = backtest(strategy, features, start="2015-01-02", end="2019-12-31", rules=SizingRules(fractional=False))
    replayed_return = replayed.equity.iloc[-1] / replayed.equity.iloc[0] - 1
    assert abs(replayed_return - vector.metrics["total_return"]) < 0.001
    assert sorted(set(replayed.fills["session"])) == list(vector.fills["session"])
    metrics = replayed.metrics(float(features.market().close[-1]))
    assert metrics["trades"] == vector.metrics["trades"]


def test_paper_replay_fills_only_on_the_sessions_the_backtest_fills(features):
    strategy = make_strategy("sma")
    result = replay(features, strategy, START, END, cash_buffer=CASH_BUFFER)
    bt = backtest(strategy, features, start=START, end=END)
    assert sorted(set(result.fills["session"])) == list(bt.fills["session"])


def test_a_three_symbol_portfolio_replay_agrees_with_the_vector_engine_within_10_bps(real_data):
    """Issue 10: SMA sleeves over SPY, AAPL and MSFT, 2015-2019. The tick decides for the universe,
    sizes each instrument with the one sizing (sells first) and holds a sized position while its
    target is unchanged, as the vector engine holds its shares: the curves end within 10 bp (measured:
    0.001 bp), with the same number of fills."""
    from tradeflow.backtest.portfolio import evaluate_weights
    from tradeflow.domain import Universe
    from tradeflow.features import build_panel
    from tradeflow.sim import CostModel, PanelMarket, SizingRules
    from tradeflow.strategies import Sleeves

    universe = ("SPY", "AAPL", "MSFT")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real_data / f"{s}.csv", s) for s in universe}
    panel = build_panel(bars, vix, Universe.of(*universe), DEFAULT_SPEC)
    sleeves = Sleeves(make_strategy("sma"), universe)
    replayed = replay(panel, sleeves, "2015-01-02", "2019-12-31", cash_buffer=0.0)
    vector = evaluate_weights(
        sleeves.targets(panel), PanelMarket.align(panel.market()), CostModel(), 100_000.0,
        "2015-01-02", "2019-12-31", rules=SizingRules(fractional=False),
    )  # fmt: skip
    replayed_return = replayed.equity.iloc[-1] / replayed.equity.iloc[0] - 1
    assert abs(replayed_return - vector.metrics["total_return"]) < 0.001
    assert len(replayed.fills) == len(vector.fills)
    assert set(replayed.fills["symbol"]) == set(universe)
