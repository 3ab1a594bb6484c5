"""Properties of the backtester over random markets and target paths: costs only ever hurt, a long-only
book never goes below zero, every target change inside the window is one trade, and the round trips
account for every dollar of the equity change."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.backtest import evaluate_targets
from tradeflow.sim import CostModel, MarketArrays

FAST = settings(max_examples=150, deadline=None)


@st.composite
def markets(draw: st.DrawFn, min_size: int = 3, max_size: int = 80, max_move: float = 0.1) -> MarketArrays:
    n = draw(st.integers(min_size, max_size))
    moves = st.floats(-max_move, max_move, allow_nan=False)
    start = draw(st.floats(1.0, 1000.0))
    # $1..$10,000 a share: below a dollar, per-share fees (TAF) would be a fiction of the generator
    close = np.clip(start * np.exp(np.cumsum(draw(st.lists(moves, min_size=n, max_size=n)))), 1.0, 1e4)
    gaps = np.exp(np.asarray(draw(st.lists(moves, min_size=n, max_size=n))) / 2)
    opens = np.clip(np.r_[close[0], close[:-1]] * gaps, 1.0, 1e4)
    sessions = np.datetime64("2020-01-01", "ns") + np.arange(n).astype("timedelta64[D]")
    volume = np.full(n, draw(st.floats(1e3, 1e8)))
    return MarketArrays(sessions, opens, np.maximum(opens, close), np.minimum(opens, close), close, volume)


def targets_for(market: MarketArrays, weights: list[float]) -> st.SearchStrategy[np.ndarray]:
    n = len(market)
    return st.lists(st.sampled_from(weights), min_size=n, max_size=n).map(lambda w: np.asarray(w, dtype=float))


cost_fields = st.fixed_dictionaries(
    {
        "commission_per_share": st.floats(0.0, 0.05),
        "commission_min": st.floats(0.0, 5.0),
        # the broker's cap on commission as a share of the trade (IBKR: 1%). Kept on: CostModel reads
        # 0 as "no cap", and without one a $1 minimum on a $0.10 sale overdraws the cash.
        "commission_max_pct": st.floats(0.001, 0.05),
        "half_spread_bps": st.floats(0.0, 20.0),
        "slippage_bps": st.floats(0.0, 50.0),
        "impact_bps": st.floats(0.0, 50.0),
        "sec_fee_rate": st.floats(0.0, 1e-4),
        "taf_per_share": st.floats(0.0, 0.001),
    }
)


@FAST
@given(st.data(), markets(), cost_fields, cost_fields, st.floats(1_000.0, 1e6))
def test_higher_costs_never_increase_final_equity(data, market, low, extra, capital):
    targets = data.draw(targets_for(market, [0.0, 0.25, 0.5, 1.0]))
    high = {k: low[k] + extra[k] for k in low}  # a higher cap on commission also costs more
    cheap = evaluate_targets(targets, market, CostModel(**low), capital)
    dear = evaluate_targets(targets, market, CostModel(**high), capital)
    assert dear.equity.iloc[-1] <= cheap.equity.iloc[-1] * (1 + 1e-12) + 1e-9


@FAST
@given(st.data(), markets(max_move=0.5), cost_fields, st.floats(10.0, 1e6))
def test_long_only_equity_is_never_negative(data, market, costs, capital):
    targets = data.draw(targets_for(market, [0.0, 0.1, 0.5, 0.9, 1.0]))
    result = evaluate_targets(targets, market, CostModel(**costs), capital)
    assert (result.equity.to_numpy() >= 0.0).all()
    assert (result.sim.cash >= -1e-9 * capital).all()


@FAST
@given(st.data(), markets(), st.integers(0, 40), st.integers(0, 40))
def test_every_target_change_inside_the_window_is_one_trade(data, market, cut_start, cut_end):
    targets = data.draw(targets_for(market, [0.0, 1.0]))
    i0 = min(cut_start, len(market) - 2)
    i1 = max(len(market) - cut_end, i0 + 2)
    result = evaluate_targets(targets, market, start=market.sessions[i0], end=market.sessions[i1 - 1])
    decided = np.r_[0.0, targets[i0 : i1 - 1]]
    assert result.metrics["trades"] == np.count_nonzero(np.diff(decided))


@FAST
@given(st.data(), markets(max_move=0.05), cost_fields)
def test_round_trips_account_for_the_whole_equity_change(data, market, costs):
    targets = data.draw(targets_for(market, [-1.0, -0.5, 0.0, 0.5, 1.0]))
    result = evaluate_targets(targets, market, CostModel(**costs), 100_000.0)
    assert np.isclose(result.trades["pnl"].sum(), result.equity.iloc[-1] - 100_000.0, rtol=0, atol=1e-6 * 100_000.0)
    assert result.trades["closed"].iloc[:-1].all()  # only the last trip may still be open
