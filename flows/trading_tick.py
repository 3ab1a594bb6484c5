"""The `trading-tick` flow: one tick, its report as an artifact. The calendar gate is inside the
tick (holidays, early closes, special closures), so a cron schedule in New York time is enough.

    prefect deployment run trading-tick/market-hours --watch
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow
from prefect.states import Completed

from tasks.tick import publish, tick
from tradeflow.calendar import default_calendar, to_utc
from tradeflow.config import get_settings


# A tick hung past 4 minutes (a stuck socket, a blocked read) fails itself and frees the deployment's
# concurrency slot before the next 5-minute tick; run_tick is crash-safe, so stopping it anywhere is.
@flow(name="trading-tick", timeout_seconds=240)
def trading_tick(
    mode: str = "paper", broker: str | None = None, strategy: str | None = None, now: str | None = None
) -> Any:
    """`now` replays an instant; left out, the wall clock is read here and nowhere below."""
    instant = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    market = default_calendar().status(instant)
    if not market.is_open:
        return Completed(name="Skipped", message=f"XNYS closed: {market.reason}")
    report = tick(get_settings(), mode, broker, strategy, instant)
    publish(report)
    return report.to_dict()
