"""Promotion gate: out-of-sample evidence, a paired bootstrap test and a drawdown limit decide."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tradeflow.errors import InputError
from tradeflow.registry.promotion import (
    FoldResult,
    PromotionDecision,
    PromotionPolicy,
    annualised_sharpe,
    evaluate_promotion,
    stationary_bootstrap_indices,
)

N_FOLDS = 4
DAYS = 252


def _results(per_fold: list[np.ndarray]) -> list[FoldResult]:
    out = []
    for i, r in enumerate(per_fold):
        equity = np.cumprod(1 + r)
        dd = float(np.min(equity / np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:] - 1))
        sharpe = float(r.mean() / r.std(ddof=1) * math.sqrt(252))
        out.append(FoldResult(i, r, {"sharpe": sharpe, "total_return": float(equity[-1] - 1), "max_drawdown": dd}))
    return out


@pytest.fixture(scope="module")
def market() -> list[np.ndarray]:
    # A SPY-like year per fold: Sharpe ~0.56 and a -14% worst drawdown over the four folds.
    rng = np.random.default_rng(6)
    return [rng.normal(0.0004, 0.009, DAYS) for _ in range(N_FOLDS)]


def test_buy_and_hold_plus_a_constant_daily_alpha_is_promoted(market):
    challenger = _results([r + 0.0004 for r in market])
    decision = evaluate_promotion(challenger, None, _results(market), PromotionPolicy(min_sharpe_margin=0.1))
    assert decision.promote, decision.reasons
    assert decision.evidence["vs_buy_and_hold"]["p_value"] < 0.05
    assert decision.evidence["vs_buy_and_hold"]["sharpe_diff"] > 0.1
    assert decision.reasons[0].startswith("PROMOTE")


def test_a_challenger_identical_to_buy_and_hold_is_rejected_with_a_high_p_value(market):
    decision = evaluate_promotion(_results(market), None, _results(market))
    assert not decision.promote
    assert decision.evidence["vs_buy_and_hold"]["p_value"] == 1.0
    assert any(r.startswith("FAIL: challenger Sharpe") and "p=1.000" in r for r in decision.reasons)


def test_noise_without_edge_is_rejected_though_its_sample_sharpe_may_be_higher(market):
    rng = np.random.default_rng(3)
    noisy = [r + rng.normal(0.0, 0.004, DAYS) for r in market]
    decision = evaluate_promotion(_results(noisy), None, _results(market))
    assert not decision.promote
    assert decision.evidence["vs_buy_and_hold"]["p_value"] > 0.05


def test_a_great_sharpe_with_a_35_percent_drawdown_is_rejected_for_drawdown(market):
    crashed = [r.copy() for r in market]
    crashed[2][100:110] = -0.045  # ten days of -4.5%: about -37% for buy-and-hold
    challenger = [r + 0.002 for r in crashed]
    decision = evaluate_promotion(_results(challenger), None, _results(crashed))
    assert not decision.promote
    failed = [r for r in decision.reasons if r.startswith("FAIL")]
    assert len(failed) == 1, decision.reasons
    assert "drawdown" in failed[0]
    assert decision.evidence["challenger"]["max_drawdown_stitched"] < -0.30


def test_the_challenger_must_also_beat_the_champion(market):
    champion = _results([r + 0.0006 for r in market])
    challenger = _results([r + 0.0004 for r in market])
    decision = evaluate_promotion(challenger, champion, _results(market))
    assert not decision.promote
    assert decision.evidence["vs_buy_and_hold"]["passed"] is True
    assert decision.evidence["vs_champion"]["passed"] is False
    assert any("vs champion" in r and r.startswith("FAIL") for r in decision.reasons)


def test_without_a_champion_the_decision_says_so_and_compares_with_buy_and_hold_only(market):
    decision = evaluate_promotion(_results([r + 0.0004 for r in market]), None, _results(market))
    assert decision.evidence["vs_champion"] is None
    assert "no champion yet: compared with buy-and-hold only" in decision.reasons


def test_too_few_folds_is_rejected(market):
    challenger = _results([r + 0.001 for r in market[:2]])
    decision = evaluate_promotion(challenger, None, _results(market[:2]), PromotionPolicy(min_folds=3))
    assert not decision.promote
    assert "FAIL: 2 folds, at least 3 required" in decision.reasons


def test_decision_is_deterministic_under_the_seed_and_changes_with_it(market):
    rng = np.random.default_rng(5)
    challenger = _results([r + rng.normal(0.0002, 0.004, DAYS) for r in market])
    bh = _results(market)
    a = evaluate_promotion(challenger, None, bh, PromotionPolicy(seed=11))
    b = evaluate_promotion(challenger, None, bh, PromotionPolicy(seed=11))
    c = evaluate_promotion(challenger, None, bh, PromotionPolicy(seed=12))
    assert a == b
    assert a.evidence["vs_buy_and_hold"]["p_value"] != c.evidence["vs_buy_and_hold"]["p_value"]


def test_decision_round_trips_through_json(market):
    decision = evaluate_promotion(_results([r + 0.0004 for r in market]), _results(market), _results(market))
    back = PromotionDecision.from_dict(json.loads(json.dumps(decision.to_dict(), allow_nan=False)))
    assert back == decision


def test_results_on_different_folds_or_lengths_are_refused(market):
    challenger = _results(market)
    with pytest.raises(InputError, match="SAME folds"):
        evaluate_promotion(challenger, None, _results(market[:3]))
    shorter = _results([r[:-1] for r in market])
    with pytest.raises(InputError, match="not paired"):
        evaluate_promotion(challenger, None, shorter)


def test_fold_result_rejects_non_finite_returns_and_missing_metrics():
    with pytest.raises(InputError, match="NaN"):
        FoldResult(0, np.array([0.01, np.nan, 0.0]), {"sharpe": 1, "total_return": 0, "max_drawdown": 0})
    with pytest.raises(InputError, match="lack"):
        FoldResult(0, np.zeros(5), {"sharpe": 1.0})


def test_stationary_bootstrap_indices_continue_blocks_circularly():
    rng = np.random.default_rng(0)
    idx = stationary_bootstrap_indices(50, 200, 5.0, rng)
    assert idx.shape == (200, 50)
    assert idx.min() >= 0
    assert idx.max() < 50
    steps = (np.diff(idx, axis=1) % 50) == 1
    # a block continues with probability 1 - 1/5, so about 80% of steps are +1 (mod n)
    assert 0.75 < steps.mean() < 0.85


def test_bootstrap_sharpe_matches_hand_computed_values_and_scores_flat_series_zero():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    assert annualised_sharpe(r) == pytest.approx(0.005 / np.std(r, ddof=1) * math.sqrt(252))
    assert annualised_sharpe(np.zeros(4)) == 0.0
    assert annualised_sharpe(np.full(4, 0.001)) == np.inf
    stacked = annualised_sharpe(np.vstack([r, -r]))
    assert stacked[0] == pytest.approx(-stacked[1])


def test_psr_of_the_challenger_is_reported_against_zero_and_buy_and_hold(market):
    decision = evaluate_promotion(_results([r + 0.0004 for r in market]), None, _results(market))
    challenger = decision.evidence["challenger"]
    assert 0.95 < challenger["psr_vs_zero"] <= 1.0
    assert 0.5 < challenger["psr_vs_buy_and_hold"] < challenger["psr_vs_zero"]
