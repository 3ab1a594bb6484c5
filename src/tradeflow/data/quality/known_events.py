"""The allow-list of real market events that look like data faults (expectations/known_events.json).

A rule strict enough to catch a bad tick will, over decades of real data, also fire on a few genuine
days: AAPL fell 51.9% on 2000-09-29, which is within 5% of a 2:1 split ratio. Each entry excuses
named checks on one (symbol, session) only, with a reason a reviewer can verify; everything it
excuses stays visible in the report's `allowed` list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.data.quality.report import Failure
from tradeflow.errors import ConfigError

KNOWN_EVENTS_FILE = "known_events.json"
# The file that marks a folder as the repository's expectations/ (the equity suite).
_SUITE_MARKER = "daily_bars_equity.json"


def find_expectations_dir() -> Path:
    """The repository's expectations/ folder: searched upwards from the working directory, then
    from this package (an editable install inside the repository); cwd/expectations if neither has it.
    """
    for base in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (base, *base.parents):
            candidate = folder / "expectations"
            if (candidate / _SUITE_MARKER).is_file():
                return candidate
    return Path.cwd() / "expectations"


@dataclass(frozen=True)
class KnownEvent:
    symbol: str
    session: str  # ISO date, e.g. "2000-09-29"
    checks: frozenset[str]
    reason: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KnownEvent:
        try:
            symbol = str(data["symbol"]).strip().upper()
            session = pd.Timestamp(str(data["session"])).date().isoformat()
            checks = frozenset(str(c) for c in data["checks"])
            reason = str(data["reason"]).strip()
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed known event {dict(data)!r}: {exc}") from exc
        if not checks or not reason:
            # An entry excusing every check, or excusing without a reason, would hide faults silently.
            raise ConfigError(f"known event {symbol} {session} needs at least one check and a reason")
        return cls(symbol, session, checks, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "session": self.session, "checks": sorted(self.checks), "reason": self.reason}


@dataclass(frozen=True)
class KnownEvents:
    """A set of known events; `partition` splits gate failures into kept and excused."""

    events: tuple[KnownEvent, ...] = ()
    source: str | None = None

    @classmethod
    def empty(cls) -> KnownEvents:
        return cls()

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str | None = None) -> KnownEvents:
        return cls(tuple(KnownEvent.from_dict(r) for r in records), source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> KnownEvents:
        """Read {"events": [{"symbol", "session", "checks", "reason"}, ...]}.

        None reads <expectations>/known_events.json, and an absent default file is an empty list (a
        stricter gate, never a looser one); an explicit path that does not exist is a ConfigError.
        """
        if path is None:
            default = find_expectations_dir() / KNOWN_EVENTS_FILE
            return cls.load(default) if default.is_file() else cls.empty()
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"known events file not found: {p}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read known events file {p}: {exc}") from exc
        records = data.get("events") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise ConfigError(f"{p}: expected an object with an 'events' list")
        return cls.from_records(records, str(p))

    def __len__(self) -> int:
        return len(self.events)

    def match(self, failure: Failure) -> KnownEvent | None:
        """The event excusing this failure, if any: same symbol, same session, check listed."""
        if failure.symbol is None or failure.session is None:
            return None
        for event in self.events:
            if event.symbol == failure.symbol and event.session == failure.session and failure.check in event.checks:
                return event
        return None

    def partition(self, failures: Iterable[Failure]) -> tuple[list[Failure], list[Failure]]:
        """(kept, allowed): allowed failures carry the event's reason in `allowed_by`."""
        kept: list[Failure] = []
        allowed: list[Failure] = []
        for f in failures:
            event = self.match(f)
            if event is None:
                kept.append(f)
            else:
                allowed.append(replace(f, allowed_by=event.reason))
        return kept, allowed
