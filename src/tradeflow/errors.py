"""The errors tradeflow raises, grouped by what a caller should do about them.

Transient errors are worth retrying (network trouble); everything else is deterministic and a retry
would only repeat it. `is_transient` is the single rule Prefect tasks use for `retry_condition_fn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeflow.data.quality.report import QualityReport


class TradeflowError(Exception):
    """Base class: every error tradeflow raises on purpose."""


class ConfigError(TradeflowError):
    """The configuration is invalid or inconsistent."""


class InputError(TradeflowError):
    """Bad user input: a missing file, a malformed CSV, an unparseable date, an unknown option."""


class SourceError(TradeflowError):
    """A bar source could not deliver data."""


class TransientSourceError(SourceError):
    """A network failure, timeout, rate limit or 5xx: retrying later may succeed."""


class EmptyDataError(SourceError):
    """The source answered with no rows: never treated as 'nothing happened'."""


class UnknownSymbolError(SourceError):
    """The source does not know the symbol."""


class StoreError(TradeflowError):
    """The snapshot store is unreadable or inconsistent."""


class DataQualityError(TradeflowError):
    """The quality gate rejected a frame. Carries the full report."""

    status = "DATA_REJECTED"

    def __init__(self, report: QualityReport, quarantined: Any = None) -> None:
        self.report = report
        self.quarantined = quarantined
        super().__init__(report.summary_line())


class DataStaleError(DataQualityError):
    """The gate failed because the newest bar is older than the last completed session."""

    status = "DATA_STALE"


class BrokerError(TradeflowError):
    """The broker could not do what was asked."""


class BrokerUnavailable(BrokerError):
    """A broker query or connection failed: the state is UNKNOWN (never read it as empty or flat)."""


class LedgerError(TradeflowError):
    """The ledger could not be read or written (e.g. database locked, disk full)."""


class LiveTradingRefused(ConfigError):
    """Live mode was asked for without the live flag, live keys and the confirmation value together."""


def is_transient(exc: BaseException) -> bool:
    """True when retrying the failed call could help (network trouble), False for deterministic faults."""
    if isinstance(exc, TransientSourceError):
        return True
    if isinstance(exc, TradeflowError):
        return False
    return isinstance(exc, ConnectionError | TimeoutError)
