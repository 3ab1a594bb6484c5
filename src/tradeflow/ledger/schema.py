"""The ledger's tables, their migrations, and how rows map to Python values.

Money and quantities are stored as TEXT decimals: a REAL column would round 0.1 + 0.2 and the
ledger would slowly drift from the broker's books. Timestamps are stored as fixed-width ISO-8601
UTC strings (microseconds, "+00:00"), so comparing the text compares the instants: the position
fold orders fills by that column.

The audit table is append-only by construction: triggers abort any UPDATE or DELETE, whoever the
writer is (our code, a person with the sqlite3 shell, a future bug).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from tradeflow.domain import OrderIntent, OrderStatus, Side, TradingState
from tradeflow.infra.jsontext import canonical_json

# Each version's statements run once, in order, inside one transaction; IF NOT EXISTS keeps a
# half-known database (created by an older run of the same version) safe to open again.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS orders (
            client_order_id TEXT PRIMARY KEY,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            qty TEXT NOT NULL,
            session TEXT,
            strategy TEXT,
            seq INTEGER NOT NULL DEFAULT 0,
            order_type TEXT NOT NULL,
            limit_price TEXT,
            time_in_force TEXT NOT NULL,
            reduce_only INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            broker_order_id TEXT,
            filled_qty TEXT NOT NULL DEFAULT '0',
            avg_fill_price TEXT,
            run_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS orders_status ON orders(status)",
        """CREATE TABLE IF NOT EXISTS fills (
            execution_id TEXT PRIMARY KEY,
            client_order_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            qty TEXT NOT NULL,
            price TEXT NOT NULL,
            commission TEXT NOT NULL,
            ts TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS fills_symbol_ts ON fills(symbol, ts, execution_id)",
        "CREATE INDEX IF NOT EXISTS fills_order ON fills(client_order_id)",
        # last_ts/last_execution_id: the newest fill folded in, so an in-order fill is applied
        # incrementally and only a late one triggers a re-fold of the symbol.
        """CREATE TABLE IF NOT EXISTS positions (
            symbol TEXT PRIMARY KEY,
            qty TEXT NOT NULL,
            avg_price TEXT NOT NULL,
            last_ts TEXT,
            last_execution_id TEXT,
            updated_at TEXT NOT NULL
        )""",
        # An adoption of the broker's view (B1/B2): an absolute reset the fold starts from.
        """CREATE TABLE IF NOT EXISTS position_adjustments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            symbol TEXT NOT NULL,
            qty TEXT NOT NULL,
            avg_price TEXT NOT NULL,
            ts TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS position_adjustments_symbol ON position_adjustments(symbol, ts, id)",
        """CREATE TABLE IF NOT EXISTS cash (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            balance TEXT NOT NULL,
            as_of TEXT,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS cash_adjustments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            balance TEXT NOT NULL,
            ts TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS trading_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            since TEXT,
            session TEXT,
            session_start_equity TEXT,
            peak_equity TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS daily_pnl (
            session TEXT PRIMARY KEY,
            start_equity TEXT NOT NULL,
            end_equity TEXT,
            realized TEXT NOT NULL DEFAULT '0',
            unrealized TEXT NOT NULL DEFAULT '0',
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS ticks (
            key TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            run_id TEXT,
            kind TEXT NOT NULL,
            client_order_id TEXT,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS audit_order ON audit(client_order_id)",
        """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'audit rows are append-only: UPDATE refused'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
           BEGIN SELECT RAISE(ABORT, 'audit rows are append-only: DELETE refused'); END""",
        "INSERT OR IGNORE INTO cash (id, balance, as_of, updated_at) VALUES (1, '0', NULL, '')",
        "INSERT OR IGNORE INTO trading_state (id, state, reason, since) VALUES (1, 'ACTIVE', 'new ledger', NULL)",
    ),
    # v2: what each tick decided and with which governed parameters (issue 5, learning review).
    # One row per (strategy, symbol, session): the session's first decision is the one its orders
    # came from (a rule decides once a day; later ticks only re-size toward it).
    2: (
        """CREATE TABLE IF NOT EXISTS decisions (
            strategy TEXT NOT NULL,
            symbol TEXT NOT NULL,
            session TEXT NOT NULL,
            target REAL NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            arm TEXT NOT NULL DEFAULT '',
            experiment_id TEXT NOT NULL DEFAULT '',
            vix REAL,
            trend TEXT NOT NULL DEFAULT '',
            ts TEXT NOT NULL,
            run_id TEXT,
            PRIMARY KEY (strategy, symbol, session)
        )""",
    ),
    # v3: the position quantity a decision sized for (issue 10, one kernel): while the target weight
    # stays the same, later ticks hold that quantity, as the backtest holds its shares until the
    # target changes, instead of re-sizing a drifting weight.
    3: ("ALTER TABLE decisions ADD COLUMN target_qty TEXT",),
}

# The version a migrated ledger is at: infra.sqlite numbers the migrations 1..n.
SCHEMA_VERSION = max(MIGRATIONS)

TABLES = (
    "schema_version",
    "orders",
    "fills",
    "positions",
    "position_adjustments",
    "cash",
    "cash_adjustments",
    "trading_state",
    "daily_pnl",
    "ticks",
    "decisions",
    "audit",
)


# --- value codecs ---------------------------------------------------------------------------


def ts_text(when: dt.datetime) -> str:
    """Fixed-width UTC text: lexical order equals time order. Naive datetimes are refused, because
    guessing their zone is how a ledger ends up five hours off."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got naive {when!r}")
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def ts_value(text: str | None) -> dt.datetime | None:
    return None if not text else dt.datetime.fromisoformat(text)


def dec_text(value: Decimal | int) -> str:
    d = Decimal(value)
    if not d.is_finite():
        raise ValueError(f"ledger amounts must be finite, got {value!r}")
    return str(d)


def dec_value(text: str) -> Decimal:
    return Decimal(text)


def dec_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _json_default(obj: Any) -> Any:
    # Secrets must never reach a ledger row (F2): a SecretStr that slips into a payload is written
    # as REDACTED, never as its value.
    if type(obj).__name__ in ("SecretStr", "SecretBytes"):
        return "REDACTED"
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime):
        return ts_text(obj) if obj.tzinfo is not None else obj.isoformat()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"audit payload value of type {type(obj).__name__} is not JSON-serialisable")


def to_json(payload: Any) -> str:
    return canonical_json(payload, default=_json_default)


# --- row types ------------------------------------------------------------------------------


class TradingStateRecord(NamedTuple):
    state: TradingState
    reason: str
    since: dt.datetime | None


@dataclass(frozen=True)
class LedgerOrder:
    """An order as the ledger knows it. session/strategy are None only for orders adopted from
    the broker without a local intent (placed by hand, or by a run whose intent write was lost)."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    session: dt.date | None
    strategy: str | None
    seq: int
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    reduce_only: bool
    status: OrderStatus
    broker_order_id: str | None
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    run_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def remaining_qty(self) -> Decimal:
        return max(self.qty - self.filled_qty, Decimal(0))

    def intent(self) -> OrderIntent:
        if self.session is None or self.strategy is None:
            raise ValueError(f"order {self.client_order_id} was adopted from the broker and has no local intent")
        return OrderIntent(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            session=self.session,
            strategy=self.strategy,
            seq=self.seq,
            order_type=self.order_type,
            limit_price=self.limit_price,
            time_in_force=self.time_in_force,
            reduce_only=self.reduce_only,
        )


ORDER_COLUMNS = (
    "client_order_id, symbol, side, qty, session, strategy, seq, order_type, limit_price, time_in_force, "
    "reduce_only, status, broker_order_id, filled_qty, avg_fill_price, run_id, created_at, updated_at"
)


def order_from_row(row: tuple[Any, ...]) -> LedgerOrder:
    (cid, symbol, side, qty, session, strategy, seq, otype, limit, tif, reduce, status, boid, filled, avg, run_id,
     created, updated) = row  # fmt: skip
    created_at, updated_at = ts_value(created), ts_value(updated)
    assert created_at is not None  # NOT NULL columns
    assert updated_at is not None
    return LedgerOrder(
        client_order_id=cid,
        symbol=symbol,
        side=Side(side),
        qty=Decimal(qty),
        session=None if session is None else dt.date.fromisoformat(session),
        strategy=strategy,
        seq=int(seq),
        order_type=otype,
        limit_price=dec_or_none(limit),
        time_in_force=tif,
        reduce_only=bool(reduce),
        status=OrderStatus(status),
        broker_order_id=boid,
        filled_qty=Decimal(filled),
        avg_fill_price=dec_or_none(avg),
        run_id=run_id,
        created_at=created_at,
        updated_at=updated_at,
    )


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: dt.datetime
    run_id: str | None
    kind: str
    client_order_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class TickRecord:
    key: str
    status: str
    report: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class DecisionRecord:
    """A tick's decision with its context: the governed parameters and experiment arm it used, and
    the market regime it saw (VIX level, trend) — what the learning review groups trades by."""

    strategy: str
    symbol: str
    session: dt.date
    target: float
    params: dict[str, float] = field(default_factory=dict)
    arm: str = ""
    experiment_id: str = ""
    vix: float | None = None
    trend: str = ""
    target_qty: Decimal | None = None  # the position the tick sized for (None: none sized, or before v3)


@dataclass(frozen=True)
class DailyPnl:
    session: dt.date
    start_equity: Decimal
    end_equity: Decimal | None
    realized: Decimal
    unrealized: Decimal


def make_tick_key(strategy: str, session: dt.date, tick_time: dt.datetime) -> str:
    """Deterministic tick identity: a Prefect retry or a manual re-run of the same scheduled tick
    computes the same key, so `tick_seen` recognises it (A7). Pass the scheduled time; the key is
    the UTC minute, so the seconds a late start adds do not make a new tick."""
    slot = ts_text(tick_time.replace(second=0, microsecond=0))[:16]  # YYYY-MM-DDTHH:MM in UTC
    return f"{strategy}|{session.isoformat()}|{slot}Z"
