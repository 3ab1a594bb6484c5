"""Tasks of the train-spy flow: one library call each. Training is never retried automatically:
a failed fold is deterministic (same seed, same data) and a retry would only repeat it."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tradeflow.backtest.folds import Fold
from tradeflow.config import Settings
from tradeflow.research import pipeline as lib
from tradeflow.research.config import TrainSpyConfig
from tradeflow.research.walkforward import Evaluation, evaluate_baseline, run_fold_seed

REPORT_ARTIFACT_KEY = "train-spy-walk-forward"
DECISION_ARTIFACT_KEY = "train-spy-promotion"


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_run(config: TrainSpyConfig, settings: Settings) -> lib.RunPlan:
    return lib.plan_run(config, settings)


@task(name="train-fold", task_run_name="train-fold{fold.index}-seed{seed}", cache_policy=NO_CACHE)
def train_fold(plan: lib.RunPlan, fold: Fold, seed: int, config: TrainSpyConfig) -> Evaluation:
    return run_fold_seed(plan.dataset, fold, config, seed, plan.run_dir, plan.git_sha)


@task(name="baseline", task_run_name="{name}-fold{fold.index}", cache_policy=NO_CACHE)
def baseline(plan: lib.RunPlan, fold: Fold, name: str, config: TrainSpyConfig) -> Evaluation:
    return evaluate_baseline(name, plan.dataset, fold, config)


@task(name="register-and-decide", cache_policy=NO_CACHE)
def finish(
    config: TrainSpyConfig, settings: Settings, now: pd.Timestamp, plan: lib.RunPlan, evaluations: list[Evaluation]
) -> lib.TrainSpyResult:
    return lib.finish_run(config, settings, now, plan, evaluations)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(result: lib.TrainSpyResult) -> None:
    report = result.report
    if report is not None:
        create_markdown_artifact(
            markdown=report.artifact_markdown.read_text(encoding="utf-8"),
            key=REPORT_ARTIFACT_KEY,
            description=f"Walk-forward report, run {result.run_id} (out of sample, net of costs)",
        )
    rows: list[dict[str, Any]] = [
        {"strategy": name, **{k: round(v, 4) for k, v in metrics.items()}} for name, metrics in result.summary.items()
    ]
    create_table_artifact(table=rows, key="train-spy-summary", description="Mean out-of-sample metrics per strategy")
    verdict = "PROMOTED" if result.decision.promote else "REJECTED"
    create_markdown_artifact(
        markdown=f"# Promotion: {verdict}\n\nchallenger `{result.version.version}`, champion now "
        f"`{result.champion or 'none'}`\n\n" + "\n".join(f"- {r}" for r in result.decision.reasons),
        key=DECISION_ARTIFACT_KEY,
        description=f"challenger {result.version.version}: {verdict}",
    )
