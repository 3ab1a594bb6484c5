"""The `learning-review` flow: after the close of each NYSE session, learn from the day's trades.

prefect deployment run learning-review/daily --watch
python -m flows.learning_review [--session 2024-01-25]
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import pandas as pd
from prefect import flow
from prefect.states import Completed

from tasks.learning import publish, review_session
from tradeflow.calendar import default_calendar, to_utc
from tradeflow.config import get_settings


@flow(name="learning-review")
def learning_review(session: str | None = None, now: str | None = None) -> Any:
    """Review `session` (default: the last completed NYSE session at `now`, the wall clock when
    left out — read here and nowhere below)."""
    instant = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    calendar = default_calendar()
    if session is None:
        day = calendar.last_completed_session(instant).date()
    else:
        day = dt.date.fromisoformat(session)
        if not calendar.is_session(day):
            return Completed(name="Skipped", message=f"{day} is not an NYSE session")
    result, report = review_session(get_settings(), day, instant.to_pydatetime())
    publish(result, report)
    return {"session": day.isoformat(), "report": str(report), **result.to_dict()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the learning review once, with the embedded Prefect.")
    parser.add_argument("--session", default=None)
    args = parser.parse_args()
    learning_review(session=args.session)
