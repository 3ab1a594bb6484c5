"""Prefect RRule schedules for "every NYSE session at HH:MM New York time", generated from the calendar.

The weekday rule (MO-FR) runs on every weekday; each weekday that is not an NYSE session (a holiday
or special closure, from `MarketCalendar.holidays`) becomes an EXDATE. Prefect only honours an
EXDATE written as the *local wall-clock* time of the schedule's timezone (it does
`exd.replace(tzinfo=tz)`): UTC digits or a date-only EXDATE are silently ignored (ECOSYSTEM §1.2),
so every EXDATE here is `YYYYMMDDTHHMMSS` in New York time, one EXDATE line per year.

Early closes (13:00 ET) are sessions, so a run after the close still happens on those days.
The EXDATEs end at `end`: after it the rule runs on every weekday, holidays included, so regenerate
the schedule (yearly, or when the exchange announces a closure) — and keep the calendar gate in flows.

    python deployments/nyse_schedule.py --time 17:15 --start 2026-11-20 --end 2027-12-31
    python deployments/nyse_schedule.py --time 17:15 --start 2026-11-20 --end 2027-12-31 \\
        --write prefect.yaml --deployment daily

With --write, the block between the deployment's markers in prefect.yaml is regenerated in place
and the rest of the file (comments included) is kept:

      # >>> nyse-schedule deployment=daily time=17:15 start=2026-11-20 end=2027-12-31
      ...generated, do not edit...
      # <<< nyse-schedule deployment=daily
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tradeflow.calendar import NEW_YORK, DateLike, MarketCalendar, default_calendar, to_session
from tradeflow.errors import InputError

# Prefect refuses longer RRule strings (prefect.client.schemas.schedules.MAX_RRULE_LENGTH).
MAX_RRULE_LENGTH = 6500
WEEKDAYS_RULE = "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"

_MARKER_BEGIN = re.compile(
    r"^(?P<indent>[ \t]*)# >>> nyse-schedule deployment=(?P<deployment>\S+)"
    r" time=(?P<time>\d{1,2}:\d{2}) start=(?P<start>\d{4}-\d{2}-\d{2}) end=(?P<end>\d{4}-\d{2}-\d{2})"
    r"[ \t]*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class ScheduleSpec:
    """What a generated block was made from; stored in its begin marker so it can be regenerated."""

    deployment: str
    time: str  # "HH:MM", New York wall clock
    start: str  # ISO date
    end: str  # ISO date

    def marker_begin(self) -> str:
        return f"# >>> nyse-schedule deployment={self.deployment} time={self.time} start={self.start} end={self.end}"

    def marker_end(self) -> str:
        return f"# <<< nyse-schedule deployment={self.deployment}"


def parse_time(value: str) -> dt.time:
    """'17:15' -> time(17, 15); raises ValueError for anything else."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    if not match:
        raise ValueError(f"time must be HH:MM, got {value!r}")
    return dt.time(int(match.group(1)), int(match.group(2)))


def _local_stamp(day: DateLike, at: dt.time) -> str:
    # Wall-clock digits with no zone designator: what Prefect's EXDATE matching needs.
    d = to_session(day)
    return f"{d:%Y%m%d}T{at:%H%M%S}"


def holiday_exdates(start: DateLike, end: DateLike, at: dt.time, calendar: MarketCalendar | None = None) -> list[str]:
    """EXDATE values (local wall clock) for every weekday in [start, end] that is not an NYSE session."""
    cal = calendar or default_calendar()
    return [_local_stamp(day, at) for day in cal.holidays(start, end)]


def nyse_session_rrule(
    at: str | dt.time, start: DateLike, end: DateLike, calendar: MarketCalendar | None = None
) -> str:
    """The RRule string for "every NYSE session from start at `at` (schedule-local wall clock)".

    Holidays are excluded up to `end`. Give the schedule its timezone explicitly (Prefect's RRule
    timezone defaults to UTC): `RRule(rrule, timezone="America/New_York")`.
    """
    t = parse_time(at) if isinstance(at, str) else at
    if to_session(end) < to_session(start):
        raise ValueError(f"end {end} is before start {start}")
    lines = [f"DTSTART:{_local_stamp(start, t)}", WEEKDAYS_RULE]
    by_year: dict[str, list[str]] = {}
    for stamp in holiday_exdates(start, end, t, calendar):
        by_year.setdefault(stamp[:4], []).append(stamp)
    lines += ["EXDATE:" + ",".join(stamps) for stamps in by_year.values()]
    rrule = "\n".join(lines)
    if len(rrule) > MAX_RRULE_LENGTH:
        raise ValueError(
            f"the RRule is {len(rrule)} characters, over Prefect's cap of {MAX_RRULE_LENGTH}; "
            f"shorten the range {start}..{end} and regenerate the schedule more often"
        )
    return rrule


