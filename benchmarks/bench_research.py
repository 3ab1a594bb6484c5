"""Benchmark of the research layer (issue 3): env speed, PPO speed, learning quality, inference, backtests.

    .venv/bin/python benchmarks/bench_research.py [--quick] [--json out.json]

Everything runs in one process, each figure beside its reference measured in the same run:
  1. env steps/s: tradeflow's TradingEnv (single) and TradingVecEnv (64 lanes, env-steps/s = lanes x
     steps/s) against a FinRL-style pandas env (benchmarks/pandas_reference_env.py: a `df.loc` lookup
     per step) on 20 years of REAL SPY (+ VIX); a parity check first proves both envs give the same
     observations and rewards for the same actions, so only the data path differs;
  2. PPO speed: timesteps/s and wall time of `train_ppo` for --ppo-timesteps (100k) with the default
     PPOConfig against PPOConfig.sb3_defaults(), on the same data;
  3. learning quality, out of sample: both configs trained with the SAME timesteps on the SAME
     walk-forward folds of the sample data (train-spy's own load_dataset / plan_folds / train_model /
     evaluate_policy), several seeds, beside buy-and-hold on the same folds, with a paired comparison;
  4. single-decision latency p50/p99: RLPolicyStrategy.act(obs) and LoadedModel.act(obs) against
     SB3's own path (VecNormalize.normalize_obs + model.predict), on the same artifact and observations;
  5. a 20-year rule backtest (features precomputed): backtest(strategy, features) for the five rules
     against a naive per-row pandas loop (`.iloc`) that must reproduce the same equity curve.

Speed goals are reported here, never asserted as wall-clock limits in tests (house rule).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from _common import machine  # benchmarks/ is sys.path[0] when run as a script
from pandas_reference_env import PandasReferenceEnv, finrl_frame

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.backtest import backtest
from tradeflow.config import Settings
from tradeflow.data.ingest import IngestRequest, ingest
from tradeflow.features import Features, build_features
from tradeflow.research.config import FoldConfig, TrainSpyConfig
from tradeflow.research.walkforward import evaluate_baseline, evaluate_policy, load_dataset, plan_folds, train_model
from tradeflow.rl import EnvConfig, PPOConfig, TradingEnv
from tradeflow.rl.artifact import MODEL_FILE, NORMALIZE_FILE, load_artifact
from tradeflow.rl.env import ObservationBuilder
from tradeflow.rl.policy import RLPolicyStrategy
from tradeflow.rl.train import train_ppo
from tradeflow.rl.vec_env import TradingVecEnv
from tradeflow.sim import CostModel, rebalance
from tradeflow.strategies import make_strategy, strategy_names

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "real"
YEARS = 20
LANES = 64
NOW = pd.Timestamp("2026-11-21T21:00:00Z")  # any instant after the data: ingest's `now`
GOALS = {"env_ratio": 100.0, "ppo_100k_s": 15.0, "inference_p99_ms": 0.5, "backtest_ms": 5.0}
PACKAGES = ("numpy", "pandas", "torch", "stable-baselines3", "gymnasium")
T = TypeVar("T")


@dataclass(frozen=True)
class Mode:
    """Sizes of one run; --quick shrinks everything for a smoke run (figures then not comparable)."""

    repeat: int  # timed repeats of the env and backtest figures
    ref_steps: int
    single_steps: int
    vec_steps: int  # vec steps of LANES lanes
    backtest_repeat: int
    ref_backtest_repeat: int
    ppo_timesteps: int
    ppo_repeat: int  # default config
    sb3_repeat: int
    learn_timesteps: int
    folds: int
    seeds: tuple[int, ...]
    inference_calls: int
    inference_repeat: int


FULL = Mode(5, 3_000, 50_000, 2_000, 30, 3, 100_000, 3, 1, 49_152, 3, (0, 1), 5_000, 3)
QUICK = Mode(3, 500, 5_000, 200, 5, 1, 8_192, 1, 1, 8_192, 1, (0,), 1_000, 1)


# -- timing helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Median and min of repeated runs (seconds); the min is the least disturbed by other load."""

    median: float
    min: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Stat:
        return cls(statistics.median(runs), min(runs), tuple(runs))

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "runs_s": list(self.runs)}


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    gc.collect()  # garbage of the previous run is not charged to this one
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _clock(fn: Callable[[], object]) -> float:
    """Wall time of one call, without the collect of `_timed` (for millisecond-scale calls)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _load() -> float:
    return os.getloadavg()[0]


def _say(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.1f} s, load {_load():.2f}] {msg}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------


def real_spy_features(data_dir: Path) -> Features:
    """Features of REAL SPY (+ VIX), built on the whole file (so indicators are warm), cut to 20 years."""
    missing = [f for f in ("SPY.csv", "VIX.csv") if not (data_dir / f).is_file()]
    if missing:
        raise SystemExit(f"benchmark needs the real daily bars {missing} in {data_dir}; pass --data-dir")
    spy = read_bar_file(data_dir / "SPY.csv", "SPY")
    vix = read_bar_file(data_dir / "VIX.csv", "^VIX")
    features = build_features(spy, vix)
    sessions = pd.DatetimeIndex(features.sessions)
    first = int(sessions.searchsorted(sessions[-1] - pd.DateOffset(years=YEARS), side="right"))
    return features.slice(first, len(features))


# -- 1. env steps/s --------------------------------------------------------------------------------


def check_env_parity(ours: TradingEnv, ref: PandasReferenceEnv, rng: np.random.Generator, episodes: int = 5) -> float:
    """Same start, same actions: observations must be equal and rewards equal to the bit; returns max |dr|."""
    worst = 0.0
    for _ in range(episodes):
        start = int(rng.integers(ours.arrays.start_low, ours.arrays.start_high))
        o1, _ = ours.reset(options={"start": start})
        o2, _ = ref.reset(options={"start": start})
        done = False
        while not done:
            if not np.array_equal(o1, o2):
                raise SystemExit(f"benchmark aborted: the reference env's observation differs at row {ours.row}")
            action = int(rng.integers(3))
            o1, r1, term1, trunc1, _ = ours.step(action)
            o2, r2, term2, trunc2, _ = ref.step(action)
            if (term1, trunc1) != (term2, trunc2):
                raise SystemExit(f"benchmark aborted: the envs disagree on the episode end at row {ours.row}")
            worst = max(worst, abs(r1 - r2))
            done = term1 or trunc1
    if worst > 1e-12:
        raise SystemExit(f"benchmark aborted: rewards of the reference env differ by up to {worst:g}")
    return worst


def _run_single(env: TradingEnv | PandasReferenceEnv, actions: list[int]) -> float:
    env.reset(seed=0)
    t0 = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - t0


def _run_vec(env: TradingVecEnv, actions: np.ndarray) -> float:
    env.reset()
    t0 = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)  # step_async + step_wait; auto-resets finished lanes as SB3 expects
    return time.perf_counter() - t0


def bench_env(features: Features, mode: Mode) -> dict[str, Any]:
    """Per env-step time of the three envs, interleaved per repeat so they share the same load."""
    config, cost = EnvConfig(), CostModel()
    market, matrix = features.market(), features.matrix()
    ours = TradingEnv(market, matrix, config, cost)
    ref = PandasReferenceEnv(finrl_frame(features), features.spec.names, config, cost)
    vec = TradingVecEnv(market, matrix, config, cost, n_envs=LANES, seed=0)
    rng = np.random.default_rng(0)
    parity = check_env_parity(ours, ref, rng)
    actions = rng.integers(0, 3, size=max(mode.ref_steps, mode.single_steps)).tolist()
    vec_actions = rng.integers(0, 3, size=(mode.vec_steps, LANES))
    per_step: dict[str, list[float]] = {"reference": [], "single": [], "vec": []}
    _run_single(ref, actions[:100])  # warm-up: first-call costs of pandas and numpy
    _run_single(ours, actions[:100])
    _run_vec(vec, vec_actions[:10])
    for _ in range(mode.repeat):
        gc.collect()
        per_step["reference"].append(_run_single(ref, actions[: mode.ref_steps]) / mode.ref_steps)
        gc.collect()
        per_step["single"].append(_run_single(ours, actions[: mode.single_steps]) / mode.single_steps)
        gc.collect()
        per_step["vec"].append(_run_vec(vec, vec_actions) / (mode.vec_steps * LANES))
    stats = {k: Stat.of(v) for k, v in per_step.items()}
    ref_median = stats["reference"].median
    return {
        "rows": len(features),
        "observation_size": ours.observation_space.shape,
        "parity_max_abs_reward_diff": parity,
        "steps": {"reference": mode.ref_steps, "single": mode.single_steps, "vec": mode.vec_steps * LANES},
        "per_step": stats,
        "steps_per_s": {k: 1.0 / s.median for k, s in stats.items()},
        "ratio_vs_reference": {k: ref_median / s.median for k, s in stats.items()},
    }


# -- 2. PPO speed ----------------------------------------------------------------------------------


def bench_ppo(features: Features, mode: Mode) -> dict[str, Any]:
    """train_ppo wall time (env + model construction included), the two configs interleaved."""
    market, matrix = features.market(), features.matrix()
    rows = (0, len(features))
    configs = {
        "default": (PPOConfig(total_timesteps=mode.ppo_timesteps), mode.ppo_repeat),
        "sb3_defaults": (PPOConfig.sb3_defaults(total_timesteps=mode.ppo_timesteps), mode.sb3_repeat),
    }
    walls: dict[str, list[float]] = {name: [] for name in configs}
    ran: dict[str, int] = {}
    for i in range(max(r for _, r in configs.values())):
        for name, (config, repeat) in configs.items():
            if i < repeat:
                wall, trained = _timed(partial(train_ppo, market, matrix, rows, config, CostModel(), seed=0))
                walls[name].append(wall)
                ran[name] = int(trained.model.num_timesteps)
    out: dict[str, Any] = {"requested_timesteps": mode.ppo_timesteps}
    for name, (config, _) in configs.items():
        stat = Stat.of(walls[name])
        out[name] = {
            "timesteps": ran[name],
            "rollout": config.n_envs * config.n_steps,
            "gradient_steps": -(-ran[name] // (config.n_envs * config.n_steps))
            * config.n_epochs
            * (config.n_envs * config.n_steps // config.batch_size),
            "wall": stat,
            "timesteps_per_s": ran[name] / stat.median,
        }
    return out


# -- 3. learning quality ---------------------------------------------------------------------------


def _paired(diffs: np.ndarray, rng: np.random.Generator, resamples: int = 10_000) -> dict[str, Any]:
    """Mean paired difference with a percentile-bootstrap 95% CI, and the sign count."""
    idx = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "n": len(diffs),
        "mean": float(diffs.mean()),
        "ci95": [float(lo), float(hi)],
        "wins": int((diffs > 1e-12).sum()),
        "ties": int((np.abs(diffs) <= 1e-12).sum()),
        "losses": int((diffs < -1e-12).sum()),
    }


def bench_learning(workdir: Path, mode: Mode, t0: float, default_timesteps: int | None = None) -> dict[str, Any]:
    """Both configs on the same folds and seeds of the sample data, each run out of sample.

    Both get `mode.learn_timesteps` (a multiple of both rollouts, so both run exactly that many)
    unless `default_timesteps` gives the default config another budget, e.g. the one that costs it
    the wall time SB3's defaults need for theirs.
    """
    budget = {"default": default_timesteps or mode.learn_timesteps, "sb3_defaults": mode.learn_timesteps}
    settings = Settings(data_dir=workdir / "data")
    result = ingest(IngestRequest(source="sample", symbols=("SPY", "^VIX")), settings, now=NOW)
    if not result.report.passed:
        raise SystemExit(f"benchmark aborted: the sample ingest failed the gate: {result.report.summary_line()}")
    folds_config = FoldConfig(max_folds=mode.folds)
    configs = {
        "default": TrainSpyConfig(
            folds=folds_config, seeds=mode.seeds, ppo=PPOConfig(total_timesteps=budget["default"])
        ),
        "sb3_defaults": TrainSpyConfig(
            folds=folds_config, seeds=mode.seeds, ppo=PPOConfig.sb3_defaults(total_timesteps=budget["sb3_defaults"])
        ),
    }
    base = configs["default"]
    dataset = load_dataset(base, settings)
    folds = plan_folds(dataset, base)
    runs: list[dict[str, Any]] = []
    artifact: str | None = None
    for fold in folds:
        hold = evaluate_baseline("buy_and_hold", dataset, fold, base)
        runs.append({"config": "buy_and_hold", "fold": fold.index, "seed": None, **hold.metrics, "train_s": 0.0})
        for seed in mode.seeds:
            for name, config in configs.items():  # interleaved: both configs see the same load
                out = workdir / "models" / f"{name}-fold{fold.index}-seed{seed}"
                rows = (fold.train_start_row, fold.train_stop_row)
                wall, model = _timed(partial(train_model, dataset, rows, config, seed, out, None))
                ev = evaluate_policy(model, dataset, fold, config, seed)
                runs.append({"config": name, "fold": fold.index, "seed": seed, **ev.metrics, "train_s": wall})
                artifact = artifact or str(out)
                _say(
                    f"  fold {fold.index} seed {seed} {name}: {wall:.1f} s, OOS Sharpe {ev.metrics['sharpe']:.2f}",
                    t0,
                )
    frame = pd.DataFrame(runs)
    summary: dict[str, Any] = {}
    for name in ("default", "sb3_defaults", "buy_and_hold"):
        part = frame[frame["config"] == name]
        summary[name] = {
            "n": len(part),
            **{
                f"{k}_{agg}": float(getattr(part[k], agg)(ddof=1) if agg == "std" else getattr(part[k], agg)())
                for k in ("sharpe", "total_return", "max_drawdown", "exposure", "trades")
                for agg in ("mean", "std")
            },
            "train_s_median": float(part["train_s"].median()),
        }
    ppo = frame[frame["config"] != "buy_and_hold"].pivot_table(
        index=["fold", "seed"], columns="config", values="sharpe"
    )
    bh = frame[frame["config"] == "buy_and_hold"].set_index("fold")["sharpe"]
    rng = np.random.default_rng(12345)
    paired = {
        "default_minus_sb3_sharpe": _paired((ppo["default"] - ppo["sb3_defaults"]).to_numpy(), rng),
        "default_minus_bh_sharpe": _paired(
            (ppo["default"] - bh.reindex(ppo.index.get_level_values("fold")).to_numpy()).to_numpy(), rng
        ),
        "sb3_minus_bh_sharpe": _paired(
            (ppo["sb3_defaults"] - bh.reindex(ppo.index.get_level_values("fold")).to_numpy()).to_numpy(), rng
        ),
    }
    return {
        "data": f"sample SPY + ^VIX, {len(dataset.features)} feature rows "
        f"{pd.Timestamp(dataset.features.sessions[0]).date()}..{pd.Timestamp(dataset.features.sessions[-1]).date()}",
        "timesteps": budget,
        "seeds": list(mode.seeds),
        "folds": [
            {
                "index": f.index,
                "train": f"{f.train_start.date()}..{f.train_end.date()}",
                "test": f"{f.test_start.date()}..{f.test_end.date()}",
            }
            for f in folds
        ],
        "runs": runs,
        "summary": summary,
        "paired": paired,
        "verdict": _verdict(paired["default_minus_sb3_sharpe"]),
        "artifact": artifact,
        "observations_from": dataset.features,
    }


def _verdict(p: dict[str, Any]) -> str:
    lo, hi = p["ci95"]
    if lo >= 0:
        return "the default config's OOS Sharpe is at least SB3's (95% CI of the mean difference >= 0)"
    if hi <= 0:
        return (
            f"the default config learns WORSE than SB3's defaults ({p['mean']:+.2f} Sharpe, "
            f"95% CI [{lo:.2f}, {hi:.2f}])"
        )
    return (
        f"no detectable difference: mean paired Sharpe {p['mean']:+.2f}, 95% CI [{lo:.2f}, {hi:.2f}] "
        f"includes 0 (wins/ties/losses {p['wins']}/{p['ties']}/{p['losses']})"
    )


# -- 4. inference latency --------------------------------------------------------------------------


def _latencies(fn: Callable[[np.ndarray], int], observations: np.ndarray, warmup: int = 200) -> np.ndarray:
    for obs in observations[:warmup]:
        fn(obs)
    gc.collect()
    out = np.empty(len(observations))
    clock = time.perf_counter_ns
    for i, obs in enumerate(observations):
        t = clock()
        fn(obs)
        out[i] = clock() - t
    return out / 1e6  # ms


def bench_inference(artifact: Path, features: Features, mode: Mode) -> dict[str, Any]:
    """One decision per call on real observations; SB3's own predict path as the reference."""
    from stable_baselines3 import PPO  # the reference only: src/ keeps SB3 under tradeflow.rl

    model = load_artifact(artifact)
    strategy = RLPolicyStrategy(model)
    sb3 = PPO.load(artifact / MODEL_FILE, device="cpu")
    with (artifact / NORMALIZE_FILE).open("rb") as fh:
        vec_normalize = pickle.load(fh)  # written by this run, a few lines up

    def sb3_predict(obs: np.ndarray) -> int:
        action, _ = sb3.predict(vec_normalize.normalize_obs(obs), deterministic=True)
        return int(action)

    rng = np.random.default_rng(7)
    window = model.env_config.window
    builder = ObservationBuilder(features.matrix(), window)
    rows = rng.integers(window - 1, len(features), size=mode.inference_calls)
    targets = rng.choice([0.0, 1.0], size=mode.inference_calls)
    pnls = np.where(targets > 0, rng.normal(0.0, 0.05, size=mode.inference_calls), 0.0)
    observations = builder.observations(rows, targets, pnls)
    fns: dict[str, Callable[[np.ndarray], int]] = {
        "RLPolicyStrategy.decide": strategy.decide,
        "LoadedModel.act": model.act,
        "SB3 normalize_obs + predict": sb3_predict,
    }
    ours = np.array([strategy.act(o) for o in observations])
    theirs = np.array([sb3_predict(o) for o in observations])
    p50: dict[str, list[float]] = {k: [] for k in fns}
    p99: dict[str, list[float]] = {k: [] for k in fns}
    mean: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(mode.inference_repeat):
        for name, fn in fns.items():
            lat = _latencies(fn, observations)
            p50[name].append(float(np.percentile(lat, 50)))
            p99[name].append(float(np.percentile(lat, 99)))
            mean[name].append(float(lat.mean()))
    return {
        "calls": mode.inference_calls,
        "torch_threads": _torch_threads(),
        "action_mismatches_vs_sb3": int((ours != theirs).sum()),
        "actions_seen": sorted({int(a) for a in ours}),
        "p50_ms": {k: Stat.of(v) for k, v in p50.items()},
        "p99_ms": {k: Stat.of(v) for k, v in p99.items()},
        "mean_ms": {k: Stat.of(v) for k, v in mean.items()},
    }


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


