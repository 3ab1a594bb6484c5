"""Properties of the portfolio env on real AAPL, MSFT and SPY: observations up to t ignore every
feature and price row after t (no lookahead), the env equals the portfolio kernel for any actions,
cost model and capital, and the vectorised env equals the single env lane by lane."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_portfolio_env import PAIR, TRIO, kernel_equity, real_inputs, rollout
from tradeflow.rl.config import PortfolioEnvConfig
from tradeflow.rl.portfolio_env import PortfolioEnv, PortfolioVecEnv
from tradeflow.sim import CostModel, PanelMarket

FAST = settings(max_examples=40, deadline=None)
ROWS = 500


@lru_cache(maxsize=2)
def recent(symbols: tuple[str, ...]) -> tuple[PanelMarket, np.ndarray]:
    """ROWS real sessions from 2014 on (all three symbols trade there)."""
    market, features = real_inputs(symbols)
    first = int(np.searchsorted(market.sessions, np.datetime64("2014-01-02")))
    return market.slice(first, first + ROWS), features[first : first + ROWS]


costs = st.builds(
    CostModel,
    commission_per_share=st.sampled_from([0.0, 0.005, 0.05]),
    commission_min=st.sampled_from([0.0, 1.0, 50.0]),
    half_spread_bps=st.floats(0, 20),
    slippage_bps=st.floats(0, 20),
    impact_bps=st.sampled_from([0.0, 10.0]),
)
modes = st.sampled_from(["nine", "grid"])


def inputs(mode: str) -> tuple[PanelMarket, np.ndarray]:
    return recent(PAIR if mode == "nine" else TRIO)


def random_actions(mode: str, k: int, n: int, rng: np.random.Generator, levels: int = 3) -> list[object]:
    if mode == "nine":
        return [int(a) for a in rng.integers(0, 9, n)]
    return list(rng.integers(0, levels, (n, k)))


@FAST
@given(
    mode=modes,
    cut=st.integers(80, ROWS - 2),
    window=st.integers(1, 12),
    corr_window=st.integers(2, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_observations_up_to_t_ignore_every_feature_and_price_row_after_t(mode, cut, window, corr_window, seed):
    market, features = inputs(mode)
    k = len(market.symbols)
    rng = np.random.default_rng(seed)
    config = PortfolioEnvConfig(action_mode=mode, window=window, corr_window=corr_window, episode_length=10_000)
    start = int(rng.integers(max(window - 1, corr_window), cut))
    actions = random_actions(mode, k, cut - start, rng)
    after = slice(cut + 1, None)
    noisy = features.copy()
    noisy[after] = rng.normal(0, 10, size=noisy[after].shape).astype(np.float32)
    prices = [market.open.copy(), market.close.copy(), market.volume.copy()]
    for p in prices:
        p[after] *= rng.uniform(0.2, 5.0, size=p[after].shape)
    perturbed = PanelMarket(market.symbols, market.sessions, *prices)
    seen = rollout(PortfolioEnv(market, features, config, CostModel()), start, actions)
    seen_perturbed = rollout(PortfolioEnv(perturbed, noisy, config, CostModel()), start, actions)
    assert len(seen) == len(seen_perturbed) == cut - start + 1
    for a, b in zip(seen, seen_perturbed, strict=True):
        np.testing.assert_array_equal(a, b)


@FAST
@given(
    mode=modes,
    start=st.integers(60, ROWS - 50),
    steps=st.integers(1, 300),
    levels=st.integers(2, 5),
    cost=costs,
    capital=st.sampled_from([1_000.0, 100_000.0, 1e7]),
    seed=st.integers(0, 2**32 - 1),
)
def test_env_equity_equals_the_portfolio_kernel_for_any_actions(mode, start, steps, levels, cost, capital, seed):
    market, features = inputs(mode)
    config = PortfolioEnvConfig(action_mode=mode, grid_levels=levels, episode_length=10_000, initial_capital=capital)
    env = PortfolioEnv(market, features, config, cost)
    rollout(env, start, random_actions(mode, len(market.symbols), steps, np.random.default_rng(seed), levels))
    equity, n_fills = kernel_equity(env, market, cost)
    assert np.abs(equity - env.equity_curve).max() == 0.0
    assert n_fills == len(env.fills)


@settings(max_examples=15, deadline=None)
@given(mode=modes, cost=costs, n_envs=st.integers(1, 5), seed=st.integers(0, 2**16), length=st.integers(1, 30))
def test_vec_env_lanes_equal_single_envs_for_any_actions(mode, cost, n_envs, seed, length):
    market, features = inputs(mode)
    k = len(market.symbols)
    config = PortfolioEnvConfig(action_mode=mode, episode_length=length, turnover_penalty=0.01, drawdown_penalty=0.1)
    vec = PortfolioVecEnv(market, features, config, cost, n_envs, seed)
    vec.seed(seed)
    vec_obs = vec.reset()
    singles = [PortfolioEnv(market, features, config, cost) for _ in range(n_envs)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(seed)
    for _ in range(60):
        np.testing.assert_array_equal(vec_obs, np.stack(obs))
        actions = np.asarray(random_actions(mode, k, n_envs, rng))
        vec_obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, terminated, truncated, _ = env.step(actions[i])
            assert rewards[i] == np.float32(r)
            assert dones[i] == (terminated or truncated)
            if dones[i]:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                o, _ = env.reset()
            obs[i] = o
