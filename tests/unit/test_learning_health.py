"""Model health: PSI/KS drift on real SPY history, realised against modelled costs, live/replay agreement,
and the breaches assess_health raises (or, for too little evidence, does not)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.errors import ConfigError, InputError
from tradeflow.features import build_features
from tradeflow.learning.health import (
    DRIFT_COLUMNS,
    Agreement,
    HealthThresholds,
    assess_health,
    cost_realisation,
    decision_agreement,
    feature_drift,
    psi,
)
from tradeflow.sim import CostModel, rebalance

# Impact 2 bps, 1 cent a share, no minimum, cap or regulatory fees: hand arithmetic stays plain.
PLAIN = CostModel(
    commission_per_share=0.01,
    commission_min=0.0,
    commission_max_pct=None,
    half_spread_bps=0.5,
    slippage_bps=1.5,
    sec_fee_rate=0.0,
    taf_per_share=0.0,
)


@lru_cache(maxsize=1)
def _features(real: Path) -> pd.DataFrame:
    bars = read_bar_file(real / "SPY.csv", "SPY")
    vix = read_bar_file(real / "VIX.csv", "^VIX")
    return build_features(bars, vix).frame.set_index("session")


@pytest.fixture
def features(real_data: Path) -> pd.DataFrame:
    return _features(real_data)


@pytest.fixture
def returns(real_data: Path) -> pd.Series:
    bars = read_bar_file(real_data / "SPY.csv", "SPY").set_index("session")
    return np.log(bars["adj_close"]).diff().dropna()


def _sessions(n: int, start: str = "2024-01-02") -> pd.DatetimeIndex:
    return pd.bdate_range(start, periods=n)


def _fills(n: int, *, buy_bps: float, sell_bps: float, open_: float = 400.0, qty: float = 100.0) -> pd.DataFrame:
    """n fills alternating buy/sell, each `*_bps` worse than the open, commission 1 cent a share."""
    rows = []
    for i, day in enumerate(_sessions(n)):
        side = "buy" if i % 2 == 0 else "sell"
        price = open_ * (1 + buy_bps * 1e-4) if side == "buy" else open_ * (1 - sell_bps * 1e-4)
        rows.append({"session": day.date(), "side": side, "qty": qty, "price": price, "commission": 0.01 * qty})
    return pd.DataFrame(rows)


def _opens(n: int, open_: float = 400.0) -> pd.Series:
    return pd.Series(open_, index=_sessions(n))


# --- PSI ---------------------------------------------------------------------------------------


def test_psi_matches_a_hand_computed_example():
    # expected [1,2,3,4] with 2 bins: median edge 2, so bins (-inf, 2] and (2, inf) hold 1/2 each.
    # actual [1,1,1,3]: 3/4 and 1/4 -> (0.75-0.5) ln 1.5 + (0.25-0.5) ln 0.5
    assert psi([1, 2, 3, 4], [1, 1, 1, 3], bins=2) == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))
    # actual [1,1,1,1] leaves the upper bin empty: it is floored at 1e-4, not renormalised.
    empty_bin = 0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert psi([1, 2, 3, 4], [1, 1, 1, 1], bins=2) == pytest.approx(empty_bin)


def test_psi_drops_nans_before_binning():
    assert psi([1, 2, np.nan, 3, 4], [1, 1, np.nan, 1, 3], bins=2) == pytest.approx(psi([1, 2, 3, 4], [1, 1, 1, 3], 2))


@pytest.mark.parametrize(
    ("expected", "actual", "bins"), [([1.0, 2.0], [np.nan], 10), ([], [1.0], 10), ([1.0, 2.0], [1.0], 1)]
)
def test_psi_refuses_an_empty_sample_or_fewer_than_two_bins(expected, actual, bins):
    with pytest.raises(InputError):
        psi(expected, actual, bins)


def test_psi_on_real_spy_returns_is_zero_for_the_same_sample_and_large_for_2008_against_2005_2006(returns):
    calm = returns.loc["2005":"2006"]
    assert psi(calm, calm) == 0.0
    # interleaved sessions of one calm stretch: the same distribution, a negligible PSI (< 0.1)
    stretch = returns.loc["2004":"2007"]
    assert psi(stretch.iloc[::2], stretch.iloc[1::2]) < 0.1
    crisis = psi(calm, returns.loc["2008"])
    neighbours = psi(returns.loc["2012"], returns.loc["2013"])
    assert crisis > 0.25  # a "major" shift by the convention
    assert neighbours < 0.25
    assert crisis > 4 * neighbours


# --- feature drift -----------------------------------------------------------------------------


def test_feature_drift_on_real_features_flags_most_of_2008_and_fewer_for_2013_after_2012(features):
    crisis = feature_drift(features.loc["2005":"2006"], features.loc["2008"])
    calmer = feature_drift(features.loc["2012"], features.loc["2013"])
    assert list(crisis.columns) == list(DRIFT_COLUMNS)
    assert set(crisis.index) == set(features.columns)  # session is the index, not a feature
    assert crisis["psi"].is_monotonic_decreasing
    assert crisis["drifted"].sum() >= 10  # volatility, VIX, trend and oscillators all moved
    assert crisis.loc["vix", "drifted"]
    assert crisis.loc["realized_vol_20", "drifted"]
    assert calmer["drifted"].sum() < crisis["drifted"].sum()
    assert calmer["psi"].median() < crisis["psi"].median() / 3
    same = feature_drift(features.loc["2005":"2006"], features.loc["2005":"2006"])
    assert not same["drifted"].any()
    assert (same["psi"] == 0).all()


def test_feature_drift_needs_ks_too_so_small_same_distribution_samples_are_not_drift():
    rng = np.random.default_rng(20240601)
    train = pd.DataFrame({"x": rng.normal(size=2000)})
    draws = [feature_drift(train, pd.DataFrame({"x": rng.normal(size=20)})).iloc[0] for _ in range(200)]
    # 20 rows in 10 bins leave bins empty by chance: PSI alone calls most of these samples drifted ...
    assert np.mean([d["psi"] > 0.25 for d in draws]) > 0.6
    # ... the KS guard keeps the false alarms near its 1% level.
    assert np.mean([d["drifted"] for d in draws]) <= 0.03
    only_psi = [feature_drift(train, pd.DataFrame({"x": rng.normal(size=20)}), ks_alpha=1.0) for _ in range(50)]
    assert np.mean([d["drifted"].iloc[0] for d in only_psi]) > 0.6


def test_feature_drift_compares_common_numeric_columns_only_and_reports_empty_ones_as_nan():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"session": _sessions(50), "a": rng.normal(size=50), "b": rng.normal(size=50), "c": 1.0})
    live = pd.DataFrame({"session": _sessions(30, "2025-01-02"), "a": rng.normal(size=30) + 3, "b": np.nan})
    drift = feature_drift(train, live)
    assert list(drift.index) == ["a", "b"]
    assert drift.loc["a", "drifted"]
    assert math.isnan(drift.loc["b", "psi"])
    assert not drift.loc["b", "drifted"]
    assert drift.loc["b", "n_live"] == 0
    with pytest.raises(InputError, match="share no numeric column"):
        feature_drift(train[["session", "c"]], live[["session", "a"]])


# --- cost realisation --------------------------------------------------------------------------


def test_cost_realisation_of_a_buy_10bps_above_and_a_sell_5bps_below_the_open():
    fills = pd.DataFrame(
        {
            "session": ["2024-01-02", "2024-01-03"],
            "side": ["buy", "sell"],
            "qty": [100, 200],
            "price": [400.40, 199.90],  # 10 bps above 400; 5 bps below 200
            "commission": [1.50, 2.50],
        }
    )
    c = cost_realisation(fills, {"2024-01-02": 400.0, "2024-01-03": 200.0}, PLAIN)
    assert c.n_fills == 2
    assert c.notional == pytest.approx(100 * 400 + 200 * 200)
    assert c.realised_slippage_bps_mean == pytest.approx(7.5)
    assert c.realised_slippage_bps_median == pytest.approx(7.5)
    assert c.modelled_slippage_bps_mean == pytest.approx(2.0)
    assert c.realised_slippage == pytest.approx(100 * 0.40 + 200 * 0.10)  # 60
    assert c.modelled_slippage == pytest.approx(2e-4 * (40_000 + 40_000))  # 16
    assert c.realised_commission == pytest.approx(4.0)
    assert c.modelled_commission == pytest.approx(0.01 * 300)  # 3
    assert c.cost_ratio == pytest.approx((60 + 4) / (16 + 3))
    assert list(c.per_fill["realised_bps"]) == pytest.approx([10.0, 5.0])


def test_cost_realisation_counts_price_improvement_as_negative_slippage():
    fills = pd.DataFrame(
        {"session": ["2024-01-02"], "side": ["sell"], "qty": [10], "price": [400.20], "commission": [0.1]}
    )
    c = cost_realisation(fills, {"2024-01-02": 400.0}, PLAIN)
    assert c.realised_slippage_bps_mean == pytest.approx(-5.0)
    assert c.realised_slippage == pytest.approx(-2.0)


def test_cost_realisation_charges_the_sec_fee_and_taf_on_sales_like_the_sim_broker():
    fills = pd.DataFrame(
        {
            "session": [dt.date(2024, 1, 2)],
            "side": ["sell"],
            "qty": [Decimal("100")],
            "price": [Decimal("399.80")],
            "commission": [Decimal("1.00")],
        }
    )
    model = CostModel()  # 1.5 bps impact, $1 minimum commission, SEC fee and TAF on sales
    c = cost_realisation(fills, pd.Series({pd.Timestamp("2024-01-02"): 400.0}), model)
    sold_at = 400.0 * (1 - 1.5e-4)
    assert c.modelled_commission == pytest.approx(1.0 + 27.80e-6 * 100 * sold_at + 0.000166 * 100)


def test_fills_priced_by_the_backtest_kernel_realise_exactly_the_modelled_costs():
    # Weights below 1, so no buy is cut to the cash on hand: rebalance prices that cut with the impact
    # of the order it meant to send, which no fill record can reproduce.
    model = CostModel(impact_bps=10.0)
    cash, shares, rows = 100_000.0, 0.0, []
    for day, (weight, open_, volume) in zip(
        _sessions(4), [(0.5, 400.0, 2e3), (0.2, 410.0, 4e3), (0.7, 405.0, 1e3), (0.0, 395.0, 2e3)], strict=True
    ):
        cash, shares, fill = rebalance(cash, shares, weight, open_, volume, model)
        assert fill is not None
        side = "buy" if fill.shares > 0 else "sell"
        rows.append(
            {
                "session": day,
                "side": side,
                "qty": abs(fill.shares),
                "price": fill.price,
                "commission": fill.commission + fill.fees,
                "volume": volume,
                "open": open_,
            }
        )
    fills = pd.DataFrame(rows)
    c = cost_realisation(fills, fills.set_index("session")["open"], model)
    assert c.realised_slippage == pytest.approx(c.modelled_slippage, rel=1e-9)
    assert c.realised_commission == pytest.approx(c.modelled_commission, rel=1e-9)
    assert c.cost_ratio == pytest.approx(1.0, rel=1e-9)
    # the impact term used each fill's volume (without it the model would charge 1.5 bps flat)
    assert c.modelled_slippage_bps_mean > 1.5 + 1


def test_cost_realisation_accepts_signed_shares_as_the_replay_writes_them():
    fills = pd.DataFrame(
        {"session": ["2024-01-02", "2024-01-03"], "shares": [100, -100], "price": [400.4, 399.8], "commission": 1.0}
    )
    c = cost_realisation(fills, {"2024-01-02": 400.0, "2024-01-03": 400.0}, PLAIN)
    assert list(c.per_fill["side"]) == ["buy", "sell"]
    assert c.realised_slippage_bps_mean == pytest.approx(7.5)


def test_cost_realisation_refuses_fills_it_cannot_price_or_read():
    fills = _fills(2, buy_bps=10, sell_bps=5)
    with pytest.raises(InputError, match="no positive reference price"):
        cost_realisation(fills, _opens(1), PLAIN)
    with pytest.raises(InputError, match="side must be buy or sell"):
        cost_realisation(fills.assign(side=["buy", "short"]), _opens(2), PLAIN)
    with pytest.raises(InputError, match="lack columns"):
        cost_realisation(fills.drop(columns="commission"), _opens(2), PLAIN)
    with pytest.raises(InputError, match="quantity"):
        cost_realisation(fills.assign(qty=[100.0, 0.0]), _opens(2), PLAIN)
    with pytest.raises(InputError, match="not numbers"):
        cost_realisation(fills, pd.Series([400.0, 400.0]), PLAIN)


def test_no_fills_are_an_empty_realisation_without_a_ratio():
    c = cost_realisation(pd.DataFrame(), _opens(1), PLAIN)
    assert c.n_fills == 0
    assert math.isnan(c.cost_ratio)
    assert c.to_dict()["cost_ratio"] is None


# --- decision agreement ------------------------------------------------------------------------


def test_decision_agreement_finds_the_planted_disagreements():
    days = _sessions(40)
    live = pd.Series(np.where(np.arange(40) % 3 == 0, 1.0, 0.0), index=days)
    replay = live.copy()
    planted = [days[5], days[17], days[33]]
    replay[planted] = 1.0 - replay[planted]
    replay[days[8]] += 1e-12  # float noise within tol is the same decision
    a = decision_agreement(live, replay)
    assert (a.n, a.agreed) == (40, 37)
    assert a.rate == pytest.approx(37 / 40)
    assert a.disagreements == tuple(d.date() for d in planted)
    assert a.max_abs_diff == pytest.approx(1.0)


def test_decision_agreement_judges_only_sessions_both_sides_decided():
    live = pd.Series({"2024-01-02": 1.0, "2024-01-03": np.nan, "2024-01-04": 0.5, "2024-01-05": 0.0})
    replay = pd.Series({"2024-01-03": 1.0, "2024-01-04": 0.5, "2024-01-05": 1.0, "2024-01-08": 1.0})
    a = decision_agreement(live, replay)
    assert a == Agreement(
        n=2, agreed=1, disagreements=(dt.date(2024, 1, 5),), max_abs_diff=1.0, only_live=1, only_replay=2
    )
    assert math.isnan(decision_agreement(live.iloc[:1], replay.iloc[:1]).rate)


def test_decision_agreement_refuses_positional_or_duplicated_sessions():
    with pytest.raises(InputError, match="not numbers"):
        decision_agreement(pd.Series([1.0, 0.0]), pd.Series([1.0, 0.0]))
    twice = pd.Series([1.0, 0.0], index=pd.to_datetime(["2024-01-02", "2024-01-02"]))
    with pytest.raises(InputError, match="more than once"):
        decision_agreement(twice, twice)


# --- assess_health -----------------------------------------------------------------------------


def _healthy_inputs(features: pd.DataFrame) -> dict[str, object]:
    """Live rows drawn from the training window itself, costs exactly as modelled, identical decisions."""
    train = features.loc["2004":"2007"]
    days = _sessions(30)
    targets = pd.Series(np.tile([0.0, 1.0, 1.0], 10), index=days)
    return {
        "train_features": train,
        "live_features": train.iloc[::4],
        "fills": _fills(12, buy_bps=2.0, sell_bps=2.0),
        "reference": _opens(12),
        "cost_model": PLAIN,
        "live_targets": targets,
        "replay_targets": targets.copy(),
    }


def test_healthy_inputs_raise_no_breach(features):
    report = assess_health(**_healthy_inputs(features))
    assert report.healthy
    assert report.breaches == ()
    assert report.insufficient == ()
    assert report.costs is not None
    assert report.costs.cost_ratio == pytest.approx(1.0)
    assert report.agreement is not None
    assert report.agreement.rate == 1.0
    assert "# Model health: HEALTHY" in report.to_markdown()


def test_planted_drift_costs_and_disagreement_each_raise_their_breach(features):
    inputs = _healthy_inputs(features)
    inputs["train_features"] = features.loc["2005":"2006"]
    inputs["live_features"] = features.loc["2008"]
    inputs["fills"] = _fills(12, buy_bps=10.0, sell_bps=10.0)  # five times the modelled 2 bps
    replay = inputs["live_targets"].copy()  # type: ignore[attr-defined]
    replay.iloc[[3, 4, 20]] = 0.5
    inputs["replay_targets"] = replay
    report = assess_health(**inputs)
    assert not report.healthy
    assert [b.split(":")[0] for b in report.breaches] == ["feature drift", "costs", "decision agreement"]
    assert "vix" in report.breaches[0]
    assert report.breaches[2] == (
        "decision agreement: 90.0% < 95% over 30 sessions (3 disagreements, first 2024-01-05, 2024-01-08, 2024-01-30)"
    )
    assert report.breaches == assess_health(**inputs).breaches  # deterministic
    md = report.to_markdown()
    assert "# Model health: BREACHED" in md
    assert "| vix |" in md
    assert "2024-01-30" in md


def test_each_check_breaches_alone(features):
    base = _healthy_inputs(features)
    costly = assess_health(**{**base, "fills": _fills(12, buy_bps=10.0, sell_bps=10.0)})
    assert [b.split(":")[0] for b in costly.breaches] == ["costs"]
    drifted = assess_health(**{**base, "live_features": features.loc["2008"]})
    assert [b.split(":")[0] for b in drifted.breaches] == ["feature drift"]
    # below the share: the same drift passes when a breach needs more than 95% of features drifted
    lenient = HealthThresholds(max_drifted_share=0.95)
    assert assess_health(**{**base, "live_features": features.loc["2008"], "thresholds": lenient}).healthy


def test_insufficient_evidence_is_reported_never_a_breach(features):
    inputs = _healthy_inputs(features)
    inputs["live_features"] = features.loc["2008-10-01":"2008-10-14"]  # 10 crisis sessions
    inputs["fills"] = _fills(5, buy_bps=50.0, sell_bps=50.0)
    inputs["reference"] = _opens(5)
    days = _sessions(10)
    inputs["live_targets"] = pd.Series(1.0, index=days)
    inputs["replay_targets"] = pd.Series(0.0, index=days)  # every session disagrees
    report = assess_health(**inputs)
    assert report.healthy
    assert report.insufficient == (
        "feature drift: 10 live sessions < 20 required",
        "costs: 5 fills < 10 required",
        "decision agreement: 10 common sessions < 20 required",
    )
    assert report.to_markdown().count("**Insufficient evidence**") == 3


def test_checks_without_inputs_are_not_assessed(features):
    train = features.loc["2004":"2007"]
    report = assess_health(train_features=train, live_features=train.iloc[::4])
    assert report.costs is None
    assert report.agreement is None
    assert report.healthy
    md = report.to_markdown()
    assert "Not assessed (no fills given)" in md
    assert "Not assessed (no live and replay targets given)" in md
    with pytest.raises(InputError, match="reference prices"):
        assess_health(train_features=train, live_features=train, fills=_fills(2, buy_bps=1, sell_bps=1))
    with pytest.raises(InputError, match="both"):
        assess_health(train_features=train, live_features=train, live_targets=pd.Series({"2024-01-02": 1.0}))


def test_report_to_dict_is_strict_json(features):
    inputs = _healthy_inputs(features)
    inputs["fills"] = pd.DataFrame(columns=["session", "side", "qty", "price", "commission"])
    report = assess_health(**inputs)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["healthy"] is True
    assert data["insufficient"] == ["costs: 0 fills < 10 required"]
    assert data["costs"]["cost_ratio"] is None
    assert data["thresholds"]["psi"] == 0.25
    assert [row["feature"] for row in data["drift"]] == list(report.drift.index)


@pytest.mark.parametrize(
    "bad",
    [{"psi": 0.0}, {"max_drifted_share": 1.0}, {"min_agreement": 1.5}, {"min_fills": 0}, {"ks_alpha": 0.0}],
)
def test_thresholds_out_of_range_are_a_config_error(bad):
    with pytest.raises(ConfigError):
        HealthThresholds(**bad)
