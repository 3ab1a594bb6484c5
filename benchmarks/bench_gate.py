"""Benchmark of the data layer: the quality gate per layer, and an incremental ingest.

    .venv/bin/python benchmarks/bench_gate.py [--repeat N] [--symbols 1,100] [--json out.json]

Data: 20 years of REAL daily bars (../shared/data/real/{SPY,AAPL,MSFT}.csv), the window ending on
the newest session all three files share, so that one as-of session fits every symbol. One symbol
is SPY; N symbols are copies named SYM000.. cycling through SPY, AAPL, MSFT (real values,
synthetic names).

Measured in one process, in this order:
  1. one-time costs: importing great_expectations, building the GX context and loading the suites;
  2. run_gate without Data Docs (as_of = the last session, so it passes), per layer from
     report.timings, median and min of --repeat runs; the first call is reported on its own;
  3. Data Docs built once for one symbol (part of the human report, not of the gate);
  4. the reference in the same run: the usual way to run GX, one ValidationDefinition.run per
     symbol over that symbol's own statistics frame with the same suite; plus run_gate once per
     symbol, to show what batching buys for the whole gate;
  5. ingest (csv source, a temporary data dir): a full 20-year ingest, then an incremental one
     adding the last 5 sessions, each repeat on a fresh copy of the stored state;
  6. a one-shot `tradeflow validate` process for one symbol (what a person waits for);
  7. hostile input (RELIABILITY G5): a ~200 MB SPY CSV full of failing rows, as fresh processes with
     their peak RSS: `validate` refused by the default size limit, then `validate` and `ingest` with
     the limit raised (report size, quarantine, leftover temporary folders), beside the 20-year
     real file.

Speed goals are reported here, never asserted as wall-clock limits in tests (house rule).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from _common import machine  # benchmarks/ is sys.path[0] when run as a script

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import MarketCalendar, default_calendar
from tradeflow.config import Settings
from tradeflow.data.ingest import IngestRequest, IngestResult, ingest
from tradeflow.data.quality import GateContext, QualityReport, find_expectations_dir, gx_layer, run_gate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "real"
SERIES = ("SPY", "AAPL", "MSFT")  # all equities: every symbol runs through the same (equity) suite
YEARS = 20
NEW_SESSIONS = 5  # the incremental ingest adds this many sessions
# Any instant after the data: `end` caps the ingest, so only its being later matters.
NOW = pd.Timestamp("2026-11-21T21:00:00Z")
GOALS_S: dict[int, float] = {1: 1.0, 100: 10.0}  # the goals for run_gate on this 2-core machine
LAYER_LABELS: dict[str, str] = {
    "schema": "schema (pandera)",
    "statistics": "statistics (GX)",
    "checks": "calendar + consistency",
    "data_docs": "  of which Data Docs",
}
T = TypeVar("T")
PACKAGES = ("pandas", "numpy", "pandera", "great_expectations", "pyarrow", "exchange_calendars")


# -- timing helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Median and min of repeated runs (seconds); the min is the least disturbed by other load."""

    median: float
    min: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Stat:
        return cls(statistics.median(runs), min(runs), tuple(runs))

    def scaled(self, factor: float) -> Stat:
        return Stat(self.median * factor, self.min * factor, tuple(r * factor for r in self.runs))

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "runs_s": list(self.runs)}

    def cell(self) -> str:
        return f"{_secs(self.median)} ({_secs(self.min)})"


def _secs(s: float) -> str:
    return f"{s:.3f} s" if s < 10 else f"{s:.1f} s"


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    # Collect first so that garbage left by the previous run is not charged to this one.
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _require_pass(report: QualityReport, what: str) -> None:
    # A benchmark of a gate that rejected its input would time the failure path, not the gate.
    if not report.passed:
        raise SystemExit(f"benchmark aborted: the gate failed on {what}: {report.summary_line()}")