def render_block(spec: ScheduleSpec, indent: str, calendar: MarketCalendar | None = None) -> str:
    """The marked YAML block: one schedules-list item with the rrule and its explicit timezone."""
    rrule = nyse_session_rrule(spec.time, spec.start, spec.end, calendar)
    body = "\n".join(f"{indent}    {line}" for line in rrule.splitlines())
    return "\n".join(
        [
            f"{indent}{spec.marker_begin()}",
            f"{indent}# generated from tradeflow's NYSE calendar by deployments/nyse_schedule.py; do not edit",
            f"{indent}- rrule: |-",
            body,
            f"{indent}  timezone: {NEW_YORK}",
            f"{indent}  active: true",
            f"{indent}{spec.marker_end()}",
        ]
    )


def find_spec(text: str, deployment: str) -> ScheduleSpec:
    """The arguments recorded in the deployment's begin marker; KeyError when there is none."""
    for match in _MARKER_BEGIN.finditer(text):
        if match.group("deployment") == deployment:
            return ScheduleSpec(
                deployment=deployment,
                time=match.group("time"),
                start=match.group("start"),
                end=match.group("end"),
            )
    raise KeyError(f"no '# >>> nyse-schedule deployment={deployment} ...' marker")


def rewrite_block(text: str, spec: ScheduleSpec, calendar: MarketCalendar | None = None) -> str:
    """`text` with the deployment's marked block regenerated from `spec`; everything else unchanged."""
    begin = next((m for m in _MARKER_BEGIN.finditer(text) if m.group("deployment") == spec.deployment), None)
    if begin is None:
        raise KeyError(
            f"no '# >>> nyse-schedule deployment={spec.deployment} ...' marker; add the begin and end "
            f"marker lines where the schedule belongs (under `schedules:` of that deployment)"
        )
    end_line = re.compile(rf"^[ \t]*# <<< nyse-schedule deployment={re.escape(spec.deployment)}[ \t]*$", re.MULTILINE)
    end = end_line.search(text, begin.end())
    if end is None:
        raise KeyError(f"no end marker '{spec.marker_end()}' after the begin marker")
    block = render_block(spec, begin.group("indent"), calendar)
    return text[: begin.start()] + block + text[end.end() :]


def write_schedule(path: Path, spec: ScheduleSpec, calendar: MarketCalendar | None = None) -> bool:
    """Regenerate the marked block in the file; True when the file changed. Atomic (temp + replace)."""
    old = path.read_text(encoding="utf-8")
    new = rewrite_block(old, spec, calendar)
    if new == old:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)
    return True


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Print (and optionally write into prefect.yaml) an RRule for every NYSE session at HH:MM."
    )
    parser.add_argument("--time", required=True, help="New York wall-clock time, HH:MM (e.g. 17:15)")
    parser.add_argument("--start", required=True, help="first date (YYYY-MM-DD); becomes DTSTART")
    parser.add_argument("--end", required=True, help="last date whose holidays are excluded (YYYY-MM-DD)")
    parser.add_argument("--write", type=Path, metavar="PREFECT_YAML", help="rewrite the marked block in this file")
    parser.add_argument("--deployment", help="deployment whose marked block --write rewrites")
    args = parser.parse_args(argv)
    if args.write is not None and not args.deployment:
        parser.error("--write needs --deployment")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        t = parse_time(args.time)
        start, end = str(to_session(args.start).date()), str(to_session(args.end).date())
        rrule = nyse_session_rrule(t, start, end)
    except (ValueError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(rrule)
    if args.write is not None:
        spec = ScheduleSpec(args.deployment, f"{t:%H:%M}", start, end)
        try:
            changed = write_schedule(args.write, spec)
        except (KeyError, OSError) as exc:
            print(f"error: {args.write}: {exc}", file=sys.stderr)
            return 2
        state = "updated" if changed else "already up to date"
        print(f"{args.write}: deployment {args.deployment!r} schedule {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
