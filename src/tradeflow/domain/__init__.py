"""Stdlib-only value types of the trading path. Money and quantities crossing the broker boundary
are Decimal; timestamps are tz-aware UTC datetimes; sessions are dates."""

from tradeflow.domain.orders import (
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
)

__all__ = [
    "Account",
    "BrokerOrder",
    "Execution",
    "OrderIntent",
    "OrderStatus",
    "Position",
    "Side",
    "SubmitOutcome",
    "SubmitResult",
    "TradingState",
    "make_client_order_id",
]