# -- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchData:
    series: dict[str, pd.DataFrame]  # SPY, AAPL, MSFT over the common 20-year window
    first: pd.Timestamp
    last: pd.Timestamp

    def symbols(self, n: int) -> list[str]:
        return ["SPY"] if n == 1 else [f"SYM{i:03d}" for i in range(n)]

    def frames(self, n: int) -> list[pd.DataFrame]:
        """One frame per symbol: SPY alone, or SYM000.. cycling through the three real series."""
        if n == 1:
            return [self.series["SPY"]]
        return [
            self.series[SERIES[i % len(SERIES)]].assign(symbol=name).astype({"symbol": "str"})
            for i, name in enumerate(self.symbols(n))
        ]


def load_data(data_dir: Path, calendar: MarketCalendar) -> BenchData:
    missing = [s for s in SERIES if not (data_dir / f"{s}.csv").is_file()]
    if missing:
        raise SystemExit(
            f"benchmark needs the real daily bars {', '.join(f'{s}.csv' for s in missing)} in {data_dir}; "
            "pass --data-dir to point at them (expected ../shared/data/real beside the checkout)"
        )
    full = {s: read_bar_file(data_dir / f"{s}.csv", s, calendar) for s in SERIES}
    # The newest session all three files have: one as_of must fit every copy, or freshness fails.
    last = min(f["session"].max() for f in full.values())
    start = last - pd.DateOffset(years=YEARS)
    series = {s: f.loc[(f["session"] > start) & (f["session"] <= last)].reset_index(drop=True) for s, f in full.items()}
    first = max(f["session"].min() for f in series.values())
    return BenchData(series, first, last)


def write_csvs(frames: Sequence[pd.DataFrame], folder: Path) -> None:
    """Yahoo-style CSV files (the csv source's usual input), one per symbol, holding only the window."""
    folder.mkdir(parents=True, exist_ok=True)
    yahoo = {"session": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close"}
    yahoo |= {"adj_close": "Adj Close", "volume": "Volume"}
    for frame in frames:
        symbol = str(frame["symbol"].iloc[0])
        out = frame.drop(columns=["symbol"]).rename(columns=yahoo)
        out.to_csv(folder / f"{symbol}.csv", index=False, date_format="%Y-%m-%d")


# -- the gate and its reference --------------------------------------------------------------------------------------


def gx_one_time(expectations_dir: Path) -> dict[str, float]:
    """Import GX, then build the context and load the suites: paid once per process."""
    already = "great_expectations" in sys.modules
    t_import, _ = _timed(lambda: importlib.import_module("great_expectations"))
    t_context, _ = _timed(lambda: gx_layer.warm_up(expectations_dir))
    out = {"gx_import_s": t_import, "gx_context_and_suites_s": t_context}
    if already:  # then the import figure is meaningless; say so rather than report ~0 s
        out["gx_import_s"] = float("nan")
    return out


class PerSymbolGx:
    """The reference: one GX ValidationDefinition.run per symbol over that symbol's own frame.

    That is how GX is usually run (a validation definition or checkpoint per table). GX is imported
    here, outside src/, on purpose: this is the comparison, not the product. The statistics frame is
    derived with tradeflow's own function and judged by tradeflow's own suite, so both sides check
    the same columns with the same expectations; only the batching differs. It has its own
    ephemeral context (as a user's script would), built before timing, like the gate's warm-up.
    """

    def __init__(self, expectations_dir: Path) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        spec = json.loads((expectations_dir / gx_layer.SUITE_FILES["equity"]).read_text(encoding="utf-8"))
        suite = self.context.suites.add(gx.ExpectationSuite(**spec))
        batch = (
            self.context.data_sources.add_pandas("bench_reference")
            .add_dataframe_asset("per_symbol_statistics")
            .add_batch_definition_whole_dataframe("one_symbol")
        )
        self.definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name="bench_reference_per_symbol", data=batch, suite=suite)
        )

    def validate(self, frames: Sequence[pd.DataFrame], min_rows: int = 1) -> None:
        for frame in frames:
            stats = gx_layer.statistics_frame(frame).drop(columns=["is_index"]).reset_index(drop=True)
            result = self.definition.run(
                batch_parameters={"dataframe": stats},
                expectation_parameters={"min_rows": min_rows},
                result_format=gx_layer.RESULT_FORMAT,
            )
            failed = [_name(r) for r in result.results if not r.success and _critical(r)]
            if failed:
                raise SystemExit(f"benchmark aborted: the reference failed {frame['symbol'].iloc[0]}: {failed}")

    def clear_results(self) -> None:
        # run() keeps every result in memory; clearing (untimed) keeps later repeats from paying for it.
        store = self.context.validation_results_store
        for key in store.list_keys():
            store.remove_key(key)


