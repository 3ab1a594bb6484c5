"""The learning review as Prefect tasks: the review itself, its report as an artifact, and the event
that tells train-spy the champion's health crossed a threshold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tradeflow.bootstrap import review_session as run_review_session
from tradeflow.config import Settings
from tradeflow.learning.daily_review import ReviewResult

REVIEW_ARTIFACT_KEY = "learning-review"
DEGRADED_EVENT = "tradeflow.model.degraded"
CHAMPION_RESOURCE = "tradeflow.model.champion"


# Not retried: a review writes governed decisions; re-running it for a session is harmless (a
# concluded experiment is not reviewed twice) but a retry storm would only repeat a real error.
@task(name="learning-review", cache_policy=NO_CACHE)
def review_session(settings: Settings, session: dt.date, now: dt.datetime) -> tuple[ReviewResult, Path]:
    result, report = run_review_session(settings, session, now)
    return result, report


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
