"""The ingest pipeline as library steps: plan -> fetch -> check (the gate) -> commit.

The Prefect flow calls each step as its own task (retries on fetch only); the CLI calls `ingest`,
which runs the same steps in sequence. `now` is always passed in: nothing here reads the clock.

Incremental by construction: a symbol with a stored snapshot fetches only the sessions after its
last stored one, plus a few stored sessions again (settings.overlap_sessions) so the gate can prove
the provider did not silently rewrite history (a changed adjustment fails the overlap check).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.calendar import MarketCalendar, TradingCalendar, calendar_for_symbols, default_calendar, to_session, to_utc
from tradeflow.config import Settings
from tradeflow.data.bars import concat_bars, empty_bars, parse_symbols, sort_bars
from tradeflow.data.quality import GateContext, raise_for_report, run_gate
from tradeflow.data.quality.known_events import KnownEvents
from tradeflow.data.quality.report import BarOrigin, QualityReport
from tradeflow.data.sources import SOURCE_NAMES, BarSource, fetch_with_retry, make_source
from tradeflow.data.store import SnapshotInfo, SnapshotStore
from tradeflow.infra.files import atomic_write_text
from tradeflow.errors import EmptyDataError, InputError

log = logging.getLogger("tradeflow.data.ingest")

# The sample bundle starts on 1999-01-04; a first ingest without --start begins there.
DEFAULT_START = pd.Timestamp("1999-01-01")


@dataclass(frozen=True)
class IngestRequest:
    source: str = "sample"
    symbols: tuple[str, ...] = ("SPY", "^VIX")
    start: str | None = None
    end: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCE_NAMES:
            raise InputError(f"unknown source {self.source!r}; expected one of {', '.join(SOURCE_NAMES)}")
        object.__setattr__(self, "symbols", tuple(parse_symbols(self.symbols)))


@dataclass(frozen=True)
class SymbolPlan:
    symbol: str
    fetch_start: pd.Timestamp
    fetch_end: pd.Timestamp
    stored: SnapshotInfo | None
    description: str

    @property
    def up_to_date(self) -> bool:
        """Nothing is missing at either end of the stored snapshot: no fetch needed."""
        return self.stored is not None and self.stored.last >= self.fetch_end and self.fetch_start >= self.stored.first


@dataclass(frozen=True)
class IngestPlan:
    request: IngestRequest
    now: pd.Timestamp
    as_of: pd.Timestamp  # the session every symbol's newest bar must reach
    items: tuple[SymbolPlan, ...]

    def item(self, symbol: str) -> SymbolPlan:
        for it in self.items:
            if it.symbol == symbol:
                return it
        raise KeyError(symbol)


@dataclass
class GateResult:
    report: QualityReport
    frame: pd.DataFrame  # the candidate: stored history + newly fetched rows, as the gate saw it
    new_rows: dict[str, int] = field(default_factory=dict)  # sessions beyond each stored snapshot
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None


@dataclass
class IngestResult:
    plan: IngestPlan
    report: QualityReport
    snapshots: dict[str, SnapshotInfo]
    new_rows: dict[str, int]
    notes: list[str]
    report_path: Path | None
    # Symbols whose new snapshot was stored but not made current: a newer one was committed meanwhile.
    not_current: frozenset[str] = frozenset()

    def origin(self, symbol: str) -> str:
        """Where this symbol's bars came from: the stored snapshot, the source fetched now, or both."""
        parts = [f"{o.origin}: {o.rows} bars" for o in self.report.origins if o.symbol == symbol]
        return "; ".join(parts) or self.plan.item(symbol).description

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.report.passed,
            "source": self.plan.request.source,
            "as_of": str(self.plan.as_of.date()),
            "symbols": {
                sym: {
                    "description": self.plan.item(sym).description,
                    "from": self.origin(sym),
                    "rows": info.rows,
                    "new_rows": self.new_rows.get(sym, 0),
                    "first_session": info.first_session,
                    "last_session": info.last_session,
                    "snapshot": info.digest,
                    "file": info.file,
                    "current": sym not in self.not_current,
                }
                for sym, info in self.snapshots.items()
            },
            "notes": self.notes,
            "report": str(self.report_path) if self.report_path else None,
            "quality": self.report.to_dict(),
        }

    def summary_text(self) -> str:
        lines = [f"tradeflow ingest: source={self.plan.request.source}, as of session {self.plan.as_of.date()}"]
        for sym, info in self.snapshots.items():
            new = self.new_rows.get(sym, 0)
            lines.append(
                f"  {sym:<6} {info.rows:>6} bars  {info.first_session} .. {info.last_session}"
                f"  (+{new} new)  snapshot {info.digest[:12]}"
                + ("  (stored, NOT current)" if sym in self.not_current else "")
            )
            lines.append(f"         from {self.origin(sym)}")
        lines.append(f"  quality gate: {'PASSED' if self.report.passed else 'FAILED'} - {self.report.summary_line()}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = "\n".join(
            f"| {s} | {i.rows} | {self.new_rows.get(s, 0)} | {i.first_session} | {i.last_session} "
            f"| `{i.digest[:12]}` | {self.origin(s)} |"
            for s, i in self.snapshots.items()
        )
        return (
            f"# Ingest: {self.plan.request.source}, as of {self.plan.as_of.date()}\n\n"
            "| symbol | bars | new | first | last | snapshot | from |\n|---|---:|---:|---|---|---|---|\n"
            f"{rows}\n\n" + "".join(f"- {n}\n" for n in self.notes)
        )