def _name(result: Any) -> str:
    return str(getattr(result.expectation_config, "type", "?"))


def _critical(result: Any) -> bool:
    severity = result.expectation_config.severity
    return str(getattr(severity, "value", severity)) == "critical"


@dataclass(frozen=True)
class GateCase:
    """One size: the batched frame and context (ours), and per-symbol frames and contexts (reference)."""

    frame: pd.DataFrame
    ctx: GateContext
    frames: list[pd.DataFrame]
    contexts: list[GateContext]


def make_case(data: BenchData, calendar: MarketCalendar, n: int) -> GateCase:
    frames = data.frames(n)
    symbols = data.symbols(n)
    return GateCase(
        frame=pd.concat(frames, ignore_index=True),
        ctx=GateContext(calendar=calendar, as_of=data.last, symbols=tuple(symbols)),
        frames=frames,
        contexts=[GateContext(calendar=calendar, as_of=data.last, symbols=(s,)) for s in symbols],
    )


def _gate_each(pairs: Sequence[tuple[pd.DataFrame, GateContext]]) -> list[QualityReport]:
    return [run_gate(frame, ctx) for frame, ctx in pairs]


def bench_gate(case: GateCase, reference: PerSymbolGx, repeat: int, limit: int) -> dict[str, Any]:
    """run_gate per layer (first call on its own, then --repeat runs), with the reference interleaved.

    Each repeat runs ours, then the per-symbol GX reference, then run_gate once per symbol, so all
    three see the same momentary load from whatever else shares the machine and their ratio holds.
    With 0 < limit < n the per-symbol runs cover `limit` symbols and are scaled to n (linear: each
    symbol is an independent validation of the same size).
    """
    n = len(case.frames)
    what = f"{n} symbol(s)"
    first_s, report = _timed(lambda: run_gate(case.frame, case.ctx))
    _require_pass(report, what)
    reference.validate(case.frames[:1])  # the reference's first call, also untimed
    k = n if limit <= 0 else min(limit, n)
    totals: list[float] = []
    layers: dict[str, list[float]] = {}
    gx_runs: list[float] = []
    gate_runs: list[float] = []
    for _ in range(repeat):
        total, report = _timed(lambda: run_gate(case.frame, case.ctx))
        _require_pass(report, what)
        totals.append(total)
        for name, secs in report.timings.items():  # whatever layers the gate reports, in its order
            layers.setdefault(name, []).append(float(secs))
        reference.clear_results()
        t, _ = _timed(lambda: reference.validate(case.frames[:k]))
        gx_runs.append(t)
        pairs = list(zip(case.frames[:k], case.contexts[:k], strict=True))
        t, reports = _timed(partial(_gate_each, pairs))
        for r in reports:
            _require_pass(r, "one symbol (per-symbol reference)")
        gate_runs.append(t)
    reference.clear_results()
    ours, stats_layer = Stat.of(totals), Stat.of(layers["statistics"])
    gx_ref, gate_ref = Stat.of(gx_runs).scaled(n / k), Stat.of(gate_runs).scaled(n / k)
    return {
        "rows": len(case.frame),
        "first_call_s": first_s,
        "total": ours,
        "layers": {name: Stat.of(v) for name, v in layers.items()},
        "reference": {
            "timed_symbols": k,
            "extrapolated": k < n,
            "gx_per_symbol": gx_ref,
            "gate_per_symbol": gate_ref,
            # ratio > 1: the per-symbol way takes that many times longer than ours
            "gx_ratio": gx_ref.median / stats_layer.median,
            "gate_ratio": gate_ref.median / ours.median,
        },
    }


def bench_data_docs(
    frame: pd.DataFrame, calendar: MarketCalendar, data: BenchData, symbols: Sequence[str]
) -> dict[str, Any]:
    """One gate run with Data Docs for one symbol (first build into a fresh site)."""
    with tempfile.TemporaryDirectory(prefix="bench-docs-") as tmp:
        ctx = GateContext(calendar=calendar, as_of=data.last, docs_dir=Path(tmp), symbols=tuple(symbols))
        total, report = _timed(lambda: run_gate(frame, ctx))
        _require_pass(report, "1 symbol with Data Docs")
        return {"total_s": total, "timings_s": dict(report.timings)}


