"""The shared cost model and simulator: hand-checked costs, and the vectorised simulator equals a
naive day-by-day loop over the same kernel on real data."""

from __future__ import annotations

import numpy as np
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.errors import InputError
from tradeflow.sim import CostModel, MarketArrays, rebalance, simulate_targets


@pytest.fixture(scope="module")
def spy(real_data) -> MarketArrays:
    bars = read_bar_file(real_data / "SPY.csv", "SPY")
    return MarketArrays.from_bars(bars[bars["session"] >= "2015-01-01"].reset_index(drop=True))


def naive(market: MarketArrays, targets: np.ndarray, cost: CostModel, capital: float) -> np.ndarray:
    """The obvious loop: decide at close t, trade at open t+1 when the target changed, mark at close."""
    cash, shares, current = capital, 0.0, 0.0
    equity = [capital]
    for t in range(1, len(market)):
        if targets[t - 1] != current:
            cash, shares, _ = rebalance(cash, shares, targets[t - 1], market.open[t], market.volume[t], cost)
            current = targets[t - 1]
        equity.append(cash + shares * market.close[t])
    return np.array(equity)


def test_commission_has_a_minimum_and_a_cap():
    cost = CostModel(commission_per_share=0.005, commission_min=1.0, commission_max_pct=0.01)
    assert cost.commission(10, 400.0) == 1.0  # 10 * 0.005 = 0.05 < $1 minimum
    assert cost.commission(1000, 400.0) == 5.0
    assert cost.commission(100, 0.5) == pytest.approx(0.5)  # 1% of $50 caps the $1 minimum
    assert cost.commission(0, 400.0) == 0.0


def test_sells_pay_sec_fee_and_capped_taf():
    cost = CostModel(sec_fee_rate=27.8e-6, taf_per_share=0.000166, taf_max=8.30)
    assert cost.sell_fees(100, 500.0) == pytest.approx(27.8e-6 * 50_000 + 0.0166)
    assert cost.sell_fees(1_000_000, 1.0) == pytest.approx(27.8e-6 * 1_000_000 + 8.30)


def test_buy_all_in_pays_spread_and_commission_and_never_borrows():
    cost = CostModel()
    cash, shares, fill = rebalance(100_000.0, 0.0, 1.0, 400.0, 1e8, cost)
    assert fill is not None
    assert fill.price == pytest.approx(400.0 * (1 + 1.5e-4))
    assert cash >= 0.0
    assert cash < 1.0
    assert shares * fill.price + fill.commission == pytest.approx(100_000.0 - cash)


def test_round_trip_loses_exactly_the_modelled_costs_at_a_flat_price():
    cost = CostModel()
    cash, shares, buy = rebalance(100_000.0, 0.0, 1.0, 400.0, 1e8, cost)
    cash, shares, sell = rebalance(cash, shares, 0.0, 400.0, 1e8, cost)
    assert shares == pytest.approx(0.0, abs=1e-12)
    assert 100_000.0 - cash == pytest.approx(buy.total_cost + sell.total_cost)


def test_volume_impact_grows_with_participation_when_enabled():
    cost = CostModel(impact_bps=10.0)
    assert cost.price_impact(1_000, 1e6) > cost.price_impact(10, 1e6)
    assert cost.price_impact(1_000, float("nan")) == pytest.approx(1.5e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_simulator_equals_the_naive_loop_on_real_spy(spy, seed):
    rng = np.random.default_rng(seed)
    targets = rng.choice([0.0, 1.0, 1.0, 0.5, -1.0], size=len(spy))
    cost = CostModel(impact_bps=5.0)
    result = simulate_targets(spy, targets, cost, capital=50_000.0)
    np.testing.assert_allclose(result.equity, naive(spy, targets, cost, 50_000.0), rtol=1e-12)


def test_a_trade_happens_only_when_the_target_changes_and_at_the_next_open(spy):
    targets = np.zeros(len(spy))
    targets[10:20] = 1.0  # decided at closes 10..19
    result = simulate_targets(spy, targets, CostModel())
    assert [f.index for f in result.fills] == [11, 21]
    assert result.fills[0].price == pytest.approx(spy.open[11] * (1 + 1.5e-4))


def test_buy_and_hold_earns_the_dividend_adjusted_return_minus_one_entry(spy):
    result = simulate_targets(spy, np.ones(len(spy)), CostModel(), capital=100_000.0)
    gross = spy.close[-1] / spy.open[1]
    assert result.equity[-1] / 100_000.0 == pytest.approx(gross, rel=3e-4)
    assert len(result.fills) == 1


def test_targets_must_be_finite_and_one_per_session(spy):
    with pytest.raises(InputError, match="one value per session"):
        simulate_targets(spy, np.ones(3), CostModel())
    bad = np.ones(len(spy))
    bad[5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        simulate_targets(spy, bad, CostModel())


def test_market_arrays_scale_prices_by_adj_close_to_include_dividends(real_data):
    bars = read_bar_file(real_data / "SPY.csv", "SPY").tail(300).reset_index(drop=True)
    m = MarketArrays.from_bars(bars)
    np.testing.assert_allclose(m.close, bars["adj_close"].to_numpy())
    raw = MarketArrays.from_bars(bars, adjust_dividends=False)
    np.testing.assert_allclose(raw.close, bars["close"].to_numpy())
    assert m.index_of("2024-01-24") == len(m) - 1


def test_commission_cap_none_disables_it_and_zero_means_free():
    assert CostModel(commission_max_pct=None).commission(100, 0.5) == 1.0
    assert CostModel(commission_max_pct=0.0).commission(100, 0.5) == 0.0
