"""The portfolio env: one policy sees several assets, decides target weights after the close of row t,
and its book trades them at the OPEN of row t+1 through the portfolio kernel (issue 11, item 1).

Timing is the single-asset env's (tradeflow.rl.env): the observation at row t is built from rows
<= t only, and every changed target trades through `tradeflow.sim.rebalance_session`, the very
function `tradeflow.sim.simulate_portfolio` steps through, so the env's equity curve for a sequence
of actions IS the backtester's for the targets they chose (tests/unit/test_portfolio_env.py).

Observation at row t (float32), in this order:
- the feature window: each asset's features of rows t-window+1..t (row-major: row, asset, feature);
- the mean pairwise correlation of the assets' daily log returns over the last `corr_window`
  sessions (one number for any N; 0 for one asset), then each asset's beta to the market column
  over the same sessions: `market_symbol` (SPY) when it is in the universe, else the equal-weight
  average of the assets' returns;
- per asset: the target weight held, the position's weight of equity at close[t] (it drifts with
  prices) and the position's unrealised log P&L;
- the Herfindahl index of the book (sum of squared position weights over squared gross: 1/N for
  an even book, 1 for one asset, 0 when flat) and the gross exposure (sum of |weights|).

Actions (PortfolioEnvConfig.action_mode):
- "nine" (exactly two assets): Discrete(9); action a = 3 * m0 + m1 with m in (sell, hold, buy) =
  (0, 1, 2) for asset 0 and 1. Each asset sits on a level 0, 1 or 2 of its equal sleeve (half the
  book): target weight 0, 0.25 or 0.5. Sell moves one level down, buy one level up, hold stays;
  a move past either end stays put. Both at level 2 is fully invested, never levered.
- "grid" (any N): MultiDiscrete([grid_levels] * N); level l means raw weight l / (grid_levels - 1),
  and the raw weights are divided by their sum when it exceeds 1 (gross <= 1, no leverage).

Reward: the log change of net equity from close[t] to close[t+1]; optional penalties, both off
by default: `turnover_penalty` x traded notional / equity before the trades, and
`drawdown_penalty` x (1 - equity / episode peak) for every step spent under the peak.

`PortfolioVecEnv` steps many lanes with a handful of numpy calls per step (one
`rebalance_many` per asset position in the session's trade order), bit-identical lane by lane to
`PortfolioEnv`: both build observations and targets with the same batched functions below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from tradeflow.errors import InputError
from tradeflow.features.panel import PanelFeatures
from tradeflow.rl.config import PortfolioEnvConfig
from tradeflow.rl.env import BUY, SELL, ObservationBuilder, entry_after_fill
from tradeflow.rl.vec_env import entries_after_fills, rebalance_many, unrealised_pnls
from tradeflow.sim import CostModel, Fill, PanelMarket, rebalance_session

NINE_LEVELS = 3  # levels of each asset's sleeve in "nine" mode: 0, 0.5, 1 of the sleeve
NINE_STEP = 0.25  # target weight of one level: half of a two-asset book's equal sleeve (0.5)


def portfolio_features(close: np.ndarray, symbols: Sequence[str], market_symbol: str, window: int) -> np.ndarray:
    """(rows, 1 + N) causal features: the mean pairwise return correlation and each asset's beta to
    the market over the `window` daily log returns ending at each row; NaN before a full window.

    Each row's figures are computed from its own window alone (no running sums), so no row after
    t can change a value at t, not even in the last bit.
    """
    c = np.asarray(close, dtype=np.float64)
    n, k = c.shape
    out = np.full((n, 1 + k), np.nan)
    if n <= window:
        return out
    returns = np.diff(np.log(c), axis=0)  # returns[i] is the return INTO row i + 1
    market = returns[:, list(symbols).index(market_symbol)] if market_symbol in symbols else returns.mean(axis=1)
    views = np.lib.stride_tricks.sliding_window_view(np.column_stack([returns, market]), window, axis=0)
    dem = views - views.mean(axis=2, keepdims=True)  # (n - window, k + 1, window); row t = window + i
    cov = np.einsum("iaw,ibw->iab", dem, dem)
    var = np.diagonal(cov, axis1=1, axis2=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pairs = [
            np.where(var[:, a] * var[:, b] > 0, cov[:, a, b] / np.sqrt(var[:, a] * var[:, b]), 0.0)
            for a in range(k)
            for b in range(a + 1, k)
        ]
        betas = np.where(var[:, k : k + 1] > 0, cov[:, :k, k] / var[:, k : k + 1], 0.0)
    out[window:, 0] = np.mean(pairs, axis=0) if pairs else 0.0
    out[window:, 1:] = betas
    return out


def panel_inputs(panel: PanelFeatures) -> tuple[PanelMarket, np.ndarray]:
    """The market and the (sessions, symbols, features) matrix of a panel, row i <-> session i."""
    return PanelMarket.align(panel.market()), panel.matrix()


class PortfolioArrays:
    """Validated, precomputed arrays shared by the scalar and the vectorised portfolio env."""

    def __init__(
        self,
        market: PanelMarket,
        features: np.ndarray,
        config: PortfolioEnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        n, k = len(market), len(market.symbols)
        f = np.asarray(features)
        if f.ndim != 3 or f.shape[:2] != (n, k):
            raise InputError(f"features must be (sessions, symbols, features) = ({n}, {k}, ...), got {f.shape}")
        if config.action_mode == "nine" and k != 2:
            raise InputError(f"action_mode 'nine' trades exactly two assets, the market has {k}")
        first = max(config.window - 1, config.corr_window)  # a full feature window and return window
        lo, hi = start_range if start_range is not None else (first, n - 1)
        if not first <= lo < hi <= n - 1:
            raise InputError(
                f"start range [{lo}, {hi}) must lie in [{first}, {n - 1}): a start needs {config.window} rows of "
                f"features and {config.corr_window} returns before it and a next open after it"
            )
        for name in ("open", "close"):
            prices = getattr(market, name)[lo:]
            if not (np.isfinite(prices).all() and (prices > 0).all()):
                raise InputError(f"market {name} prices must be positive and finite from row {lo}")
        # Rows before lo are never observed; their prices (zero, missing) must not reach a log.
        close = np.asarray(market.close, dtype=np.float64)
        safe_close = np.where(np.isfinite(close) & (close > 0), close, 1.0)
        self.builder = ObservationBuilder(f.reshape(n, -1), config.window)
        self.market_features = portfolio_features(safe_close, market.symbols, config.market_symbol, config.corr_window)
        if not (np.isfinite(self.builder.windows[lo:]).all() and np.isfinite(self.market_features[lo:]).all()):
            raise InputError("features contain NaN or infinity in rows an episode can observe")
        self.config = config
        self.cost = cost
        self.n, self.k = n, k
        self.symbols = market.symbols
        self.start_low, self.start_high = lo, hi
        self.open = np.ascontiguousarray(market.open, dtype=np.float64)
        self.close = np.ascontiguousarray(close)
        self.volume = np.ascontiguousarray(market.volume, dtype=np.float64)
        n_window = self.builder.windows.shape[1]
        self.size = n_window + (1 + k) + 3 * k + 2

    def observation_space(self) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, shape=(self.size,), dtype=np.float32)

    def action_space(self) -> spaces.Discrete | spaces.MultiDiscrete:
        if self.config.action_mode == "nine":
            return spaces.Discrete(NINE_LEVELS**2)
        return spaces.MultiDiscrete([self.config.grid_levels] * self.k)

    def targets(self, actions: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target weights (lanes, k) and the new levels for a batch of actions (see the module doc)."""
        if self.config.action_mode == "nine":
            a = np.asarray(actions, dtype=np.int64).reshape(-1)
            moves = np.stack([a // NINE_LEVELS, a % NINE_LEVELS], axis=1)
            step = np.where(moves == BUY, 1, np.where(moves == SELL, -1, 0))
            new_levels = np.clip(levels + step, 0, NINE_LEVELS - 1)
            return new_levels * NINE_STEP, new_levels
        new_levels = np.array(actions, dtype=np.int64).reshape(-1, self.k)  # a copy: lanes reset their levels
        raw = new_levels / (self.config.grid_levels - 1)
        return raw / np.maximum(raw.sum(axis=1, keepdims=True), 1.0), new_levels

    def observations(
        self,
        rows: np.ndarray,
        targets: np.ndarray,
        shares: np.ndarray,
        entry: np.ndarray,
        equity: np.ndarray,
    ) -> np.ndarray:
        """One observation per lane at the close of `rows` (the layout is the module doc's)."""
        k = self.k
        close = self.close[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.where(equity[:, None] > 0, shares * close / equity[:, None], 0.0)
            gross = np.abs(weights).sum(axis=1)
            herfindahl = np.where(gross > 0, (weights * weights).sum(axis=1) / (gross * gross), 0.0)
        obs = np.empty((len(rows), self.size), dtype=np.float32)
        w = self.builder.windows.shape[1]
        obs[:, :w] = self.builder.windows[rows]
        obs[:, w : w + 1 + k] = self.market_features[rows]
        book = w + 1 + k
        obs[:, book : book + k] = targets
        obs[:, book + k : book + 2 * k] = weights
        obs[:, book + 2 * k : book + 3 * k] = unrealised_pnls(shares, entry, close)
        obs[:, -2] = herfindahl
        obs[:, -1] = gross
        return obs


class PortfolioEnv(gym.Env[np.ndarray, Any]):
    """A gymnasium env over a PanelMarket and its feature matrix (timing, actions, observation and
    reward in the module docstring).

    reset(options={"start": row}) starts at a given row instead of a sampled one. `equity_curve`,
    `targets` and `fills` describe the episode for comparison with `simulate_portfolio`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's declared attribute

    def __init__(
        self,
        market: PanelMarket,
        features: np.ndarray,
        config: PortfolioEnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.arrays = PortfolioArrays(market, features, config, cost, start_range)
        self.config = config
        self.observation_space = self.arrays.observation_space()
        self.action_space = self.arrays.action_space()
        self._reset_book(self.arrays.start_low)

    @classmethod
    def from_panel(
        cls,
        panel: PanelFeatures,
        config: PortfolioEnvConfig,
        cost: CostModel,
        start_range: tuple[int, int] | None = None,
    ) -> PortfolioEnv:
        market, features = panel_inputs(panel)
        return cls(market, features, config, cost, start_range)

    def _reset_book(self, start: int) -> None:
        k, capital = self.arrays.k, self.config.initial_capital
        self.start = self.row = start
        self._steps = 0
        self._done = False
        self._cash = capital
        self._shares, self._entry, self._target = np.zeros(k), np.zeros(k), np.zeros(k)
        self._levels = np.zeros(k, dtype=np.int64)
        self._equity = self._peak = capital
        self._equity_curve: list[float] = [capital]
        self._targets: list[np.ndarray] = []
        self._fills: list[Fill] = []

    def _observe(self) -> np.ndarray:
        return self.arrays.observations(
            np.array([self.row]), self._target[None], self._shares[None], self._entry[None], np.array([self._equity])
        )[0]

    def _info(self) -> dict[str, Any]:
        return {"row": self.row, "equity": self._equity, "targets": self._target.copy()}

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

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a, cfg = self.arrays, self.config
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset()")
        t1 = self.row + 1
        targets, levels = a.targets(np.asarray(action)[None], self._levels[None])
        target = targets[0]
        self._levels = levels[0]
        equity_before = self._equity
        traded = 0.0
        changed = np.flatnonzero(target != self._target)
        if len(changed):
            # Decided on close[t]; the orders meet the market at the next open, through the kernel.
            old = self._shares.copy()
            self._cash, fills = rebalance_session(
                self._cash, self._shares, target, changed, a.open[t1], a.volume[t1], a.cost, t1
            )
            for fill in fills:
                j = fill.asset
                self._entry[j] = entry_after_fill(old[j], self._shares[j], self._entry[j], fill.price)
                traded += abs(fill.shares) * fill.price
            self._fills.extend(fills)
            self._target = target
        self._targets.append(self._target.copy())
        self.row = t1
        self._steps += 1
        # Marked as simulate_portfolio marks a close: the elementwise product summed.
        equity = float(self._cash + (self._shares * a.close[t1]).sum())
        self._equity = equity
        self._equity_curve.append(equity)
        self._peak = max(self._peak, equity)
        terminated = equity <= 0.0
        reward = float(np.log(max(equity, 1e-12 * cfg.initial_capital) / equity_before))
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
        """Target weights (steps, k) decided at the close of rows start..row-1."""
        return np.asarray(self._targets).reshape(-1, self.arrays.k)

    @property
    def fills(self) -> tuple[Fill, ...]:
        return tuple(self._fills)


class PortfolioVecEnv(VecEnv):
    """`n_envs` PortfolioEnv lanes over one set of shared arrays, auto-reset as SB3 expects; lane i
    seeded with `seed + i` samples the start rows a PortfolioEnv reset with that seed samples."""

    def __init__(
        self,
        market: PanelMarket,
        features: np.ndarray,
        config: PortfolioEnvConfig,
        cost: CostModel,
        n_envs: int,
        seed: int,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        self.arrays = PortfolioArrays(market, features, config, cost, start_range)
        self.config = config
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(n_envs, self.arrays.observation_space(), self.arrays.action_space())
        k = self.arrays.k
        self._rngs = [np.random.default_rng(seed + i) for i in range(n_envs)]
        self._actions = np.zeros((n_envs, k), dtype=np.int64)
        self._row = np.zeros(n_envs, dtype=np.int64)
        self._steps = np.zeros(n_envs, dtype=np.int64)
        self._cash = np.zeros(n_envs)
        self._shares = np.zeros((n_envs, k))
        self._entry = np.zeros((n_envs, k))
        self._target = np.zeros((n_envs, k))
        self._levels = np.zeros((n_envs, k), dtype=np.int64)
        self._equity = np.zeros(n_envs)
        self._peak = np.zeros(n_envs)
        for i in range(n_envs):
            self._reset_lane(i)

    def _reset_lane(self, i: int) -> None:
        a = self.arrays
        self._row[i] = self._rngs[i].integers(a.start_low, a.start_high)
        self._steps[i] = 0
        self._cash[i] = self._equity[i] = self._peak[i] = self.config.initial_capital
        self._shares[i] = self._entry[i] = self._target[i] = 0.0
        self._levels[i] = 0

    def _observe(self) -> np.ndarray:
        return self.arrays.observations(self._row, self._target, self._shares, self._entry, self._equity)

    def reset(self) -> np.ndarray:
        for i, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[i] = np.random.default_rng(s)
        for i in range(self.num_envs):
            self._reset_lane(i)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._observe()

    def step_async(self, actions: np.ndarray) -> None:
        # A copy: the caller's array is theirs (a lane's auto-reset must not write into it).
        self._actions = np.array(actions, dtype=np.int64).reshape(self.num_envs, -1)

    def _trade(self, t1: np.ndarray, target: np.ndarray) -> np.ndarray:
        """`rebalance_session` for every lane whose targets changed; returns the notional traded."""
        a = self.arrays
        traded = np.zeros(self.num_envs)
        changed = target != self._target
        lanes = np.flatnonzero(changed.any(axis=1))
        if not len(lanes):
            return traded
        rows, wanted, moved = t1[lanes], target[lanes], changed[lanes]
        cash, shares, entry = self._cash[lanes], self._shares[lanes], self._entry[lanes]
        opens, volumes = a.open[rows], a.volume[rows]
        marked = cash + (shares * opens).sum(axis=1)
        # The kernel's trade order, lane by lane: by the signed notional each trade needs, sells
        # first; a stable sort keeps ties in column order as Python's sorted() does.
        order = np.argsort(wanted * marked[:, None] - shares * opens, axis=1, kind="stable")
        book = marked if a.k > 1 else None
        for p in range(a.k):
            col = order[:, p]
            at = np.flatnonzero(moved[np.arange(len(lanes)), col])
            if not len(at):
                continue
            j = col[at]
            old = shares[at, j]
            fills = rebalance_many(
                cash[at],
                old,
                wanted[at, j],
                opens[at, j],
                volumes[at, j],
                a.cost,
                None if book is None else book[at],
            )
            cash[at] = fills.cash
            shares[at, j] = fills.position
            entered = entries_after_fills(old, fills.position, entry[at, j], fills.price)
            entry[at, j] = np.where(fills.filled, entered, entry[at, j])
            traded[lanes[at]] += np.where(fills.filled, np.abs(fills.shares) * fills.price, 0.0)
        self._cash[lanes], self._shares[lanes], self._entry[lanes] = cash, shares, entry
        return traded

    def step_wait(self) -> VecEnvStepReturn:
        a, cfg = self.arrays, self.config
        target, self._levels = a.targets(self._actions, self._levels)
        t1 = self._row + 1
        equity_before = self._equity
        traded = self._trade(t1, target)
        self._target = target
        self._row = t1
        self._steps += 1
        equity = self._cash + (self._shares * a.close[t1]).sum(axis=1)
        self._equity = equity
        self._peak = np.maximum(self._peak, equity)
        terminated = equity <= 0.0
        reward = np.log(np.maximum(equity, 1e-12 * cfg.initial_capital) / equity_before)
        if cfg.turnover_penalty:
            reward -= cfg.turnover_penalty * traded / equity_before
        if cfg.drawdown_penalty:
            reward -= cfg.drawdown_penalty * (1.0 - equity / self._peak)
        truncated = ~terminated & ((self._steps >= cfg.episode_length) | (t1 >= a.n - 1))
        dones = terminated | truncated
        obs = self._observe()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(truncated[i])
            self._reset_lane(int(i))
        if dones.any():
            obs[dones] = self._observe()[dones]
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    # The lanes share one object, so attribute access answers for every requested index alike.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]