# -- ingest ----------------------------------------------------------------------------------------


def _ingest_once(
    symbols: Sequence[str], csv_dir: Path, data_dir: Path, start: pd.Timestamp, end: pd.Timestamp
) -> IngestResult:
    request = IngestRequest(
        source="csv", symbols=tuple(symbols), start=str(start.date()), end=str(end.date()), path=str(csv_dir)
    )
    result = ingest(request, Settings(data_dir=data_dir), now=NOW, calendar=default_calendar())
    _require_pass(result.report, f"ingest of {len(symbols)} symbol(s) up to {end.date()}")
    return result


def bench_ingest(data: BenchData, calendar: MarketCalendar, n: int, repeat: int, workdir: Path) -> dict[str, Any]:
    """A full 20-year ingest up to 5 sessions before the end, then the incremental one adding them.

    Each incremental repeat starts from a copy of the stored state the full ingest left, so every
    repeat does the same work; the copy is not timed. `start` is passed on both calls: without it
    the plan would start in 1999, before the stored first session, and re-fetch everything.
    """
    symbols = data.symbols(n)
    csv_dir = workdir / f"csv-{n}"
    write_csvs(data.frames(n), csv_dir)
    window = calendar.sessions(data.first, data.last)
    before = window[-1 - NEW_SESSIONS]
    base = workdir / f"store-{n}-base"
    full_s, full = _timed(lambda: _ingest_once(symbols, csv_dir, base, data.first, before))
    runs: list[float] = []
    gate: dict[str, list[float]] = {}
    for i in range(repeat):
        fresh = workdir / f"store-{n}-run{i}"
        shutil.copytree(base, fresh)
        t, result = _timed(partial(_ingest_once, symbols, csv_dir, fresh, data.first, data.last))
        added = set(result.new_rows.values())
        if added != {NEW_SESSIONS}:
            raise SystemExit(f"benchmark aborted: the incremental ingest added {added} sessions, not {NEW_SESSIONS}")
        runs.append(t)
        for name, secs in result.report.timings.items():
            gate.setdefault(name, []).append(float(secs))
        shutil.rmtree(fresh)
    return {
        "symbols": n,
        "rows": full.report.rows,
        "full_s": full_s,
        "full_timings_s": dict(full.report.timings),
        "incremental": Stat.of(runs),
        "incremental_timings": {name: Stat.of(v) for name, v in gate.items()},
        "stored_through": str(before.date()),
        "ingested_through": str(data.last.date()),
    }


# -- one-shot process ------------------------------------------------------------------------------


def bench_cli(data: BenchData, workdir: Path, repeat: int) -> dict[str, Any] | None:
    """`tradeflow validate` on one symbol's 20-year CSV, as a fresh process: imports included."""
    exe = Path(sys.executable).parent / "tradeflow"
    if not exe.is_file():
        return None
    csv_dir = workdir / "csv-cli"
    write_csvs(data.frames(1), csv_dir)
    cmd = [str(exe), "validate", str(csv_dir / "SPY.csv"), "--symbol", "SPY", "--as-of", str(data.last.date())]
    env = os.environ | {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    runs: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, cwd=REPO, check=False)
        runs.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark aborted: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return {"command": " ".join([*cmd, "--json"]), "wall": Stat.of(runs)}


# -- hostile input (RELIABILITY G5) ------------------------------------------------------------------

# Runs a command as its child and prints the child's peak RSS (KiB): ru_maxrss of RUSAGE_CHILDREN is
# the largest waited-for child, so a fresh wrapper per measurement isolates each run.
_RSS_WRAPPER = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
    "sys.stderr.write(f'\\nMAXRSS_KIB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n'); "
    "sys.exit(p.returncode)"
)


