"""The ensemble strategy (issue 11, item 5): a weighted vote of its members' targets, members entering
only when the promotion gate passes them against buy-and-hold on earlier folds, weights shrunk toward
equal, buy-and-hold when none passes; the same object decides, and trades a universe in sleeves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.backtest import METRIC_KEYS
from tradeflow.backtest.engine import evaluate_targets
from tradeflow.domain import Book, Universe
from tradeflow.errors import InputError
from tradeflow.features import DEFAULT_SPEC, Features, build_features, build_panel
from tradeflow.registry.promotion import FoldResult, PromotionPolicy, evaluate_promotion
from tradeflow.sim import CostModel
from tradeflow.strategies import Ensemble, EnsembleConfig, Sleeves, make_strategy

# A loose alpha and a short bootstrap so the 2005-2010 sample has folds with members (see the property test).
CONFIG = EnsembleConfig(window=42, lookback=3, embargo=2, policy=PromotionPolicy(n_bootstrap=200, alpha=0.3))


def _window(features: Features, first: str, last: str) -> Features:
    s = features.sessions
    lo, hi = np.searchsorted(s, np.datetime64(first)), np.searchsorted(s, np.datetime64(last), side="right")
    return features.slice(int(lo), int(hi))


@pytest.fixture(scope="module")
def features(real_data) -> Features:
    spy = build_features(read_bar_file(real_data / "SPY.csv", "SPY"), read_bar_file(real_data / "VIX.csv", "^VIX"))
    return _window(spy, "2005-01-03", "2010-12-31")


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble.of_rules(config=CONFIG)


@pytest.fixture(scope="module")
def folds(ensemble, features):
    return ensemble.folds(features)


def test_target_is_the_weighted_vote_of_member_targets_and_buy_and_hold_where_no_member_entered(
    ensemble, features, folds
):
    votes = np.column_stack([make_strategy(n).targets(features) for n in ("sma", "rsi", "macd", "mean_reversion")])
    targets = ensemble.targets(features)
    assert targets.shape == (len(features),)
    covered = np.zeros(len(features), dtype=bool)
    for fold in folds:
        rows = slice(fold.start_row, fold.stop_row)
        covered[rows] = True
        if fold.holds_buy_and_hold:
            assert (targets[rows] == 1.0).all()
        else:
            w = np.array([fold.weights[n] for n in ("sma", "rsi", "macd", "mean_reversion")])
            np.testing.assert_allclose(targets[rows], votes[rows] @ w)
    assert covered.all()
    assert any(not f.holds_buy_and_hold for f in folds)


def test_a_member_enters_exactly_when_the_promotion_gate_passes_it_against_buy_and_hold_on_earlier_folds(
    features, folds
):
    """Recomputed independently: each evidence fold's curve from a flat book, by the backtester, on
    features cut at that fold's end; the gate's own test decides."""
    market = features.market()
    w = CONFIG.window

    def curve(name: str, i: int) -> FoldResult:
        cut = features.slice(0, (i + 1) * w)
        r = evaluate_targets(
            make_strategy(name).targets(cut), market.slice(0, (i + 1) * w), CostModel(), 100_000.0,
            market.sessions[i * w], market.sessions[(i + 1) * w - 1],
        )  # fmt: skip
        return FoldResult(i, r.returns.to_numpy(), r.metrics)

    checked = 0
    for fold in folds[::4]:
        if len(fold.evidence_folds) < CONFIG.policy.min_folds:
            assert fold.holds_buy_and_hold
            continue
        assert fold.evidence_folds[-1] * w + w <= fold.start_row - CONFIG.embargo  # strictly before the fold
        baseline = [curve("buy_and_hold", i) for i in fold.evidence_folds]
        for name in ("sma", "rsi", "macd", "mean_reversion"):
            challenger = [curve(name, i) for i in fold.evidence_folds]
            decision = evaluate_promotion(challenger, None, baseline, CONFIG.policy)
            assert (fold.weights[name] > 0) == decision.promote, (fold.index, name)
            checked += decision.promote
    assert checked > 0


def test_weights_shrink_edge_proportional_weights_toward_equal_by_the_documented_formula(features, folds):
    multi = next(f for f in folds if sum(v > 0 for v in f.weights.values()) >= 2)
    entered = {k: multi.edges[k] for k, v in multi.weights.items() if v > 0}
    total, m = sum(entered.values()), len(entered)
    for k, edge in entered.items():
        assert multi.weights[k] == pytest.approx(0.5 * edge / total + 0.5 / m)
    assert sum(multi.weights.values()) == pytest.approx(1.0)
    equal = Ensemble.of_rules(config=CONFIG.model_copy(update={"shrink": 1.0})).folds(features)[multi.index]
    assert {k for k, v in equal.weights.items() if v > 0} == set(entered)
    assert all(equal.weights[k] == pytest.approx(1.0 / m) for k in entered)


def test_with_no_member_passing_the_ensemble_holds_buy_and_hold(features):
    strict = CONFIG.model_copy(update={"policy": PromotionPolicy(n_bootstrap=200, alpha=0.3, min_sharpe_margin=50.0)})
    ensemble = Ensemble.of_rules(config=strict)
    assert all(f.holds_buy_and_hold for f in ensemble.folds(features))
    assert (ensemble.targets(features) == 1.0).all()
    decision = ensemble.decide(features, Book.flat())
    assert decision.weight("SPY") == 1.0
    assert decision.params["buy_and_hold"] == 1.0


@pytest.mark.parametrize("last", ["2008-11-28", "2009-03-31", "2010-12-31"])
def test_decide_is_the_last_target_and_carries_the_folds_member_weights(ensemble, features, last):
    cut = _window(features, "2005-01-03", last)
    decision = ensemble.decide(cut, Book.flat())
    assert decision.weight("SPY") == pytest.approx(ensemble.targets(cut)[-1])
    fold = ensemble.folds(cut)[(len(cut) - 1) // CONFIG.window]
    assert decision.params == fold.params()
    assert set(decision.params) == {"weight_sma", "weight_rsi", "weight_macd", "weight_mean_reversion", "buy_and_hold"}


def test_sleeves_of_an_ensemble_run_one_ensemble_per_symbol(real_data, ensemble):
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real_data / f"{s}.csv", s) for s in ("AAPL", "MSFT")}
    panel = build_panel(bars, vix, Universe.of("AAPL", "MSFT"), DEFAULT_SPEC)
    panel = panel.slice(len(panel) - 1200, len(panel))
    sleeves = Sleeves(ensemble, ("AAPL", "MSFT"))
    weights = sleeves.targets(panel)
    for j, s in enumerate(("AAPL", "MSFT")):
        np.testing.assert_allclose(weights[:, j], ensemble.targets(panel.by_symbol[s]) / 2)
    decision = sleeves.decide(panel, Book.flat())
    assert [decision.weight(s) for s in ("AAPL", "MSFT")] == pytest.approx(list(weights[-1]))
    # Each sleeve's own member weights travel in the decision (prefixed by symbol when they differ).
    per_symbol = {s: dict(ensemble.decide(panel.by_symbol[s], Book.flat()).params) for s in ("AAPL", "MSFT")}
    if per_symbol["AAPL"] == per_symbol["MSFT"]:
        assert dict(decision.params) == per_symbol["AAPL"]
    else:
        assert dict(decision.params) == {f"{s}.{k}": v for s, p in per_symbol.items() for k, v in p.items()}
    assert dict(decision.params)  # never empty: an ensemble always names its weights


def test_sleeves_of_a_rule_carry_the_rules_parameters(real_data):
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real_data / f"{s}.csv", s) for s in ("AAPL", "MSFT")}
    panel = build_panel(bars, vix, Universe.of("AAPL", "MSFT"), DEFAULT_SPEC)
    decision = Sleeves(make_strategy("sma"), ("AAPL", "MSFT")).decide(panel, Book.flat())
    assert dict(decision.params) == dict(make_strategy("sma").decide(panel.by_symbol["AAPL"], Book.flat()).params)


def test_bad_ensembles_are_refused_with_one_line():
    with pytest.raises(InputError, match="distinct names"):
        Ensemble([make_strategy("sma"), make_strategy("sma")])
    with pytest.raises(InputError, match="at least one member"):
        Ensemble([])
    with pytest.raises(InputError, match="unknown strategy 'nope'"):
        Ensemble.of_rules(["sma", "nope"])
    with pytest.raises(ValueError, match="no member could ever enter"):
        EnsembleConfig(lookback=2)


@pytest.mark.parametrize("symbols", ["AAPL,MSFT", "SPY"])
def test_cli_backtests_the_ensemble_like_any_strategy(capsys, real_data, data_dir, symbols):
    from tradeflow.cli import main

    code = main(
        ["backtest", "--strategy", "ensemble", "--symbols", symbols, "--source", "csv", "--path", str(real_data),
         "--start", "2015-01-02", "--end", "2019-12-31", "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    payload = json.loads(out.out)
    assert set(payload) >= set(METRIC_KEYS)
    if "," in symbols:
        assert set(payload["per_symbol"]) == {"AAPL", "MSFT"}
