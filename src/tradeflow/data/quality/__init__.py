"""The data-quality gate: three layers over a whole (multi-symbol) bar frame, one report.

1. schema (pandera): types, nulls, infinities, price/volume ranges, OHLC algebra, uniqueness, order,
   strict columns;
2. statistics (Great Expectations): return outliers, stale closes, volume sanity, row counts;
3. checks (pandas): completeness on each symbol's calendar (NYSE, or 24/7 for crypto), freshness, split-like jumps, overlap with the stored snapshot.

Every layer runs on every call, so one report lists every fault; a layer that crashes becomes a
failure (fail closed). Failures excused by the known-events allow-list move to `report.allowed`.

    report = run_gate(frame, GateContext(calendar, as_of=last_session, stored=snapshot))
    raise_for_report(report, frame, settings.quarantine_dir)   # DataStaleError / DataQualityError
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tradeflow.calendar import TradingCalendar, to_session
from tradeflow.config import QualitySettings
from tradeflow.data.bars import frame_digest
from tradeflow.data.quality import gx_layer
from tradeflow.data.quality.checks import run_checks
from tradeflow.data.quality.known_events import KNOWN_EVENTS_FILE, KnownEvent, KnownEvents, find_expectations_dir
from tradeflow.data.quality.report import (
    LAYER_FAILURES_PER_CHECK,
    LAYERS,
    REPORT_FAILURES_PER_CHECK,
    Failure,
    Layer,
    LayerOutcome,
    QualityReport,
    cap_failures,
    merge_counts,
)
from tradeflow.data.quality.schema import validate_schema
from tradeflow.errors import DataQualityError, DataStaleError

__all__ = [
    "Failure",
    "GateContext",
    "KnownEvent",
    "KnownEvents",
    "QualityReport",
    "find_expectations_dir",
    "quarantine",
    "raise_for_report",
    "run_gate",
]

log = logging.getLogger("tradeflow.data.quality")


@dataclass(frozen=True, eq=False)
class GateContext:
    """What the gate judges a frame against.

    as_of: the session every symbol's newest bar must equal (None: freshness not judged).
    stored: the stored snapshot rows, for the overlap check (None: no overlap check).
    known_events: None loads settings.known_events_file, else <expectations_dir>/known_events.json
    (an absent default file means an empty allow-list: a stricter gate, never a looser one).
    min_rows: rows required per symbol; symbols: symbols that must be present (zero rows fails).
    """

    calendar: TradingCalendar  # the NYSE's for equities; crypto symbols are judged by the 24/7 one
    as_of: pd.Timestamp | None = None
    stored: pd.DataFrame | None = None
    settings: QualitySettings = field(default_factory=QualitySettings)
    known_events: KnownEvents | None = None
    expectations_dir: Path = field(default_factory=find_expectations_dir)
    docs_dir: Path | None = None
    min_rows: int = 1
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_rows < 1:
            # min_rows=0 would let an empty frame pass: the vacuous pass the gate exists to prevent.
            raise ValueError(f"min_rows must be >= 1, got {self.min_rows}")
        if self.as_of is not None:
            object.__setattr__(self, "as_of", to_session(self.as_of))
        object.__setattr__(self, "expectations_dir", Path(self.expectations_dir))
        object.__setattr__(self, "symbols", tuple(self.symbols))
        if self.known_events is None:
            path = self.settings.known_events_file or self.expectations_dir / KNOWN_EVENTS_FILE
            explicit = self.settings.known_events_file is not None
            events = KnownEvents.load(path) if explicit or path.is_file() else KnownEvents.empty()
            object.__setattr__(self, "known_events", events)

    @property
    def allow_list(self) -> KnownEvents:
        return self.known_events if self.known_events is not None else KnownEvents.empty()


def _guarded(layer: str, fallback: Layer, fn: Callable[[], LayerOutcome]) -> LayerOutcome:
    """Run one layer; a crash is a failure of the frame's gate, never a pass (fail closed)."""
    try:
        return fn()
    except Exception as exc:
        log.exception("quality gate: the %s layer crashed", layer)
        detail = f"the {layer} layer crashed: {type(exc).__name__}: {exc}"[:500]
        return LayerOutcome(failures=[Failure("layer_error", fallback, None, None, detail, None)])


def _order(f: Failure) -> tuple[int, str, str, str]:
    return (LAYERS.index(f.layer), f.check, f.symbol or "", f.session or "")


