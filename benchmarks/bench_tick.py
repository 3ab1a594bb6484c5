"""Tick latency with warm data (issues 4 and 10). Goals: own code under 200 ms a tick (issue 4); a whole
tick with warm snapshots and cached features, market data included, p50 <= 20 ms (issue 10).

    .venv/bin/python benchmarks/bench_tick.py [--ticks 200] [--no-prefect] [--json out.json]

Every figure is one `run_tick` (or one flow run) on real SPY + ^VIX (../shared/data/real), deciding
the `sma` rule for the session 2024-01-25 on features ending 2024-01-24, in one process:
  1. own code alone: run_tick with the SimBroker in memory, a Ledger (SQLite, WAL) on a temporary
     file, and market_data returning precomputed features (no fetching, no gate, no feature build).
     --ticks successive ticks one minute apart in one session: the first trades, the rest are
     NO_ACTION (the book is at its target). TRADED ticks are timed apart, each the first tick of a
     fresh ledger + broker (--traded of them);
  2. market data, both ways, in the same data dir after one untimed full ingest, one block each:
     - the tick as it is (bootstrap.gated_market_data): warm snapshots, features from the cache
       (the manifest's digests, `ingest_missing` finding nothing to do, one cache file read);
       --cached-ticks ticks after one untimed tick that fills the cache;
     - the reference, the tick before issue 10: `ingest` on every tick (incremental fetch of the
       overlap, the quality gate over the whole history with Data Docs, snapshot load,
       features_for_live), --ingest-ticks ticks;
     - a cache miss alone (the first tick of a session after the after-close ingest): snapshot read,
       features_for_live and the cache write, market_data only, with the cache emptied each time;
  3. through Prefect: the `trading-tick` flow under a temporary Prefect API (prefect_test_harness),
     --prefect-runs runs after an untimed warm-up, beside the same task body called without Prefect
     (`tasks.tick.tick.fn`: build_tick_runtime with the persisted sim broker + run_tick), so the
     difference is Prefect's own overhead.
Speed goals are reported here, never asserted as wall-clock limits in tests (house rule).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # flows/ and tasks/ are not installed packages

from tradeflow.adapters.files.data import read_bar_file  # noqa: E402
from tradeflow.bootstrap import gated_market_data  # noqa: E402
from tradeflow.calendar import default_calendar  # noqa: E402
from tradeflow.config import Settings, TradingSettings  # noqa: E402
from tradeflow.core.tick import TickReport, TickRuntime, run_tick  # noqa: E402
from tradeflow.data.ingest import IngestRequest, ingest  # noqa: E402
from tradeflow.data.store import SnapshotStore  # noqa: E402
from tradeflow.execution.sim import SimBroker  # noqa: E402
from tradeflow.features import DEFAULT_SPEC, Features, features_for_live  # noqa: E402
from tradeflow.ledger import Ledger  # noqa: E402
from tradeflow.risk import RiskGovernor, RiskLimits  # noqa: E402
from tradeflow.strategies import make_strategy  # noqa: E402

SESSION_OPEN = pd.Timestamp("2024-01-25 09:31", tz="America/New_York").tz_convert("UTC")
LAST_SESSION = "2024-01-24"
STRATEGY = "sma"


class Clock:
    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now.to_pydatetime()

    def __call__(self) -> dt.datetime:
        return self.now


def stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ms), "median": statistics.median(ms), "p95": p95, "min": ordered[0], "max": ordered[-1]}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def world(folder: Path, market_data: Callable[[Any], Features], price: Decimal) -> TickRuntime:
    clock = Clock(SESSION_OPEN)
    broker = SimBroker(None, clock=clock)
    broker.set_price("SPY", price)
    return TickRuntime(
        calendar=default_calendar(),
        broker=broker,
        ledger=Ledger(folder / "ledger.sqlite"),
        governor=RiskGovernor(RiskLimits()),
        decider=lambda: make_strategy(STRATEGY),
        market_data=market_data,
        strategy=STRATEGY,
        symbol="SPY",
    )


def tick_series(rt: TickRuntime, n: int, first: pd.Timestamp) -> list[tuple[str, float]]:
    out = []
    for k in range(n):
        now = first + pd.Timedelta(minutes=k)
        rt.broker._clock.now = now.to_pydatetime()  # type: ignore[attr-defined]
        report, ms = timed(lambda now=now: run_tick(rt, now))
        out.append((report.status, ms))
    return out


def bench_own(features: Features, ticks: int, traded: int) -> dict[str, Any]:
    price = Decimal(str(float(features.bars["close"].iloc[-1])))
    with tempfile.TemporaryDirectory() as tmp:
        rt = world(Path(tmp), lambda now: features, price)
        series = tick_series(rt, ticks + 1, SESSION_OPEN)
        rt.ledger.close()
    assert series[0][0] == "TRADED", series[0]
    steady = [ms for status, ms in series[1:] if status == "NO_ACTION"]
    assert len(steady) == ticks, {s for s, _ in series}
    first_traded = []
    for _ in range(traded):
        with tempfile.TemporaryDirectory() as tmp:
            fresh = world(Path(tmp), lambda now: features, price)
            report, ms = timed(lambda fresh=fresh: run_tick(fresh, SESSION_OPEN))
            fresh.ledger.close()
        assert report.status == "TRADED", report.status
        first_traded.append(ms)
    return {"no_action": stats(steady), "traded": stats(first_traded)}


def ingest_every_tick(settings: Settings) -> Callable[[Any], Features]:
    """The reference: market data as the tick read it before issue 10, an ingest through the quality
    gate on every tick, then the snapshots and a fresh features_for_live."""
    trading = settings.trading
    request = IngestRequest(source=trading.source, symbols=("SPY", "^VIX"), path=trading.path)

    def load(now: Any) -> Features:
        ingest(request, settings, now)
        store = SnapshotStore(settings.snapshots_dir)
        session = default_calendar().last_completed_session(pd.Timestamp(now))
        return features_for_live(store.load("SPY"), store.load("^VIX"), DEFAULT_SPEC, session=session)  # type: ignore[arg-type]

    return load


def bench_market_data(real: Path, ingest_ticks: int, cached_ticks: int, misses: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", trading=TradingSettings(source="csv", path=str(real), strategy=STRATEGY)
        )
        reference, cached = ingest_every_tick(settings), gated_market_data(settings)
        features, warm_ms = timed(lambda: reference(SESSION_OPEN))  # the full first ingest, not timed below
        price = Decimal(str(float(features.bars["close"].iloc[-1])))
        data_ms: dict[str, list[float]] = {"reference": [], "cached": []}

        def measured(name: str, load: Callable[[Any], Features]) -> Callable[[Any], Features]:
            def market_data(now: Any) -> Features:
                out, ms = timed(lambda: load(now))
                data_ms[name].append(ms)
                return out

            return market_data

        (Path(tmp) / "ref").mkdir()
        (Path(tmp) / "cached").mkdir()
        ref_rt = world(Path(tmp) / "ref", measured("reference", reference), price)
        cached_rt = world(Path(tmp) / "cached", measured("cached", cached), price)
        # One untimed tick each: the first trades (and fills the feature cache), the rest are NO_ACTION.
        tick_series(ref_rt, 1, SESSION_OPEN)
        tick_series(cached_rt, 1, SESSION_OPEN)
        for name in data_ms:
            data_ms[name].clear()
        # One block after the other, not interleaved: a tick right after a reference tick runs on caches
        # and a heap the reference's half second of pandas and GX has churned, which no real tick does.
        # The load average before and after each block says what the rest of the machine was doing.
        after = SESSION_OPEN + pd.Timedelta(minutes=1)
        loads = [os.getloadavg()[0]]
        series = {"cached": tick_series(cached_rt, cached_ticks, after)}
        loads.append(os.getloadavg()[0])
        series["reference"] = tick_series(ref_rt, ingest_ticks, after)
        loads.append(os.getloadavg()[0])
        ref_rt.ledger.close()
        cached_rt.ledger.close()

        miss_ms = []
        cache_dir = settings.data_dir / "features" / "cache"
        for _ in range(misses):
            shutil.rmtree(cache_dir, ignore_errors=True)
            _, ms = timed(lambda: cached(SESSION_OPEN))
            miss_ms.append(ms)
    return {
        "first_full_ingest_ms": warm_ms,
        "load_1min_before_cached_after_cached_after_reference": loads,
        "statuses": {name: sorted({s for s, _ in rows}) for name, rows in series.items()},
        "cached_tick": stats([ms for _, ms in series["cached"]]),
        "cached_market_data": stats(data_ms["cached"]),
        "reference_tick": stats([ms for _, ms in series["reference"]]),
        "reference_market_data": stats(data_ms["reference"]),
        "miss_market_data": stats(miss_ms),
    }


def bench_prefect(real: Path, runs: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-tick-")
    os.environ.update(
        {
            "TRADEFLOW_DATA_DIR": str(Path(tmp) / "data"),
            "TRADEFLOW_TRADING__SOURCE": "csv",
            "TRADEFLOW_TRADING__PATH": str(real),
            "TRADEFLOW_TRADING__STRATEGY": STRATEGY,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "DO_NOT_TRACK": "1",
        }
    )
    from prefect.testing.utilities import prefect_test_harness

    from flows.trading_tick import trading_tick
    from tasks.tick import tick
    from tradeflow.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    instants = [SESSION_OPEN + pd.Timedelta(minutes=k) for k in range(2 * runs + 2)]
    direct: list[float] = []
    flow: list[float] = []
    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        harness_s = time.perf_counter() - t0
        trading_tick(mode="paper", broker="sim", now=instants[0].isoformat())  # warm: full ingest, first trade
        tick.fn(settings, "paper", "sim", None, instants[1])  # warm the direct path too
        for k in range(runs):  # interleaved, so both see the same load from the rest of the machine
            report, ms = timed(lambda k=k: tick.fn(settings, "paper", "sim", None, instants[2 + 2 * k]))
            assert isinstance(report, TickReport)
            assert report.status == "NO_ACTION", report.status
            direct.append(ms)
            out, ms = timed(lambda k=k: trading_tick(mode="paper", broker="sim", now=instants[3 + 2 * k].isoformat()))
            assert out["status"] == "NO_ACTION", out
            flow.append(ms)
    return {"harness_start_s": harness_s, "task_body_without_prefect": stats(direct), "flow": stats(flow)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=200, help="NO_ACTION ticks timed for own code")
    ap.add_argument("--traded", type=int, default=20, help="TRADED ticks timed (fresh ledger each)")
    ap.add_argument("--ingest-ticks", type=int, default=20, help="reference ticks timed with an ingest each")
    ap.add_argument("--cached-ticks", type=int, default=200, help="ticks timed on warm snapshots + cached features")
    ap.add_argument("--misses", type=int, default=10, help="cache misses timed (market_data only)")
    ap.add_argument("--prefect-runs", type=int, default=5)
    ap.add_argument("--no-prefect", action="store_true")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    real = args.data_dir.resolve()
    if not (real / "SPY.csv").exists():
        sys.exit(f"real data missing at {real}")
    spy, vix = read_bar_file(real / "SPY.csv", "SPY"), read_bar_file(real / "VIX.csv", "^VIX")
    features = features_for_live(spy, vix, DEFAULT_SPEC, session=LAST_SESSION)

    results: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    results["own"] = bench_own(features, args.ticks, args.traded)
    results["market_data"] = bench_market_data(real, args.ingest_ticks, args.cached_ticks, args.misses)
    if not args.no_prefect:
        results["prefect"] = bench_prefect(real, args.prefect_runs)
    results["load_after"] = os.getloadavg()

    def row(name: str, s: dict[str, float]) -> str:
        return f"| {name} | {s['n']} | {s['median']:.1f} | {s['p95']:.1f} | {s['min']:.1f} |"

    own, md = results["own"], results["market_data"]
    lines = ["| tick | n | median ms | p95 ms | min ms |", "|---|---:|---:|---:|---:|"]
    lines.append(row("own code, NO_ACTION (sim broker in memory, ledger file, features given)", own["no_action"]))
    lines.append(row("own code, TRADED (first tick of a fresh ledger: submit + fill + journal)", own["traded"]))
    lines.append(row("whole tick, warm snapshots + cached features (gated_market_data)", md["cached_tick"]))
    lines.append(row("  of which market_data (manifest digests + cache read)", md["cached_market_data"]))
    lines.append(row("reference: whole tick, ingest + gate every tick (before issue 10)", md["reference_tick"]))
    lines.append(row("  of which market_data (ingest + gate + Data Docs + features)", md["reference_market_data"]))
    lines.append(row("cache miss, market_data only (snapshot read + features + cache write)", md["miss_market_data"]))
    if "prefect" in results:
        pre = results["prefect"]
        lines.append(row("task body without Prefect (build_tick_runtime + run_tick)", pre["task_body_without_prefect"]))
        lines.append(row("trading-tick flow, temporary Prefect API", pre["flow"]))
    print("\n".join(lines))
    print(f"first full ingest {md['first_full_ingest_ms']:.0f} ms; load {results['load']} -> {results['load_after']}")
    print(f"statuses {md['statuses']}")
    if "prefect" in results:
        print(f"prefect harness start {results['prefect']['harness_start_s']:.1f} s (not in any figure)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
