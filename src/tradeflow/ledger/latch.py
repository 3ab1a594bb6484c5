"""The safety latch: the trading state, the equity peak and the session's opening equity, mirrored in a
small JSON file outside the ledger's SQLite file (RELIABILITY G1).

A ledger file that is deleted, truncated or replaced by an older copy opens as a new ledger: ACTIVE,
no peak, no kill switch. The latch is written with every change of those values, inside the ledger's
transaction (before its COMMIT), so it always holds the newest state; the ledger reads it back and
the more restrictive of the two wins. A kill switch or a HALTED state therefore survives the loss of
the ledger file, and a lost drawdown peak is restored rather than restarted at today's equity.

A damaged latch (unreadable, not the expected JSON) is a LedgerError: the tick does not trade on a
state it cannot read.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradeflow.domain import TradingState
from tradeflow.errors import LedgerError
from tradeflow.infra.files import atomic_write_text
from tradeflow.ledger.schema import ts_text, ts_value

LATCH_VERSION = 1
SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(frozen=True)
class LatchRecord:
    state: TradingState
    reason: str
    since: dt.datetime | None
    peak_equity: Decimal | None = None
    session: str | None = None  # ISO date of the session whose opening equity is below
    session_start_equity: Decimal | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": LATCH_VERSION,
                "state": self.state.value,
                "reason": self.reason,
                "since": ts_text(self.since) if self.since else None,
                "peak_equity": None if self.peak_equity is None else str(self.peak_equity),
                "session": self.session,
                "session_start_equity": None if self.session_start_equity is None else str(self.session_start_equity),
            },
            indent=2,
            sort_keys=True,
        )


def _decimal(raw: Any, name: str) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{name} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite amount")
    return value


def _parse(text: str) -> LatchRecord:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if raw.get("version") != LATCH_VERSION:
        raise ValueError(f"unknown version {raw.get('version')!r}")
    state, reason, since, session = raw.get("state"), raw.get("reason"), raw.get("since"), raw.get("session")
    if (
        not isinstance(state, str)
        or not isinstance(reason, str)
        or not isinstance(since, str | None)
        or not isinstance(session, str | None)
    ):
        raise ValueError("state, reason, since and session must be text")
    return LatchRecord(
        state=TradingState(state),
        reason=reason,
        since=ts_value(since),
        peak_equity=_decimal(raw.get("peak_equity"), "peak_equity"),
        session=dt.date.fromisoformat(session).isoformat() if session else None,
        session_start_equity=_decimal(raw.get("session_start_equity"), "session_start_equity"),
    )


class SafetyLatch:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> LatchRecord | None:
        """The latched record, None when there is none yet (a new installation)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerError(f"safety latch {self.path} is unreadable ({type(exc).__name__}): not trading") from None
        try:
            return _parse(text)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            # Never echo the content: name the file and the problem.
            problem = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise LedgerError(f"safety latch {self.path} is damaged ({problem}): not trading") from None

    def write(self, record: LatchRecord) -> None:
        try:
            atomic_write_text(self.path, record.to_json())
        except OSError as exc:
            raise LedgerError(f"cannot write the safety latch {self.path}: {exc.strerror or exc}") from None

    def update(self, base: LatchRecord, **changes: Any) -> LatchRecord:
        """Write `base` (the current record) with `changes` applied, and return it."""
        record = replace(base, **changes)
        self.write(record)
        return record


def more_restrictive(a: TradingState, b: TradingState) -> bool:
    return SEVERITY[a] > SEVERITY[b]
