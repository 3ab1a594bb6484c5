"""The trading env: SB3-compatible, equal to the backtester on real SPY (parity), never fills at a
price the agent has seen, observations blind to later rows, deterministic under a seed, and the
vectorised env equal to N single envs lane by lane."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from tests.conftest import REAL_DATA
from tradeflow.adapters.files.data import read_bar_file
from tradeflow.errors import InputError
from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import BUY, HOLD, SELL, TradingEnv
from tradeflow.rl.vec_env import TradingVecEnv, rebalance_many
from tradeflow.sim import CostModel, MarketArrays, rebalance, simulate_targets

SPY_CSV = REAL_DATA / "SPY.csv"
WARMUP = 21


def causal_features(close: np.ndarray) -> np.ndarray:
    """A small causal feature matrix: log return, two lags, 5-day momentum, 20-day volatility."""
    lr = np.concatenate(([np.nan], np.diff(np.log(close))))
    lag1 = np.concatenate(([np.nan], lr[:-1]))
    lag2 = np.concatenate(([np.nan], lag1[:-1]))
    csum = np.concatenate(([0.0], np.nancumsum(lr)))
    mom5 = np.full_like(lr, np.nan)
    mom5[5:] = csum[6:] - csum[1:-5]
    vol20 = np.full_like(lr, np.nan)
    vol20[WARMUP - 1 :] = np.lib.stride_tricks.sliding_window_view(lr[1:], 20).std(axis=1)
    return np.stack([lr, lag1, lag2, mom5, vol20], axis=1).astype(np.float32)


def spy_market_and_features(start: str | None = None) -> tuple[MarketArrays, np.ndarray]:
    """Real SPY market arrays and a causal feature matrix aligned 1:1 (warm-up rows dropped)."""
    bars = read_bar_file(SPY_CSV, "SPY")
    if start is not None:
        bars = bars[bars["session"] >= start].reset_index(drop=True)
    market = MarketArrays.from_bars(bars)
    features = causal_features(market.close)
    return market.slice(WARMUP, len(market)), features[WARMUP:]


@pytest.fixture(scope="module")
def spy() -> tuple[MarketArrays, np.ndarray]:
    return spy_market_and_features()


def run_actions(env: TradingEnv, start: int, actions: np.ndarray) -> list[np.ndarray]:
    obs, _ = env.reset(options={"start": start})
    seen = [obs]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(int(a))
        seen.append(obs)
        if terminated or truncated:
            break
    return seen


def sma_actions(close: np.ndarray, start: int, fast: int = 20, slow: int = 60) -> np.ndarray:
    """Buy when the fast SMA of closes <= t is above the slow one, else sell (a causal rule)."""
    c = np.concatenate(([0.0], np.cumsum(close)))
    t = np.arange(start, len(close) - 1)
    fast_ma = (c[t + 1] - c[t + 1 - fast]) / fast
    slow_ma = (c[t + 1] - c[t + 1 - slow]) / slow
    return np.where(fast_ma > slow_ma, BUY, SELL)


def test_env_passes_sb3_check_env(spy):
    market, features = spy
    check_env(TradingEnv(market, features, EnvConfig(window=5), CostModel()), warn=True)


@pytest.mark.parametrize(
    ("rule", "allow_short", "cost"),
    [
        ("random", False, CostModel()),
        ("random", True, CostModel(impact_bps=10.0)),
        ("sma", False, CostModel()),
        ("sma", True, CostModel(commission_min=5.0, slippage_bps=3.0)),
    ],
)
def test_env_equity_curve_equals_the_backtester_on_real_spy(spy, rule, allow_short, cost):
    market, features = spy
    window, start = 5, 100
    config = EnvConfig(window=window, episode_length=len(market), allow_short=allow_short)
    env = TradingEnv(market, features, config, cost)
    if rule == "random":
        actions = np.random.default_rng(7).integers(0, 3, size=len(market) - 1 - start)
    else:
        actions = sma_actions(market.close, start)
    run_actions(env, start, actions)
    assert len(env.targets) == len(market) - 1 - start > 7000  # thousands of decisions, to the data's end

    targets = np.zeros(len(market))
    targets[start : start + len(env.targets)] = env.targets
    sim = simulate_targets(market, targets, cost, capital=config.initial_capital)
    np.testing.assert_allclose(env.equity_curve, sim.equity[start:], rtol=1e-9, atol=0)
    assert len(env.fills) == len(sim.fills) > 100
    assert env.fills == sim.fills


def test_every_fill_is_at_the_open_after_the_close_the_agent_observed(spy):
    market, features = spy
    cost = CostModel()
    env = TradingEnv(market, features, EnvConfig(window=5, episode_length=2000), cost)
    _, info = env.reset(options={"start": 500})
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(2000):
        observed_row = info["row"]
        n_fills = len(env.fills)
        _, _, _, truncated, info = env.step(int(rng.integers(0, 3)))
        if len(env.fills) > n_fills:
            fill = env.fills[-1]
            assert fill.index == observed_row + 1
            impact = cost.price_impact(fill.shares, market.volume[fill.index])
            side = 1.0 if fill.shares > 0 else -1.0
            assert fill.price == pytest.approx(market.open[observed_row + 1] * (1 + side * impact), rel=1e-12)
            checked += 1
        if truncated:
            break
    assert checked > 100


def test_fill_prices_follow_the_next_open_not_the_observed_close(spy):
    market, features = spy
    start = 1000
    config = EnvConfig(window=5, episode_length=1)
    env = TradingEnv(market, features, config, CostModel())
    obs_before, _ = env.reset(options={"start": start})
    env.step(BUY)
    moved_open = market.open.copy()
    moved_open[start + 1] *= 1.05
    shifted = MarketArrays(market.sessions, moved_open, market.high, market.low, market.close, market.volume)
    env2 = TradingEnv(shifted, features, config, CostModel())
    obs_after, _ = env2.reset(options={"start": start})
    env2.step(BUY)
    np.testing.assert_array_equal(obs_before, obs_after)  # the agent could not have seen the next open
    assert env2.fills[0].price == pytest.approx(env.fills[0].price * 1.05, rel=1e-12)


@pytest.mark.parametrize("cut", [300, 1777, 4321])
def test_observation_at_t_unchanged_when_rows_after_t_are_perturbed(spy, cut):
    market, features = spy
    config = EnvConfig(window=8, episode_length=10_000, allow_short=True)
    start = 200
    actions = np.random.default_rng(cut).integers(0, 3, size=cut - start)
    rng = np.random.default_rng(cut + 1)
    noisy = features.copy()
    noisy[cut + 1 :] += rng.normal(0, 1, size=noisy[cut + 1 :].shape).astype(np.float32)
    scale = np.ones((3, len(market)))
    scale[:, cut + 1 :] = rng.uniform(0.5, 1.5, size=(3, len(market) - cut - 1))
    perturbed = MarketArrays(
        market.sessions,
        market.open * scale[0],
        market.high,
        market.low,
        market.close * scale[1],
        market.volume * scale[2],
    )
    seen = run_actions(TradingEnv(market, features, config, CostModel()), start, actions)
    seen_perturbed = run_actions(TradingEnv(perturbed, noisy, config, CostModel()), start, actions)
    assert len(seen) == cut - start + 1  # observations at rows start..cut
    for a, b in zip(seen, seen_perturbed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_observation_holds_the_window_position_and_unrealised_pnl(spy):
    market, features = spy
    env = TradingEnv(market, features, EnvConfig(window=3, episode_length=50), CostModel())
    obs, _ = env.reset(options={"start": 40})
    np.testing.assert_array_equal(obs[:-2], features[38:41].ravel())
    assert obs[-2] == 0.0
    assert obs[-1] == 0.0
    obs, *_ = env.step(BUY)
    obs, *_ = env.step(HOLD)
    fill = env.fills[0]
    assert obs[-2] == 1.0
    assert obs[-1] == pytest.approx(np.log(market.close[42] / fill.price), rel=1e-6)
    np.testing.assert_array_equal(obs[:-2], features[40:43].ravel())


def test_sell_goes_short_only_when_allowed(spy):
    market, features = spy
    for allow_short, expected in ((False, 0.0), (True, -1.0)):
        env = TradingEnv(market, features, EnvConfig(window=5, allow_short=allow_short), CostModel())
        env.reset(options={"start": 100})
        _, _, _, _, info = env.step(SELL)
        assert info["target"] == expected
        assert len(env.fills) == (1 if allow_short else 0)


def test_rewards_are_log_equity_changes_less_the_configured_penalties(spy):
    market, features = spy
    actions = np.random.default_rng(5).integers(0, 3, size=300)

    def rewards(config: EnvConfig) -> tuple[np.ndarray, TradingEnv]:
        env = TradingEnv(market, features, config, CostModel())
        env.reset(options={"start": 50})
        return np.array([env.step(int(a))[1] for a in actions]), env

    plain, env = rewards(EnvConfig(window=5, episode_length=300))
    eq = env.equity_curve
    np.testing.assert_allclose(plain, np.log(eq[1:] / eq[:-1]), rtol=1e-12)
    penalised, _ = rewards(EnvConfig(window=5, episode_length=300, turnover_penalty=0.1, drawdown_penalty=0.5))
    drawdown = 1.0 - eq[1:] / np.maximum.accumulate(eq)[1:]
    traded = np.zeros(300)
    for f in env.fills:
        traded[f.index - 51] = abs(f.shares) * f.price
    np.testing.assert_allclose(penalised, plain - 0.1 * traded / eq[:-1] - 0.5 * drawdown, rtol=1e-9, atol=1e-15)
    assert (penalised <= plain).all()
    assert (penalised < plain).any()


def test_episodes_truncate_at_episode_length_and_at_the_end_of_the_data(spy):
    market, features = spy
    env = TradingEnv(market, features, EnvConfig(window=5, episode_length=10), CostModel())
    env.reset(options={"start": 100})
    flags = [env.step(HOLD)[3] for _ in range(10)]
    assert flags == [False] * 9 + [True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(HOLD)
    env.reset(options={"start": len(market) - 4})
    flags = [env.step(BUY)[3] for _ in range(3)]
    assert flags == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(HOLD)


def test_reset_is_deterministic_under_a_seed_and_starts_inside_the_range(spy):
    market, features = spy

    def starts(seed: int) -> list[int]:
        env = TradingEnv(market, features, EnvConfig(window=5), CostModel(), start_range=(1000, 2000))
        first = env.reset(seed=seed)[1]["row"]
        return [first] + [env.reset()[1]["row"] for _ in range(20)]

    assert starts(11) == starts(11)
    assert starts(11) != starts(12)
    assert all(1000 <= s < 2000 for s in starts(11) + starts(12))


@pytest.mark.parametrize("start_range", [(0, 100), (10, 10), (10, 10**6)])
def test_start_ranges_without_a_full_window_or_next_open_are_rejected(spy, start_range):
    market, features = spy
    with pytest.raises(InputError, match="start range"):
        TradingEnv(market, features, EnvConfig(window=5), CostModel(), start_range=start_range)


def test_nan_features_in_observable_rows_are_rejected(spy):
    market, features = spy
    broken = features.copy()
    broken[500, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        TradingEnv(market, broken, EnvConfig(window=5), CostModel())
    TradingEnv(market, broken, EnvConfig(window=5), CostModel(), start_range=(600, 700))


def random_books(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Books covering every branch of the kernel: all-in buys, cash-limited buys, leverage, shorts,
    negative equity, no-op targets, tiny trades and missing volume."""
    rng = np.random.default_rng(seed)
    cash = rng.choice([0.0, 1.0, 500.0, 1e5, -2e4, 3e6], size=n) * rng.uniform(0.5, 1.5, n)
    shares = rng.choice([0.0, 0.0, 10.0, -50.0, 1000.0, 2e-9], size=n) * rng.uniform(0.5, 1.5, n)
    weight = rng.choice([0.0, 1.0, -1.0, 0.5, 1.5, -0.2], size=n)
    price = rng.uniform(1.0, 600.0, n)
    volume = rng.choice([0.0, np.nan, 1e3, 1e8], size=n)
    flat_and_staying_flat = rng.random(n) < 0.05
    shares[flat_and_staying_flat] = weight[flat_and_staying_flat] = 0.0
    return cash, shares, weight, price, volume