def _expected_last_session(
    request: IngestRequest, source: BarSource, calendar: TradingCalendar, now: pd.Timestamp
) -> pd.Timestamp:
    """The newest session whose bar is final and which the request and the source cover, in the
    calendar of the request's symbols (the previous UTC day for crypto, the last NYSE close else)."""
    last = calendar.last_completed_session(now)
    if request.end is not None:
        end = to_session(request.end)
        if end < last:
            last = end if calendar.is_session(end) else calendar.previous_session(end)
    if source.coverage_end is not None and source.coverage_end < last:
        last = source.coverage_end
    return last


def _store(settings: Settings) -> SnapshotStore:
    return SnapshotStore(settings.snapshots_dir)


def _source(request: IngestRequest, settings: Settings, calendar: MarketCalendar) -> BarSource:
    return make_source(request.source, settings, path=request.path, calendar=calendar)


def plan_ingest(
    request: IngestRequest, settings: Settings, now: Any, calendar: MarketCalendar | None = None
) -> IngestPlan:
    """Decide, per symbol, which sessions to fetch; reads only the manifest."""
    nyse = calendar or default_calendar()
    # Sources keep the NYSE calendar (placeholder rows on NYSE holidays); the plan counts sessions in
    # the calendar the symbols trade on.
    cal = calendar_for_symbols(request.symbols, nyse)
    now_ts = to_utc(now)
    source = _source(request, settings, nyse)
    as_of = _expected_last_session(request, source, cal, now_ts)
    requested = to_session(request.start) if request.start else None
    if requested is not None and requested > as_of:
        raise InputError(f"start {requested.date()} is after the last session to ingest ({as_of.date()})")
    store = _store(settings)
    items = []
    for symbol in request.symbols:
        stored = store.current(symbol)
        # Without --start, a stored symbol continues from its snapshot; an earlier --start back-fills.
        start = requested if requested is not None else (stored.first if stored else DEFAULT_START)
        if stored is None and start > as_of:
            # No source can have a bar for this range: a request error, not an empty answer to gate.
            raise InputError(
                f"nothing to ingest for {symbol}: the last session asked for, {as_of.date()}, is before "
                f"{start.date()}, where its first ingest begins"
            )
        fetch_start = start
        if stored is not None and start >= stored.first:
            # Re-fetch the last few stored sessions: the overlap the gate compares.
            window = cal.sessions(stored.first, stored.last)
            fetch_start = max(window[-min(settings.overlap_sessions, len(window))], start)
        items.append(SymbolPlan(symbol, fetch_start, as_of, stored, source.describe(symbol)))
    return IngestPlan(request, now_ts, as_of, tuple(items))


