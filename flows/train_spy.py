"""The `train-spy` flow: ingest (through the quality gate) -> features -> walk-forward folds as
mapped tasks -> the deployable model -> promotion gate -> report artifacts.

    python -m flows.train_spy                 # `make run`: sample data, embedded Prefect, printed table
    prefect deployment run train-spy/nightly --watch

Folds x seeds are mapped tasks so another task runner (e.g. prefect-dask's DaskTaskRunner with
processes) can spread them over machines. The default runner executes them one at a time: torch and
SB3 seed process-global RNGs, so concurrent training threads would make runs irreproducible.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from itertools import product
from typing import Any

import pandas as pd
from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.ingest import ingest
from tasks.train import baseline, finish, plan_run, publish_report, train_fold
from tradeflow.calendar import to_utc
from tradeflow.config import get_settings
from tradeflow.errors import DataQualityError, TradeflowError
from tradeflow.research.config import TrainSpyConfig


def load_config(config_path: str | None, overrides: dict[str, Any] | None) -> TrainSpyConfig:
    base = TrainSpyConfig.load(config_path) if config_path else TrainSpyConfig()
    if not overrides:
        return base
    merged = base.model_dump(mode="json")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return TrainSpyConfig.from_dict(merged, origin="overrides")


@flow(name="train-spy", task_runner=ThreadPoolTaskRunner(max_workers=1))
def train_spy(
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    now: str | None = None,
    run_ingest: bool = True,
) -> dict[str, Any]:
    """Retrain SPY walk-forward and promote only on out-of-sample evidence.

    `config_path` is a YAML/JSON TrainSpyConfig; `overrides` patch it (e.g. {"ppo": {"total_timesteps":
    50000}}). `now` replays an instant; left out, the wall clock is read here and nowhere below.
    """
    settings = get_settings()
    config = load_config(config_path, overrides)
    instant = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
    if run_ingest:
        data = config.data
        symbols = [data.symbol] + ([data.vix_symbol] if data.vix_symbol and config.feature_spec.include_vix else [])
        # A subflow: a failed quality gate fails this run before any training starts.
        ingest(source=data.source, symbols=symbols, end=data.end, path=data.path, now=instant.isoformat())
    plan = plan_run(config, settings)
    pairs = list(product(plan.folds, config.seeds))
    trained = train_fold.map(unmapped(plan), [f for f, _ in pairs], [s for _, s in pairs], unmapped(config))
    rules = list(product(plan.folds, config.baselines))
    baselines = baseline.map(unmapped(plan), [f for f, _ in rules], [n for _, n in rules], unmapped(config))
    evaluations = [*trained.result(), *baselines.result()]
    result = finish(config, settings, instant, plan, evaluations)
    publish_report(result)
    return {**result.to_dict(), "summary_text": result.summary_text()}


def main(argv: Sequence[str] | None = None) -> int:
    """`make run`: the whole pipeline on the bundled sample data, printing the table and the decision."""
    parser = argparse.ArgumentParser(prog="python -m flows.train_spy", description="Run the train-spy flow once.")
    parser.add_argument("--config", help="a TrainSpyConfig YAML/JSON file")
    parser.add_argument("--timesteps", type=int, help="PPO timesteps per model (overrides the config)")
    parser.add_argument("--now", help="replay as of this instant (ISO 8601 with a timezone)")
    args = parser.parse_args(argv)
    overrides = {"ppo": {"total_timesteps": args.timesteps}} if args.timesteps else None
    try:
        out = train_spy(config_path=args.config, overrides=overrides, now=args.now)
    except DataQualityError as exc:
        print(f"train-spy stopped by the quality gate: {exc.status}: {exc}", file=sys.stderr)
        return 3
    except TradeflowError as exc:
        print(f"train-spy failed: {exc}", file=sys.stderr)
        return 2
    print(out["summary_text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
