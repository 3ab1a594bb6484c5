"""The trading ledger: one SQLite file in WAL mode holding orders, fills, positions, cash, the
trading state, daily P&L, tick records and the append-only audit trail.

Rules the class keeps:
- Every state-changing method writes its audit row in the same transaction as the change, so the
  trail never claims a change that did not happen, nor misses one that did.
- Every SQLite failure (locked, disk full, I/O error, a closed ledger) surfaces as LedgerError,
  after a rollback: the caller sees one error type and the file holds the old state or the new.
  The tick turns a LedgerError into REDUCING (A6).
- Positions and cash are derived from fills and stored; their meaning is the time-ordered fold of
  books.py, so the result does not depend on the order fills arrive in (A11: shuffled, duplicated,
  replayed after a reconnect), and a late fill that an adopted broker view (B1/B2/B6) already
  contains is not counted twice. `recompute_positions()` / `recompute_cash()` redo the fold from
  scratch to prove the stored rows.

synchronous=FULL (infra/sqlite.py sets it for every store) rather than NORMAL: in WAL mode NORMAL
survives a process kill but a power or OS failure may drop the last commits, and a lost intent or
acknowledgement is exactly the gap reconciliation then has to cover. A tick writes a few dozen small
transactions every five minutes, so one fsync per commit costs nothing that matters.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeflow.domain import BrokerOrder, Execution, OrderIntent, OrderStatus, Position, Side, TradingState
from tradeflow.domain.events import (
    AuditEvent,
    AuditKind,
    OrderFilled,
    OrderIntended,
    StateRestored,
    TradingStateChanged,
)
from tradeflow.errors import LedgerError
from tradeflow.infra.sqlite import SqliteDb
from tradeflow.ledger.books import (
    fold_cash,
    fold_fill_into_cash,
    fold_fill_into_order,
    fold_fill_into_position,
    fold_symbol,
    order_fill_totals,
    resolve_status,
    same_fill,
    store_position,
)
from tradeflow.ledger.latch import LatchRecord, SafetyLatch, more_restrictive
from tradeflow.ledger.schema import (
    MIGRATIONS,
    ORDER_COLUMNS,
    TABLES,
    AuditRow,
    DailyPnl,
    DecisionRecord,
    LedgerOrder,
    TickRecord,
    TradingStateRecord,
    dec_or_none,
    dec_text,
    order_from_row,
    to_json,
    ts_text,
    ts_value,
)

_DECISION_COLUMNS = "strategy, symbol, session, target, params, arm, experiment_id, vix, trend, target_qty"


def _decision_of(r: tuple[Any, ...]) -> DecisionRecord:
    return DecisionRecord(
        r[0], r[1], dt.date.fromisoformat(r[2]), r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], dec_or_none(r[9])
    )


class Ledger:
    """The SQLite ledger. `now` is always passed in; the ledger never reads the clock."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, latch_path: Path | None = None) -> None:
        self.path = Path(path)
        # The trading state's mirror outside this file (G1); installations put it in its own folder.
        self.latch = SafetyLatch(
            latch_path if latch_path is not None else self.path.with_name(self.path.name + ".latch.json")
        )
        self._db = SqliteDb(
            self.path, label="ledger", error=LedgerError, migrations=MIGRATIONS, busy_timeout_ms=busy_timeout_ms
        )

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        # The raw connection, for tests that inject SQLite faults (a full disk) below the ledger.
        return self._db.conn

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._db.read("schema_version") as c:
            return int(c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @staticmethod
    def _audit(
        c: sqlite3.Connection,
        kind: str,
        payload_json: str,
        now: dt.datetime,
        run_id: str | None,
        client_order_id: str | None = None,
    ) -> int:
        cur = c.execute(
            "INSERT INTO audit (ts, run_id, kind, client_order_id, payload) VALUES (?, ?, ?, ?, ?)",
            (ts_text(now), run_id, str(kind), client_order_id, payload_json),
        )
        return int(cur.lastrowid or 0)

    @classmethod
    def _record(
        cls,
        c: sqlite3.Connection,
        event: AuditEvent,
        now: dt.datetime,
        run_id: str | None,
        client_order_id: str | None = None,
    ) -> int:
        return cls._audit(c, event.kind, to_json(event.payload()), now, run_id, client_order_id)

    # --- orders ---------------------------------------------------------------------------------

    def record_intent(self, intent: OrderIntent, now: dt.datetime, run_id: str | None) -> bool:
        """Write the intent before anything is sent (A4). False when the id is already known: the
        same tick run again computes the same ids and must not send them again (A7)."""
        at = ts_text(now)
        with self._db.write("record_intent") as c:
            cid = intent.client_order_id
            if c.execute("SELECT 1 FROM orders WHERE client_order_id = ?", (cid,)).fetchone():
                return False
            # Fills may precede the intent row only for adopted or external orders; count them.
            filled, avg = order_fill_totals(c, cid)
            status = resolve_status(None, OrderStatus.INTENDED, filled, intent.qty, broker_report=False)
            c.execute(
                f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (cid, intent.symbol, intent.side.value, dec_text(intent.qty), intent.session.isoformat(),
                 intent.strategy, intent.seq, intent.order_type,
                 None if intent.limit_price is None else dec_text(intent.limit_price), intent.time_in_force,
                 int(intent.reduce_only), status.value, None, dec_text(filled),
                 None if avg is None else dec_text(avg), run_id, at, at),
            )  # fmt: skip
            self._record(c, OrderIntended(intent), now, run_id, cid)
            return True

    def set_order_status(
        self,
        client_order_id: str,
        status: OrderStatus,
        now: dt.datetime,
        broker_order: BrokerOrder | None = None,
        run_id: str | None = None,
    ) -> OrderStatus:
        """Record what is known of an order and return the status actually stored (see
        `resolve_status`). With a broker report for an id the ledger lacks, the order is adopted
        (A5). Raises KeyError for an unknown id without a broker report."""
        at = ts_text(now)
        with self._db.write("set_order_status") as c:
            row = c.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
            found = row.fetchone()
            if found is None:
                if broker_order is None:
                    raise KeyError(f"no order {client_order_id!r} in the ledger")
                return self._adopt(c, client_order_id, status, broker_order, now, run_id)
            order = order_from_row(found)
            stored = resolve_status(order.status, status, order.filled_qty, order.qty, broker_order is not None)
            broker_id = order.broker_order_id
            if broker_order is not None and broker_order.broker_order_id:
                broker_id = broker_order.broker_order_id
            c.execute(
                "UPDATE orders SET status = ?, broker_order_id = ?, updated_at = ? WHERE client_order_id = ?",
                (stored.value, broker_id, at, client_order_id),
            )
            payload: dict[str, Any] = {"from": order.status, "requested": status, "to": stored}
            payload["broker_order_id"] = broker_id
            if broker_order is not None:
                payload["broker_filled_qty"] = broker_order.filled_qty
            self._audit(c, AuditKind.ORDER_STATUS, to_json(payload), now, run_id, client_order_id)
            return stored

    def _adopt(
        self,
        c: sqlite3.Connection,
        cid: str,
        status: OrderStatus,
        bo: BrokerOrder,
        now: dt.datetime,
        run_id: str | None,
    ) -> OrderStatus:
        at = ts_text(now)
        filled, avg = order_fill_totals(c, cid)
        stored = resolve_status(None, status, filled, bo.qty, broker_report=True)
        c.execute(
            f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, bo.symbol, bo.side.value, dec_text(bo.qty), None, None, 0, "market", None, "day", 0,
             stored.value, bo.broker_order_id, dec_text(filled), None if avg is None else dec_text(avg),
             run_id, at, at),
        )  # fmt: skip
        payload = {"broker_order": bo.__dict__, "to": stored, "note": "order unknown to the ledger, adopted"}
        self._audit(c, AuditKind.ADOPTED, to_json(payload), now, run_id, cid)
        return stored

    def get_order(self, client_order_id: str) -> LedgerOrder | None:
        with self._db.read("get_order") as c:
            row = c.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
            found = row.fetchone()
        return None if found is None else order_from_row(found)

    def orders(self, statuses: Iterable[OrderStatus] | None = None) -> list[LedgerOrder]:
        sql = f"SELECT {ORDER_COLUMNS} FROM orders"
        args: tuple[str, ...] = ()
        if statuses is not None:
            args = tuple(OrderStatus(s).value for s in statuses)
            if not args:
                return []
            sql += f" WHERE status IN ({','.join('?' * len(args))})"
        with self._db.read("orders") as c:
            rows = c.execute(sql + " ORDER BY created_at, client_order_id", args).fetchall()
        return [order_from_row(r) for r in rows]

    def open_orders(self) -> list[LedgerOrder]:
        """Orders not yet final, UNKNOWN and INTENDED included: reconciliation must settle each."""
        return self.orders([s for s in OrderStatus if not s.is_terminal])

    # --- fills, positions, cash -----------------------------------------------------------------

    def apply_execution(self, execution: Execution, now: dt.datetime, run_id: str | None = None) -> bool:
        """Apply one fill report once (A11). False, and nothing written, when its execution id is
        already in the ledger; a same-id report that differs is noted as drift."""
        e = execution
        if e.qty <= 0 or e.price <= 0:
            raise ValueError(f"execution {e.execution_id}: quantity and price must be positive")
        at, ts = ts_text(now), ts_text(e.timestamp)
        row = (e.execution_id, e.client_order_id, e.symbol, e.side.value, dec_text(e.qty), dec_text(e.price),
               dec_text(e.commission), ts, at)  # fmt: skip
        with self._db.write("apply_execution") as c:
            cur = c.execute("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?)", row)
            if cur.rowcount == 0:
                old = c.execute("SELECT * FROM fills WHERE execution_id = ?", (e.execution_id,)).fetchone()
                if not same_fill(old, row):
                    payload = to_json({"execution_id": e.execution_id, "stored": old[:8], "received": row[:8]})
                    self._audit(c, AuditKind.DRIFT, payload, now, run_id, e.client_order_id)
                return False
            position = fold_fill_into_position(c, e, ts, at)
            cash = fold_fill_into_cash(c, e, ts, at)
            status = fold_fill_into_order(c, e.client_order_id, at)
            fill = OrderFilled(
                e.execution_id, e.symbol, e.side, e.qty, e.price, e.commission, e.timestamp,
                position.qty, position.avg_price, cash, status,
            )  # fmt: skip
            self._record(c, fill, now, run_id, e.client_order_id)
            return True

    def fills(self, client_order_id: str | None = None) -> list[Execution]:
        sql = "SELECT execution_id, client_order_id, symbol, side, qty, price, commission, ts FROM fills"
        args: tuple[str, ...] = () if client_order_id is None else (client_order_id,)
        if client_order_id is not None:
            sql += " WHERE client_order_id = ?"
        with self._db.read("fills") as c:
            rows = c.execute(sql + " ORDER BY ts, execution_id", args).fetchall()
        return [
            Execution(eid, cid, sym, Side(side), Decimal(q), Decimal(p), Decimal(fee), dt.datetime.fromisoformat(ts))
            for eid, cid, sym, side, q, p, fee, ts in rows
        ]

    def last_fill_time(self) -> dt.datetime | None:
        """The newest execution timestamp: where a re-fetch after a reconnect starts (B5)."""
        with self._db.read("last_fill_time") as c:
            return ts_value(c.execute("SELECT MAX(ts) FROM fills").fetchone()[0])

    def positions(self) -> dict[str, Position]:
        """Open positions (flat symbols left out)."""
        with self._db.read("positions") as c:
            rows = c.execute("SELECT symbol, qty, avg_price FROM positions ORDER BY symbol").fetchall()
        out = {s: Position(s, Decimal(q), Decimal(a)) for s, q, a in rows}
        return {s: p for s, p in out.items() if p.qty != 0}

    def recompute_positions(self) -> dict[str, Position]:
        """Positions folded from fills and adjustments alone; equal to `positions()` by design."""
        with self._db.read("recompute_positions") as c:
            symbols = [
                r[0] for r in c.execute("SELECT symbol FROM fills UNION SELECT symbol FROM position_adjustments")
            ]
            folded = [fold_symbol(c, s)[0] for s in sorted(symbols)]
        return {p.symbol: p for p in folded if p.qty != 0}

    def cash(self) -> Decimal:
        with self._db.read("cash") as c:
            return Decimal(c.execute("SELECT balance FROM cash WHERE id = 1").fetchone()[0])

    def recompute_cash(self) -> Decimal:
        with self._db.read("recompute_cash") as c:
            return fold_cash(c)[0]

    def set_cash(self, value: Decimal, reason: str, now: dt.datetime, run_id: str | None = None) -> Decimal:
        """Adopt a cash balance as of `now` (the broker's, B6, or a deposit): an audited EXTERNAL
        adjustment. Returns the stored balance (fills stamped after `now` stay on top)."""
        at = ts_text(now)
        with self._db.write("set_cash") as c:
            before = Decimal(c.execute("SELECT balance FROM cash WHERE id = 1").fetchone()[0])
            c.execute(
                "INSERT INTO cash_adjustments (balance, ts, reason) VALUES (?,?,?)", (dec_text(value), at, reason)
            )
            balance, as_of = fold_cash(c)
            c.execute(
                "UPDATE cash SET balance = ?, as_of = ?, updated_at = ? WHERE id = 1", (dec_text(balance), as_of, at)
            )
            payload = {"what": "cash", "from": before, "to": balance, "adopted": value, "reason": reason}
            self._audit(c, AuditKind.EXTERNAL_ADJUSTMENT, to_json(payload), now, run_id)
            return balance

    def adjust_position(
        self,
        symbol: str,
        qty: Decimal,
        avg_price: Decimal,
        reason: str,
        now: dt.datetime,
        run_id: str | None = None,
    ) -> Position:
        """Adopt the broker's position as of `now` (B1 drift, B2 unknown position): an audited
        EXTERNAL adjustment; later fills apply on top of it."""
        at = ts_text(now)
        with self._db.write("adjust_position") as c:
            row = c.execute("SELECT qty, avg_price FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            c.execute(
                "INSERT INTO position_adjustments (symbol, qty, avg_price, ts, reason) VALUES (?,?,?,?,?)",
                (symbol, dec_text(qty), dec_text(avg_price), at, reason),
            )
            pos = store_position(c, fold_symbol(c, symbol), at)
            payload = {
                "what": "position", "symbol": symbol, "from_qty": None if row is None else row[0],
                "from_avg_price": None if row is None else row[1], "to_qty": pos.qty, "to_avg_price": pos.avg_price,
                "reason": reason,
            }  # fmt: skip
            self._audit(c, AuditKind.EXTERNAL_ADJUSTMENT, to_json(payload), now, run_id)
            return pos

    # --- trading state, sessions, P&L -----------------------------------------------------------

    def _db_state(self, c: sqlite3.Connection) -> LatchRecord:
        row = c.execute(
            "SELECT state, reason, since, peak_equity, session, session_start_equity FROM trading_state WHERE id = 1"
        ).fetchone()
        state, reason, since, peak, session, start = row
        return LatchRecord(TradingState(state), reason, ts_value(since), dec_or_none(peak), session, dec_or_none(start))

    def _effective(self, db: LatchRecord) -> tuple[LatchRecord, LatchRecord | None]:
        """The state to act on, and the latch. The latch is written with every change, so it is the
        newest unless the ledger holds a more restrictive state (an older HALTED copy): fail closed."""
        latch = self.latch.read()
        if latch is None or more_restrictive(db.state, latch.state):
            return db, latch
        return latch, latch

    def _mirror(self, c: sqlite3.Connection, **changes: Any) -> None:
        """Write the changed values to the latch, inside the caller's transaction and before its COMMIT:
        a failed latch write rolls the change back, so the latch is never behind the ledger."""
        base = self.latch.read() or self._db_state(c)
        self.latch.update(base, **changes)

    def trading_state(self) -> TradingStateRecord:
        with self._db.read("trading_state") as c:
            effective, _ = self._effective(self._db_state(c))
        return TradingStateRecord(effective.state, effective.reason, effective.since)

    def set_trading_state(
        self,
        state: TradingState,
        reason: str,
        now: dt.datetime,
        run_id: str | None = None,
        cause: Sequence[AuditEvent] = (),
    ) -> bool:
        """Persist the governor's state (E2/E3 survive a restart; G1 the loss of this file). False, and
        no audit row, when nothing changes; `since` moves only when the state itself changes.

        `cause`: the events that set it (the breakers that fired), recorded before the
        TradingStateChanged row in the same transaction, so the trail never names a breaker for a
        change that was not made."""
        at = ts_text(now)
        with self._db.write("set_trading_state") as c:
            db = self._db_state(c)
            current, latch = self._effective(db)
            in_step = latch is None or (latch.state, latch.reason) == (db.state, db.reason)
            if (db.state, db.reason) == (state, reason) and in_step:
                return False
            since = current.since if current.state is state else ts_value(at)
            c.execute(
                "UPDATE trading_state SET state = ?, reason = ?, since = ? WHERE id = 1",
                (state.value, reason, ts_text(since) if since else None),
            )
            for event in cause:
                self._record(c, event, now, run_id)
            self._record(c, TradingStateChanged(current.state, state, reason), now, run_id)
            self._mirror(c, state=state, reason=reason, since=since)
            return True

    def restore_from_latch(self, now: dt.datetime, run_id: str | None = None) -> str | None:
        """Put the latched trading state, peak and session anchor back into a ledger that lost them
        (deleted, truncated or replaced by an older copy: G1). Audited; None when nothing was lost."""
        with self._db.write("restore_from_latch") as c:
            db = self._db_state(c)
            effective, latch = self._effective(db)
            if latch is None:
                return None
            lost_peak = latch.peak_equity is not None and (db.peak_equity is None or db.peak_equity < latch.peak_equity)
            lost_state = effective is latch and (db.state, db.reason) != (latch.state, latch.reason)
            if not (lost_state or lost_peak):
                return None
            if lost_state:
                c.execute(
                    "UPDATE trading_state SET state = ?, reason = ?, since = ? WHERE id = 1",
                    (latch.state.value, latch.reason, ts_text(latch.since) if latch.since else None),
                )
            if lost_peak:
                c.execute("UPDATE trading_state SET peak_equity = ? WHERE id = 1", (dec_text(latch.peak_equity),))  # type: ignore[arg-type]
            what = StateRestored(
                previous=db.state,
                state=latch.state if lost_state else db.state,
                reason=latch.reason if lost_state else db.reason,
                peak_equity=latch.peak_equity if lost_peak else None,
                latch=str(self.latch.path),
            )
            self._record(c, what, now, run_id)
        parts = [f"trading state {latch.state} ({latch.reason})"] if lost_state else []
        parts += [f"equity peak {latch.peak_equity}"] if lost_peak else []
        return f"the ledger had lost its {' and '.join(parts)}: restored from the safety latch {self.latch.path}"

    def start_session(self, session: dt.date, equity: Decimal, now: dt.datetime, run_id: str | None = None) -> bool:
        """Anchor the daily-loss breaker (E2) at the session's first tick. Idempotent: False when the
        session already has its anchor (a restart mid-session keeps the original start equity, and so
        does a ledger lost mid-session: the latch holds the anchor)."""
        day, at = session.isoformat(), ts_text(now)
        with self._db.write("start_session") as c:
            if c.execute("SELECT 1 FROM daily_pnl WHERE session = ?", (day,)).fetchone():
                return False
            latch = self.latch.read()
            if latch is not None and latch.session == day and latch.session_start_equity is not None:
                equity = latch.session_start_equity
            c.execute(
                "INSERT INTO daily_pnl (session, start_equity, updated_at) VALUES (?,?,?)", (day, dec_text(equity), at)
            )
            c.execute(
                "UPDATE trading_state SET session = ?, session_start_equity = ? WHERE id = 1", (day, dec_text(equity))
            )
            self._audit(c, AuditKind.SESSION_STARTED, to_json({"session": day, "start_equity": equity}), now, run_id)
            self._mirror(c, session=day, session_start_equity=equity)
            return True

    def session_start_equity(self, session: dt.date) -> Decimal | None:
        with self._db.read("session_start_equity") as c:
            row = c.execute("SELECT start_equity FROM daily_pnl WHERE session = ?", (session.isoformat(),)).fetchone()
        return None if row is None else Decimal(row[0])

    def update_peak(self, equity: Decimal) -> Decimal:
        """Raise the equity high-water mark for the drawdown breaker (E3) and return it. Not audited:
        it is a derived watermark that moves on most up-ticks; `reset_peak` (a human act) is. The
        latch's peak counts too, so a lost ledger does not restart the drawdown at today's equity."""
        with self._db.write("update_peak") as c:
            db = self._db_state(c)
            latch = self.latch.read()
            peaks = [p for p in (db.peak_equity, latch.peak_equity if latch else None) if p is not None]
            peak = max(peaks) if peaks else None
            if peak is not None and peak >= equity:
                if db.peak_equity != peak:
                    c.execute("UPDATE trading_state SET peak_equity = ? WHERE id = 1", (dec_text(peak),))
                return peak
            c.execute("UPDATE trading_state SET peak_equity = ? WHERE id = 1", (dec_text(equity),))
            self._mirror(c, peak_equity=equity)
            return equity

    def peak_equity(self) -> Decimal | None:
        with self._db.read("peak_equity") as c:
            db = dec_or_none(c.execute("SELECT peak_equity FROM trading_state WHERE id = 1").fetchone()[0])
        latch = self.latch.read()
        peaks = [p for p in (db, latch.peak_equity if latch else None) if p is not None]
        return max(peaks) if peaks else None

    def reset_peak(self, equity: Decimal, reason: str, now: dt.datetime, run_id: str | None = None) -> None:
        """Restart the drawdown measure from `equity` (with a human resume after E3), audited."""
        with self._db.write("reset_peak") as c:
            old = c.execute("SELECT peak_equity FROM trading_state WHERE id = 1").fetchone()[0]
            c.execute("UPDATE trading_state SET peak_equity = ? WHERE id = 1", (dec_text(equity),))
            payload = to_json({"from": old, "to": equity, "reason": reason})
            self._audit(c, AuditKind.PEAK_RESET, payload, now, run_id)
            self._mirror(c, peak_equity=equity)

    def record_daily_pnl(
        self,
        session: dt.date,
        end_equity: Decimal,
        realized: Decimal,
        unrealized: Decimal,
        now: dt.datetime,
        run_id: str | None = None,
    ) -> None:
        """Update the session's P&L row (the session must have been started)."""
        day = session.isoformat()
        with self._db.write("record_daily_pnl") as c:
            cur = c.execute(
                "UPDATE daily_pnl SET end_equity = ?, realized = ?, unrealized = ?, updated_at = ? WHERE session = ?",
                (dec_text(end_equity), dec_text(realized), dec_text(unrealized), ts_text(now), day),
            )
            if cur.rowcount == 0:
                raise KeyError(f"session {day} was never started in the ledger")
            payload = {"session": day, "end_equity": end_equity, "realized": realized, "unrealized": unrealized}
            self._audit(c, AuditKind.DAILY_PNL, to_json(payload), now, run_id)

    def daily_pnl(self, session: dt.date) -> DailyPnl | None:
        with self._db.read("daily_pnl") as c:
            row = c.execute(
                "SELECT start_equity, end_equity, realized, unrealized FROM daily_pnl WHERE session = ?",
                (session.isoformat(),),
            ).fetchone()
        if row is None:
            return None
        return DailyPnl(session, Decimal(row[0]), dec_or_none(row[1]), Decimal(row[2]), Decimal(row[3]))

    # --- ticks and audit ------------------------------------------------------------------------

    def record_tick(
        self, key: str, status: str, report: Mapping[str, Any], now: dt.datetime, run_id: str | None = None
    ) -> None:
        """Insert or update the tick's record (see `make_tick_key`)."""
        at, body = ts_text(now), to_json(dict(report))
        with self._db.write("record_tick") as c:
            c.execute(
                "INSERT INTO ticks (key, status, report, created_at, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET status = excluded.status, report = excluded.report, "
                "updated_at = excluded.updated_at",
                (key, status, body, at, at),
            )
            self._audit(c, AuditKind.TICK_RECORDED, to_json({"key": key, "status": status}), now, run_id)

    def record_decision(self, decision: DecisionRecord, now: dt.datetime, run_id: str | None = None) -> bool:
        """Keep the session's first decision (True when this one was new)."""
        vix = None if decision.vix is None or math.isnan(decision.vix) else float(decision.vix)
        with self._db.write("record_decision") as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO decisions (strategy, symbol, session, target, params, arm, experiment_id, vix, "
                "trend, ts, run_id, target_qty) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    decision.strategy,
                    decision.symbol,
                    decision.session.isoformat(),
                    float(decision.target),
                    to_json(decision.params),
                    decision.arm,
                    decision.experiment_id,
                    vix,
                    decision.trend,
                    ts_text(now),
                    run_id,
                    None if decision.target_qty is None else dec_text(decision.target_qty),
                ),
            )
            return cur.rowcount == 1

    def decisions(self, strategy: str | None = None, symbol: str | None = None) -> list[DecisionRecord]:
        """Decisions in session order, optionally of one strategy and symbol."""
        clause, args = "WHERE 1=1", list[str]()
        if strategy is not None:
            clause, args = clause + " AND strategy = ?", [*args, strategy]
        if symbol is not None:
            clause, args = clause + " AND symbol = ?", [*args, symbol]
        with self._db.read("decisions") as c:
            rows = c.execute(
                f"SELECT {_DECISION_COLUMNS} FROM decisions {clause} ORDER BY session, strategy, symbol",
                args,
            ).fetchall()
        return [_decision_of(r) for r in rows]

    def sized_position(self, strategy: str, symbol: str, target: float) -> Decimal | None:
        """The position the last decision of (strategy, symbol) was sized for, while that decision's
        target weight is still `target` and no EXTERNAL adjustment of the symbol (a manual trade, a
        broker-side liquidation: B1, B2) came after it; None otherwise (the tick sizes afresh)."""
        with self._db.read("sized_position") as c:
            row = c.execute(
                "SELECT target, target_qty, ts FROM decisions WHERE strategy = ? AND symbol = ? "
                "ORDER BY session DESC LIMIT 1",
                (strategy, symbol),
            ).fetchone()
            if row is None or row[1] is None or row[0] != target:
                return None
            external = c.execute(
                "SELECT 1 FROM position_adjustments WHERE symbol = ? AND ts > ? LIMIT 1", (symbol, row[2])
            ).fetchone()
        return None if external else Decimal(row[1])

    def last_decision(self, strategy: str, symbol: str, before: dt.date | None = None) -> DecisionRecord | None:
        """The latest decision of (strategy, symbol), strictly before `before` when given."""
        clause, args = "WHERE strategy = ? AND symbol = ?", [strategy, symbol]
        if before is not None:
            clause, args = clause + " AND session < ?", [*args, before.isoformat()]
        with self._db.read("last_decision") as c:
            r = c.execute(
                f"SELECT {_DECISION_COLUMNS} FROM decisions {clause} ORDER BY session DESC LIMIT 1",
                args,
            ).fetchone()
        return None if r is None else _decision_of(r)

    def tick_seen(self, key: str) -> bool:
        with self._db.read("tick_seen") as c:
            return c.execute("SELECT 1 FROM ticks WHERE key = ?", (key,)).fetchone() is not None

    def get_tick(self, key: str) -> TickRecord | None:
        return self._tick("WHERE key = ?", (key,))

    def last_tick(self) -> TickRecord | None:
        return self._tick("ORDER BY updated_at DESC, rowid DESC LIMIT 1", ())

    def _tick(self, clause: str, args: tuple[str, ...]) -> TickRecord | None:
        with self._db.read("ticks") as c:
            row = c.execute(f"SELECT key, status, report, created_at, updated_at FROM ticks {clause}", args).fetchone()
        if row is None:
            return None
        created, updated = ts_value(row[3]), ts_value(row[4])
        assert created is not None
        assert updated is not None
        return TickRecord(row[0], row[1], json.loads(row[2]), created, updated)

    def audit(
        self,
        event: AuditEvent,
        now: dt.datetime,
        run_id: str | None = None,
        client_order_id: str | None = None,
    ) -> int:
        """Append one typed event (domain.events) as an audit row and return its id. Only events:
        a free-string kind would be a kind no reader of the log knows about."""
        if not isinstance(event, AuditEvent):
            raise TypeError(f"Ledger.audit takes a domain.events event, not {type(event).__name__}")
        with self._db.write("audit") as c:
            return self._record(c, event, now, run_id, client_order_id)

    def audit_rows(self, since_id: int = 0) -> list[AuditRow]:
        """Audit rows with id > since_id, in the order they were written."""
        with self._db.read("audit_rows") as c:
            rows = c.execute(
                "SELECT id, ts, run_id, kind, client_order_id, payload FROM audit WHERE id > ? ORDER BY id", (since_id,)
            ).fetchall()
        out = []
        for rid, ts, run_id, kind, cid, body in rows:
            when = ts_value(ts)
            assert when is not None
            out.append(AuditRow(int(rid), when, run_id, kind, cid, json.loads(body)))
        return out

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every table, every row, as plain values: for debugging and for the F2 secret grep."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._db.read("dump") as c:
            for table in TABLES:
                cur = c.execute(f"SELECT * FROM {table}")  # table names come from our own constant
                names = [d[0] for d in cur.description]
                out[table] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return out