def write_hostile_csv(data_dir: Path, path: Path, megabytes: float) -> int:
    """A Yahoo-style SPY CSV of about `megabytes`: the real file's 32 years repeated, so every session
    is duplicated, with every 10th row high < low, every 7th a negative volume, every 13th close
    `null`. Returns the row count."""
    raw = pd.read_csv(data_dir / "SPY.csv", dtype=str)
    per_row = len(raw.to_csv(index=False).encode()) / len(raw)
    reps = int(megabytes * 2**20 / per_row) // len(raw) + 1
    big = pd.concat([raw] * reps, ignore_index=True)
    big.loc[::10, "High"] = (big.loc[::10, "Low"].astype(float) - 1.0).map("{:.6f}".format)
    big.loc[::7, "Volume"] = "-5"
    big.loc[::13, "Close"] = "null"
    big.to_csv(path, index=False)
    return len(big)


def _measured(cmd: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True, text=True, env=env, cwd=REPO, check=False
    )
    wall = time.perf_counter() - t0
    err, _, rss = proc.stderr.rpartition("MAXRSS_KIB=")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return {
        "command": " ".join(cmd),
        "exit": proc.returncode,
        "wall_s": wall,
        "peak_rss_mib": int(rss.strip() or 0) / 1024,
        "stdout_bytes": len(proc.stdout.encode()),
        "stderr_first_line": lines[0][:200] if lines else "",
    }


