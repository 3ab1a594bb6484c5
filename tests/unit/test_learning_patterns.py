"""Pattern detection: planted effects are found, noise is not, small groups are never tested, BH is right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tradeflow.errors import InputError
from tradeflow.learning.patterns import (
    PATTERN_COLUMNS,
    benjamini_hochberg,
    detect_patterns,
    holding_bucket,
)


def trades_frame(groups: dict[str, np.ndarray], *, holding_days: int = 3) -> pd.DataFrame:
    """Trades labelled by strategy; every other dimension has a single value (so is not tested)."""
    parts = [pd.DataFrame({"strategy": name, "return_net": r}) for name, r in groups.items()]
    df = pd.concat(parts, ignore_index=True)
    df["win"] = df["return_net"] > 0
    for col, value in {"arm": "", "direction": "long", "vix_regime": "normal", "trend": "up", "weekday": "Mon"}.items():
        df[col] = value
    df["holding_days"] = holding_days
    return df


def test_planted_large_effect_is_significant() -> None:
    rng = np.random.default_rng(7)
    df = trades_frame({"good": rng.normal(0.02, 0.02, 60), "plain": rng.normal(0.0, 0.02, 200)})
    out = detect_patterns(df)
    assert list(out.columns) == list(PATTERN_COLUMNS)
    good = out[out["value"] == "good"].iloc[0]
    assert good["dimension"] == "strategy"
    assert (good["n"], good["n_rest"]) == (60, 200)
    assert bool(good["significant"])
    assert good["q_mean"] < 1e-6
    assert good["effect"] == pytest.approx(good["mean_return"] - good["rest_mean_return"])
    assert good["effect"] > 0.01
    assert good["confidence"] == pytest.approx(1 - min(good["q_mean"], good["q_win"]))


def test_identical_distributions_are_not_significant() -> None:
    rng = np.random.default_rng(11)
    df = trades_frame({name: rng.normal(0.001, 0.02, 80) for name in ("a", "b", "c", "d")})
    out = detect_patterns(df)
    assert len(out) == 4
    assert not out["significant"].any()


def test_groups_below_the_floor_are_not_in_the_output() -> None:
    rng = np.random.default_rng(3)
    # "tiny" has a huge effect but 29 trades: it must not be tested, not even reported as insignificant.
    df = trades_frame({"tiny": rng.normal(0.5, 0.01, 29), "big": rng.normal(0.0, 0.02, 100), "other": np.zeros(40)})
    out = detect_patterns(df)
    assert "tiny" not in set(out["value"])
    assert set(out["value"]) == {"big", "other"}
    assert set(out["n"]) == {100, 40}


def test_group_whose_rest_is_below_the_floor_is_not_tested() -> None:
    rng = np.random.default_rng(5)
    df = trades_frame({"most": rng.normal(0.0, 0.02, 200), "few": rng.normal(0.0, 0.02, 20)})
    assert detect_patterns(df).empty


def test_min_trades_lowers_the_floor() -> None:
    rng = np.random.default_rng(3)
    df = trades_frame({"a": rng.normal(0.0, 0.02, 12), "b": rng.normal(0.0, 0.02, 12)})
    assert detect_patterns(df).empty
    assert set(detect_patterns(df, min_trades=10)["value"]) == {"a", "b"}


def test_holding_bucket_dimension_is_derived_from_holding_days() -> None:
    rng = np.random.default_rng(1)
    df = trades_frame({"only": rng.normal(0.0, 0.02, 120)})
    df["holding_days"] = [0] * 40 + [4] * 40 + [30] * 40
    out = detect_patterns(df)
    assert set(out["dimension"]) == {"holding_bucket"}
    assert set(out["value"]) == {"0-1d", "2-5d", ">20d"}


@pytest.mark.parametrize(
    ("days", "bucket"), [(0, "0-1d"), (1, "0-1d"), (2, "2-5d"), (5, "2-5d"), (6, "6-20d"), (20, "6-20d"), (21, ">20d")]
)
def test_holding_bucket_edges(days: int, bucket: str) -> None:
    assert holding_bucket(days) == bucket


def test_bh_pools_both_families_once() -> None:
    rng = np.random.default_rng(9)
    df = trades_frame({"good": rng.normal(0.02, 0.02, 60), "plain": rng.normal(0.0, 0.02, 200)})
    df["weekday"] = np.where(np.arange(len(df)) % 2 == 0, "Mon", "Tue")
    out = detect_patterns(df)
    expected = benjamini_hochberg(np.r_[out["p_mean"].to_numpy(), out["p_win"].to_numpy()])
    np.testing.assert_allclose(np.r_[out["q_mean"].to_numpy(), out["q_win"].to_numpy()], expected)
    assert len(out) == 4  # m = 8 p-values


def test_rows_sorted_by_smallest_q() -> None:
    rng = np.random.default_rng(2)
    df = trades_frame({"good": rng.normal(0.03, 0.02, 60), "plain": rng.normal(0.0, 0.02, 200)})
    df["weekday"] = np.where(np.arange(len(df)) % 2 == 0, "Mon", "Tue")
    out = detect_patterns(df)
    best = out[["q_mean", "q_win"]].min(axis=1).to_numpy()
    assert (np.diff(best) >= 0).all()
    assert out.iloc[0]["dimension"] == "strategy"


def test_empty_trades_give_empty_pattern_frame() -> None:
    out = detect_patterns(trades_frame({"a": np.array([])}))
    assert out.empty
    assert list(out.columns) == list(PATTERN_COLUMNS)


def test_missing_column_is_an_input_error() -> None:
    df = trades_frame({"a": np.zeros(40)}).drop(columns="vix_regime")
    with pytest.raises(InputError, match="vix_regime"):
        detect_patterns(df)


def test_bh_matches_hand_computed_example() -> None:
    # m = 5; sorted p: .001 .008 .039 .041 .60 -> p*m/rank: .005 .02 .065 .05125 .60 -> running min from top.
    q = benjamini_hochberg([0.041, 0.001, 0.60, 0.008, 0.039])
    np.testing.assert_allclose(q, [0.05125, 0.005, 0.60, 0.02, 0.05125])


def test_bh_leaves_nan_out_of_m() -> None:
    q = benjamini_hochberg([0.01, np.nan, 0.04])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.02, 0.04])  # m = 2, not 3


def test_bh_clips_to_one() -> None:
    assert benjamini_hochberg([0.9, 0.95, 0.99]).max() <= 1.0


def test_bh_agrees_with_scipy() -> None:
    if not hasattr(stats, "false_discovery_control"):
        pytest.skip("scipy without false_discovery_control")
    p = np.random.default_rng(4).uniform(0, 0.2, 50) ** 2
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"))


def test_bh_q_is_at_least_p_and_monotone_in_p() -> None:
    p = np.random.default_rng(8).uniform(0, 1, 200) ** 3
    q = benjamini_hochberg(p)
    assert (q >= p).all()
    order = np.argsort(p)
    assert (np.diff(q[order]) >= 0).all()


def test_bh_rejects_p_values_outside_unit_interval() -> None:
    with pytest.raises(InputError):
        benjamini_hochberg([0.5, 1.2])
