"""Walk-forward steps of train-spy, each a pure-ish function a Prefect task can wrap.

Every figure is out of sample and net of costs: a fold's PPO model trains on the fold's train rows
only (the embargo keeps the feature window of test rows out of training), then trades the test
rows starting flat, beside every baseline on the same rows with the same cost model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeflow.backtest.breakers import BreakerEvent
from tradeflow.backtest.engine import BacktestResult, evaluate_targets
from tradeflow.backtest.folds import Fold, make_folds
from tradeflow.config import Settings
from tradeflow.data.bars import cut_window, frame_digest
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import InputError
from tradeflow.features import Features, build_features
from tradeflow.research.config import TrainSpyConfig
from tradeflow.rl.artifact import LoadedModel, load_artifact, read_git_sha, save_artifact
from tradeflow.rl.policy import RLPolicyStrategy
from tradeflow.rl.train import train_ppo
from tradeflow.strategies import make_strategy

log = logging.getLogger("tradeflow.research")


@dataclass(frozen=True)
class Dataset:
    features: Features
    data_hash: str  # the content of the cut window's bars (every symbol) and the feature spec
    snapshots: dict[str, str]  # symbol -> digest of the stored snapshot the window was cut from
    window: dict[str, str | None] = field(default_factory=dict)  # asked start/end, first/last bar session


@dataclass(frozen=True)
class Evaluation:
    """One out-of-sample run: a strategy on one fold (one seed for PPO)."""

    strategy: str
    fold: int
    seed: int | None
    metrics: dict[str, float]
    equity: pd.Series
    returns: np.ndarray
    artifact: str | None = None  # the fold model, for PPO
    breakers: tuple[BreakerEvent, ...] = ()  # the governor's breakers that fired on this curve


def find_repo_root(start: Path | None = None) -> Path | None:
    """The nearest ancestor holding .git (for the git SHA in manifests); None outside a checkout."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / ".git").exists():
            return p
    return None


def git_sha() -> str | None:
    root = find_repo_root()
    return read_git_sha(root) if root else None


