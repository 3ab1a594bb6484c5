"""Properties of the trading env on real SPY: for any action sequence, cost model and cut point the
env equals the backtester, observations up to the cut ignore everything after it, and the
vectorised trade kernel equals the scalar one for any book."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_env import spy_market_and_features
from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import TradingEnv
from tradeflow.rl.vec_env import rebalance_many
from tradeflow.sim import CostModel, MarketArrays, rebalance, simulate_targets

FAST = settings(max_examples=40, deadline=None)


@lru_cache(maxsize=1)
def spy() -> tuple[MarketArrays, np.ndarray]:
    market, features = spy_market_and_features(start="2014-01-01")
    return market.slice(0, 800), features[:800]


costs = st.builds(
    CostModel,
    commission_per_share=st.sampled_from([0.0, 0.005, 0.05]),
    commission_min=st.sampled_from([0.0, 1.0, 50.0]),
    half_spread_bps=st.floats(0, 20),
    slippage_bps=st.floats(0, 20),
    impact_bps=st.sampled_from([0.0, 10.0]),
)


def rollout(env: TradingEnv, start: int, actions: list[int]) -> list[np.ndarray]:
    obs, _ = env.reset(options={"start": start})
    seen = [obs]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        seen.append(obs)
        if terminated or truncated:
            break
    return seen


@FAST
@given(
    actions=st.lists(st.integers(0, 2), min_size=1, max_size=300),
    start=st.integers(10, 400),
    cost=costs,
    allow_short=st.booleans(),
    capital=st.sampled_from([1_000.0, 100_000.0, 1e7]),
)
def test_env_equity_equals_the_backtester_for_any_actions(actions, start, cost, allow_short, capital):
    market, features = spy()
    config = EnvConfig(window=3, episode_length=10_000, allow_short=allow_short, initial_capital=capital)
    env = TradingEnv(market, features, config, cost)
    rollout(env, start, actions)
    targets = np.zeros(len(market))
    targets[start : start + len(env.targets)] = env.targets
    sim = simulate_targets(market, targets, cost, capital=capital)
    np.testing.assert_allclose(env.equity_curve, sim.equity[start : start + len(env.equity_curve)], rtol=1e-9)
    assert env.fills == sim.fills[: len(env.fills)]


@FAST
@given(
    cut=st.integers(20, 780),
    window=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    allow_short=st.booleans(),
)
def test_observations_up_to_t_ignore_every_row_after_t(cut, window, seed, allow_short):
    market, features = spy()
    rng = np.random.default_rng(seed)
    start = int(rng.integers(window - 1, cut))
    actions = rng.integers(0, 3, size=cut - start).tolist()
    after = slice(cut + 1, None)
    noisy = features.copy()
    noisy[after] = rng.normal(0, 10, size=noisy[after].shape).astype(np.float32)
    prices = [getattr(market, name).copy() for name in ("open", "high", "low", "close", "volume")]
    for p in prices:
        p[after] *= rng.uniform(0.2, 5.0, size=len(p[after]))
    perturbed = MarketArrays(market.sessions, *prices)
    config = EnvConfig(window=window, episode_length=10_000, allow_short=allow_short)
    seen = rollout(TradingEnv(market, features, config, CostModel()), start, actions)
    seen_perturbed = rollout(TradingEnv(perturbed, noisy, config, CostModel()), start, actions)
    assert len(seen) == len(seen_perturbed) == cut - start + 1
    for a, b in zip(seen, seen_perturbed, strict=True):
        np.testing.assert_array_equal(a, b)


money = st.floats(-1e6, 1e7, allow_nan=False)
books = st.tuples(
    money,
    st.floats(-1e4, 1e5, allow_nan=False),
    st.sampled_from([-1.0, -0.3, 0.0, 0.5, 1.0, 2.0]),
    st.floats(0.01, 5_000),
    st.one_of(st.just(0.0), st.just(float("nan")), st.floats(1.0, 1e9)),
)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(books, min_size=1, max_size=50), cost=costs)
def test_vectorised_rebalance_equals_the_scalar_kernel_for_any_books(batch, cost):
    cash, shares, weight, price, volume = (np.array(col, dtype=float) for col in zip(*batch, strict=True))
    got = rebalance_many(cash, shares, weight, price, volume, cost)
    for i, book in enumerate(batch):
        c, s, fill = rebalance(*book, cost)
        assert (got.cash[i], got.position[i], bool(got.filled[i])) == (c, s, fill is not None)
        if fill is not None:
            assert (got.shares[i], got.price[i], got.commission[i], got.fees[i]) == (
                fill.shares,
                fill.price,
                fill.commission,
                fill.fees,
            )