def fetch_symbol(
    plan: IngestPlan, symbol: str, settings: Settings, attempts: int = 1, calendar: MarketCalendar | None = None
) -> pd.DataFrame:
    """Fetch one symbol's planned sessions. An empty answer comes back as an empty frame with the
    reason in attrs, so the gate reports it (min row count, freshness) instead of a bare error."""
    item = plan.item(symbol)
    if item.up_to_date:
        return empty_bars()
    source = _source(plan.request, settings, calendar or default_calendar())
    try:
        frame = fetch_with_retry(source, symbol, item.fetch_start, item.fetch_end, attempts=attempts)
    except EmptyDataError as exc:
        frame = empty_bars()
        frame.attrs["empty_reason"] = str(exc)
    log.info("%s: fetched %d bars for %s", plan.request.source, len(frame), symbol)
    return frame


def _origin(symbol: str, origin: str, rows: pd.DataFrame) -> BarOrigin:
    if rows.empty:
        return BarOrigin(symbol, origin, 0, None, None)
    first, last = (str(pd.Timestamp(rows["session"].agg(f)).date()) for f in ("min", "max"))
    return BarOrigin(symbol, origin, len(rows), first, last)


def _candidate(
    plan: IngestPlan, fetched: dict[str, pd.DataFrame], store: SnapshotStore
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, int], list[str], list[BarOrigin]]:
    """Stored history + new rows per symbol; the stored rows the new ones overlap; counts; notes;
    and where each symbol's bars came from (the stored snapshot, or the source fetched now)."""
    parts, overlaps, new_rows, notes, origins = [], [], {}, [], []
    for item in plan.items:
        new = fetched.get(item.symbol, empty_bars())
        if "empty_reason" in new.attrs:
            notes.append(new.attrs["empty_reason"])
        # A bar for a session that has not closed yet is partial (e.g. yfinance's intraday row): drop it.
        late = (new["session"] > plan.as_of).to_numpy(dtype=bool)
        if late.any():
            sessions = ", ".join(sorted({str(d.date()) for d in new["session"][late]}))
            notes.append(f"{item.symbol}: dropped {int(late.sum())} bar(s) for unfinished session(s) {sessions}")
            new = new[~late].reset_index(drop=True)
        fetched_now = f"{item.description} (fetched now)"
        stored = store.load(item.symbol) if item.stored is not None else None
        if stored is None or item.stored is None:
            parts.append(new)
            new_rows[item.symbol] = len(new)
            origins.append(_origin(item.symbol, fetched_now, new))
            continue
        from_store = f"stored snapshot {item.stored.digest[:12]}"
        if item.up_to_date or new.empty:
            parts.append(stored)
            new_rows[item.symbol] = 0
            origins.append(_origin(item.symbol, from_store, stored))
            continue
        first_new = new["session"].min()
        overlaps.append(stored.loc[stored["session"] >= first_new])
        kept = stored.loc[stored["session"] < first_new]
        parts.append(concat_bars([kept, new]))
        new_rows[item.symbol] = int((new["session"] > stored["session"].max()).sum())
        if len(kept):
            origins.append(_origin(item.symbol, from_store, kept))
        origins.append(_origin(item.symbol, fetched_now, new))
    overlap = concat_bars(overlaps) if overlaps else None
    return concat_bars(parts), overlap, new_rows, notes, origins