# -- 5. rule backtests -----------------------------------------------------------------------------


def _rule_target(rule: str, row: pd.Series, held: float) -> float:
    """The five rules as a per-row function (the latching rules carry their state in `held`)."""
    if rule == "buy_and_hold":
        return 1.0
    if rule == "sma":
        return 1.0 if row["sma_60_gap"] > row["sma_30_gap"] else 0.0
    if rule == "macd":
        return 1.0 if row["macd"] > row["macd_signal"] else 0.0
    if rule == "rsi":
        return 1.0 if row["rsi_30"] < 45.0 else (0.0 if row["rsi_30"] > 60.0 else held)
    if rule == "mean_reversion":
        if row["boll_lower"] > 0.0:
            return 1.0
        return 0.0 if row["boll_upper"] + row["boll_lower"] < 0.0 else held
    raise ValueError(rule)


def pandas_loop_backtest(df: pd.DataFrame, rule: str, cost: CostModel, capital: float) -> dict[str, Any]:
    """The naive reference: one Python iteration per row over the DataFrame with `.iloc`.

    Same timing as tradeflow.sim (decided at the close of t, filled at the open of t+1, trade only
    when the target changes) and the same `rebalance` arithmetic, so its equity curve must match.
    """
    cash, shares = capital, 0.0
    decided = held = 0.0  # target decided at the last close; target the book last traded to
    equity = np.empty(len(df))
    for i in range(len(df)):
        row = df.iloc[i]
        if decided != held:
            cash, shares, _ = rebalance(cash, shares, decided, row["open"], row["volume"], cost, i)
            held = decided
        equity[i] = cash + shares * row["close"]
        decided = _rule_target(rule, row, decided)
    returns = np.diff(equity) / equity[:-1]
    sharpe = float(returns.mean() / returns.std(ddof=1) * np.sqrt(252)) if returns.std() > 0 else float("nan")
    return {"equity": equity, "total_return": float(equity[-1] / capital - 1), "sharpe": sharpe}


