"""Metrics against values worked out by hand on tiny series, PSR against an independent scipy
evaluation of the Bailey & Lopez de Prado formula, and JSON safety of the metrics dict."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tradeflow.backtest import metrics as m


def test_total_return_and_cagr_of_a_doubling_over_two_years():
    equity = 100.0 * 2.0 ** (np.arange(505) / 504)  # 504 sessions = 2 years, doubling
    assert m.total_return(equity) == pytest.approx(1.0)
    assert m.cagr(equity) == pytest.approx(math.sqrt(2.0) - 1.0)


def test_cagr_is_minus_one_once_the_capital_is_gone():
    assert m.cagr(np.array([100.0, 50.0, 0.0])) == -1.0


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak_as_a_negative_fraction():
    equity = np.array([100.0, 120.0, 90.0, 130.0, 65.0, 70.0])
    np.testing.assert_allclose(m.drawdown(equity), [0, 0, -0.25, 0, -0.5, 70 / 130 - 1])
    assert m.max_drawdown(equity) == pytest.approx(-0.5)
    assert m.max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_volatility_sharpe_and_sortino_by_hand():
    r = np.array([0.03, -0.01, 0.02, -0.02])
    mean, sd = 0.005, math.sqrt(((0.025**2) + (0.015**2) + (0.015**2) + (0.025**2)) / 3)
    assert m.volatility(r) == pytest.approx(sd * math.sqrt(252))
    assert m.sharpe_ratio(r) == pytest.approx(mean / sd * math.sqrt(252))
    downside = math.sqrt((0.01**2 + 0.02**2) / 4)
    assert m.sortino_ratio(r) == pytest.approx(mean / downside * math.sqrt(252))


def test_risk_free_rate_is_subtracted_per_session():
    r = np.array([0.001, 0.002, 0.0, 0.003])
    shifted = r - 0.0252 / 252
    assert m.sharpe_ratio(r, risk_free=0.0252) == pytest.approx(shifted.mean() / shifted.std(ddof=1) * math.sqrt(252))


def test_calmar_is_cagr_over_the_drawdown_depth():
    equity = np.array([100.0, 80.0, 121.0])  # 2 sessions; periods_per_year=2 makes it one year
    assert m.cagr(equity, periods_per_year=2) == pytest.approx(0.21)
    assert m.calmar_ratio(equity, periods_per_year=2) == pytest.approx(0.21 / 0.2)
    assert math.isnan(m.calmar_ratio(np.array([1.0, 2.0])))


def test_win_rate_counts_positive_round_trips_and_is_nan_without_any():
    assert m.win_rate(np.array([10.0, -5.0, 2.0, 0.0])) == pytest.approx(0.5)
    assert math.isnan(m.win_rate(np.array([])))


def test_turnover_is_annual_traded_notional_over_average_equity():
    equity = np.full(253, 100_000.0)  # one year
    assert m.turnover(200_000.0, equity) == pytest.approx(2.0)
    assert m.turnover(200_000.0, np.full(505, 50_000.0)) == pytest.approx(2.0)  # two years, half the equity


def test_exposure_is_the_share_of_sessions_holding_a_position():
    assert m.exposure(np.array([0.0, 10.0, 10.0, 0.0, -3.0])) == pytest.approx(0.6)


def test_undefined_metrics_of_a_flat_curve_are_nan_not_zero():
    flat = np.full(10, 100.0)
    r = m.simple_returns(flat)
    assert math.isnan(m.sharpe_ratio(r))
    assert math.isnan(m.sortino_ratio(r))
    assert math.isnan(m.probabilistic_sharpe_ratio(r))
    assert m.max_drawdown(flat) == 0.0


def direct_psr(r: np.ndarray, sr_star_daily: float) -> float:
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    z = (sr - sr_star_daily) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


@pytest.mark.parametrize(("seed", "benchmark"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, -0.5)])
def test_psr_matches_a_direct_evaluation_of_the_formula(seed, benchmark):
    rng = np.random.default_rng(seed)
    r = stats.skewnorm.rvs(a=-4, loc=0.002, scale=0.012, size=750, random_state=rng)  # skewed, fat-ish tails
    expected = direct_psr(r, benchmark / math.sqrt(252))
    assert m.probabilistic_sharpe_ratio(r, benchmark) == pytest.approx(expected, rel=1e-10)


def test_psr_is_confident_for_a_strong_edge_and_doubtful_for_a_loser():
    rng = np.random.default_rng(5)
    assert m.probabilistic_sharpe_ratio(rng.normal(0.002, 0.01, 2000)) > 0.99
    assert m.probabilistic_sharpe_ratio(rng.normal(-0.001, 0.01, 2000)) < 0.1


def test_expected_max_sharpe_of_luck_grows_with_the_number_of_trials():
    values = [m.expected_max_sharpe(n, 0.25) for n in (1, 2, 10, 100, 1000)]
    assert values[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(values))
    # the formula of Bailey & Lopez de Prado (2014), evaluated with scipy
    gamma = 0.5772156649015329
    direct = (1 - gamma) * stats.norm.ppf(1 - 1 / 1000) + gamma * stats.norm.ppf(1 - 1 / (1000 * math.e))
    assert m.expected_max_sharpe(1000, 4.0) == pytest.approx(2.0 * direct, rel=1e-9)
    # ... which approximates the mean maximum of 1000 standard normals (about 3.24)
    assert direct == pytest.approx(3.24, abs=0.03)


def test_deflated_sharpe_never_exceeds_psr_and_equals_it_for_one_trial():
    rng = np.random.default_rng(9)
    r = rng.normal(0.0008, 0.01, 1500)
    psr = m.probabilistic_sharpe_ratio(r)
    assert m.deflated_sharpe_ratio(r, 1, 0.5) == pytest.approx(psr)
    deflated = [m.deflated_sharpe_ratio(r, n, 0.5) for n in (2, 10, 100)]
    assert all(d <= psr for d in deflated)
    assert deflated[0] > deflated[1] > deflated[2]
    # the variance is of annualised Sharpes, so SR* is annualised and enters the formula per session
    sr_star_annual = m.expected_max_sharpe(10, 0.5)
    assert deflated[1] == pytest.approx(direct_psr(r, sr_star_annual / math.sqrt(252)), rel=1e-10)


def test_metrics_dict_has_exactly_the_cli_keys_plus_psr_and_dsr():
    equity = 100_000 * np.cumprod(np.r_[1.0, 1 + np.random.default_rng(0).normal(0.0005, 0.01, 300)])
    out = m.metrics_dict(equity, position=np.ones(301), traded_notional=1e5, round_trip_pnl=np.array([1.0]), fills=1)
    assert tuple(out) == (*m.METRIC_KEYS, *m.EXTRA_KEYS)
    assert m.METRIC_KEYS == (
        "total_return",
        "cagr",
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
        "win_rate",
        "turnover",
        "exposure",
        "trades",
    )
    assert all(type(v) is float for k, v in out.items() if k != "trades")
    assert type(out["trades"]) is int
    assert out["max_drawdown"] < 0


def test_to_jsonable_turns_nan_and_numpy_types_into_plain_json():
    value = {
        "a": np.float64("nan"),
        "b": np.int64(3),
        "c": [np.float32(1.5), float("inf")],
        "d": np.array([pd.Timestamp("2020-01-02").to_datetime64(), np.datetime64("NaT")]),
        "e": pd.Timestamp("2020-01-03"),
        "f": np.bool_(True),
    }
    out = m.to_jsonable(value)
    assert out == {"a": None, "b": 3, "c": [1.5, None], "d": ["2020-01-02", None], "e": "2020-01-03", "f": True}
    json.dumps(out, allow_nan=False)
