"""What the quality gate found: one `Failure` per fault, one `QualityReport` per gate run.

The report is the single artifact every consumer reads: the error raised on rejection carries it,
the quarantine stores it as JSON and markdown, and the Prefect task publishes the markdown.
No great_expectations or pandera import here: the report must load anywhere.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

Layer = Literal["schema", "statistics", "calendar", "consistency"]
LAYERS: tuple[Layer, ...] = ("schema", "statistics", "calendar", "consistency")

# Checks that mean "the data is old", as opposed to "the data is wrong": they turn a rejection into
# DATA_STALE, which a caller may answer by fetching again rather than by alerting a person.
FRESHNESS_CHECKS: frozenset[str] = frozenset({"stale"})

# A person reads the markdown; past this many rows a table stops being read.
MARKDOWN_FAILURE_ROWS = 50

# Reports are bounded (G5: a 200 MB hostile file once produced a 516 MB JSON report): the report
# lists at most this many failures per check, and counts every failure exactly (`counts`).
REPORT_FAILURES_PER_CHECK = 20
# A layer builds at most this many Failure objects per check and only counts the rest: enough for
# the known-events allow-list (a few dozen events) to excuse what it knows before the report's cut.
LAYER_FAILURES_PER_CHECK = 1000


def cap_failures(failures: Sequence[Failure], per_check: int) -> tuple[list[Failure], dict[str, int]]:
    """The first `per_check` failures of each check (order kept), and how many of each were cut."""
    seen: Counter[str] = Counter()
    kept: list[Failure] = []
    for f in failures:
        seen[f.check] += 1
        if seen[f.check] <= per_check:
            kept.append(f)
    return kept, {check: n - per_check for check, n in seen.items() if n > per_check}


def merge_counts(*parts: Mapping[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return {k: v for k, v in total.items() if v}


def _clean_value(value: object) -> float | str | None:
    """A JSON-safe scalar: NaN -> None, +-inf -> 'inf'/'-inf' (strict JSON has neither)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        f = float(value)
        if math.isnan(f):
            return None
        return f if math.isfinite(f) else ("inf" if f > 0 else "-inf")
    try:  # numpy scalars
        return _clean_value(float(cast(Any, value)))
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class Failure:
    """One fault: which check, where (symbol, session as ISO date), what, and the offending value.

    `allowed_by` is set only on failures the known-events allow-list excused (the event's reason).
    """

    check: str
    layer: Layer
    symbol: str | None
    session: str | None
    detail: str
    value: float | str | None = None
    allowed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "layer": self.layer,
            "symbol": self.symbol,
            "session": self.session,
            "detail": self.detail,
            "value": _clean_value(self.value),
        }
        if self.allowed_by is not None:
            out["allowed_by"] = self.allowed_by
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        layer = data.get("layer", "consistency")
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
        return cls(
            check=str(data["check"]),
            layer=layer,
            symbol=data.get("symbol"),
            session=data.get("session"),
            detail=str(data.get("detail", "")),
            value=data.get("value"),
            allowed_by=data.get("allowed_by"),
        )


@dataclass(frozen=True)
class BarOrigin:
    """Where a run of one symbol's bars came from: the stored snapshot or a source fetched now."""

    symbol: str
    origin: str  # e.g. "stored snapshot 3f2a9c01b2d4" or "csv file data/SPY.csv (fetched now)"
    rows: int
    first_session: str | None
    last_session: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "origin": self.origin,
            "rows": self.rows,
            "first_session": self.first_session,
            "last_session": self.last_session,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BarOrigin:
        return cls(
            str(data["symbol"]),
            str(data["origin"]),
            int(data["rows"]),
            data.get("first_session"),
            data.get("last_session"),
        )