def bench_backtest(features: Features, mode: Mode) -> dict[str, Any]:
    """backtest(strategy, features) per rule against the pandas loop, with an equity parity check."""
    cost, capital = CostModel(), 100_000.0
    market = features.market()
    df = features.frame.assign(open=market.open, close=market.close, volume=market.volume)
    out: dict[str, Any] = {"rows": len(features)}
    for name in strategy_names():
        strategy = make_strategy(name)
        result = backtest(strategy, features, cost, capital)  # warm-up, and the figures to check
        reference = pandas_loop_backtest(df, name, cost, capital)
        gap = float(np.max(np.abs(result.sim.equity / reference["equity"] - 1.0)))
        if gap > 1e-9:
            raise SystemExit(f"benchmark aborted: the pandas-loop backtest of {name} differs by {gap:g} (relative)")
        # Steady state, as a research run calls it many times in a row: one collect per block. A
        # gc.collect() right before each call leaves the caches and allocator cold and about doubles
        # a millisecond-scale call, so that case is reported on its own ("after gc").
        gc.collect()
        ours = [_clock(partial(backtest, strategy, features, cost, capital)) for _ in range(mode.backtest_repeat)]
        cold = [_timed(partial(backtest, strategy, features, cost, capital))[0] for _ in range(mode.backtest_repeat)]
        gc.collect()
        ref = [_clock(partial(pandas_loop_backtest, df, name, cost, capital)) for _ in range(mode.ref_backtest_repeat)]
        out[name] = {
            "ours": Stat.of(ours),
            "ours_after_gc": Stat.of(cold),
            "reference": Stat.of(ref),
            "ratio": statistics.median(ref) / statistics.median(ours),
            "equity_max_rel_diff": gap,
            "trades": int(result.metrics["trades"]),
            "total_return": float(result.metrics["total_return"]),
        }
    return out


