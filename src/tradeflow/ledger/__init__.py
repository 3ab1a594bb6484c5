"""The SQLite (WAL) trading ledger: orders, fills, positions, cash, trading state, daily P&L, tick
records and the append-only audit trail."""

from tradeflow.domain.events import AuditKind
from tradeflow.ledger.books import apply_fill, resolve_status
from tradeflow.ledger.schema import (
    SCHEMA_VERSION,
    AuditRow,
    DailyPnl,
    DecisionRecord,
    LedgerOrder,
    TickRecord,
    TradingStateRecord,
    make_tick_key,
)
from tradeflow.ledger.store import Ledger

__all__ = [
    "SCHEMA_VERSION",
    "AuditKind",
    "AuditRow",
    "DailyPnl",
    "DecisionRecord",
    "Ledger",
    "LedgerOrder",
    "TickRecord",
    "TradingStateRecord",
    "apply_fill",
    "make_tick_key",
    "resolve_status",
]
