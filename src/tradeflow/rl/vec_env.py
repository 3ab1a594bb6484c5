"""N trading envs stepped in one numpy call: the SB3 VecEnv PPO trains on.

Same semantics as `TradingEnv` (env.py) lane by lane: env i seeded with `seed + i` samples the same
start rows as a `TradingEnv` reset with that seed, and gives the same observations, rewards and
dones for the same actions (tests/unit/test_env.py checks it). The per-step cost is a handful of
array operations over all lanes instead of N Python step() calls; trades go through
`rebalance_many`, a line-by-line vectorisation of `tradeflow.sim.rebalance` whose results are
bit-identical to the scalar kernel (tests check random inputs, edge cases included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from tradeflow.rl.config import EnvConfig
from tradeflow.rl.env import BUY, N_ACTIONS, SELL, EnvArrays
from tradeflow.sim import CostModel, MarketArrays


@dataclass(frozen=True)
class BatchFills:
    """Per-lane results of `rebalance_many`; lanes without a fill have shares 0 and price NaN."""

    cash: np.ndarray
    position: np.ndarray  # shares held after the trade
    shares: np.ndarray  # signed shares traded
    price: np.ndarray
    commission: np.ndarray
    fees: np.ndarray
    slippage: np.ndarray
    filled: np.ndarray  # bool


def _commission_many(shares: np.ndarray, price: np.ndarray, cost: CostModel) -> np.ndarray:
    # Mirrors CostModel.commission operation by operation, so results are bit-identical.
    a = np.abs(shares)
    raw = np.maximum(cost.commission_min, cost.commission_per_share * a)
    out = raw if cost.commission_max_pct is None else np.minimum(raw, cost.commission_max_pct * a * price)
    return np.where(shares == 0, 0.0, out)


def rebalance_many(
    cash: np.ndarray,
    shares: np.ndarray,
    weight: np.ndarray,
    price: np.ndarray,
    volume: np.ndarray,
    cost: CostModel,
    equity: np.ndarray | None = None,
) -> BatchFills:
    """`tradeflow.sim.rebalance` for many books at once (same operations in the same order);
    `equity` is each whole book's, marked at the open, as rebalance's (default: cash + this asset)."""
    cash = np.asarray(cash, dtype=np.float64)
    shares = np.asarray(shares, dtype=np.float64)
    price = np.asarray(price, dtype=np.float64)
    volume = np.asarray(volume, dtype=np.float64)
    equity = cash + shares * price if equity is None else np.asarray(equity, dtype=np.float64)
    weight = np.where(equity <= 0, 0.0, np.asarray(weight, dtype=np.float64))
    delta = weight * np.maximum(equity, 0.0) / price - shares
    trade = ~(np.abs(delta) * price <= 1e-9 * np.maximum(np.abs(equity), 1.0))

    bps = cost.half_spread_bps + cost.slippage_bps
    if cost.impact_bps > 0:
        has_volume = (volume > 0) & np.isfinite(volume)
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = cost.impact_bps * np.sqrt(np.abs(delta) / np.where(has_volume, volume, 1.0))
        impact = np.where(has_volume, bps + extra, bps) * 1e-4
    else:
        impact = np.full_like(price, bps * 1e-4)

    buy = trade & (delta > 0)
    sell = trade & ~buy
    # Buys: limited to the cash on hand when the target is at most fully invested.
    buy_price = price * (1.0 + impact)
    buy_commission = _commission_many(np.where(buy, delta, 0.0), buy_price, cost)
    limited = buy & (weight <= 1.0) & (delta * buy_price + buy_commission > cash)
    limited_delta = (cash - buy_commission) / buy_price
    buy = buy & ~(limited & (limited_delta <= 0))
    buy_delta = np.where(limited, limited_delta, delta)
    buy_commission = np.where(limited, _commission_many(np.where(buy, buy_delta, 0.0), buy_price, cost), buy_commission)
    buy_cash = cash - (buy_delta * buy_price + buy_commission)
    # Sells: proceeds less commission and the regulatory fees.
    sell_price = price * (1.0 - impact)
    sold = np.where(sell, -delta, 0.0)
    sell_commission = _commission_many(sold, sell_price, cost)
    sell_fees = cost.sec_fee_rate * sold * sell_price + np.minimum(cost.taf_per_share * sold, cost.taf_max)
    sell_cash = cash + (sold * sell_price - sell_commission - sell_fees)

    filled = buy | sell
    traded = np.where(buy, buy_delta, np.where(sell, delta, 0.0))
    fill_price = np.where(buy, buy_price, np.where(sell, sell_price, np.nan))
    return BatchFills(
        cash=np.where(buy, buy_cash, np.where(sell, sell_cash, cash)),
        position=np.where(filled, shares + traded, shares),
        shares=traded,
        price=fill_price,
        commission=np.where(buy, buy_commission, np.where(sell, sell_commission, 0.0)),
        fees=np.where(sell, sell_fees, 0.0),
        slippage=np.where(filled, np.abs(traded) * np.abs(fill_price - price), 0.0),
        filled=filled,
    )


def entries_after_fills(
    old_shares: np.ndarray, new_shares: np.ndarray, entry: np.ndarray, fill_price: np.ndarray
) -> np.ndarray:
    """Vectorised `tradeflow.rl.env.entry_after_fill`."""
    opened = (old_shares == 0.0) | ((old_shares > 0.0) != (new_shares > 0.0))
    grown = np.abs(new_shares) > np.abs(old_shares)
    with np.errstate(divide="ignore", invalid="ignore"):
        averaged = (old_shares * entry + (new_shares - old_shares) * fill_price) / new_shares
    out = np.where(opened, fill_price, np.where(grown, averaged, entry))
    return np.where(new_shares == 0.0, 0.0, out)


def unrealised_pnls(shares: np.ndarray, entry: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Vectorised `tradeflow.rl.env.unrealised_pnl`."""
    open_position = (shares != 0.0) & (entry > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pnl = np.log(close / np.where(open_position, entry, 1.0))
    return np.where(open_position, np.where(shares > 0.0, pnl, -pnl), 0.0)


class TradingVecEnv(VecEnv):
    """`n_envs` TradingEnv lanes over one set of shared arrays, auto-reset as SB3 expects.

    `seed` seeds lane i with `seed + i` (SB3's `VecEnv.seed` convention, which PPO calls with its
    own seed); a lane's start rows come from its own generator so lanes stay independent.
    """

    def __init__(
        self,
        market: MarketArrays,
        features: np.ndarray,
        config: EnvConfig,
        cost: CostModel,
        n_envs: int,
        seed: int,
        start_range: tuple[int, int] | None = None,
    ) -> None:
        self.arrays = EnvArrays(market, features, config, cost, start_range)
        self.config = config
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(n_envs, self.arrays.observation_space(), spaces.Discrete(N_ACTIONS))
        self._rngs = [np.random.default_rng(seed + i) for i in range(n_envs)]
        self._actions = np.zeros(n_envs, dtype=np.int64)
        self._row = np.zeros(n_envs, dtype=np.int64)
        self._steps = np.zeros(n_envs, dtype=np.int64)
        self._cash = np.zeros(n_envs)
        self._shares = np.zeros(n_envs)
        self._entry = np.zeros(n_envs)
        self._target = np.zeros(n_envs)
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

    def _observe(self) -> np.ndarray:
        pnl = unrealised_pnls(self._shares, self._entry, self.arrays.close[self._row])
        return self.arrays.builder.observations(self._row, self._target, pnl)

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
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        a, cfg = self.arrays, self.config
        act = self._actions
        target = np.where(act == BUY, 1.0, np.where(act == SELL, a.short_weight, self._target))
        t1 = self._row + 1
        equity_before = self._equity
        traded = np.zeros(self.num_envs)
        changed = np.flatnonzero(target != self._target)
        if len(changed):
            rows = t1[changed]
            old = self._shares[changed]
            fills = rebalance_many(self._cash[changed], old, target[changed], a.open[rows], a.volume[rows], a.cost)
            self._cash[changed] = fills.cash
            self._shares[changed] = fills.position
            entry = entries_after_fills(old, fills.position, self._entry[changed], fills.price)
            self._entry[changed] = np.where(fills.filled, entry, self._entry[changed])
            traded[changed] = np.where(fills.filled, np.abs(fills.shares) * fills.price, 0.0)
        self._target = target
        self._row = t1
        self._steps += 1
        equity = self._cash + self._shares * a.close[t1]
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