def check_bars(
    plan: IngestPlan, fetched: dict[str, pd.DataFrame], settings: Settings, calendar: MarketCalendar | None = None
) -> GateResult:
    """Run the quality gate on stored + new bars and write the report under data/reports/quality/."""
    cal = calendar_for_symbols(plan.request.symbols, calendar or default_calendar())
    store = _store(settings)
    frame, overlap, new_rows, notes, origins = _candidate(plan, fetched, store)
    reports = settings.reports_dir / "quality"
    ctx = GateContext(
        calendar=cal,
        as_of=plan.as_of,
        stored=overlap,
        settings=settings.quality,
        known_events=KnownEvents.load(settings.quality.known_events_file),
        docs_dir=reports / "data_docs",
        symbols=plan.request.symbols,
    )
    # The report labels each symbol's bars by where they came from, not by the --source flag alone:
    # a fault in stored history is not the provider's fault today.
    report = replace(run_gate(frame, ctx), origins=tuple(origins))
    report.notes.extend(n for n in notes if n not in report.notes)
    stem = f"{plan.request.source}-{plan.as_of.date()}"
    atomic_write_text(reports / f"{stem}.md", report.to_markdown())
    atomic_write_text(reports / f"{stem}.json", json.dumps(report.to_dict(), indent=2, default=str))
    atomic_write_text(reports / "latest.md", report.to_markdown())
    return GateResult(report, frame, new_rows, notes, reports / f"{stem}.md")


def commit_bars(plan: IngestPlan, gate: GateResult, settings: Settings) -> IngestResult:
    """Write one immutable snapshot per symbol when the gate passed; otherwise quarantine and raise."""
    raise_for_report(gate.report, gate.frame, settings.quarantine_dir)
    frame = sort_bars(gate.frame)
    per_symbol = {str(sym): rows.reset_index(drop=True) for sym, rows in frame.groupby("symbol", sort=False)}
    # Compare-and-swap against what was planned on: a concurrent ingest may have committed since (G6).
    expected = {it.symbol: (it.stored.digest if it.stored else None) for it in plan.items}
    commit = _store(settings).commit(
        per_symbol, source=plan.request.source, created_at=plan.now.isoformat(), expected=expected
    )
    for note in commit.notes:
        log.warning("ingest: %s", note)
    return IngestResult(
        plan,
        gate.report,
        commit.snapshots,
        gate.new_rows,
        [*gate.notes, *commit.notes],
        gate.report_path,
        not_current=frozenset(commit.not_current),
    )


def ingest_missing(
    request: IngestRequest, settings: Settings, now: Any, calendar: MarketCalendar | None = None
) -> IngestResult | None:
    """Bring the store up to `request`'s last session for the symbols whose current snapshot ends
    before it, and leave every other symbol alone; None when the store already reaches it.

    What research commands call before cutting a historical window from the store: a window the
    store covers fetches and gates nothing, and a later one fetches and gates only the symbols that
    lag (new sessions plus the usual overlap). A snapshot reaching past the request's end is never
    re-gated against that earlier end, so it is never quarantined or replaced because of it.
    """
    if request.start is not None:
        raise ValueError("ingest_missing extends snapshots forward; a window's start is a cut, not an ingest")
    nyse = calendar or default_calendar()
    now_ts = to_utc(now)
    cal = calendar_for_symbols(request.symbols, nyse)
    as_of = _expected_last_session(request, _source(request, settings, nyse), cal, now_ts)
    store = _store(settings)
    lagging = []
    for symbol in request.symbols:
        stored = store.current(symbol)
        if stored is None or stored.last < as_of:
            lagging.append(symbol)
    if not lagging:
        return None
    return ingest(replace(request, symbols=tuple(lagging)), settings, now_ts, nyse)


def ingest(
    request: IngestRequest, settings: Settings, now: Any, calendar: MarketCalendar | None = None
) -> IngestResult:
    """plan -> fetch (with retries on transient errors) -> gate -> snapshot, for the CLI."""
    cal = calendar or default_calendar()
    plan = plan_ingest(request, settings, now, cal)
    fetched = {
        item.symbol: fetch_symbol(plan, item.symbol, settings, attempts=settings.fetch_attempts, calendar=cal)
        for item in plan.items
    }
    return commit_bars(plan, check_bars(plan, fetched, settings, cal), settings)
