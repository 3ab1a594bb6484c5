"""The portfolio env (issue 11, item 1) on the real AAPL, MSFT and SPY files: both action forms pass
gymnasium's and SB3's check_env, equal the portfolio kernel's backtest for the same targets (max abs
difference 0), observe the documented causal portfolio features, and the vectorised env equals the
single env lane by lane, bit for bit."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from tests.conftest import REAL_DATA
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.domain import Universe
from tradeflow.errors import InputError
from tradeflow.features import DEFAULT_SPEC, PanelFeatures, build_panel
from tradeflow.rl.config import PortfolioEnvConfig
from tradeflow.rl.portfolio_env import PortfolioEnv, PortfolioVecEnv, panel_inputs
from tradeflow.sim import CostModel, PanelMarket, simulate_portfolio

PAIR = ("AAPL", "MSFT")
TRIO = ("AAPL", "MSFT", "SPY")
COSTS = [
    CostModel(),
    CostModel(commission_per_share=0.005, commission_min=1.0, half_spread_bps=5.0, slippage_bps=3.0, impact_bps=10.0),
]


@lru_cache(maxsize=4)
def real_panel(symbols: tuple[str, ...]) -> PanelFeatures:
    vix = read_bar_file(REAL_DATA / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(REAL_DATA / f"{s}.csv", s) for s in symbols}
    return build_panel(bars, vix, Universe.of(*symbols), DEFAULT_SPEC)


@lru_cache(maxsize=4)
def real_inputs(symbols: tuple[str, ...]) -> tuple[PanelMarket, np.ndarray]:
    return panel_inputs(real_panel(symbols))


def rollout(env: PortfolioEnv, start: int, actions: np.ndarray) -> list[np.ndarray]:
    obs, _ = env.reset(options={"start": start})
    seen = [obs]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        seen.append(obs)
        if terminated or truncated:
            break
    return seen


def kernel_equity(env: PortfolioEnv, market: PanelMarket, cost: CostModel) -> tuple[np.ndarray, int]:
    """simulate_portfolio over the episode's sessions for the targets the env's actions chose."""
    start, steps = env.start, len(env.targets)
    weights = np.vstack([env.targets, np.zeros((1, market.close.shape[1]))])  # the last close decides nothing
    result = simulate_portfolio(market.slice(start, start + steps + 1), weights, cost, env.config.initial_capital)
    return result.equity, len(result.fills)


def nine_env(cost: CostModel = COSTS[0], **overrides: object) -> PortfolioEnv:
    market, features = real_inputs(PAIR)
    config = PortfolioEnvConfig(action_mode="nine", episode_length=10_000, **overrides)  # type: ignore[arg-type]
    return PortfolioEnv(market, features, config, cost)


def grid_env(cost: CostModel = COSTS[0], **overrides: object) -> PortfolioEnv:
    market, features = real_inputs(TRIO)
    config = PortfolioEnvConfig(action_mode="grid", episode_length=10_000, **overrides)  # type: ignore[arg-type]
    return PortfolioEnv(market, features, config, cost)


@pytest.mark.parametrize("make", [nine_env, grid_env], ids=["nine", "grid"])
def test_both_action_forms_pass_gymnasium_and_sb3_check_env(make):
    env = make()
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


def test_nine_action_space_is_discrete_nine_and_the_grid_is_one_axis_per_asset():
    assert nine_env().action_space.n == 9
    assert list(grid_env(grid_levels=5).action_space.nvec) == [5, 5, 5]


@pytest.mark.parametrize("cost", COSTS, ids=["default", "costly"])
@pytest.mark.parametrize("make", [nine_env, grid_env], ids=["nine", "grid"])
def test_env_equity_equals_the_portfolio_kernel_for_the_same_actions_on_real_data(make, cost):
    env = make(cost)
    market = env.arrays
    rng = np.random.default_rng(7)
    env.action_space.seed(7)
    actions = [env.action_space.sample() for _ in range(1500)]
    rollout(env, int(rng.integers(market.start_low, market.start_high - 2000)), actions)
    symbols = PAIR if env.config.action_mode == "nine" else TRIO
    equity, n_fills = kernel_equity(env, real_inputs(symbols)[0], cost)
    assert len(env.equity_curve) == 1501
    assert np.abs(equity - env.equity_curve).max() == 0.0
    assert n_fills == len(env.fills) > 100


def test_nine_actions_move_each_asset_one_level_of_its_half_sleeve():
    env = nine_env()
    env.reset(options={"start": 100})
    sell, hold, buy = 0, 1, 2
    path = [(buy, hold), (buy, buy), (buy, buy), (hold, sell), (sell, sell), (sell, sell), (sell, buy)]
    seen = []
    for a0, a1 in path:
        env.step(3 * a0 + a1)
        seen.append(tuple(env.targets[-1]))
    assert seen == [(0.25, 0.0), (0.5, 0.25), (0.5, 0.5), (0.5, 0.25), (0.25, 0.0), (0.0, 0.0), (0.0, 0.25)]


def test_grid_targets_are_normalised_so_the_book_never_levers():
    env = grid_env(grid_levels=3)
    env.reset(options={"start": 100})
    for action, expected in [
        ([2, 0, 0], [1.0, 0.0, 0.0]),
        ([1, 1, 0], [0.5, 0.5, 0.0]),
        ([2, 2, 0], [0.5, 0.5, 0.0]),
        ([2, 1, 1], [0.5, 0.25, 0.25]),
        ([0, 0, 0], [0.0, 0.0, 0.0]),
    ]:
        env.step(np.array(action))
        np.testing.assert_allclose(env.targets[-1], expected)
        assert env.targets[-1].sum() <= 1.0


def test_observation_holds_the_windows_correlation_betas_book_herfindahl_and_gross():
    panel = real_panel(TRIO)
    env = grid_env(window=2, corr_window=60)
    market, features = real_inputs(TRIO)
    start = 3000
    env.reset(options={"start": start})
    obs, *_ = env.step(np.array([2, 1, 0]))  # target weights 2/3, 1/3, 0 of the book
    t = start + 1
    k, f = 3, features.shape[2]
    np.testing.assert_array_equal(obs[: 2 * k * f], features[t - 1 : t + 1].reshape(-1))
    # Independent figures from pandas over the 60 returns ending at t.
    closes = pd.DataFrame(market.close[t - 60 : t + 1], columns=list(TRIO))
    returns = np.log(closes).diff().dropna()
    corr = returns.corr().to_numpy()
    mean_corr = np.mean([corr[0, 1], corr[0, 2], corr[1, 2]])
    betas = [returns[s].cov(returns["SPY"]) / returns["SPY"].var() for s in TRIO]
    at = 2 * k * f
    assert obs[at] == pytest.approx(mean_corr, rel=1e-5)
    np.testing.assert_allclose(obs[at + 1 : at + 4], betas, rtol=1e-5)
    assert obs[at + 3] == pytest.approx(1.0)  # SPY's beta to itself
    book = at + 4
    np.testing.assert_allclose(obs[book : book + 3], [2 / 3, 1 / 3, 0.0], rtol=1e-6)  # targets
    weights = obs[book + 3 : book + 6]
    equity = env.equity_curve[-1]
    held = np.array([fl.shares for fl in sorted(env.fills, key=lambda fl: fl.asset)])
    np.testing.assert_allclose(weights[:2], held * market.close[t, :2] / equity, rtol=1e-6)
    assert weights[2] == 0.0
    entry = np.array([fl.price for fl in sorted(env.fills, key=lambda fl: fl.asset)])
    np.testing.assert_allclose(obs[book + 6 : book + 8], np.log(market.close[t, :2] / entry), rtol=1e-5)
    gross = weights.sum()
    assert obs[-1] == pytest.approx(gross, rel=1e-6)
    assert obs[-2] == pytest.approx((weights**2).sum() / gross**2, rel=1e-5)
    assert len(panel) == len(market)


def test_betas_are_to_the_equal_weight_average_when_spy_is_not_in_the_universe():
    env = nine_env(window=1, corr_window=60)
    market, features = real_inputs(PAIR)
    t = 2000
    obs, _ = env.reset(options={"start": t})
    returns = np.log(pd.DataFrame(market.close[t - 60 : t + 1], columns=list(PAIR))).diff().dropna()
    average = returns.mean(axis=1)
    at = features.shape[1] * features.shape[2]
    assert obs[at] == pytest.approx(returns.corr().iloc[0, 1], rel=1e-5)
    np.testing.assert_allclose(obs[at + 1 : at + 3], [returns[s].cov(average) / average.var() for s in PAIR], rtol=1e-5)
    assert obs[-1] == obs[-2] == 0.0  # a flat book: no gross, no concentration


def test_rewards_are_log_equity_changes_less_the_configured_penalties():
    actions = [8, 4, 0, 2, 6, 8, 4, 0] * 10

    def rewards(**penalties: float) -> tuple[np.ndarray, PortfolioEnv]:
        env = nine_env(COSTS[1], **penalties)
        env.reset(options={"start": 1000})
        return np.array([env.step(a)[1] for a in actions]), env

    plain, env = rewards()
    equity = env.equity_curve
    np.testing.assert_allclose(plain, np.log(equity[1:] / equity[:-1]), rtol=1e-12)
    turnover, _ = rewards(turnover_penalty=0.1)
    drawdown, _ = rewards(drawdown_penalty=0.5)
    traded = np.zeros(len(actions))
    for fill in env.fills:
        traded[fill.index - 1001] += abs(fill.shares) * fill.price
    np.testing.assert_allclose(plain - turnover, 0.1 * traded / equity[:-1], atol=1e-12)
    peak = np.maximum.accumulate(equity)[1:]
    np.testing.assert_allclose(plain - drawdown, 0.5 * (1 - equity[1:] / peak), atol=1e-12)
    assert (plain - turnover > 0).any()
    assert (plain - drawdown > 0).any()


def test_nine_actions_need_exactly_two_assets():
    market, features = real_inputs(TRIO)
    with pytest.raises(InputError, match="exactly two assets"):
        PortfolioEnv(market, features, PortfolioEnvConfig(action_mode="nine"), CostModel())


def test_start_before_a_full_correlation_window_is_rejected():
    market, features = real_inputs(PAIR)
    with pytest.raises(InputError, match="start range"):
        PortfolioEnv(market, features, PortfolioEnvConfig(corr_window=60), CostModel(), start_range=(30, 500))


def test_features_not_matching_the_market_are_rejected():
    market, features = real_inputs(PAIR)
    with pytest.raises(InputError, match="sessions, symbols, features"):
        PortfolioEnv(market, features[:, :1], PortfolioEnvConfig(), CostModel())


@pytest.mark.parametrize("mode", ["nine", "grid"])
def test_vec_env_lanes_equal_single_envs_seeded_alike_bit_for_bit(mode):
    symbols = PAIR if mode == "nine" else TRIO
    market, features = real_inputs(symbols)
    config = PortfolioEnvConfig(action_mode=mode, episode_length=40, drawdown_penalty=0.1, turnover_penalty=0.01)
    cost = COSTS[1]
    n_envs, seed, steps = 4, 11, 130  # > 3 episodes per lane: auto-resets included
    vec = PortfolioVecEnv(market, features, config, cost, n_envs, seed)
    vec.seed(seed)
    vec_obs = vec.reset()
    singles = [PortfolioEnv(market, features, config, cost) for _ in range(n_envs)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(3)
    for _ in range(steps):
        np.testing.assert_array_equal(vec_obs, np.stack(obs))
        actions = rng.integers(0, 9, n_envs) if mode == "nine" else rng.integers(0, 3, (n_envs, 3))
        vec_obs, vec_rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, terminated, truncated, _ = env.step(actions[i])
            assert vec_rewards[i] == np.float32(r)
            assert dones[i] == (terminated or truncated)
            if terminated or truncated:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                o, _ = env.reset()
            obs[i] = o