@pytest.mark.parametrize(
    "cost",
    [
        CostModel(),
        CostModel(impact_bps=25.0, commission_max_pct=None),
        CostModel(commission_max_pct=0.0),
        CostModel(taf_max=0.01),
    ],
)
def test_vectorised_rebalance_equals_the_scalar_kernel_exactly(cost):
    cash, shares, weight, price, volume = random_books(5000, seed=1)
    batch = rebalance_many(cash, shares, weight, price, volume, cost)
    assert batch.filled.sum() > 3000
    assert (~batch.filled).sum() > 100
    for i in range(len(cash)):
        c, s, fill = rebalance(cash[i], shares[i], weight[i], price[i], volume[i], cost)
        assert (batch.cash[i], batch.position[i]) == (c, s)
        assert batch.filled[i] == (fill is not None)
        if fill is not None:
            got = (batch.shares[i], batch.price[i], batch.commission[i], batch.fees[i], batch.slippage[i])
            assert got == (fill.shares, fill.price, fill.commission, fill.fees, fill.slippage)


@pytest.mark.parametrize("allow_short", [False, True])
def test_vec_env_lanes_equal_single_envs_seeded_alike(spy, allow_short):
    market, features = spy
    n_envs, seed = 6, 42
    config = EnvConfig(
        window=4, episode_length=37, allow_short=allow_short, drawdown_penalty=0.1, turnover_penalty=0.01
    )
    start_range = (len(market) - 400, len(market) - 1)  # some episodes also run into the data's end
    vec = TradingVecEnv(market, features, config, CostModel(impact_bps=5.0), n_envs, seed=0, start_range=start_range)
    vec.seed(seed)
    singles = [TradingEnv(market, features, config, CostModel(impact_bps=5.0), start_range) for _ in range(n_envs)]
    obs = vec.reset()
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(obs[i], env.reset(seed=seed + i)[0])
    rng = np.random.default_rng(0)
    dones_seen = 0
    for _ in range(1000):
        actions = rng.integers(0, 3, size=n_envs)
        obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, terminated, truncated, _ = env.step(int(actions[i]))
            assert dones[i] == (terminated or truncated)
            assert rewards[i] == np.float32(r)
            if dones[i]:
                dones_seen += 1
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                assert infos[i]["TimeLimit.truncated"] == truncated
                o, _ = env.reset()
            np.testing.assert_array_equal(obs[i], o)
    assert dones_seen > 100
