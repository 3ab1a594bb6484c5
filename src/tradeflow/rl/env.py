"""The single-asset trading env: decide after the close of row t, fill at the OPEN of row t+1.

Timing is the whole point (no lookahead by construction): the observation at row t holds features of
rows t-window+1..t only, plus the current target weight and the unrealised P&L of the position at
close[t]. The action picks the next target; if it differs from the current one the book trades
through `tradeflow.sim.rebalance` at open[t+1] with the shared CostModel, exactly as
`tradeflow.sim.simulate_targets` does for a whole target sequence, so the env's equity curve IS the
backtester's (tests/unit/test_env.py proves it on real SPY data). Reward: the log change of net
equity from close[t] to close[t+1], less optional turnover and drawdown penalties.

Everything step() touches is a numpy array precomputed here (EnvArrays); the same arrays and the
same observation builder serve the vectorised env (vec_env.py) and the live policy (policy.py).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tradeflow.errors import InputError
from tradeflow.rl.config import EnvConfig
from tradeflow.sim import CostModel, Fill, MarketArrays, rebalance

SELL, HOLD, BUY = 0, 1, 2
N_ACTIONS = 3
# Appended after the feature window: the target weight held and the position's unrealised P&L.
N_POSITION_FEATURES = 2


def next_target(action: int, target: float, allow_short: bool) -> float:
    """The target weight after `action`: sell -> flat (or short), hold -> unchanged, buy -> fully long."""
    if action == BUY:
        return 1.0
    if action == SELL:
        return -1.0 if allow_short else 0.0
    return target


def entry_after_fill(old_shares: float, new_shares: float, entry: float, fill_price: float) -> float:
    """Average entry price after a fill: a new or flipped position starts at the fill price, an
    enlarged one averages in, a reduced one keeps its entry, a flat book has none (0)."""
    if new_shares == 0.0:
        return 0.0
    if old_shares == 0.0 or (old_shares > 0.0) != (new_shares > 0.0):
        return fill_price
    if abs(new_shares) > abs(old_shares):
        return (old_shares * entry + (new_shares - old_shares) * fill_price) / new_shares
    return entry


def unrealised_pnl(shares: float, entry: float, close: float) -> float:
    """Log P&L of the open position marked at `close`, signed for shorts; 0 when flat."""
    if shares == 0.0 or entry <= 0.0:
        return 0.0
    # np.log, not math.log: numpy's SIMD log differs from libm's in the last bit now and then, and
    # the vectorised env (np.log over lanes) must produce bit-identical observations.
    pnl = float(np.log(close / entry))
    return pnl if shares > 0.0 else -pnl


class ObservationBuilder:
    """Flattened feature windows, precomputed once: row t holds features[t-window+1 .. t] oldest first.

    Rows before `window - 1` have no full window and hold NaN; no episode may observe them.
    """

    def __init__(self, features: np.ndarray, window: int) -> None:
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2:
            raise InputError(f"features must be a 2-D (rows, columns) array, got shape {f.shape}")
        n, k = f.shape
        self.window = window
        self.n_features = k
        self.size = window * k + N_POSITION_FEATURES
        windows = np.full((n, window * k), np.nan, dtype=np.float32)
        if n >= window:
            view = np.lib.stride_tricks.sliding_window_view(f, window, axis=0)  # (n-window+1, k, window)
            windows[window - 1 :] = view.transpose(0, 2, 1).reshape(n - window + 1, window * k)
        self.windows = windows

    def observation(self, row: int, target: float, pnl: float) -> np.ndarray:
        obs = np.empty(self.size, dtype=np.float32)
        obs[:-N_POSITION_FEATURES] = self.windows[row]
        obs[-2] = target
        obs[-1] = pnl
        return obs

    def observations(self, rows: np.ndarray, targets: np.ndarray, pnls: np.ndarray) -> np.ndarray:
        """One observation per env: the batched form of `observation`."""
        obs = np.empty((len(rows), self.size), dtype=np.float32)
        obs[:, :-N_POSITION_FEATURES] = self.windows[rows]
        obs[:, -2] = targets
        obs[:, -1] = pnls
        return obs


class EnvArrays:
    """Validated, precomputed arrays shared by the scalar env, the vectorised env and the policy."""

    def __init__(
        self,
        market: MarketArrays,
        features: np.ndarray,
        config: EnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        n = len(market)
        if np.shape(features)[0] != n:
            raise InputError(f"features have {np.shape(features)[0]} rows but the market has {n}")
        first = config.window - 1  # the first row with a full feature window
        lo, hi = start_range if start_range is not None else (first, n - 1)
        if not first <= lo < hi <= n - 1:
            raise InputError(
                f"start range [{lo}, {hi}) must lie in [{first}, {n - 1}): a start needs {config.window} rows "
                "of features before it and a next open after it"
            )
        self.builder = ObservationBuilder(features, config.window)
        if not np.isfinite(self.builder.windows[lo:]).all():
            raise InputError("features contain NaN or infinity in rows an episode can observe")
        for name in ("open", "close"):
            prices = getattr(market, name)[lo:]
            if not (np.isfinite(prices).all() and (prices > 0).all()):
                raise InputError(f"market {name} prices must be positive and finite from row {lo}")
        self.config = config
        self.cost = cost
        self.n = n
        self.start_low, self.start_high = lo, hi
        self.open = np.ascontiguousarray(market.open, dtype=np.float64)
        self.close = np.ascontiguousarray(market.close, dtype=np.float64)
        self.volume = np.ascontiguousarray(market.volume, dtype=np.float64)
        self.short_weight = -1.0 if config.allow_short else 0.0

    def observation_space(self) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, shape=(self.builder.size,), dtype=np.float32)


class TradingEnv(gym.Env[np.ndarray, np.int64]):
    """Discrete(3) single-asset env over precomputed arrays (see the module docstring for timing).

    reset(options={"start": row}) starts at a given row instead of a sampled one (evaluation, parity).
    After (or during) an episode, `equity_curve`, `targets` and `fills` describe it for comparison
    with `tradeflow.sim.simulate_targets`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's declared attribute

    def __init__(
        self,
        market: MarketArrays,
        features: np.ndarray,
        config: EnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.arrays = EnvArrays(market, features, config, cost, start_range)
        self.config = config
        self.observation_space = self.arrays.observation_space()
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._reset_book(self.arrays.start_low)

    def _reset_book(self, start: int) -> None:
        capital = self.config.initial_capital
        self.start = start
        self.row = start
        self._steps = 0
        self._done = False
        self._cash, self._shares, self._entry = capital, 0.0, 0.0
        self._target = 0.0
        self._equity = self._peak = capital
        self._equity_curve: list[float] = [capital]
        self._targets: list[float] = []
        self._fills: list[Fill] = []

    def _observe(self) -> np.ndarray:
        pnl = unrealised_pnl(self._shares, self._entry, self.arrays.close[self.row])
        return self.arrays.builder.observation(self.row, self._target, pnl)

    def _info(self) -> dict[str, Any]:
        return {"row": self.row, "equity": self._equity, "target": self._target}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        a = self.arrays
        if options and "start" in options:
            start = int(options["start"])
            if not a.start_low <= start < a.start_high:
                raise InputError(f"start row {start} is outside the start range [{a.start_low}, {a.start_high})")
        else:
            start = int(self.np_random.integers(a.start_low, a.start_high))
        self._reset_book(start)
        return self._observe(), self._info()

    def step(self, action: int | np.integer[Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a, cfg = self.arrays, self.config
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset()")
        t1 = self.row + 1
        target = next_target(int(action), self._target, cfg.allow_short)
        equity_before = self._equity
        traded = 0.0
        if target != self._target:
            # The decision was made on close[t]; its order meets the market at the next open.
            old_shares = self._shares
            self._cash, self._shares, fill = rebalance(
                self._cash, self._shares, target, a.open[t1], a.volume[t1], a.cost, t1
            )
            if fill is not None:
                self._fills.append(fill)
                self._entry = entry_after_fill(old_shares, self._shares, self._entry, fill.price)
                traded = abs(fill.shares) * fill.price
            self._target = target
        self._targets.append(self._target)
        self.row = t1
        self._steps += 1
        equity = float(self._cash + self._shares * a.close[t1])
        self._equity = equity
        self._equity_curve.append(equity)
        self._peak = max(self._peak, equity)
        terminated = equity <= 0.0  # ruined (only possible with shorts or leverage)
        reward = float(np.log(max(equity, 1e-12 * cfg.initial_capital) / equity_before))  # np: see unrealised_pnl
        if cfg.turnover_penalty:
            reward -= cfg.turnover_penalty * traded / equity_before
        if cfg.drawdown_penalty:
            reward -= cfg.drawdown_penalty * (1.0 - equity / self._peak)
        truncated = not terminated and (self._steps >= cfg.episode_length or t1 >= a.n - 1)
        self._done = terminated or truncated
        return self._observe(), reward, terminated, truncated, self._info()

    @property
    def equity_curve(self) -> np.ndarray:
        """Equity at the close of rows start..row (the first is the initial capital)."""
        return np.asarray(self._equity_curve)

    @property
    def targets(self) -> np.ndarray:
        """Target weight decided at the close of rows start..row-1."""
        return np.asarray(self._targets)

    @property
    def fills(self) -> tuple[Fill, ...]:
        return tuple(self._fills)
