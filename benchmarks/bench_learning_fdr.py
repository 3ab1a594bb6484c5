"""False adoptions and power of the governed experiment loop (issue: learning), on real SPY trades.

    .venv/bin/python benchmarks/bench_learning_fdr.py [--seeds 1000] [--power-seeds 500]
        [--effects 0.01,0.02,0.03] [--jobs N] [--json out.json]

Each seed runs one experiment through the real code, from `propose` to its conclusion by `review`:
sequential hold-N-sessions SPY trades (N uniform in 1..10, 0..2 sessions flat between trades, a
0.05% round-trip cost) from Yahoo's adjusted closes (../shared/data/real/SPY.csv), starting at a
random session; each trade carries `assign_arm(experiment_id, entry_session, 0.2)`; `review` runs on
every session on which a trade exits, on the trades exited by then (sessions without an exit see
the same frame and cannot change anything; tests/property/test_learning_fdr.py proves that).

1. identical arms (the parameter, 10 vs 12, does not touch the returns): every adoption is false;
2. power: the test arm's trades get +effect per trade, for each --effects value;
3. for contrast, NOT the engine: a naive design that re-tests all trades seen so far at every
   exit once both arms have 30, and keeps running while not significant, until the stream ends
   (400 trades, ~80 in test), on the same streams. It shows what the pre-registered horizon buys.

Rates come with a 95% Wilson interval. The stream generator is repeated in the test on purpose:
tests never import benchmarks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402
from tradeflow.learning import LearningStore, assign_arm, propose, review  # noqa: E402

NOW = dt.datetime(2026, 1, 5, 21, 0, tzinfo=dt.UTC)
ALLOCATION = 0.2
MIN_TRADES = 30
ALPHA = 0.05
MIN_EFFECT = 0.005
TRADES_PER_SEED = 400
COST = 0.0005


def load_spy(data_dir: Path) -> tuple[list[dt.date], np.ndarray]:
    path = data_dir / "SPY.csv"
    if not path.exists():
        sys.exit(f"real data missing: {path} (../shared/data/real must sit beside the repo)")
    bars = pd.read_csv(path, usecols=["Date", "Adj Close"]).dropna()
    return [dt.date.fromisoformat(d) for d in bars["Date"]], bars["Adj Close"].to_numpy(dtype=float)


def trade_stream(
    dates: list[dt.date], closes: np.ndarray, seed: int, experiment_id: str, effect: float = 0.0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    i = int(rng.integers(0, len(dates) - TRADES_PER_SEED * 8))
    rows = []
    while len(rows) < TRADES_PER_SEED:
        j = i + int(rng.integers(1, 11))
        arm = assign_arm(experiment_id, dates[i], ALLOCATION)
        ret = closes[j] / closes[i] - 1.0 - COST + (effect if arm == "test" else 0.0)
        rows.append((f"{experiment_id}-{len(rows)}", "fdr", dates[i], dates[j], ret, arm, experiment_id))
        i = j + int(rng.integers(0, 3))
    columns = ["trade_id", "strategy", "entry_session", "exit_session", "return_net", "arm", "experiment_id"]
    return pd.DataFrame(rows, columns=columns)


def engine_outcome(store: LearningStore, trades: pd.DataFrame, exp_id: str) -> tuple[str, int]:
    """(outcome, trades exited at the conclusion) of the real loop on one stream."""
    exits = trades["exit_session"].tolist()
    propose(store, exp_id, "lookback", 10.0, 12.0, trades["entry_session"].iloc[0], experiment_id=exp_id, now=NOW)
    k = 0
    for session in sorted(set(exits)):
        while k < len(exits) and exits[k] <= session:
            k += 1
        actions = review(store, trades.iloc[:k], session, now=NOW)
        if actions:
            return str(actions[0].kind), k
    return "unfinished", k


def naive_outcome(trades: pd.DataFrame) -> str:
    """The design the engine avoids: Welch on everything seen so far at every exit, keep going."""
    arms = trades["arm"].to_numpy(dtype=object)
    rets = trades["return_net"].to_numpy(dtype=float)
    for k in range(1, len(trades) + 1):
        c, t = rets[:k][arms[:k] == "control"], rets[:k][arms[:k] == "test"]
        if len(c) < MIN_TRADES or len(t) < MIN_TRADES:
            continue
        p = stats.ttest_ind(t, c, equal_var=False).pvalue
        if p < ALPHA and t.mean() - c.mean() > MIN_EFFECT:
            return "adopted"
    return "rejected"  # the stream ended without a significant look


def run_chunk(args: tuple[str, list[int], float, bool]) -> list[dict[str, Any]]:
    data_dir, seeds, effect, naive = args
    dates, closes = load_spy(Path(data_dir))
    out = []
    with tempfile.TemporaryDirectory() as tmp, LearningStore(Path(tmp) / "learning.sqlite") as store:
        for seed in seeds:
            exp_id = f"fdr-{seed}"  # one strategy per seed: pacing and "one running" are per strategy
            trades = trade_stream(dates, closes, seed, exp_id, effect)
            outcome, k = engine_outcome(store, trades, exp_id)
            row = {"seed": seed, "outcome": outcome, "trades_at_conclusion": k}
            row["naive"] = naive_outcome(trades) if naive else None
            row["sd"] = float(trades["return_net"].std())
            row["kurtosis"] = float(stats.kurtosis(trades["return_net"]))
            out.append(row)
    return out


def run(data_dir: Path, seeds: list[int], effect: float, naive: bool, jobs: int) -> list[dict[str, Any]]:
    chunks = [(str(data_dir), seeds[i::jobs], effect, naive) for i in range(jobs)]
    if jobs == 1:
        return run_chunk(chunks[0])
    with ProcessPoolExecutor(jobs) as pool:
        return [row for part in pool.map(run_chunk, chunks) for row in part]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(rows: list[dict[str, Any]], key: str = "outcome") -> dict[str, Any]:
    n = len(rows)
    counts = {o: sum(r[key] == o for r in rows) for o in ("adopted", "rejected", "unfinished")}
    lo, hi = wilson(counts["adopted"], n)
    return {"seeds": n, **counts, "rate": counts["adopted"] / n if n else math.nan, "ci95": [lo, hi]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--power-seeds", type=int, default=500)
    ap.add_argument("--effects", default="0.01,0.02,0.03")
    ap.add_argument("--jobs", type=int, default=max(1, min(8, len(__import__("os").sched_getaffinity(0)))))
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".." / "shared" / "data" / "real")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    effects = [float(e) for e in args.effects.split(",") if e.strip()]
    started = time.perf_counter()
    null_rows = run(args.data_dir, list(range(args.seeds)), 0.0, True, args.jobs)
    null_wall = time.perf_counter() - started
    power: dict[float, dict[str, Any]] = {}
    for effect in effects:
        rows = run(args.data_dir, list(range(100_000, 100_000 + args.power_seeds)), effect, False, args.jobs)
        power[effect] = summarise(rows)
    total_wall = time.perf_counter() - started

    engine, naive = summarise(null_rows), summarise(null_rows, "naive")
    trades_at = [r["trades_at_conclusion"] for r in null_rows]
    sds = [r["sd"] for r in null_rows]
    kurts = [r["kurtosis"] for r in null_rows]

    def fmt(s: dict[str, Any]) -> str:
        lo, hi = s["ci95"]
        return (
            f"| {s['seeds']} | {s['adopted']} | {s['rejected']} | {s['unfinished']} | **{s['rate']:.3f}** "
            f"| [{lo:.3f}, {hi:.3f}] |"
        )

    print(f"## Governed experiments on real SPY trades ({args.seeds} null seeds, {args.power_seeds} per effect)\n")
    print("| design | seeds | adopted | rejected | unfinished | adoption rate | 95% Wilson CI |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("| **engine, identical arms (false adoptions)** " + fmt(engine))
    print("| naive: re-test all trades at every exit, keep going (not the engine) " + fmt(naive))
    for effect, s in power.items():
        print(f"| engine, test arm {effect * 100:+.0f}% per trade (power) " + fmt(s))
    print()
    print(
        f"Per-trade returns (per seed): sd median {np.median(sds) * 100:.2f}% "
        f"[{np.percentile(sds, 5) * 100:.2f}, {np.percentile(sds, 95) * 100:.2f}], excess kurtosis median "
        f"{np.median(kurts):.1f} [{np.percentile(kurts, 5):.1f}, {np.percentile(kurts, 95):.1f}] (5th, 95th pct). "
        f"Trades exited when the engine concluded: median {int(np.median(trades_at))} "
        f"(both arms need {MIN_TRADES}, test gets {ALLOCATION:.0%})."
    )
    print(f"Issue's bound on false adoptions: <= 0.05: **{'met' if engine['rate'] <= 0.05 else 'MISSED'}**.")
    print(f"Wall: null section {null_wall:.1f} s, total {total_wall:.1f} s, {args.jobs} processes.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": machine(["numpy", "pandas", "scipy"]),
            "args": {k: str(v) for k, v in vars(args).items()},
            "null_engine": engine,
            "null_naive": naive,
            "power": {str(e): s for e, s in power.items()},
            "trades_at_conclusion_median": float(np.median(trades_at)),
            "return_sd_median": float(np.median(sds)),
            "return_excess_kurtosis_median": float(np.median(kurts)),
            "wall_s": total_wall,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
