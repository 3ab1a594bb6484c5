"""Strategies: one protocol (features -> target weights) for rules, the RL policy and ensembles."""

from tradeflow.strategies.base import Strategy, StrategyFactory, make_strategy, strategy_names
from tradeflow.strategies.rules import BuyAndHold, MacdRule, MeanReversionRule, RsiRule, SmaCrossover, latch

__all__ = [
    "BuyAndHold",
    "MacdRule",
    "MeanReversionRule",
    "RsiRule",
    "SmaCrossover",
    "Strategy",
    "StrategyFactory",
    "latch",
    "make_strategy",
    "strategy_names",
]
