"""The walk-forward report: markdown tables and PNG equity/drawdown charts, out of sample only.

Aggregation (stated in the report itself): a strategy's metric is first averaged over the folds
for each seed, then summarised as mean ± sample std (ddof=1) across seeds, so the ± measures how
much the result depends on the seed, the reproducibility question RL results are notorious for.
Fold-to-fold variation is shown separately in the per-fold table. Rule baselines are
deterministic: one run per fold, so no ±. NaN metric values are skipped in the means.

Two markdown files are written: walk_forward.md links the PNGs beside it; walk_forward_artifact.md
embeds them as base64 data URIs for a Prefect markdown artifact (ECOSYSTEM.md §1.10). Every file
is written atomically.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradeflow.backtest.breakers import BreakerEvent
from tradeflow.backtest.folds import Fold
from tradeflow.backtest.metrics import METRIC_KEYS, to_jsonable
from tradeflow.errors import InputError
from tradeflow.infra.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from tradeflow.registry.promotion import PromotionDecision

_PERCENT = frozenset({"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure"})
_DECIMALS = {"trades": 1}
AGGREGATION_NOTE = (
    "Out of sample only, net of costs. Each cell: the metric averaged over the folds, then mean ± sample "
    "std (ddof=1) across seeds; strategies without ± are deterministic (one run per fold)."
)


@dataclass(frozen=True)
class RunResult:
    """One out-of-sample evaluation: a strategy on one fold (with one seed, for learned policies)."""

    strategy: str
    fold: int
    metrics: Mapping[str, float]
    equity: pd.Series  # portfolio value at each close of the test window, indexed by session
    seed: int | None = None
    breakers: tuple[BreakerEvent, ...] = ()  # the governor's breakers that fired on this curve

    def __post_init__(self) -> None:
        where = f"{self.strategy} fold {self.fold} seed {self.seed}"
        missing = [k for k in METRIC_KEYS if k not in self.metrics]
        if missing:
            raise InputError(f"{where}: metrics lack {missing}")
        eq = self.equity
        if not isinstance(eq.index, pd.DatetimeIndex) or eq.empty or not eq.index.is_monotonic_increasing:
            raise InputError(f"{where}: equity must be a non-empty Series on increasing sessions")
        values = eq.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all() or values[0] <= 0:
            raise InputError(f"{where}: equity must be finite and start positive")


@dataclass(frozen=True)
class WalkForwardResults:
    runs: tuple[RunResult, ...]
    folds: tuple[Fold, ...] = ()  # optional: adds the fold windows to the tables

    def __post_init__(self) -> None:
        if not self.runs:
            raise InputError("no walk-forward runs to report")
        keys = [(r.strategy, r.fold, r.seed) for r in self.runs]
        if len(set(keys)) != len(keys):
            raise InputError("a (strategy, fold, seed) run appears twice")
        folds = set(self.fold_ids)
        for name in self.strategies:
            runs = [r for r in self.runs if r.strategy == name]
            by_seed: dict[int | None, set[int]] = {}
            for r in runs:
                by_seed.setdefault(r.seed, set()).add(r.fold)
            for seed, covered in by_seed.items():
                if covered != folds:
                    raise InputError(
                        f"{name} seed {seed} covers folds {sorted(covered)}, not all of {sorted(folds)}: "
                        "every strategy must be evaluated on the same folds"
                    )

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(r.strategy for r in self.runs))

    @property
    def fold_ids(self) -> list[int]:
        return sorted({r.fold for r in self.runs})


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    artifact_markdown: Path  # the same report with the charts embedded (for the Prefect artifact)
    equity_png: Path
    drawdown_png: Path


def _frame(results: WalkForwardResults) -> pd.DataFrame:
    rows = [
        {"strategy": r.strategy, "fold": r.fold, "seed": -1 if r.seed is None else r.seed}
        | {k: float(r.metrics[k]) for k in METRIC_KEYS}
        for r in results.runs
    ]
    return pd.DataFrame(rows)


def _mean_std(groups: Any) -> pd.DataFrame:
    stats = groups[list(METRIC_KEYS)].agg(["mean", "std"])
    stats[("seeds", "n")] = groups.size()
    return stats


def summary_table(results: WalkForwardResults) -> pd.DataFrame:
    """Rows: strategies (report order). Columns: (metric, 'mean'|'std') and ('seeds', 'n')."""
    per_seed = _frame(results).groupby(["strategy", "seed"], sort=False)[list(METRIC_KEYS)].mean().reset_index()
    return _mean_std(per_seed.groupby("strategy", sort=False)).reindex(results.strategies)


def per_fold_table(results: WalkForwardResults) -> pd.DataFrame:
    """Rows: (fold, strategy). Columns as summary_table, the ± across seeds within the fold."""
    stats = _mean_std(_frame(results).groupby(["fold", "strategy"], sort=False))
    order = pd.MultiIndex.from_product([results.fold_ids, results.strategies], names=["fold", "strategy"])
    return stats.reindex(order)


def _fmt(metric: str, mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return str(mean)
    if metric in _PERCENT:
        cell = f"{mean:.1%}"
        spread = f" ± {std:.1%}" if math.isfinite(std) else ""
    else:
        d = _DECIMALS.get(metric, 2)
        cell = f"{mean:.{d}f}"
        spread = f" ± {std:.{d}f}" if math.isfinite(std) else ""
    return cell + spread


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_cells(stats: pd.DataFrame, key: Any) -> list[str]:
    return [_fmt(m, float(stats.loc[key, (m, "mean")]), float(stats.loc[key, (m, "std")])) for m in METRIC_KEYS]


def _stitched(results: WalkForwardResults) -> dict[str, tuple[pd.Series, pd.Series, pd.Series]]:
    """Per strategy: (mean, min, max) across seeds of the growth of 1 chained across folds.

    Each fold's curve (equity[0] = the capital at the start of the test window, as the backtester
    marks it) is rescaled to start where the previous fold's ended, so the chart shows the
    out-of-sample track a model retrained fold by fold would have produced.
    """
    out = {}
    for name in results.strategies:
        curves = []
        for seed in dict.fromkeys(r.seed for r in results.runs if r.strategy == name):
            level, parts = 1.0, []
            for r in sorted((r for r in results.runs if r.strategy == name and r.seed == seed), key=lambda r: r.fold):
                part = r.equity.astype(np.float64) / float(r.equity.iloc[0]) * level
                level = float(part.iloc[-1])
                parts.append(part)
            curves.append(pd.concat(parts))
        wide = pd.concat(curves, axis=1)
        out[name] = (wide.mean(axis=1), wide.min(axis=1), wide.max(axis=1))
    return out


def _png(
    curves: dict[str, tuple[pd.Series, pd.Series, pd.Series]],
    kind: str,
    fold_starts: list[pd.Timestamp],
    breakers: Sequence[tuple[str, pd.Timestamp]] = (),
) -> bytes:
    # matplotlib costs ~0.3 s to import; only rendering pays for it. Figure() without pyplot
    # keeps rendering free of global backend state (safe inside worker threads).
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3), dpi=80)
    ax = fig.add_subplot()
    for name, (mean, lo, hi) in curves.items():
        # Buy-and-hold is the yardstick every figure is read against: draw it apart.
        style: dict[str, Any] = {"color": "black", "linestyle": "--"} if name == "buy_and_hold" else {}
        if kind == "drawdown":
            mean = mean / mean.cummax() - 1.0
            ax.plot(mean.index, mean.to_numpy(), label=name, linewidth=1.0, **style)
            continue
        (line,) = ax.plot(mean.index, mean.to_numpy(), label=name, linewidth=1.0, **style)
        if not lo.equals(hi):
            ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=line.get_color(), alpha=0.2, linewidth=0)
    for ts in fold_starts[1:]:
        ax.axvline(float(date2num(ts)), color="grey", linestyle=":", linewidth=0.8)
    for i, (_strategy, ts) in enumerate(breakers):  # where a risk breaker stopped a curve, as live would
        label = "risk breaker (HALTED)" if i == 0 else None
        ax.axvline(float(date2num(ts)), color="red", linestyle="--", linewidth=0.8, alpha=0.7, label=label)
    ax.set_title(
        "Out-of-sample equity (growth of 1, chained across folds; band: seed range)"
        if kind == "equity"
        else "Out-of-sample drawdown",
        fontsize=9,
    )
    if kind == "drawdown":
        ax.yaxis.set_major_formatter(lambda y, _pos: f"{y:.0%}")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=3, loc="upper left" if kind == "equity" else "lower left", frameon=False)
    ax.grid(alpha=0.3, linewidth=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    # No 'Software' metadata: the same results give byte-identical PNGs.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def breaker_marks(results: WalkForwardResults) -> list[tuple[str, pd.Timestamp]]:
    """(strategy, session) of every breaker event, once per strategy and session (seeds share a mark)."""
    marks = {(r.strategy, pd.Timestamp(e.session)) for r in results.runs for e in r.breakers}
    return sorted(marks, key=lambda m: (m[1], m[0]))


def _breaker_section(results: WalkForwardResults) -> list[str]:
    rows = [
        [r.strategy, str(r.fold), "" if r.seed is None else str(r.seed), e.session, e.breaker, e.state, e.detail]
        for r in results.runs
        for e in r.breakers
    ]
    lines = ["## Risk breakers", ""]
    if not rows:
        return [*lines, "None fired: every curve stayed within the risk governor's limits."]
    lines.append("The governor's breakers apply to the out-of-sample curves as they would live (a HALTED curve")
    lines.append("only reduces its position from that close on); the metrics above are of these curves.")
    headers = ["strategy", "fold", "seed", "session", "breaker", "state", "detail"]
    return [*lines, "", _md_table(headers, rows)]


def _fold_window(results: WalkForwardResults, fold: int) -> str:
    match = [f for f in results.folds if f.index == fold]
    return f"{match[0].test_start.date()} – {match[0].test_end.date()}" if match else ""


def _decision_section(decision: PromotionDecision) -> str:
    verdict = "PROMOTE" if decision.promote else "REJECT"
    lines = ["## Promotion decision", "", f"**{verdict}**", ""]
    lines += [f"- {r}" for r in decision.reasons]
    evidence = json.dumps(to_jsonable(decision.evidence), indent=2, sort_keys=True, default=str)
    return "\n".join([*lines, "", "Evidence:", "", "```json", evidence, "```"])


def render_markdown(
    results: WalkForwardResults,
    images: Mapping[str, str],
    *,
    decision: PromotionDecision | None = None,
    title: str = "Walk-forward report",
    context: Mapping[str, Any] | None = None,
) -> str:
    """The report text; `images` maps 'equity'/'drawdown' to an image URL (file name or data URI)."""
    parts = [f"# {title}", "", AGGREGATION_NOTE, ""]
    if context:
        parts += [f"- **{k}**: {v}" for k, v in context.items()] + [""]
    if results.folds:
        rows = [
            [
                str(f.index),
                f"{f.train_start.date()} – {f.train_end.date()}",
                str(f.n_train),
                str(f.embargo),
                f"{f.test_start.date()} – {f.test_end.date()}",
                str(f.n_test),
            ]
            for f in results.folds
        ]
        headers = ["fold", "train", "train sessions", "embargo", "test", "test sessions"]
        parts += ["## Folds", "", _md_table(headers, rows), ""]
    summary = summary_table(results)
    rows = [
        [name, str(int(summary.loc[name, ("seeds", "n")])), *_metric_cells(summary, name)] for name in summary.index
    ]
    parts += ["## Summary", "", _md_table(["strategy", "seeds", *METRIC_KEYS], rows), ""]
    per_fold = per_fold_table(results)
    rows = [
        [
            str(fold),
            _fold_window(results, fold),
            name,
            str(int(per_fold.loc[(fold, name), ("seeds", "n")])),
            *_metric_cells(per_fold, (fold, name)),
        ]
        for fold, name in per_fold.index
    ]
    parts += ["## Per fold", "", _md_table(["fold", "test", "strategy", "seeds", *METRIC_KEYS], rows), ""]
    parts += [*_breaker_section(results), ""]
    parts += ["## Equity and drawdown", "", f"![equity]({images['equity']})", "", f"![drawdown]({images['drawdown']})"]
    if decision is not None:
        parts += ["", _decision_section(decision)]
    return "\n".join(parts) + "\n"


def render_walk_forward_report(
    results: WalkForwardResults,
    out_dir: str | Path,
    *,
    decision: PromotionDecision | None = None,
    title: str = "Walk-forward report",
    context: Mapping[str, Any] | None = None,
) -> ReportFiles:
    """Write walk_forward.md, walk_forward_artifact.md, equity.png and drawdown.png into out_dir."""
    out = Path(out_dir)
    curves = _stitched(results)
    fold_starts = [f.test_start for f in results.folds]
    files = ReportFiles(
        markdown=out / "walk_forward.md",
        artifact_markdown=out / "walk_forward_artifact.md",
        equity_png=out / "equity.png",
        drawdown_png=out / "drawdown.png",
    )
    marks = breaker_marks(results)
    pngs = {
        "equity": _png(curves, "equity", fold_starts, marks),
        "drawdown": _png(curves, "drawdown", fold_starts, marks),
    }
    atomic_write_bytes(files.equity_png, pngs["equity"])
    atomic_write_bytes(files.drawdown_png, pngs["drawdown"])
    kw: dict[str, Any] = {"decision": decision, "title": title, "context": context}
    linked = {"equity": files.equity_png.name, "drawdown": files.drawdown_png.name}
    embedded = {k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in pngs.items()}
    atomic_write_text(files.markdown, render_markdown(results, linked, **kw))
    atomic_write_text(files.artifact_markdown, render_markdown(results, embedded, **kw))
    return files
