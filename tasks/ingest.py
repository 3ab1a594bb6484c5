"""Tasks of the ingest flow: plan -> fetch (per symbol, retried when transient) -> gate -> commit.

Each task is one call into `tradeflow.data.ingest`. Only fetching is retried, and only for
transient errors (network trouble): a quality failure or an unknown symbol would fail the same
way again. The library is asked for a single attempt, so retries happen in exactly one place
(here, visible in the UI) and never multiply.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.events import emit_event
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from tradeflow.config import Settings
from tradeflow.data import ingest as lib
from tradeflow.errors import is_transient

QUALITY_ARTIFACT_KEY = "data-quality-report"
SUMMARY_ARTIFACT_KEY = "ingest-summary"
DQ_FAILED_EVENT = "tradeflow.dq.failed"


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn`: retry only what `errors.is_transient` calls transient."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


def dataset_resource_id(source: str) -> str:
    return f"tradeflow.dataset.{source}"


# Inputs include settings (secrets) and frames: never hash them into cache keys, never cache.
@task(name="plan-ingest", cache_policy=NO_CACHE)
def plan_ingest(request: lib.IngestRequest, settings: Settings, now: pd.Timestamp) -> lib.IngestPlan:
    return lib.plan_ingest(request, settings, now)


@task(
    name="fetch-bars",
    task_run_name="fetch-{symbol}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),  # 2 s, 4 s, 8 s
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def fetch_bars(plan: lib.IngestPlan, symbol: str, settings: Settings) -> pd.DataFrame:
    return lib.fetch_symbol(plan, symbol, settings, attempts=1)


@task(name="quality-gate", cache_policy=NO_CACHE)
def check_bars(plan: lib.IngestPlan, fetched: dict[str, pd.DataFrame], settings: Settings) -> lib.GateResult:
    """Run the gate; publish its report as an artifact, and emit `tradeflow.dq.failed` when it fails.

    It does not raise on a failed gate: `commit_bars` quarantines and raises, so the bad data is
    set aside before the run fails.
    """
    gate = lib.check_bars(plan, fetched, settings)
    report = gate.report
    create_markdown_artifact(
        markdown=report.to_markdown(),
        key=QUALITY_ARTIFACT_KEY,
        description=f"Data-quality gate {'PASSED' if report.passed else 'FAILED'}: {report.summary_line()}",
    )
    if not report.passed:
        source = plan.request.source
        emit_event(
            event=DQ_FAILED_EVENT,
            resource={"prefect.resource.id": dataset_resource_id(source), "prefect.resource.name": source},
            payload={
                "summary": report.summary_line(),
                "failures": report.counts(),
                "as_of": str(plan.as_of.date()),
                "symbols": list(plan.request.symbols),
                "report": str(gate.report_path) if gate.report_path else None,
            },
        )
    return gate


@task(name="commit-snapshots", cache_policy=NO_CACHE)
def commit_bars(plan: lib.IngestPlan, gate: lib.GateResult, settings: Settings) -> lib.IngestResult:
    return lib.commit_bars(plan, gate, settings)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(result: lib.IngestResult) -> None:
    create_markdown_artifact(
        markdown=result.to_markdown(),
        key=SUMMARY_ARTIFACT_KEY,
        description=f"Ingest as of {result.plan.as_of.date()}",
    )
