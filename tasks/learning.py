"""The learning review as Prefect tasks: the review itself, its report as an artifact, and the event
that tells train-spy the champion's health crossed a threshold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tradeflow.bootstrap import champion_health
from tradeflow.config import Settings
from tradeflow.learning.daily_review import ReviewResult, run_review, write_report
from tradeflow.learning.notes import LlmSettings
from tradeflow.learning.store import LearningStore
from tradeflow.ledger import Ledger

REVIEW_ARTIFACT_KEY = "learning-review"
DEGRADED_EVENT = "tradeflow.model.degraded"
CHAMPION_RESOURCE = "tradeflow.model.champion"


# Not retried: a review writes governed decisions; re-running it for a session is harmless (a
# concluded experiment is not reviewed twice) but a retry storm would only repeat a real error.
@task(name="learning-review", cache_policy=NO_CACHE)
def review_session(settings: Settings, session: dt.date, now: dt.datetime) -> tuple[ReviewResult, Path]:
    learning = settings.learning
    llm = LlmSettings(learning.llm_api_key, learning.llm_base_url, learning.llm_model) if learning.llm_api_key else None
    with Ledger(settings.ledger_path) as ledger, LearningStore(settings.learning_path) as store:
        health = champion_health(settings, ledger, session)
        result = run_review(ledger, store, session, health=health, llm=llm, min_trades=learning.min_trades, now=now)
    return result, write_report(result, settings.reports_dir)


@task(name="publish-review", cache_policy=NO_CACHE)
def publish(result: ReviewResult, report: Path) -> None:
    create_markdown_artifact(
        markdown=result.to_markdown(),
        key=REVIEW_ARTIFACT_KEY,
        description=f"learning review {result.session}: {len(result.day_trades)} trades, "
        f"{len(result.changes)} change(s); report {report}",
    )
    if result.health is not None and not result.health.healthy:
        # prefect.yaml's train-spy/nightly deployment has a trigger on this event: retrain early.
        emit_event(
            event=DEGRADED_EVENT,
            resource={"prefect.resource.id": CHAMPION_RESOURCE},
            payload={"session": result.session.isoformat(), "breaches": list(result.health.breaches)},
        )