@dataclass(frozen=True)
class LayerOutcome:
    """What one layer returns: its failures, notes for a person, and any extra timings."""

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    docs_path: str | None = None
    # Failures per check found but not built as Failure objects (past LAYER_FAILURES_PER_CHECK).
    unlisted: dict[str, int] = field(default_factory=dict)


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class QualityReport:
    """The verdict of one gate run over a whole (multi-symbol) frame."""

    passed: bool
    rows: int
    symbols: tuple[str, ...]
    as_of: str | None
    failures: tuple[Failure, ...] = ()
    allowed: tuple[Failure, ...] = ()
    # A list, unlike the verdict fields: callers may annotate a report (e.g. with notes from the
    # fetch step) without changing what it decided.
    notes: list[str] = field(default_factory=list)
    timings: Mapping[str, float] = field(default_factory=dict)
    docs_path: str | None = None
    # Where the judged bars came from, per symbol (set by the ingest, which knows; empty for a file).
    origins: tuple[BarOrigin, ...] = ()
    # Failures per check that were counted but not listed (see REPORT_FAILURES_PER_CHECK); they are
    # failures like the listed ones: a report with any is not passed.
    unlisted: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_stale(self) -> bool:
        """True when any failure says the data is old (the DataStaleError case)."""
        return any(f.check in FRESHNESS_CHECKS for f in self.failures)

    def counts(self) -> dict[str, int]:
        """Failures per check, listed or not, most frequent first."""
        total = Counter(f.check for f in self.failures)
        total.update(self.unlisted)
        return dict(total.most_common())

    @property
    def failure_count(self) -> int:
        """Every failure, listed or only counted."""
        return len(self.failures) + sum(self.unlisted.values())

    def failures_for(self, check: str) -> list[Failure]:
        return [f for f in self.failures if f.check == check]

    def summary_line(self) -> str:
        """One line for logs and exception messages."""
        scope = f"{self.rows} rows, {len(self.symbols)} symbol(s)"
        if self.symbols:
            shown = ", ".join(self.symbols[:5]) + (" ..." if len(self.symbols) > 5 else "")
            scope += f" [{shown}]"
        if self.passed:
            extra = f"; {len(self.allowed)} allowed known event(s)" if self.allowed else ""
            return f"quality gate passed: {scope}{extra}"
        counts = ", ".join(f"{check} x{n}" for check, n in self.counts().items())
        first = self.failures[0]
        where = " ".join(x for x in (first.symbol, first.session) if x)
        head = f"{first.check}{' ' + where if where else ''}: {first.detail}"
        if len(head) > 160:
            head = head[:157] + "..."
        return f"quality gate FAILED: {scope}; {self.failure_count} failure(s) ({counts}); first: {head}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "symbols": list(self.symbols),
            "as_of": self.as_of,
            "counts": self.counts(),
            "listed_per_check": REPORT_FAILURES_PER_CHECK,
            "failures": [f.to_dict() for f in self.failures],
            "unlisted": dict(self.unlisted),
            "allowed": [f.to_dict() for f in self.allowed],
            "notes": list(self.notes),
            "timings": {k: round(float(v), 6) for k, v in self.timings.items()},
            "docs_path": self.docs_path,
            "origins": [o.to_dict() for o in self.origins],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityReport:
        return cls(
            passed=bool(data["passed"]),
            rows=int(data["rows"]),
            symbols=tuple(data.get("symbols", ())),
            as_of=data.get("as_of"),
            failures=tuple(Failure.from_dict(f) for f in data.get("failures", ())),
            allowed=tuple(Failure.from_dict(f) for f in data.get("allowed", ())),
            notes=[str(n) for n in data.get("notes", ())],
            timings={str(k): float(v) for k, v in data.get("timings", {}).items()},
            docs_path=data.get("docs_path"),
            origins=tuple(BarOrigin.from_dict(o) for o in data.get("origins", ())),
            unlisted={str(k): int(v) for k, v in data.get("unlisted", {}).items()},
        )

    def to_markdown(self) -> str:
        """A report for a person: verdict, counts per check, the failures, allowed events, notes, timings."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"# Data quality gate: {verdict}", ""]
        lines.append(
            f"**{self.rows}** rows, **{len(self.symbols)}** symbol(s): {', '.join(self.symbols) or '(none)'}; "
            f"as of **{self.as_of or 'not judged'}**."
        )
        lines += ["", self.summary_line(), ""]
        if self.origins:
            lines += [
                "## Where the bars came from",
                "",
                "| symbol | from | bars | first | last |",
                "|---|---|---:|---|---|",
            ]
            lines += [
                f"| {_md_cell(o.symbol)} | {_md_cell(o.origin)} | {o.rows} | {o.first_session or ''} | {o.last_session or ''} |"
                for o in self.origins
            ]
            lines += [""]
        lines += self._counts_table()
        if self.failures:
            lines += ["", "## Failures", ""]
            lines += _failure_table(_spread(self.failures, MARKDOWN_FAILURE_ROWS))
            shown = min(len(self.failures), MARKDOWN_FAILURE_ROWS)
            hidden = self.failure_count - shown
            if hidden > 0:
                listed = len(self.failures) - shown
                where = f"; {listed} more listed in the JSON report" if listed > 0 else ""
                lines += ["", f"+{hidden} more (the counts above are exact{where})"]
        if self.allowed:
            lines += ["", "## Allowed known events", ""]
            lines += _failure_table(self.allowed, reason=True)
        if self.notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {_md_cell(n)}" for n in self.notes]
        if self.timings:
            lines += ["", "## Timings", "", "| layer | seconds |", "|---|---:|"]
            lines += [f"| {layer} | {secs:.3f} |" for layer, secs in self.timings.items()]
        if self.docs_path:
            lines += ["", f"Great Expectations Data Docs: `{self.docs_path}`"]
        return "\n".join(lines) + "\n"

    def _counts_table(self) -> list[str]:
        per: dict[tuple[str, str], list[int]] = {}
        for f in self.failures:
            per.setdefault((f.layer, f.check), [0, 0])[0] += 1
        for f in self.allowed:
            per.setdefault((f.layer, f.check), [0, 0])[1] += 1
        layer_of = {f.check: f.layer for f in self.failures}
        for check, n in self.unlisted.items():
            per.setdefault((layer_of.get(check, "consistency"), check), [0, 0])[0] += n
        if not per:
            return ["No failures."]
        order = sorted(per, key=lambda k: (LAYERS.index(cast(Layer, k[0])), -per[k][0], k[1]))
        rows = ["| layer | check | failures | allowed |", "|---|---|---:|---:|"]
        rows += [
            f"| {layer} | {check} | {per[(layer, check)][0]} | {per[(layer, check)][1]} |" for layer, check in order
        ]
        return rows


def _spread(failures: Sequence[Failure], limit: int) -> list[Failure]:
    """At most `limit` failures, taken round-robin across checks so that 8,000 rows of one fault
    cannot hide the single split-like jump a person is looking for; original order kept.
    """
    if len(failures) <= limit:
        return list(failures)
    by_check: dict[str, list[int]] = {}
    for i, f in enumerate(failures):
        by_check.setdefault(f.check, []).append(i)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for positions in by_check.values():
            if depth < len(positions) and len(chosen) < limit:
                chosen.append(positions[depth])
        depth += 1
    return [failures[i] for i in sorted(chosen)]


def _failure_table(failures: Sequence[Failure], *, reason: bool = False) -> list[str]:
    head = "| check | symbol | session | detail |" + (" reason |" if reason else "")
    rule = "|---|---|---|---|" + ("---|" if reason else "")
    out = [head, rule]
    for f in failures:
        row = f"| {_md_cell(f.check)} | {_md_cell(f.symbol or '')} | {f.session or ''} | {_md_cell(f.detail)} |"
        if reason:
            row += f" {_md_cell(f.allowed_by or '')} |"
        out.append(row)
    return out
