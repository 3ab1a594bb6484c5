"""A 20-year, three-symbol portfolio backtest beside a per-row reference, in the same run.

    .venv/bin/python benchmarks/bench_portfolio.py [--repeat 9] [--json benchmarks/results/portfolio.json]

Ours: `tradeflow.backtest.portfolio.evaluate_weights` (the one portfolio simulator, sized by the one
sizing) on SMA sleeves over SPY, AAPL and MSFT (real files, the 20 years all three share). The weights
are computed once, outside the timing: the figure is the simulation, fills, round trips and metrics.
Reference: the same book stepped row by row over a pandas frame (`.iloc` per session and symbol),
the usual hand-written backtest loop, with the same rebalance rule and cost model. Both must end on
the same equity (checked), so the ratio compares like with like. Goal: ours <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402
from tradeflow.adapters.files.data import read_bar_file  # noqa: E402
from tradeflow.backtest.portfolio import evaluate_weights  # noqa: E402
from tradeflow.domain import Universe  # noqa: E402
from tradeflow.features import DEFAULT_SPEC, build_panel  # noqa: E402
from tradeflow.sim import CostModel, PanelMarket, rebalance  # noqa: E402
from tradeflow.strategies import Sleeves, make_strategy  # noqa: E402

UNIVERSE = ("SPY", "AAPL", "MSFT")


def reference(frame: pd.DataFrame, weights: pd.DataFrame, cost: CostModel, capital: float) -> float:
    """Row by row over pandas: for each session, each symbol whose target changed trades at the open."""
    cash, shares = capital, dict.fromkeys(UNIVERSE, 0.0)
    previous = dict.fromkeys(UNIVERSE, 0.0)
    equity = capital
    for t in range(1, len(frame)):
        row = frame.iloc[t]
        decided = weights.iloc[t - 1]
        book = cash + sum(shares[s] * row[f"open_{s}"] for s in UNIVERSE)
        changed = [s for s in UNIVERSE if decided[s] != previous[s]]
        for s in sorted(changed, key=lambda s: decided[s] * book - shares[s] * row[f"open_{s}"]):
            cash, shares[s], _ = rebalance(cash, shares[s], decided[s], row[f"open_{s}"], row[f"volume_{s}"], cost,
                                           t, equity=book)  # fmt: skip
        previous = {s: decided[s] for s in UNIVERSE}
        equity = cash + sum(shares[s] * row[f"close_{s}"] for s in UNIVERSE)
    return equity


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data" / "real"))
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    real = Path(args.data_dir)
    if not (real / "SPY.csv").exists():
        print(f"real data missing at {real}", file=sys.stderr)
        return 2
    vix = read_bar_file(real / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real / f"{s}.csv", s) for s in UNIVERSE}
    features = build_panel(bars, vix, Universe.of(*UNIVERSE), DEFAULT_SPEC)
    full = PanelMarket.align(features.market())
    all_weights = Sleeves(make_strategy("sma"), UNIVERSE).targets(features)  # rules warm on the whole history
    panel = full.slice(len(full) - 5_034, len(full))  # 20 years of sessions
    weights = all_weights[len(full) - 5_034 :]
    cost, capital = CostModel(), 100_000.0

    ours, refs = [], []
    result = evaluate_weights(weights, panel, cost, capital, name="sma")  # warm-up, left out
    columns = {f"{field}_{s}": getattr(panel, field)[:, j] for field in ("open", "close", "volume")
               for j, s in enumerate(UNIVERSE)}  # fmt: skip
    frame = pd.DataFrame(columns, index=pd.DatetimeIndex(panel.sessions))
    wframe = pd.DataFrame(weights, columns=list(UNIVERSE), index=frame.index)
    ref_equity = reference(frame, wframe, cost, capital)
    if not np.isclose(ref_equity, result.equity.iloc[-1], rtol=1e-9):
        print(
            f"the reference ends on {ref_equity}, ours on {result.equity.iloc[-1]}: not the same book", file=sys.stderr
        )
        return 1
    for _ in range(args.repeat):  # interleaved: both see the same load
        t0 = time.perf_counter()
        evaluate_weights(weights, panel, cost, capital, name="sma")
        ours.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        reference(frame, wframe, cost, capital)
        refs.append((time.perf_counter() - t0) * 1e3)
    figures = {
        "sessions": len(panel),
        "symbols": list(UNIVERSE),
        "window": [str(pd.Timestamp(panel.sessions[0]).date()), str(pd.Timestamp(panel.sessions[-1]).date())],
        "fills": len(result.fills),
        "ours_ms_median": statistics.median(ours),
        "ours_ms_min": min(ours),
        "reference_ms_median": statistics.median(refs),
        "speedup": statistics.median(refs) / statistics.median(ours),
        "machine": machine(["numpy", "pandas"]),
    }
    window = f"{figures['window'][0]} .. {figures['window'][1]}"
    print(
        f"20-year 3-symbol SMA portfolio ({window}, {figures['fills']} fills): ours {figures['ours_ms_median']:.2f} ms "
        f"(min {figures['ours_ms_min']:.2f}), per-row reference {figures['reference_ms_median']:.0f} ms: "
        f"{figures['speedup']:.0f}x; goal <= 10 ms"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