def bench_hostile(data: BenchData, data_dir: Path, workdir: Path, megabytes: float) -> dict[str, Any]:
    """`tradeflow validate` and `ingest` on a ~200 MB hostile file, each a fresh process with its peak
    memory: refused by the default size limit, then gated with the limit raised; beside the 20-year
    real file, in the same run."""
    exe = Path(sys.executable).parent / "tradeflow"
    hostile = workdir / "hostile" / "SPY.csv"
    hostile.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    rows = write_hostile_csv(data_dir, hostile, megabytes)
    out: dict[str, Any] = {"rows": rows, "bytes": hostile.stat().st_size, "build_s": time.perf_counter() - t0}
    real = workdir / "real"
    write_csvs(data.frames(1), real)
    as_of = str(data.last.date())
    env = os.environ | {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "TRADEFLOW_DATA_DIR": str(workdir / "d")}
    raised = env | {"TRADEFLOW_QUALITY__MAX_INPUT_BYTES": str(4 * 2**30)}
    validate = [str(exe), "validate", "--symbol", "SPY", "--as-of", as_of, "--json"]
    out["real_20y"] = _measured([*validate, str(real / "SPY.csv")], env)
    out["rejected"] = _measured([*validate, str(hostile)], env)
    out["validate_raised"] = _measured([*validate, str(hostile)], raised)
    ingest = [str(exe), "ingest", "--source", "csv", "--path", str(hostile.parent), "--symbols", "SPY"]
    out["ingest_raised"] = _measured([*ingest, "--end", as_of, "--now", NOW.isoformat(), "--json"], raised)
    reports = sorted((workdir / "d" / "reports" / "quality").glob("*.json"))
    out["ingest_report_bytes"] = max((p.stat().st_size for p in reports), default=0)
    quarantine = workdir / "d" / "quarantine"
    out["quarantine_entries"] = sorted(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else []
    out["leftover_temp"] = [p for p in out["quarantine_entries"] if p.startswith(".tmp")]
    return out


def _hostile_lines(h: dict[str, Any]) -> list[str]:
    rows = [
        ("real SPY, 20 years, validate", h["real_20y"]),
        (f"hostile {h['bytes'] / 2**20:.0f} MiB, validate, default limit", h["rejected"]),
        ("hostile, validate, limit raised", h["validate_raised"]),
        ("hostile, ingest (gate + quarantine), limit raised", h["ingest_raised"]),
    ]
    table = [
        (name, [str(r["exit"]), _secs(r["wall_s"]), f"{r['peak_rss_mib']:,.0f}", f"{r['stdout_bytes']:,}"])
        for name, r in rows
    ]
    lines = _table(f"hostile input, {h['rows']:,} rows (G5)", ["exit", "wall", "peak RSS MiB", "stdout bytes"], table)
    lines.append(f"refusal: {h['rejected']['stderr_first_line']}")
    lines.append(
        f"ingest report JSON {h['ingest_report_bytes']:,} bytes; quarantine {h['quarantine_entries']}; "
        f"leftover temporary folders: {len(h['leftover_temp'])}"
    )
    return lines


# -- machine and output ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _table(title: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    width = max(len(title), *(len(label) for label, _ in rows)) + 2
    head = title.ljust(width) + "".join(f"{c:>24}" for c in columns)
    return [head, "-" * len(head), *(label.ljust(width) + "".join(f"{c:>24}" for c in cells) for label, cells in rows)]


def render(results: dict[str, Any]) -> str:
    """The plain-text report: a header on machine and data, then one table per benchmark."""
    m, v, d = results["machine"], results["machine"]["versions"], results["data"]
    one = results["one_time"]
    lines = [
        f"tradeflow data-layer benchmark, {results['started']}",
        f"machine: {m['usable_cores']} cores ({m['cpu']}), load average at start {m['load_average_at_start'][0]:.2f}; "
        f"Python {m['python']}, pandas {v['pandas']}, numpy {v['numpy']}, pandera {v['pandera']}, "
        f"great_expectations {v['great_expectations']}",
        f"data: {YEARS} years of real daily bars, {d['first']}..{d['last']} ({d['sessions']:,} sessions per symbol); "
        "1 symbol = SPY; N symbols = SYM000.. cycling SPY, AAPL, MSFT (real values, synthetic names)",
        f"figures: median of {results['repeat']} runs (min in brackets)",
        "",
        f"one-time, per process: import great_expectations {_secs(one['gx_import_s'])}, "
        f"GX context + suites {_secs(one['gx_context_and_suites_s'])}",
        "",
    ]
    gate = results["gate"]
    sizes = sorted(gate, key=int)
    rows: list[tuple[str, list[str]]] = [("rows", [f"{gate[s]['rows']:,}" for s in sizes])]
    for name in dict.fromkeys(n for s in sizes for n in gate[s]["layers"]):
        rows.append((LAYER_LABELS.get(name, name), [gate[s]["layers"][name].cell() for s in sizes]))
    rows.append(("total run_gate", [gate[s]["total"].cell() for s in sizes]))
    rows.append(("first call (not in median)", [_secs(gate[s]["first_call_s"]) for s in sizes]))
    goals = [results["goals"].get(s) for s in sizes]
    rows.append(("goal", [f"< {g['goal_s']:g} s: {g['verdict']}" if g else "-" for g in goals]))
    rows.append(("reference, same run:", ["" for _ in sizes]))
    refs = [gate[s]["reference"] for s in sizes]
    rows.append(("GX run per symbol", [r["gx_per_symbol"].cell() for r in refs]))
    rows.append(("  vs our statistics layer", [f"{r['gx_ratio']:.1f}x" for r in refs]))
    rows.append(("run_gate per symbol", [r["gate_per_symbol"].cell() for r in refs]))
    rows.append(("  vs our run_gate", [f"{r['gate_ratio']:.1f}x" for r in refs]))
    lines += _table("gate (no Data Docs)", [f"{s} symbol(s)" for s in sizes], rows)
    lines += [
        f"(reference timed on {r['timed_symbols']} of {s} symbols, scaled linearly)"
        for s, r in zip(sizes, refs, strict=True)
        if r["extrapolated"]
    ]
    docs = results.get("data_docs")
    if docs:
        lines += [
            "",
            f"Data Docs, 1 symbol, once: run_gate with docs_dir {_secs(docs['total_s'])}, of which building "
            f"the docs {_secs(docs['timings_s'].get('data_docs', float('nan')))}",
        ]
    ingests = results["ingest"]
    if ingests:
        isizes = sorted(ingests, key=int)
        inc = [ingests[s]["incremental_timings"] for s in isizes]
        gate_part = [sum(t[k].median for k in ("schema", "statistics", "checks") if k in t) for t in inc]
        rows = [
            (f"full ingest, {YEARS} years (once)", [_secs(ingests[s]["full_s"]) for s in isizes]),
            (f"incremental, +{NEW_SESSIONS} sessions", [ingests[s]["incremental"].cell() for s in isizes]),
            ("  of which the gate (median)", [_secs(g) for g in gate_part]),
            ("    of which Data Docs", [_secs(t["data_docs"].median) if "data_docs" in t else "-" for t in inc]),
            (
                "  the rest (plan, read, store)",
                [_secs(ingests[s]["incremental"].median - g) for s, g in zip(isizes, gate_part, strict=True)],
            ),
        ]
        first = ingests[isizes[0]]
        lines += ["", *_table("ingest (csv source)", [f"{s} symbol(s)" for s in isizes], rows)]
        lines.append(f"(stored through {first['stored_through']}, then ingested through {first['ingested_through']})")
    cli = results.get("cli")
    if cli:
        wall = cli["wall"].cell()
        lines += ["", f"one-shot process, `tradeflow validate` on 1 symbol: {wall} wall, imports included"]
    if results.get("hostile"):
        lines += ["", *_hostile_lines(results["hostile"])]
    lines += [
        "",
        f"load average at end {results['load_average_at_end'][0]:.2f}; whole benchmark {_secs(results['elapsed_s'])}",
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("symbol counts must be >= 1")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median and min reported)")
    p.add_argument("--symbols", type=_sizes, default=[1, 100], help="symbol counts for the gate (default 1,100)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with SPY/AAPL/MSFT.csv")
    p.add_argument(
        "--reference-symbols",
        type=int,
        default=0,
        help="time the per-symbol reference on this many symbols and extrapolate (default: all)",
    )
    p.add_argument(
        "--ingest-symbols", type=_sizes, default=[1, 100], help="symbol counts for the ingest (default 1,100)"
    )
    p.add_argument("--ingest-repeat", type=int, default=3, help="incremental ingest runs (default 3)")
    p.add_argument("--no-ingest", action="store_true", help="skip the ingest benchmark")
    p.add_argument("--no-cli", action="store_true", help="skip the one-shot `tradeflow validate` process")
    p.add_argument(
        "--hostile-mb", type=float, default=200.0, help="size of the hostile file (G5); 0 skips it (default 200)"
    )
    args = p.parse_args(argv)
    if args.repeat < 1 or args.ingest_repeat < 1:
        p.error("--repeat and --ingest-repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeat": args.repeat,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(PACKAGES),
    }
    calendar = default_calendar()
    data = load_data(args.data_dir, calendar)
    results["data"] = {
        "source": str(args.data_dir),
        "first": str(data.first.date()),
        "last": str(data.last.date()),
        "sessions": len(data.series["SPY"]),
        "series": list(SERIES),
    }
    expectations_dir = find_expectations_dir()
    results["one_time"] = gx_one_time(expectations_dir)

    # Built before any timing, like the gate's warm-up: a user's script builds its context once too.
    reference = PerSymbolGx(expectations_dir)
    results["gate"] = {}
    results["goals"] = {}
    for n in args.symbols:
        case = make_case(data, calendar, n)
        print(f"timing run_gate and the per-symbol reference on {n} symbol(s) ...", file=sys.stderr)
        res = bench_gate(case, reference, args.repeat, args.reference_symbols)
        results["gate"][str(n)] = res
        if n in GOALS_S:
            goal, got = GOALS_S[n], res["total"].median
            verdict = "met" if got < goal else f"MISSED by {got - goal:.2f} s"
            results["goals"][str(n)] = {"goal_s": goal, "median_s": got, "share": got / goal, "verdict": verdict}

    print("timing Data Docs once ...", file=sys.stderr)
    results["data_docs"] = bench_data_docs(data.frames(1)[0], calendar, data, data.symbols(1))

    results["ingest"] = {}
    if not args.no_ingest:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            for n in args.ingest_symbols:
                print(f"timing ingest on {n} symbol(s) ...", file=sys.stderr)
                results["ingest"][str(n)] = bench_ingest(data, calendar, n, args.ingest_repeat, Path(tmp))
    if not args.no_cli:
        print("timing one-shot `tradeflow validate` ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            results["cli"] = bench_cli(data, Path(tmp), min(args.repeat, 3))

    if args.hostile_mb > 0:
        print(f"timing a {args.hostile_mb:g} MB hostile file ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
            results["hostile"] = bench_hostile(data, args.data_dir, Path(tmp), args.hostile_mb)

    results["load_average_at_end"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - t_start
    print(render(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
