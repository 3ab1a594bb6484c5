"""The tick as one task: run_tick is already idempotent, so it is never retried by Prefect (a
retry of an order-sending call must not race the first attempt, RELIABILITY A8)."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tradeflow.bootstrap import build_tick_runtime
from tradeflow.config import Settings
from tradeflow.core.tick import TickReport, run_tick, skipped_busy, tick_lock

TICK_ARTIFACT_KEY = "trading-tick"


@task(name="trading-tick", retries=0, cache_policy=NO_CACHE)
def tick(settings: Settings, mode: str, broker: str | None, strategy: str | None, now: pd.Timestamp) -> TickReport:
    with tick_lock(settings.ledger_path.parent) as held:
        if not held:
            return skipped_busy(now, mode, strategy or settings.trading.strategy)
        with build_tick_runtime(settings, mode=mode, broker=broker, strategy=strategy, now=now) as runtime:
            return run_tick(runtime, now)


@task(name="publish-tick", cache_policy=NO_CACHE)
def publish(report: TickReport) -> None:
    create_markdown_artifact(
        markdown=report.to_markdown(), key=TICK_ARTIFACT_KEY, description=f"tick {report.now}: {report.status}"
    )