def cut_stored_bars(
    settings: Settings, symbols: Iterable[str], start: str | None, end: str | None
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Each symbol's bars in [start, end] cut from its CURRENT gated snapshot, and that snapshot's
    digest; InputError (one line) for a symbol the store lacks or a window it does not cover."""
    store = SnapshotStore(settings.snapshots_dir)
    first = pd.Timestamp(start) if start else None
    last = pd.Timestamp(end) if end else None
    frames: dict[str, pd.DataFrame] = {}
    digests: dict[str, str] = {}
    for sym in symbols:
        info = store.current(sym)
        if info is None:
            raise InputError(f"no stored snapshot for {sym}: run `tradeflow ingest --symbols {sym}` first")
        frames[sym], digests[sym] = cut_window(store.read(info), first, last), info.digest
        if frames[sym].empty:
            raise InputError(
                f"no stored session of {sym} in the window {start or '(first)'} .. {end or '(last)'}: "
                f"its snapshot holds {info.first_session} .. {info.last_session}"
            )
    return frames, digests


def load_dataset(config: TrainSpyConfig, settings: Settings) -> Dataset:
    """Features of the window [data.start, data.end] cut from the CURRENT gated snapshots (run
    ingest first); nothing unvetted gets in, and nothing is fetched or gated here.

    The data hash covers the cut bars' content, not the snapshots they were cut from: a window cut
    from a store reaching 2019 hashes like the same window ingested fresh, and unlike any other.
    """
    spec = config.feature_spec
    data = config.data
    symbols = [data.symbol] + ([data.vix_symbol] if spec.include_vix and data.vix_symbol else [])
    frames, digests = cut_stored_bars(settings, symbols, data.start, data.end)
    bars = frames[data.symbol]
    vix = frames.get(data.vix_symbol) if data.vix_symbol else None
    features = build_features(bars, vix, spec)
    key = "|".join(f"{s}={frame_digest(f)}" for s, f in sorted(frames.items())) + f"|{spec.digest}"
    window: dict[str, str | None] = {
        "start": data.start,
        "end": data.end,
        "first_session": str(bars["session"].iloc[0].date()),
        "last_session": str(bars["session"].iloc[-1].date()),
    }
    return Dataset(features, hashlib.sha256(key.encode()).hexdigest(), digests, window)


def plan_folds(dataset: Dataset, config: TrainSpyConfig) -> list[Fold]:
    f = config.folds
    return make_folds(
        dataset.features.sessions,
        scheme=f.scheme,
        train_size=f.train_size,
        test_size=f.test_size,
        embargo=f.embargo,
        max_folds=f.max_folds,
    )


def _evaluation(result: BacktestResult, fold: int, seed: int | None, artifact: str | None = None) -> Evaluation:
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return Evaluation(
        result.strategy, fold, seed, metrics, result.equity, result.returns.to_numpy(), artifact, result.breakers
    )


def evaluate_baseline(name: str, dataset: Dataset, fold: Fold, config: TrainSpyConfig) -> Evaluation:
    """A rule on the fold's test rows; its indicators are warm from the rows before (all causal)."""
    features = dataset.features
    targets = make_strategy(name).targets(features)
    result = evaluate_targets(
        targets,
        features.market(),
        config.cost,
        config.capital,
        fold.test_start,
        fold.test_end,
        name=name,
        limits=config.risk,
    )
    return _evaluation(result, fold.index, None)


def evaluate_policy(
    model: LoadedModel, dataset: Dataset, fold: Fold, config: TrainSpyConfig, seed: int | None
) -> Evaluation:
    """The PPO policy trading the test rows from a flat book (its first decision is at the first close)."""
    window = model.env_config.window
    lo = fold.test_start_row - (window - 1)
    if lo < 0:
        raise InputError(f"fold {fold.index}: the test window starts before a full {window}-row feature window")
    sub = dataset.features.slice(lo, fold.test_stop_row)
    strategy = RLPolicyStrategy(model, cost=config.cost)
    result = evaluate_targets(
        strategy.targets(sub),
        sub.market(),
        config.cost,
        config.capital,
        fold.test_start,
        fold.test_end,
        name="ppo",
        limits=config.risk,
    )
    return _evaluation(result, fold.index, seed)


def train_model(
    dataset: Dataset,
    rows: tuple[int, int],
    config: TrainSpyConfig,
    seed: int,
    out: Path,
    sha: str | None,
    progress: bool = False,
) -> LoadedModel:
    """Train PPO on `rows` [start, stop) and save the artifact at `out`; returns it reloaded.

    Checkpoints (and TensorBoard logs, when tensorboard is installed) go beside it in `<out>.training/`.
    """
    features = dataset.features
    spec = features.spec
    trained = train_ppo(
        features.market(),
        features.matrix(),
        rows,
        config.ppo,
        config.cost,
        seed,
        out_dir=out.with_name(out.name + ".training"),
        progress=progress,
    )
    save_artifact(
        out,
        trained,
        data_hash=dataset.data_hash,
        feature_names=spec.names,
        feature_version=spec.version,
        feature_hash=spec.digest,
        feature_params=spec.to_dict(),
        universe=(features.symbol,),
        git_sha=sha,
        extra={"config_digest": config.digest()},
    )
    # Evaluate exactly what was saved: the reloaded artifact, not the in-memory model.
    return load_artifact(out)


def run_fold_seed(
    dataset: Dataset,
    fold: Fold,
    config: TrainSpyConfig,
    seed: int,
    run_dir: Path,
    sha: str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Train on the fold's train rows with `seed`, evaluate out of sample on its test rows."""
    out = run_dir / "models" / f"fold{fold.index}-seed{seed}"
    log.info(
        "fold %d seed %d: training %d timesteps on %s..%s",
        fold.index,
        seed,
        config.ppo.total_timesteps,
        fold.train_start.date(),
        fold.train_end.date(),
    )
    model = train_model(dataset, (fold.train_start_row, fold.train_stop_row), config, seed, out, sha, progress)
    ev = evaluate_policy(model, dataset, fold, config, seed)
    log.info(
        "fold %d seed %d: out-of-sample Sharpe %.2f, return %.1f%%",
        fold.index,
        seed,
        ev.metrics["sharpe"],
        100 * ev.metrics["total_return"],
    )
    return dataclasses.replace(ev, artifact=str(out))


def final_training_rows(dataset: Dataset, config: TrainSpyConfig) -> tuple[int, int]:
    """The deployable model trains with the same scheme on the newest data: all rows (expanding) or
    the last train_size rows (rolling)."""
    n = len(dataset.features)
    start = 0 if config.folds.scheme == "expanding" else max(0, n - config.folds.train_size)
    return start, n


def champion_folds(champion_train_end: str | None, folds: list[Fold]) -> list[Fold]:
    """Folds whose test window lies wholly after the champion's training data: only there is the
    champion itself out of sample."""
    if not champion_train_end:
        return []
    end = pd.Timestamp(champion_train_end)
    return [f for f in folds if f.test_start > end]


def summarise(evaluations: list[Evaluation]) -> dict[str, Any]:
    """Mean out-of-sample metrics per strategy (over folds, then seeds), for manifests and the registry."""
    out: dict[str, Any] = {}
    for name in sorted({e.strategy for e in evaluations}):
        runs = [e for e in evaluations if e.strategy == name]
        out[name] = {}
        for k in runs[0].metrics:
            values = np.array([r.metrics[k] for r in runs], dtype=float)
            finite = values[np.isfinite(values)]  # e.g. win_rate is NaN on a fold without trades
            out[name][k] = float(finite.mean()) if finite.size else float("nan")
    return out
