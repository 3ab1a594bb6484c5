"""Replay parity before promotion (issue 10, item 6): the challenger's curve on its last test fold,
re-run through the real tick (core/replay.py: run_tick day by day with the sim broker and a simulated
clock), must end within `PromotionPolicy.replay_parity_bps` of the vectorised evaluation the gate
judged. A model whose vectorised backtest the trading path cannot reproduce is not promoted.

Both sides size with the research rules (fractional units, no cash buffer, no rebalance band) and the
same cost model and risk limits; what remains is the sim broker's cent and 1e-4 price rounding and the
policy's position input read from the broker's book instead of the env's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tradeflow.backtest.folds import Fold
from tradeflow.core.replay import replay
from tradeflow.research.config import TrainSpyConfig
from tradeflow.research.walkforward import Dataset
from tradeflow.rl.artifact import LoadedModel
from tradeflow.rl.policy import RLPolicyStrategy


@dataclass(frozen=True)
class ReplayParity:
    fold: int
    window: tuple[str, str]
    vector_return: float
    replay_return: float
    diff_bps: float
    tolerance_bps: float

    @property
    def ok(self) -> bool:
        return abs(self.diff_bps) <= self.tolerance_bps

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def reason(self) -> str:
        verdict = "within" if self.ok else "OUTSIDE"
        return (
            f"replay parity on fold {self.fold} ({self.window[0]} .. {self.window[1]}): the real tick ends at "
            f"{self.replay_return:+.4%} vs the vectorised {self.vector_return:+.4%}, {self.diff_bps:+.2f} bp, "
            f"{verdict} the {self.tolerance_bps:g} bp tolerance"
        )


def replay_parity(
    model: LoadedModel, dataset: Dataset, fold: Fold, config: TrainSpyConfig, vector_return: float
) -> ReplayParity:
    """Replay `model` over `fold`'s test window through run_tick and compare its total return with
    `vector_return` (the gate's evaluation of the same model on the same fold)."""
    start, end = fold.test_start.date().isoformat(), fold.test_end.date().isoformat()
    result = replay(
        dataset.features,
        RLPolicyStrategy(model, cost=config.cost),
        start,
        end,
        cost=config.cost,
        capital=config.capital,
        cash_buffer=0.0,
        limits=config.risk,
        fractional=True,
        rebalance_band=0.0,
    )
    replay_return = float(result.equity.iloc[-1] / result.equity.iloc[0] - 1.0)
    return ReplayParity(
        fold=fold.index,
        window=(start, end),
        vector_return=vector_return,
        replay_return=replay_return,
        diff_bps=(replay_return - vector_return) * 1e4,
        tolerance_bps=config.promotion.replay_parity_bps,
    )
