"""Learning from tradeflow's own trades: analytics, patterns, governed experiments, model health."""

from tradeflow.learning.experiments import (
    DEFAULT_GOVERNANCE,
    Analysis,
    ArmStats,
    Experiment,
    ExperimentStatus,
    Governance,
    HistoryKind,
    ParamChoice,
    ReviewAction,
    Verdict,
    abandon,
    analyse,
    assign_arm,
    params_for,
    propose,
    review,
)
from tradeflow.learning.store import HistoryRow, LearningStore

__all__ = [
    "DEFAULT_GOVERNANCE",
    "Analysis",
    "ArmStats",
    "Experiment",
    "ExperimentStatus",
    "Governance",
    "HistoryKind",
    "HistoryRow",
    "LearningStore",
    "ParamChoice",
    "ReviewAction",
    "Verdict",
    "abandon",
    "analyse",
    "assign_arm",
    "params_for",
    "propose",
    "review",
]
