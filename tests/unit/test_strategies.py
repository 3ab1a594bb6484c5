"""Rule strategies: hand-made feature rows give the documented positions, the vectorised latch equals
the sequential state machine, every rule is causal, and the registry validates names and parameters."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.errors import InputError
from tradeflow.strategies import Strategy, latch, make_strategy, strategy_names

COLUMNS = ("rsi_30", "macd", "macd_signal", "boll_upper", "boll_lower", "sma_30_gap", "sma_60_gap")


def frame_of(**columns: list[float]) -> SimpleNamespace:
    """A Features-like object: rules read `features.frame` only."""
    n = len(next(iter(columns.values())))
    data = {"session": pd.bdate_range("2020-01-01", periods=n)} | {k: np.asarray(v, float) for k, v in columns.items()}
    return SimpleNamespace(frame=pd.DataFrame(data))


def random_features(n: int, seed: int) -> SimpleNamespace:
    """Columns with realistic ranges and persistence, so the latches enter and exit many times."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1, size=(n, 4)), axis=0) * 0.1
    mid = 0.05 * np.sin(walk[:, 0])
    return SimpleNamespace(
        frame=pd.DataFrame(
            {
                "session": pd.bdate_range("2000-01-03", periods=n),
                "rsi_30": 55 + 12 * np.sin(walk[:, 1]),
                "macd": 0.01 * np.sin(walk[:, 2]),
                "macd_signal": 0.01 * np.sin(walk[:, 2] + 0.3),
                "boll_upper": mid + 0.03,
                "boll_lower": mid - 0.03,
                "sma_30_gap": 0.02 * np.sin(walk[:, 3]),
                "sma_60_gap": 0.02 * np.cos(walk[:, 3]),
            }
        )
    )


ALL_RULES = [(name, {}) for name in strategy_names()] + [
    (name, {"allow_short": True}) for name in ("sma", "rsi", "macd", "mean_reversion")
]


def sequential(enter_long, exit_long, enter_short=None, exit_short=None) -> np.ndarray:
    """The state machine written the obvious way, one row at a time."""
    pos, out = 0.0, []
    for t in range(len(enter_long)):
        if enter_long[t]:
            pos = 1.0
        elif enter_short is not None and enter_short[t]:
            pos = -1.0
        elif (pos == 1.0 and exit_long[t]) or (pos == -1.0 and exit_short is not None and exit_short[t]):
            pos = 0.0
        out.append(pos)
    return np.array(out)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=60), st.booleans())
def test_vectorised_latch_equals_the_sequential_state_machine(data, n, short):
    flags = st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
    el, xl = data.draw(flags), data.draw(flags)
    es, xs = (data.draw(flags), data.draw(flags)) if short else (None, None)
    np.testing.assert_array_equal(latch(el, xl, es, xs), sequential(el, xl, es, xs))


def test_buy_and_hold_is_always_fully_long():
    np.testing.assert_array_equal(make_strategy("buy_and_hold").targets(frame_of(rsi_30=[1, 2, 3])), [1.0, 1.0, 1.0])