def run_gate(frame: pd.DataFrame, ctx: GateContext) -> QualityReport:
    """Run all three layers over the whole frame (all symbols at once) and return the report."""
    layers: list[tuple[str, Layer, Callable[[], LayerOutcome]]] = [
        ("schema", "schema", lambda: validate_schema(frame)),
        (
            "statistics",
            "statistics",
            lambda: gx_layer.validate_statistics(
                frame,
                expectations_dir=ctx.expectations_dir,
                min_rows=ctx.min_rows,
                symbols=ctx.symbols,
                docs_dir=ctx.docs_dir,
            ),
        ),
        (
            "checks",
            "consistency",
            lambda: run_checks(
                frame,
                calendar=ctx.calendar,
                as_of=ctx.as_of,
                stored=ctx.stored,
                symbols=ctx.symbols,
                min_rows=ctx.min_rows,
                split_tolerance=ctx.settings.split_tolerance,
                overlap_tolerance=ctx.settings.overlap_tolerance,
            ),
        ),
    ]
    failures: list[Failure] = []
    unlisted: dict[str, int] = {}
    notes: list[str] = []
    timings: dict[str, float] = {}
    docs_path: str | None = None
    for name, fallback, fn in layers:
        t0 = time.perf_counter()
        outcome = _guarded(name, fallback, fn)
        timings[name] = time.perf_counter() - t0
        # A layer bounds the Failure objects it builds; this bounds any layer that does not.
        listed, cut = cap_failures(outcome.failures, LAYER_FAILURES_PER_CHECK)
        failures.extend(listed)
        unlisted = merge_counts(unlisted, outcome.unlisted, cut)
        notes.extend(outcome.notes)
        timings.update(outcome.timings)
        docs_path = outcome.docs_path or docs_path
    kept, allowed = ctx.allow_list.partition(failures)
    # Bounded report (G5): the first REPORT_FAILURES_PER_CHECK of each check listed, all counted.
    listed, cut = cap_failures(sorted(kept, key=_order), REPORT_FAILURES_PER_CHECK)
    unlisted = merge_counts(unlisted, cut)
    present = set(frame["symbol"].dropna().astype("str").unique()) if "symbol" in frame.columns else set()
    return QualityReport(
        passed=not kept and not unlisted,
        rows=len(frame),
        symbols=tuple(sorted(present | set(ctx.symbols))),
        as_of=None if ctx.as_of is None else ctx.as_of.date().isoformat(),
        failures=tuple(listed),
        allowed=tuple(sorted(allowed, key=_order)),
        notes=notes,
        timings=timings,
        docs_path=docs_path,
        unlisted=unlisted,
    )


def _content_key(report: QualityReport, frame: pd.DataFrame) -> str:
    """Same frame and same findings -> same name; timings and paths vary between runs, so excluded."""
    findings = {k: v for k, v in report.to_dict().items() if k not in ("timings", "docs_path")}
    h = hashlib.sha256(frame_digest(frame).encode())
    h.update(json.dumps(findings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def _write_frame(frame: pd.DataFrame, folder: Path) -> None:
    data = frame.copy()
    data.attrs = {}  # attrs go into parquet metadata as JSON; a source's attrs need not be JSON-able
    try:
        data.to_parquet(folder / "bars.parquet", index=False)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        # A frame the schema rejected (e.g. mixed strings and floats) may not fit Parquet's types.
        (folder / "bars.parquet").unlink(missing_ok=True)
        log.warning("quarantine: writing CSV instead of Parquet: %s", exc)
        data.to_csv(folder / "bars.csv", index=False)


_TMP_PREFIX = ".tmp-quarantine-"


def _sweep_abandoned(quarantine_dir: Path) -> None:
    """Remove temporary folders of quarantine writers that died mid-write (G5: a process killed for
    memory cannot run its own clean-up). The folder names its writer's pid; a live writer's is kept."""
    for tmp in quarantine_dir.glob(f"{_TMP_PREFIX}*"):
        pid = tmp.name.removeprefix(_TMP_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def quarantine(report: QualityReport, frame: pd.DataFrame, quarantine_dir: Path) -> Path:
    """Write frame + report (JSON, markdown) into quarantine_dir/<content hash>/, atomically.

    The folder is assembled under a temporary name and renamed into place, so a reader sees all
    three files or none; quarantining the same rejection twice leaves the first copy.
    """
    quarantine_dir = Path(quarantine_dir)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    _sweep_abandoned(quarantine_dir)
    final = quarantine_dir / f"bars-{_content_key(report, frame)}"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=quarantine_dir))
    try:
        _write_frame(frame, tmp)
        (tmp / "report.json").write_text(report.to_json(), encoding="utf-8")
        (tmp / "report.md").write_text(report.to_markdown(), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # not a concurrent writer of the same content
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def raise_for_report(report: QualityReport, frame: pd.DataFrame, quarantine_dir: Path) -> None:
    """Nothing when the report passed; otherwise quarantine and raise.

    DataStaleError when any failure is a freshness failure (fetching again may help), else
    DataQualityError; `quarantined` is the quarantine folder.
    """
    if report.passed:
        return
    path = quarantine(report, frame, quarantine_dir)
    error = DataStaleError if report.is_stale else DataQualityError
    raise error(report, quarantined=path)
