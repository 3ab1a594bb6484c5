"""One paper tick in its own process, for the crash tests (RELIABILITY §4 "Crash tests", A4, A5).

It builds the runtime the way tests/unit/test_tick.py does (real SPY/VIX features, a rule decider,
the real ledger and risk governor), but with the persistent SimBroker, so a restarted process meets
the same broker books and the same ledger file. With `--crash-at NAME` the tick's checkpoint hook
SIGKILLs this process at that checkpoint: no cleanup, no flush, no atexit, exactly a kill -9.
Otherwise it prints the TickReport as JSON on stdout.

    python crash_tick_child.py --dir DIR --now 2024-01-25T15:00Z --data shared/data/real [--crash-at after_submit]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.calendar import default_calendar
from tradeflow.core.tick import TickRuntime, run_tick
from tradeflow.execution.sim import SimBroker
from tradeflow.features import DEFAULT_SPEC, features_for_live
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits
from tradeflow.sim.costs import CostModel
from tradeflow.strategies import make_strategy

LAST_SESSION = "2024-01-24"  # the last completed session before the ticks the tests run
STRATEGY = "crash"
SYMBOL = "SPY"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--crash-at", default="")
    parser.add_argument("--abandon-after-s", type=float, default=600.0)
    args = parser.parse_args(argv)

    now = pd.Timestamp(args.now)
    instant: dt.datetime = now.to_pydatetime()
    spy = read_bar_file(args.data / "SPY.csv", SYMBOL)
    vix = read_bar_file(args.data / "VIX.csv", "^VIX")
    features = features_for_live(spy, vix, DEFAULT_SPEC, session=LAST_SESSION)

    broker = SimBroker(args.dir / "broker.json", clock=lambda: instant, cost=CostModel())
    broker.set_price(SYMBOL, Decimal(str(features.bars["close"].iloc[-1])))
    ledger = Ledger(args.dir / "ledger.sqlite")

    def checkpoint(name: str) -> None:
        if name == args.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    runtime = TickRuntime(
        calendar=default_calendar(),
        broker=broker,
        ledger=ledger,
        governor=RiskGovernor(RiskLimits()),
        decider=lambda: make_strategy("buy_and_hold"),
        market_data=lambda when: features,
        strategy=STRATEGY,
        symbol=SYMBOL,
        run_id=f"child-{now:%H%M}",
        abandon_after=dt.timedelta(seconds=args.abandon_after_s),
        checkpoint=checkpoint,
    )
    report = run_tick(runtime, now)
    ledger.close()
    print(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