def test_sma_is_long_exactly_when_sma30_is_above_sma60():
    # close / SMA - 1: a larger sma_60 gap means a lower SMA-60 than SMA-30
    f = frame_of(sma_30_gap=[0.01, 0.02, -0.03, 0.0], sma_60_gap=[0.02, 0.01, -0.01, 0.0])
    np.testing.assert_array_equal(make_strategy("sma").targets(f), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(make_strategy("sma", allow_short=True).targets(f), [1.0, -1.0, 1.0, -1.0])


def test_macd_is_long_exactly_when_macd_is_above_its_signal():
    f = frame_of(macd=[0.01, -0.01, 0.0, 0.002], macd_signal=[0.0, 0.0, 0.0, 0.003])
    np.testing.assert_array_equal(make_strategy("macd").targets(f), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(make_strategy("macd", allow_short=True).targets(f), [1.0, -1.0, -1.0, -1.0])


def test_rsi_enters_below_lower_and_holds_until_above_upper():
    f = frame_of(rsi_30=[50, 44, 50, 58, 61, 50, 44, 45])
    np.testing.assert_array_equal(make_strategy("rsi").targets(f), [0, 1, 1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(make_strategy("rsi", allow_short=True).targets(f), [0, 1, 1, 1, -1, -1, 1, 1])
    np.testing.assert_array_equal(make_strategy("rsi", lower=30, upper=70).targets(f), np.zeros(8))


def test_mean_reversion_enters_below_lower_band_and_exits_above_middle():
    # (boll_upper, boll_lower) = band / close - 1; middle above the close <=> upper + lower > 0
    upper = [0.04, 0.06, 0.03, 0.01, -0.01, 0.04, 0.05]
    lower = [-0.04, 0.01, -0.01, -0.03, -0.05, -0.02, 0.002]
    f = frame_of(boll_upper=upper, boll_lower=lower)
    # row 1: close below the lower band -> long; rows 2: still below the middle; row 3: above it -> exit
    np.testing.assert_array_equal(make_strategy("mean_reversion").targets(f), [0, 1, 1, 0, 0, 0, 1])
    # exit_at="upper" holds until row 4 (close above the upper band)
    np.testing.assert_array_equal(make_strategy("mean_reversion", exit_at="upper").targets(f), [0, 1, 1, 1, 0, 0, 1])
    # shorting: above the upper band (row 4) -> short, covered once back below the middle (row 5)
    shorted = make_strategy("mean_reversion", allow_short=True).targets(f)
    np.testing.assert_array_equal(shorted, [0, 1, 1, 0, -1, 0, 1])


@pytest.mark.parametrize(("name", "params"), ALL_RULES)
def test_rule_targets_unchanged_when_future_rows_change(name, params):
    strategy = make_strategy(name, **params)
    base = random_features(600, seed=7)
    full = strategy.targets(base)
    rng = np.random.default_rng(3)
    for cut in (1, 37, 250, 599):
        altered = base.frame.copy()
        for col in COLUMNS:
            altered.loc[cut:, col] = rng.permutation(altered[col].to_numpy()[cut:])
        np.testing.assert_array_equal(strategy.targets(SimpleNamespace(frame=altered))[:cut], full[:cut])
        truncated = SimpleNamespace(frame=base.frame.iloc[:cut].reset_index(drop=True))
        np.testing.assert_array_equal(strategy.targets(truncated), full[:cut])


@pytest.mark.parametrize(("name", "params"), ALL_RULES)
def test_rule_weights_are_long_flat_or_short_only_when_allowed(name, params):
    targets = make_strategy(name, **params).targets(random_features(2000, seed=11))
    assert targets.dtype == np.float64
    if name == "buy_and_hold":
        expected = {1.0}
    elif not params.get("allow_short"):
        expected = {0.0, 1.0}
    else:  # the crossovers are always in the market; the latches start flat and can exit to flat
        expected = {-1.0, 1.0} if name in ("sma", "macd") else {-1.0, 0.0, 1.0}
    # the random frame exercises every state a rule has, and nothing else
    assert set(np.unique(targets)) == expected


def test_registry_builds_every_rule_under_its_own_name():
    assert strategy_names() == ("buy_and_hold", "sma", "rsi", "macd", "mean_reversion")
    for name in strategy_names():
        strategy = make_strategy(name)
        assert isinstance(strategy, Strategy)
        assert strategy.name == name


def test_registry_rejects_unknown_names_and_bad_parameters():
    with pytest.raises(InputError, match="unknown strategy 'champion'"):
        make_strategy("champion")
    with pytest.raises(InputError, match="lower"):
        make_strategy("rsi", lower=60, upper=45)
    with pytest.raises(InputError, match="window"):
        make_strategy("sma", window=10)
    with pytest.raises(InputError, match="exit_at"):
        make_strategy("mean_reversion", exit_at="never")


def test_strategies_are_immutable():
    strategy = make_strategy("rsi")
    with pytest.raises(Exception, match="frozen"):
        strategy.lower = 10  # type: ignore[misc]


def test_missing_feature_column_is_a_clear_input_error():
    with pytest.raises(InputError, match="rsi_30"):
        make_strategy("rsi").targets(frame_of(macd=[0.0]))


# --- one decision protocol (issue 10) -------------------------------------------------------------


@pytest.fixture(scope="module")
def spy_features(real_data):
    from tradeflow.adapters.files.data import read_bar_file
    from tradeflow.features import DEFAULT_SPEC, build_features

    spy = read_bar_file(real_data / "SPY.csv", "SPY")
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    return build_features(spy, vix, DEFAULT_SPEC)


@pytest.mark.parametrize("name", strategy_names())
def test_every_rule_decides_its_vectorised_last_target_with_its_params_and_spec(spy_features, name):
    from decimal import Decimal

    from tradeflow.domain import Book, Position

    rule = make_strategy(name)
    assert isinstance(rule, Strategy)
    for cut in (300, 2_000, len(spy_features)):
        features = spy_features.slice(0, cut)
        held = Book({"SPY": Position("SPY", Decimal(10), Decimal(400))}, Decimal(100_000))
        decision = rule.decide(features, held)
        assert decision.weights == {"SPY": rule.targets(features)[-1]}
        assert decision.session == pd.Timestamp(features.sessions[-1]).date()
        assert decision.strategy == name
        assert decision.spec_digest == features.spec.digest
        assert dict(decision.params) == {
            k: float(v) for k, v in rule.model_dump().items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        assert decision == rule.decide(features, Book.flat())  # a rule's decision never reads the book


def test_the_policys_live_decision_from_a_flat_book_equals_its_backtest_target(spy_features):
    """Where the backtest rollout is flat before the last row, the live decision from a flat book sees
    the very observation the rollout saw: the two paths must agree (one decision path)."""
    from decimal import Decimal

    from tradeflow.domain import Book
    from tradeflow.rl.artifact import load_artifact, save_artifact
    from tradeflow.rl.config import EnvConfig, PPOConfig
    from tradeflow.rl.policy import RLPolicyStrategy
    from tradeflow.rl.train import train_ppo
    from tradeflow.sim import CostModel

    config = PPOConfig(env=EnvConfig(window=4, episode_length=64), total_timesteps=512, n_envs=4, n_steps=64,
                       batch_size=128, n_epochs=2, net_arch=(16, 16))  # fmt: skip
    spec = spy_features.spec
    trained = train_ppo(spy_features.market(), spy_features.matrix(), (0, 300), config, CostModel(), seed=7)
    path = save_artifact(
        Path(tempfile.mkdtemp()) / "m", trained, data_hash="t", feature_names=spec.names, feature_version=spec.version,
        feature_hash=spec.digest, feature_params=spec.to_dict(),
    )  # fmt: skip
    policy = RLPolicyStrategy(load_artifact(path))
    checked = 0
    for cut in range(310, 500):
        features = spy_features.slice(0, cut)
        rollout = policy.targets(features)
        if rollout[-2] != 0.0:
            continue  # the rollout holds a position: its P&L input depends on the simulated fills
        assert policy.decide(features, Book.flat(Decimal(100_000))).weight("SPY") == rollout[-1]
        checked += 1
        if checked == 5:
            break
    assert checked == 5
