"""Backtests of strategies through the shared cost and fill model, and their metrics."""

from tradeflow.backtest.engine import (
    DEFAULT_COST,
    BacktestResult,
    backtest,
    evaluate_targets,
    round_trips,
    window_bounds,
)
from tradeflow.backtest.metrics import METRIC_KEYS, metrics_dict, to_jsonable

__all__ = [
    "DEFAULT_COST",
    "METRIC_KEYS",
    "BacktestResult",
    "backtest",
    "evaluate_targets",
    "metrics_dict",
    "round_trips",
    "to_jsonable",
    "window_bounds",
]
