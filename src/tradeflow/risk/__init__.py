"""Risk: limits from config and a pure governor between order intents and the broker, with the
trading states ACTIVE / REDUCING / HALTED and the kill switch (RELIABILITY group E)."""

from tradeflow.risk.governor import (
    RATE_WINDOW,
    Denial,
    DenialReason,
    RiskContext,
    RiskDecision,
    RiskGovernor,
    StateChange,
    StateReason,
    mark_equity,
)
from tradeflow.risk.limits import RiskLimits

__all__ = [
    "RATE_WINDOW",
    "Denial",
    "DenialReason",
    "RiskContext",
    "RiskDecision",
    "RiskGovernor",
    "RiskLimits",
    "StateChange",
    "StateReason",
    "mark_equity",
]