# -- machine and output ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "observations_from"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, np.floating):
        return float(value)
    return value


def _table(title: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    width = max(len(title), *(len(label) for label, _ in rows)) + 2
    cw = max(18, *(len(c) + 2 for c in columns), *(len(x) + 2 for _, cells in rows for x in cells))
    head = title.ljust(width) + "".join(f"{c:>{cw}}" for c in columns)
    return [
        head,
        "-" * len(head),
        *(label.ljust(width) + "".join(f"{c:>{cw}}" for c in cells) for label, cells in rows),
    ]


def _us(stat: Stat) -> str:
    return f"{stat.median * 1e6:.2f} ({stat.min * 1e6:.2f})"


def _ms(stat: Stat, digits: int = 3) -> str:
    return f"{stat.median * 1e3:.{digits}f} ({stat.min * 1e3:.{digits}f})"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(res: dict[str, Any]) -> str:
    m, v = res["machine"], res["machine"]["versions"]
    lines = [
        f"tradeflow research benchmark ({res['mode']} mode), {res['started']}",
        f"machine: {m['usable_cores']} cores ({m['cpu']}); Python {m['python']}, numpy {v['numpy']}, "
        f"pandas {v['pandas']}, torch {v['torch']}, stable-baselines3 {v['stable-baselines3']}",
        "load average (1 min): " + ", ".join(f"{k} {x:.2f}" for k, x in res["load"].items()),
        "figures: median of repeats (min in brackets); ratios against the reference of the same run",
        "",
    ]
    renderers: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "env": _render_env,
        "ppo": _render_ppo,
        "learning": _render_learning,
        "inference": _render_inference,
        "backtest": _render_backtest,
    }
    for name, fn in renderers.items():
        if name in res:
            lines += [*fn(res[name]), ""]
    lines.append(f"whole benchmark {res['elapsed_s']:.0f} s")
    return "\n".join(lines)


