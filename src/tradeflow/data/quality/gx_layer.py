"""Layer 2 of the gate: statistical expectations with Great Expectations 1.x.

The only module that imports great_expectations, and only inside functions: the import costs
seconds, and most callers (the CLI's other commands, unit tests of other layers) never need it.

GX validates a derived statistics frame, one row per bar (log return within the symbol, runs of
identical closes and of zero volume, volume relative to the symbol's median), so one GX run covers
every symbol of an asset class (equity, index, crypto). Suites are versioned JSON in expectations/
(one per asset class),
loaded into an ephemeral context that is built once per process and reused (ECOSYSTEM §2 B).
Severity decides: critical expectations produce failures, warnings produce notes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.calendar import is_crypto_symbol
from tradeflow.data.bars import is_index_symbol
from tradeflow.data.quality.checks import FloatArray, is_crypto_rows, is_index_rows, ordered_bars, symbol_starts
from tradeflow.data.quality.report import LAYER_FAILURES_PER_CHECK, Failure, LayerOutcome

log = logging.getLogger("tradeflow.data.quality")

SUITE_FILES: Mapping[str, str] = {
    "equity": "daily_bars_equity.json",
    "index": "daily_bars_index.json",
    "crypto": "daily_bars_crypto.json",
}
ROW_ID_COLUMNS = ["symbol", "session"]
# SUMMARY: the exact count of unexpected rows, and the first LAYER_FAILURES_PER_CHECK of them named
# by (symbol, session) rather than by a meaningless position. COMPLETE listed every row, which a
# hostile file turns into millions of dicts (G5).
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": LAYER_FAILURES_PER_CHECK,
    "unexpected_index_column_names": ROW_ID_COLUMNS,
    "return_unexpected_index_query": False,
}
NOTE_EXAMPLES = 10


def _run_length(cont: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Length so far of the run each row belongs to; cont[i] means row i continues row i-1's run."""
    idx = np.arange(len(cont), dtype=np.int64)
    start = np.maximum.accumulate(np.where(cont, 0, idx)) if len(cont) else idx
    return idx - start + 1


def statistics_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per usable bar, sorted by (symbol, session), with the statistics the suites judge."""
    bars = ordered_bars(frame)
    n = len(bars)
    first = symbol_starts(bars)

    def num(col: str) -> FloatArray:
        if col not in bars.columns:
            return np.full(n, np.nan)
        return pd.to_numeric(bars[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)

    close, volume = num("close"), num("volume")
    # An infinite volume is the schema's finding (non_finite_value); as NaN it is not judged twice.
    volume = np.where(np.isinf(volume), np.nan, volume)
    prev = np.roll(close, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_return = np.log(close / prev)
    # Non-positive or missing prices are the schema's finding; a NaN here keeps GX from double-counting.
    log_return[first | ~np.isfinite(log_return)] = np.nan
    repeat = _run_length(~first & (close == prev))
    zero = volume == 0
    zero_run = np.where(zero, _run_length(~first & zero & np.roll(zero, 1)), 0)
    index = is_index_rows(bars)
    median = pd.Series(volume).groupby(bars["symbol"].to_numpy()).transform("median").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        to_median = np.where(index | ~(median > 0), np.nan, volume / median)
    return pd.DataFrame(
        {
            "symbol": bars["symbol"].astype("str") if n else pd.Series([], dtype="str"),
            "session": bars["session"].astype("datetime64[ns]") if n else pd.Series([], dtype="datetime64[ns]"),
            "kind": np.where(index, "index", np.where(is_crypto_rows(bars), "crypto", "equity")).astype(object),
            "log_return": log_return,
            "close_repeat_run": repeat,
            "volume": volume,
            "volume_to_median": to_median,
            "zero_volume_run": zero_run.astype(np.int64),
        }
    )


def _kind(symbol: str) -> str:
    """The suite a symbol's bars are judged by (a key of SUITE_FILES)."""
    if is_index_symbol(symbol):
        return "index"
    return "crypto" if is_crypto_symbol(symbol) else "equity"


