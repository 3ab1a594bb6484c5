"""train-spy end to end for the CLI (the Prefect flow calls the same steps as tasks):
walk-forward evaluations -> deployable model -> registry -> promotion gate -> report + manifest.

The champion changes only on out-of-sample evidence: the challenger's walk-forward returns must
beat buy-and-hold (and the champion, on the folds where the champion itself is out of sample) by
the policy's margin under a paired bootstrap test, within the drawdown limit. The decision and its
reasons are recorded either way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.backtest.folds import Fold
from tradeflow.backtest.report import ReportFiles, RunResult, WalkForwardResults, render_walk_forward_report
from tradeflow.calendar import to_utc
from tradeflow.config import Settings
from tradeflow.infra.files import atomic_write_text
from tradeflow.registry import FoldResult, ModelRegistry, ModelVersion, PromotionDecision, evaluate_promotion
from tradeflow.research.config import TrainSpyConfig
from tradeflow.research.parity import replay_parity
from tradeflow.research.walkforward import (
    Dataset,
    Evaluation,
    champion_folds,
    evaluate_baseline,
    evaluate_policy,
    final_training_rows,
    git_sha,
    load_dataset,
    plan_folds,
    run_fold_seed,
    summarise,
    train_model,
)
from tradeflow.rl.artifact import load_artifact, package_versions

log = logging.getLogger("tradeflow.research")


@dataclass
class TrainSpyResult:
    run_id: str
    run_dir: Path
    config: TrainSpyConfig
    dataset: Dataset
    folds: list[Fold]
    evaluations: list[Evaluation]
    decision: PromotionDecision
    version: ModelVersion
    champion: str | None  # after the decision
    report: ReportFiles | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def table_text(self) -> str:
        """The walk-forward summary as a fixed-width table for terminals."""
        metrics = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "turnover", "trades")
        lines = [f"{'strategy':<16}" + "".join(f"{m:>14}" for m in metrics)]
        for name, values in self.summary.items():
            cells = []
            for m in metrics:
                v = values.get(m, float("nan"))
                pct = m in ("total_return", "cagr", "max_drawdown")
                cells.append(f"{100 * v:>13.1f}%" if pct else f"{v:>14.2f}")
            lines.append(f"{name:<16}" + "".join(cells))
        return "\n".join(lines)

    def summary_text(self) -> str:
        f0, f1 = self.folds[0], self.folds[-1]
        verdict = "PROMOTED" if self.decision.promote else "REJECTED"
        return "\n".join(
            [
                f"train-spy {self.run_id}: {len(self.folds)} folds ({f0.test_start.date()} .. {f1.test_end.date()} "
                f"out of sample), seeds {list(self.config.seeds)}, {self.config.ppo.total_timesteps} timesteps each",
                "mean out-of-sample metrics, net of costs (PPO: mean over seeds and folds):",
                self.table_text(),
                f"challenger {self.version.version}: {verdict}; champion now {self.champion or 'none'}",
                *[f"  {r}" for r in self.decision.reasons],
                f"report: {self.report.markdown if self.report else '-'}",
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "data_hash": self.dataset.data_hash,
            "folds": [f.to_dict() for f in self.folds],
            "summary": self.summary,
            "decision": self.decision.to_dict(),
            "challenger": self.version.version,
            "champion": self.champion,
            "report": str(self.report.markdown) if self.report else None,
        }


def _fold_results(evaluations: list[Evaluation], folds: list[Fold]) -> list[FoldResult]:
    by_fold = {e.fold: e for e in evaluations}
    return [FoldResult(f.index, by_fold[f.index].returns, by_fold[f.index].metrics) for f in folds]


def decide(
    evaluations: list[Evaluation],
    folds: list[Fold],
    dataset: Dataset,
    config: TrainSpyConfig,
    registry: ModelRegistry,
) -> tuple[PromotionDecision, list[Evaluation]]:
    """The promotion decision for the challenger procedure (evidence: seed[0], the deployed seed)."""
    seed = config.seeds[0]
    challenger = [e for e in evaluations if e.strategy == "ppo" and e.seed == seed]
    bh = [e for e in evaluations if e.strategy == "buy_and_hold"]
    vs_bh = evaluate_promotion(_fold_results(challenger, folds), None, _fold_results(bh, folds), config.promotion)
    decision, champ_evals = _against_champion(vs_bh, challenger, bh, folds, dataset, config, registry)
    return _with_replay_parity(decision, challenger, folds, dataset, config), champ_evals


def _with_replay_parity(
    decision: PromotionDecision,
    challenger: list[Evaluation],
    folds: list[Fold],
    dataset: Dataset,
    config: TrainSpyConfig,
) -> PromotionDecision:
    """A promotion stands only if the real tick, replayed over the challenger's last test fold,
    reproduces the vectorised curve the gate judged (research/parity.py)."""
    if not decision.promote:
        return decision
    last = max(folds, key=lambda f: f.index)
    evaluation = next((e for e in challenger if e.fold == last.index and e.artifact), None)
    if evaluation is None or evaluation.artifact is None:
        return decision
    parity = replay_parity(
        load_artifact(Path(evaluation.artifact)), dataset, last, config, float(evaluation.metrics["total_return"])
    )
    evidence = {**decision.evidence, "replay_parity": parity.to_dict()}
    return PromotionDecision(parity.ok, (*decision.reasons, parity.reason()), evidence)


def _against_champion(
    vs_bh: PromotionDecision,
    challenger: list[Evaluation],
    bh: list[Evaluation],
    folds: list[Fold],
    dataset: Dataset,
    config: TrainSpyConfig,
    registry: ModelRegistry,
) -> tuple[PromotionDecision, list[Evaluation]]:
    champion = registry.champion()
    if champion is None:
        return vs_bh, []
    shared = champion_folds(champion.lineage.get("train_end"), folds)
    if len(shared) < config.promotion.min_folds:
        note = (
            f"champion {champion.version} is out of sample on {len(shared)} fold(s) only "
            f"(trained through {champion.lineage.get('train_end')}); compared with buy-and-hold alone"
        )
        return PromotionDecision(vs_bh.promote, (*vs_bh.reasons, note), vs_bh.evidence), []
    model = load_artifact(champion.path)
    champ_evals = [evaluate_policy(model, dataset, f, config, None) for f in shared]
    champ_evals = [dataclasses.replace(e, strategy="champion", seed=None, artifact=None) for e in champ_evals]
    vs_champ = evaluate_promotion(
        _fold_results(challenger, shared),
        _fold_results(champ_evals, shared),
        _fold_results(bh, shared),
        config.promotion,
    )
    promote = vs_bh.promote and vs_champ.promote
    reasons = (*vs_bh.reasons, f"against champion {champion.version} on {len(shared)} shared folds:", *vs_champ.reasons)
    evidence = {"vs_buy_and_hold": vs_bh.evidence, "vs_champion": vs_champ.evidence}
    return PromotionDecision(promote, reasons, evidence), champ_evals


def _run_dir(settings: Settings, run_id: str) -> Path:
    base = settings.data_dir / "runs"
    path, n = base / run_id, 1
    while path.exists():  # a re-run of the same config on the same data keeps the earlier run
        n += 1
        path = base / f"{run_id}-r{n}"
    return path


@dataclass(frozen=True)
class RunPlan:
    dataset: Dataset
    folds: list[Fold]
    run_dir: Path
    git_sha: str | None


def plan_run(config: TrainSpyConfig, settings: Settings) -> RunPlan:
    """Dataset from the gated snapshots, the folds, and the run's directory (named by last session,
    config digest and data hash)."""
    dataset = load_dataset(config, settings)
    folds = plan_folds(dataset, config)
    last = pd.Timestamp(dataset.features.sessions[-1])
    run_id = f"{last.date()}-{config.digest()[:8]}-{dataset.data_hash[:8]}"
    return RunPlan(dataset, folds, _run_dir(settings, run_id), git_sha())


def run_train_spy(config: TrainSpyConfig, settings: Settings, now: Any, progress: bool = False) -> TrainSpyResult:
    """Walk-forward, train the deployable model, register it, decide, report (data already ingested)."""
    plan = plan_run(config, settings)
    evaluations: list[Evaluation] = []
    for fold in plan.folds:
        for seed in config.seeds:
            evaluations.append(run_fold_seed(plan.dataset, fold, config, seed, plan.run_dir, plan.git_sha, progress))
        evaluations.extend(evaluate_baseline(name, plan.dataset, fold, config) for name in config.baselines)
    return finish_run(config, settings, to_utc(now), plan, evaluations, progress)


def finish_run(
    config: TrainSpyConfig,
    settings: Settings,
    now: pd.Timestamp,
    plan: RunPlan,
    evaluations: list[Evaluation],
    progress: bool = False,
) -> TrainSpyResult:
    """After the fold evaluations: the deployable model, registry, decision, report and manifest."""
    dataset, folds, run_dir, sha = plan.dataset, plan.folds, plan.run_dir, plan.git_sha
    registry = ModelRegistry.for_data_dir(settings.data_dir)
    rows = final_training_rows(dataset, config)
    seed = config.seeds[0]
    final_dir = run_dir / "models" / "final"
    log.info("training the deployable model on rows %d..%d (seed %d)", rows[0], rows[1] - 1, seed)
    train_model(dataset, rows, config, seed, final_dir, sha, progress)
    summary = summarise(evaluations)
    sessions = dataset.features.sessions
    parent = registry.champion()
    lineage = {
        "data_hash": dataset.data_hash,
        "data_window": dataset.window,
        "snapshots": dataset.snapshots,
        "feature_spec": dataset.features.spec.to_dict() | {"digest": dataset.features.spec.digest},
        "config": config.model_dump(mode="json"),
        "seed": seed,
        "parent": parent.version if parent else None,
        "train_start": str(pd.Timestamp(sessions[rows[0]]).date()),
        "train_end": str(pd.Timestamp(sessions[rows[1] - 1]).date()),
        "walk_forward_report": str(run_dir / "walk_forward.md"),
        "run_id": run_dir.name,
        "git_sha": sha,
    }
    version = registry.register(final_dir, metrics=summary.get("ppo", {}), lineage=lineage, created_at=now.isoformat())
    decision, champ_evals = decide(evaluations, folds, dataset, config, registry)
    registry.apply_decision(decision, challenger=version.version, decided_at=now.isoformat())
    champion = registry.champion()
    result = TrainSpyResult(
        run_dir.name,
        run_dir,
        config,
        dataset,
        folds,
        evaluations,
        decision,
        version,
        champion.version if champion else None,
        summary=summary,
    )
    runs = [RunResult(e.strategy, e.fold, e.metrics, e.equity, e.seed, e.breakers) for e in evaluations]
    result.report = render_walk_forward_report(
        WalkForwardResults(tuple(runs), tuple(folds)),
        run_dir,
        decision=decision,
        title=f"train-spy walk-forward: {dataset.features.symbol}, run {run_dir.name}",
        context={
            "data": f"{config.data.source} {dataset.features.symbol} (+{config.data.vix_symbol}), "
            f"features {dataset.features.spec.version}",
            "data hash": dataset.data_hash[:16],
            "seeds": ", ".join(map(str, config.seeds)),
            "timesteps per model": config.ppo.total_timesteps,
            "challenger": version.version,
        },
    )
    manifest = {
        "run_id": run_dir.name,
        "created_at": now.isoformat(),
        "config": config.model_dump(mode="json"),
        "config_digest": config.digest(),
        "data_hash": dataset.data_hash,
        "data_window": dataset.window,
        "snapshots": dataset.snapshots,
        "feature_spec": lineage["feature_spec"],
        "folds": [f.to_dict() for f in folds],
        "seeds": list(config.seeds),
        "packages": package_versions(),
        "git_sha": sha,
        "summary": summary,
        "per_run": [{"strategy": e.strategy, "fold": e.fold, "seed": e.seed, "metrics": e.metrics} for e in evaluations]
        + [{"strategy": e.strategy, "fold": e.fold, "seed": None, "metrics": e.metrics} for e in champ_evals],
        "challenger": version.version,
        "decision": decision.to_dict(),
        "champion": result.champion,
    }
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return result


def replay_config(manifest_path: str | Path) -> TrainSpyConfig:
    """The exact config of an earlier run, from its manifest (to reproduce its metrics)."""
    data = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    return TrainSpyConfig.from_dict(data["config"], origin=str(manifest_path))
