"""The `ingest` flow: plan -> fetch every symbol (concurrently, retried when transient) -> quality
gate -> immutable snapshots. A failed gate quarantines the candidate and fails the run.

    python -m flows.ingest          # `make run`: sample data, embedded Prefect, printed summary
    prefect deployment run ingest/daily --watch
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
from prefect import flow, unmapped

from tasks.ingest import check_bars, commit_bars, fetch_bars, plan_ingest, publish_summary
from tradeflow.calendar import to_utc
from tradeflow.config import get_settings
from tradeflow.data.ingest import IngestRequest
from tradeflow.errors import DataQualityError, TradeflowError


@flow(name="ingest")
def ingest(
    source: str = "sample",
    symbols: Sequence[str] = ("SPY", "^VIX"),
    start: str | None = None,
    end: str | None = None,
    path: str | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """Ingest daily bars through the quality gate into the snapshot store.

    `now` (ISO 8601 with a timezone) replays a run as of that instant; left out, the run reads the
    wall clock here, the one place that does.
    """
    settings = get_settings()
    request = IngestRequest(source=source, symbols=tuple(symbols), start=start, end=end, path=path)
    instant = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    plan = plan_ingest(request, settings, instant)
    names = [item.symbol for item in plan.items]
    frames = fetch_bars.map(unmapped(plan), names, unmapped(settings)).result()
    gate = check_bars(plan, dict(zip(names, frames, strict=True)), settings)
    result = commit_bars(plan, gate, settings)
    publish_summary(result)
    return {**result.to_dict(), "summary": result.summary_text()}


def main(argv: Sequence[str] | None = None) -> int:
    """`make run`: the flow on the sample data (options for other sources) with a printed summary."""
    parser = argparse.ArgumentParser(prog="python -m flows.ingest", description="Run the ingest flow once.")
    parser.add_argument("--source", default="sample")
    parser.add_argument("--symbols", default="SPY,^VIX", help="comma-separated")
    parser.add_argument("--path", help="file or folder for the csv/parquet sources")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--now", help="replay as of this instant (ISO 8601 with a timezone)")
    args = parser.parse_args(argv)
    try:
        out = ingest(
            source=args.source,
            symbols=[s for s in args.symbols.split(",") if s.strip()],
            start=args.start,
            end=args.end,
            path=args.path,
            now=args.now,
        )
    except DataQualityError as exc:
        report = get_settings().reports_dir / "quality" / "latest.md"
        print(f"ingest failed: {exc.status}: {exc} (quality report: {report})", file=sys.stderr)
        return 1
    except TradeflowError as exc:
        print(f"ingest failed: {exc}", file=sys.stderr)
        return 2
    print(out["summary"])
    docs = out["quality"].get("docs_path")
    print(f"quality report: {out['report']}" + (f" (data docs: {docs})" if docs else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
