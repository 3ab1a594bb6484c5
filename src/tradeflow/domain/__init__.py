"""Stdlib-only value types of the trading path. Money and quantities crossing the broker boundary
are Decimal; timestamps are tz-aware UTC datetimes; sessions are dates."""

from tradeflow.domain.decisions import Book, Decision
from tradeflow.domain.instruments import AssetClass, CalendarName, Instrument, Universe
from tradeflow.domain.orders import (
    CASH_QUANTUM,
    Account,
    BrokerOrder,
    Execution,
    OrderIntent,
    OrderStatus,
    Position,
    Side,
    SubmitOutcome,
    SubmitResult,
    TradingState,
    make_client_order_id,
    to_cents,
)

__all__ = [
    "CASH_QUANTUM",
    "Account",
    "AssetClass",
    "Book",
    "BrokerOrder",
    "CalendarName",
    "Decision",
    "Execution",
    "Instrument",
    "OrderIntent",
    "OrderStatus",
    "Position",
    "Side",
    "SubmitOutcome",
    "SubmitResult",
    "TradingState",
    "Universe",
    "make_client_order_id",
    "to_cents",
]
