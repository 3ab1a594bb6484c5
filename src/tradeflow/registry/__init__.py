"""Model registry (versions with lineage, atomic champion pointer, decision log) and the promotion gate."""

from tradeflow.registry.promotion import (
    FoldResult,
    PromotionDecision,
    PromotionPolicy,
    evaluate_promotion,
)
from tradeflow.registry.store import DecisionRecord, ModelRegistry, ModelVersion, RegistryError

__all__ = [
    "DecisionRecord",
    "FoldResult",
    "ModelRegistry",
    "ModelVersion",
    "PromotionDecision",
    "PromotionPolicy",
    "RegistryError",
    "evaluate_promotion",
]