def _render_env(env: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    g = GOALS["env_ratio"]
    rows = [
        (
            f"pandas reference (df.loc/step), {env['steps']['reference']:,} steps",
            [_us(env["per_step"]["reference"]), f"{env['steps_per_s']['reference']:,.0f}", "1x", "-"],
        ),
        (
            f"TradingEnv, single, {env['steps']['single']:,} steps",
            [
                _us(env["per_step"]["single"]),
                f"{env['steps_per_s']['single']:,.0f}",
                f"{env['ratio_vs_reference']['single']:.0f}x",
                _met(env["ratio_vs_reference"]["single"] >= g),
            ],
        ),
        (
            f"TradingVecEnv, {LANES} lanes, {env['steps']['vec']:,} env-steps",
            [
                _us(env["per_step"]["vec"]),
                f"{env['steps_per_s']['vec']:,.0f}",
                f"{env['ratio_vs_reference']['vec']:.0f}x",
                _met(env["ratio_vs_reference"]["vec"] >= g),
            ],
        ),
    ]
    lines += _table(
        f"1. env, real SPY {env['rows']:,} rows, obs {env['observation_size'][0]}",
        ["us/env-step", "env-steps/s", "vs reference", f">= {g:.0f}x"],
        rows,
    )
    lines.append(f"(parity first: same obs and rewards, max |reward diff| {env['parity_max_abs_reward_diff']:g})")
    return lines


def _render_ppo(ppo: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    goal = GOALS["ppo_100k_s"]
    rows = []
    for name in ("default", "sb3_defaults"):
        p = ppo[name]
        wall = p["wall"]
        per_100k = wall.median / p["timesteps"] * 100_000
        rows.append(
            (
                f"{name} ({len(wall.runs)} run{'s' if len(wall.runs) > 1 else ''})",
                [
                    f"{p['timesteps']:,}",
                    f"{p['gradient_steps']:,}",
                    f"{wall.median:.1f} ({wall.min:.1f})",
                    f"{p['timesteps_per_s']:,.0f}",
                    f"{per_100k:.1f}",
                ],
            )
        )
    ratio = ppo["sb3_defaults"]["wall"].median / ppo["sb3_defaults"]["timesteps"]
    ratio /= ppo["default"]["wall"].median / ppo["default"]["timesteps"]
    head = f"2. PPO train_ppo, {ppo['requested_timesteps']:,} requested"
    lines += _table(head, ["timesteps run", "gradient steps", "wall s", "timesteps/s", "s per 100k"], rows)
    d = ppo["default"]
    lines.append(
        f"default vs sb3_defaults: {ratio:.1f}x faster per timestep; goal <= {goal:g} s for 100k with the default: "
        f"{_met(d['wall'].median / d['timesteps'] * 100_000 <= goal)}"
    )
    return lines


def _render_learning(learn: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    s = learn["summary"]
    budget = ", ".join(f"{k} {v:,}" for k, v in learn["timesteps"].items())
    lines += [
        f"3. learning quality, out of sample: {learn['data']}; timesteps per run: {budget}; "
        f"seeds {learn['seeds']}; folds (test windows): " + ", ".join(f["test"] for f in learn["folds"]),
    ]
    rows = []
    for name in ("default", "sb3_defaults", "buy_and_hold"):
        x = s[name]
        rows.append(
            (
                f"{name} (n={x['n']})",
                [
                    f"{x['sharpe_mean']:.2f} ± {x['sharpe_std']:.2f}",
                    f"{100 * x['total_return_mean']:.1f}% ± {100 * x['total_return_std']:.1f}",
                    f"{100 * x['max_drawdown_mean']:.1f}%",
                    f"{x['exposure_mean']:.2f}",
                    f"{x['trades_mean']:.1f}",
                    f"{x['train_s_median']:.1f}",
                ],
            )
        )
    lines += _table(
        "config",
        ["OOS Sharpe", "total return", "max drawdown", "exposure", "trades", "train s/run"],
        rows,
    )
    for key, label in (
        ("default_minus_sb3_sharpe", "default - sb3_defaults"),
        ("default_minus_bh_sharpe", "default - buy&hold"),
        ("sb3_minus_bh_sharpe", "sb3_defaults - buy&hold"),
    ):
        p = learn["paired"][key]
        lines.append(
            f"paired Sharpe, {label}: mean {p['mean']:+.2f}, 95% bootstrap CI [{p['ci95'][0]:+.2f}, "
            f"{p['ci95'][1]:+.2f}], wins/ties/losses {p['wins']}/{p['ties']}/{p['losses']} of {p['n']}"
        )
    lines.append(f"verdict: {learn['verdict']}")
    return lines


def _render_inference(inf: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    goal = GOALS["inference_p99_ms"]
    rows = [
        (
            name,
            [
                f"{inf['p50_ms'][name].median:.3f} ({inf['p50_ms'][name].min:.3f})",
                f"{inf['p99_ms'][name].median:.3f} ({inf['p99_ms'][name].min:.3f})",
                f"{inf['mean_ms'][name].median:.3f}",
                _met(inf["p99_ms"][name].median <= goal) if "SB3" not in name else "(reference)",
            ],
        )
        for name in inf["p50_ms"]
    ]
    head = f"4. one decision, {inf['calls']:,} calls x {len(next(iter(inf['p50_ms'].values())).runs)}"
    lines += _table(head, ["p50 ms", "p99 ms", "mean ms", f"p99 <= {goal:g} ms"], rows)
    lines.append(
        f"(torch threads {inf['torch_threads']}; actions differing from SB3's: {inf['action_mismatches_vs_sb3']} of "
        f"{inf['calls']}; actions seen {inf['actions_seen']})"
    )
    return lines


def _render_backtest(bt: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    goal = GOALS["backtest_ms"]
    rows = [
        (
            name,
            [
                _ms(bt[name]["ours"]),
                _ms(bt[name]["ours_after_gc"]),
                _ms(bt[name]["reference"], 1),
                f"{bt[name]['ratio']:.0f}x",
                str(bt[name]["trades"]),
                _met(bt[name]["ours"].median * 1e3 <= goal),
            ],
        )
        for name in strategy_names()
    ]
    head = f"5. backtest, real SPY {bt['rows']:,} sessions"
    columns = ["tradeflow ms", "after gc ms", "pandas loop ms", "vs reference", "trades", f"<= {goal:g} ms"]
    lines += _table(head, columns, rows)
    return lines


# -- main ------------------------------------------------------------------------------------------


SECTIONS = ("env", "backtest", "ppo", "learning", "inference")


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in chosen if x not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"sections are a comma-separated subset of {','.join(SECTIONS)}")
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke run with small sizes (figures not comparable)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with the real SPY.csv and VIX.csv")
    p.add_argument(
        "--sections", type=_sections, default=SECTIONS, help=f"run only these (default all: {','.join(SECTIONS)})"
    )
    p.add_argument(
        "--learn-default-timesteps",
        type=int,
        default=None,
        help="the default config's budget in the learning section (default: the same as SB3's defaults get)",
    )
    p.add_argument(
        "--learn-seeds",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=None,
        help="seeds of the learning section, e.g. 0,1,2,3 (default: the mode's)",
    )
    args = p.parse_args(argv)
    if "inference" in args.sections and "learning" not in args.sections:
        p.error("the inference section times a model the learning section trains: add learning")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.learn_seeds:
        mode = dataclasses.replace(mode, seeds=args.learn_seeds)
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "sizes": mode.__dict__,
        "command": " ".join([".venv/bin/python", "benchmarks/bench_research.py", *(argv or sys.argv[1:])]),
        "machine": machine(PACKAGES),
        "load": {"start": _load()},
    }
    features = real_spy_features(args.data_dir)
    first, last = (pd.Timestamp(x).date() for x in features.sessions[[0, -1]])
    res["data"] = f"real SPY + VIX ({args.data_dir}), {len(features):,} sessions {first}..{last}"
    _say(f"data: {res['data']}", t0)
    sections = args.sections
    if "env" in sections:
        _say("1. env steps/s ...", t0)
        res["load"]["env"] = _load()
        res["env"] = bench_env(features, mode)
    if "backtest" in sections:
        _say("5. rule backtests ...", t0)
        res["load"]["backtest"] = _load()
        res["backtest"] = bench_backtest(features, mode)
    if "ppo" in sections:
        _say("2. PPO speed ...", t0)
        res["load"]["ppo"] = _load()
        res["ppo"] = bench_ppo(features, mode)
    if "learning" in sections:
        with tempfile.TemporaryDirectory(prefix="bench-research-") as tmp:
            _say("3. learning quality (ingest sample, then both configs per fold and seed) ...", t0)
            res["load"]["learning"] = _load()
            learning = bench_learning(Path(tmp), mode, t0, args.learn_default_timesteps)
            sample_features = learning.pop("observations_from")
            res["learning"] = learning
            if "inference" in sections:
                _say("4. inference latency ...", t0)
                res["load"]["inference"] = _load()
                res["inference"] = bench_inference(Path(str(learning["artifact"])), sample_features, mode)
    res["load"]["end"] = _load()
    res["elapsed_s"] = time.perf_counter() - t0
    print(render(res))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(res), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
