"""Strategies: one protocol (features + book -> Decision, and its vectorised targets) for rules, the RL
policy, the ensemble and the governed rules of the learning loop."""

from tradeflow.strategies.base import (
    Strategy,
    StrategyFactory,
    decision_from_targets,
    make_strategy,
    numeric_params,
    strategy_names,
)
from tradeflow.strategies.ensemble import Ensemble, EnsembleConfig, EnsembleFold
from tradeflow.strategies.rules import BuyAndHold, MacdRule, MeanReversionRule, RsiRule, SmaCrossover, latch
from tradeflow.strategies.sleeves import Sleeves

__all__ = [
    "BuyAndHold",
    "Ensemble",
    "EnsembleConfig",
    "EnsembleFold",
    "MacdRule",
    "MeanReversionRule",
    "RsiRule",
    "Sleeves",
    "SmaCrossover",
    "Strategy",
    "StrategyFactory",
    "decision_from_targets",
    "latch",
    "make_strategy",
    "numeric_params",
    "strategy_names",
]