@dataclass
class _Suite:
    stamp: tuple[int, int]
    suite: Any
    definition: Any


@dataclass
class _GxRuntime:
    """The ephemeral context and what hangs off it; built once, reused by every gate run."""

    gx: Any
    context: Any
    batch_definition: Any
    suites: dict[Path, _Suite] = field(default_factory=dict)
    docs_sites: dict[Path, str] = field(default_factory=dict)


_LOCK = threading.RLock()  # a GX context is not thread-safe; Prefect may run tasks in threads
_RUNTIME: _GxRuntime | None = None


def _runtime() -> _GxRuntime:
    global _RUNTIME
    if _RUNTIME is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("tradeflow_runtime").add_dataframe_asset("bar_statistics")
        _RUNTIME = _GxRuntime(gx, context, asset.add_batch_definition_whole_dataframe("whole_frame"))
    return _RUNTIME


def _suite(rt: _GxRuntime, path: Path) -> _Suite:
    """The suite in `path`, reloaded only when the file changed (so edits apply without a restart)."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = rt.suites.get(path)
    if cached is not None and cached.stamp == stamp:
        return cached
    spec = json.loads(path.read_text(encoding="utf-8"))
    suite = rt.gx.ExpectationSuite(**spec)
    if any(s.name == suite.name for s in rt.context.suites.all()):
        rt.context.suites.delete(suite.name)
    suite = rt.context.suites.add(suite)
    definition = rt.context.validation_definitions.add_or_update(
        rt.gx.ValidationDefinition(name=f"tradeflow_{suite.name}", data=rt.batch_definition, suite=suite)
    )
    # Suites are registered by name: another folder's suite of the same name is now stale.
    for other in [p for p, s in rt.suites.items() if p != path and s.suite.name == suite.name]:
        del rt.suites[other]
    rt.suites[path] = _Suite(stamp, suite, definition)
    return rt.suites[path]


def warm_up(expectations_dir: Path) -> None:
    """Import GX, build the context and load the suites now (tests and long-lived workers)."""
    with _LOCK:
        rt = _runtime()
        for name in SUITE_FILES.values():
            _suite(rt, expectations_dir / name)


def _docs_site(rt: _GxRuntime, docs_dir: Path) -> str:
    docs_dir = docs_dir.resolve()
    if docs_dir not in rt.docs_sites:
        name = "tradeflow_" + hashlib.sha256(str(docs_dir).encode()).hexdigest()[:10]
        config = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        rt.context.add_data_docs_site(site_name=name, site_config=config)
        rt.docs_sites[docs_dir] = name
    return rt.docs_sites[docs_dir]


def validate_statistics(
    frame: pd.DataFrame,
    *,
    expectations_dir: Path,
    min_rows: int,
    symbols: Sequence[str] = (),
    docs_dir: Path | None = None,
) -> LayerOutcome:
    """Run each asset class's suite over its rows of the statistics frame; critical failures name
    (symbol, session)."""
    stats = statistics_frame(frame)
    out = LayerOutcome()
    expected = {s: _kind(s) for s in symbols}
    runs: list[tuple[str, pd.DataFrame, int]] = []
    for kind in SUITE_FILES:
        part = stats.loc[stats["kind"].to_numpy() == kind]
        names = set(part["symbol"].unique().tolist()) | {s for s, k in expected.items() if k == kind}
        if names:
            runs.append((kind, part, min_rows * len(names)))
    if not runs:  # nothing at all: still validate, so the row-count expectation fails visibly
        runs.append(("equity", stats, min_rows))
    with _LOCK:
        rt = _runtime()
        for kind, part, needed in runs:
            suite = _suite(rt, expectations_dir / SUITE_FILES[kind])
            params = {"min_rows": needed}
            data = part.drop(columns=["kind"]).reset_index(drop=True)
            if docs_dir is None:
                batch = rt.batch_definition.get_batch(batch_parameters={"dataframe": data})
                result = batch.validate(suite.suite, result_format=RESULT_FORMAT, expectation_parameters=params)
            else:  # stored results are what Data Docs render
                result = suite.definition.run(
                    batch_parameters={"dataframe": data}, expectation_parameters=params, result_format=RESULT_FORMAT
                )
            before = len(out.failures)
            _collect(result, kind, needed, out)
            # GX passes column expectations vacuously on zero rows (great_expectations#1149): if the
            # suite's row count did not catch it (edited away, or min_rows 0), this does.
            if part.empty and not any(f.check == "min_row_count" for f in out.failures[before:]):
                out.failures.append(
                    Failure("min_row_count", "statistics", None, None, f"no {kind} rows to validate", 0)
                )
        if docs_dir is not None:
            out = _build_docs(rt, docs_dir, out)
    return out


def _build_docs(rt: _GxRuntime, docs_dir: Path, out: LayerOutcome) -> LayerOutcome:
    t0 = time.perf_counter()
    site = _docs_site(rt, docs_dir)
    urls = rt.context.build_data_docs(site_names=[site])
    store = rt.context.validation_results_store
    for key in store.list_keys():  # keep the in-memory store from growing over a long-lived worker
        store.remove_key(key)
    out.timings["data_docs"] = time.perf_counter() - t0
    docs_path = str(urls.get(site, docs_dir / "index.html")).removeprefix("file://")
    return LayerOutcome(out.failures, out.notes, out.timings, docs_path, out.unlisted)


def _iso(value: object) -> str | None:
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if ts is pd.NaT else ts.date().isoformat()


def _rule(kwargs: Mapping[str, Any]) -> str:
    """The expected range or set, for details a person reads ('outside [-0.75, 0.75]')."""
    if "value_set" in kwargs:
        return f"in the excluded set {list(kwargs['value_set'])}"
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    left = "(" if kwargs.get("strict_min") or lo is None else "["
    right = ")" if kwargs.get("strict_max") or hi is None else "]"
    return f"outside {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def _collect(result: Any, kind: str, needed: int, out: LayerOutcome) -> None:
    for r in result.results:
        cfg = r.expectation_config
        meta = cfg.meta or {}
        check = str(meta.get("check", cfg.type))
        critical = str(getattr(cfg.severity, "value", cfg.severity)) == "critical"
        info = r.exception_info or {}
        if info.get("raised_exception"):
            msg = str(info.get("exception_message"))[:300]
            out.failures.append(Failure("gx_error", "statistics", None, None, f"{cfg.type} ({kind}): {msg}", None))
            continue
        res = r.result or {}
        column = cfg.kwargs.get("column")
        rows = res.get("partial_unexpected_index_list") or []
        total = int(res.get("unexpected_count") or len(rows))
        if column is None:  # table-level: the row count
            if not r.success:
                observed = res.get("observed_value")
                detail = f"{observed} {kind} rows, expected at least {needed}"
                if critical:
                    out.failures.append(Failure(check, "statistics", None, None, detail, observed))
                else:
                    out.notes.append(f"warning {check}: {detail}")
            continue
        rule = _rule(cfg.kwargs)
        if not r.success and critical:
            for row in rows:
                value = row.get(column)
                v = float(value) if value is not None else float("nan")
                detail = f"{column} {v:.4g} {rule} ({kind} suite)"
                out.failures.append(
                    Failure(check, "statistics", str(row.get("symbol")), _iso(row.get("session")), detail, v)
                )
            if total > len(rows):
                out.unlisted[check] = out.unlisted.get(check, 0) + total - len(rows)
        elif rows:  # a warning, or a critical expectation that passed within its `mostly`
            label = f"warning {check}" if not critical else f"{check} tolerated (mostly={cfg.kwargs.get('mostly')})"
            examples = ", ".join(
                f"{row.get('symbol')} {_iso(row.get('session'))} ({float(row.get(column)):.4g})"
                for row in rows[:NOTE_EXAMPLES]
            )
            more = f" +{total - NOTE_EXAMPLES} more" if total > NOTE_EXAMPLES else ""
            out.notes.append(f"{label}: {total} {kind} bar(s) with {column} {rule}: {examples}{more}")
