"""The BarSource protocol, and what every adapter shares: range clipping, empty-answer and retry rules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from tradeflow.calendar import MarketCalendar, TradingCalendar
from tradeflow.data.bars import VALUE_COLUMNS, cut_window
from tradeflow.errors import EmptyDataError, TransientSourceError, is_transient

log = logging.getLogger("tradeflow.data.sources")


@runtime_checkable
class BarSource(Protocol):
    """Daily bars for one symbol over a session range, as a normalized frame (see data/bars.py).

    Contract (tests/contract/ holds every adapter to it):
    - rows only for sessions in [start, end]; columns exactly BAR_COLUMNS;
    - no rows raises EmptyDataError (an empty answer is never 'nothing happened');
    - network trouble raises TransientSourceError, an unknown symbol UnknownSymbolError;
    - vendor types never leave the adapter.
    """

    name: str

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        """The last session this source can ever serve (bundled history), or None for live sources."""
        ...

    def describe(self, symbol: str) -> str:
        """One line for reports: where the bars come from, and whether they are a proxy."""
        ...

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


def clip_range(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows with start <= session <= end, order kept: the same cut as a historical window."""
    return cut_window(frame, start, end)


def require_rows(frame: pd.DataFrame, source: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> None:
    if frame.empty:
        raise EmptyDataError(f"{source} returned no bars for {symbol} between {start.date()} and {end.date()}")


def drop_placeholder_rows(frame: pd.DataFrame, calendar: TradingCalendar) -> tuple[pd.DataFrame, int]:
    """Drop rows that are empty in every value column and fall on a non-session (Yahoo's `null`
    holiday rows in ^VIX). An empty row on a real session is kept: that is missing data, and the
    gate must report it.
    """
    values = [c for c in VALUE_COLUMNS if c in frame.columns]
    if frame.empty or not values:
        return frame, 0
    all_null = frame[values].isna().all(axis=1).to_numpy()
    if not all_null.any():
        return frame, 0
    sessions = calendar.sessions(frame["session"].min(), frame["session"].max())
    off_session = ~frame["session"].isin(sessions).to_numpy()
    drop = all_null & off_session
    return frame.loc[~drop].reset_index(drop=True), int(np.count_nonzero(drop))


def fetch_with_retry(
    source: BarSource,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    attempts: int = 3,
    base_delay_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Fetch, retrying only transient errors with exponential backoff (1 s, 2 s, 4 s ...).

    Prefect tasks pass attempts=1 and let the task's own retries do this, so nothing retries twice.
    """
    for attempt in range(1, attempts + 1):
        try:
            return source.fetch(symbol, start, end)
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            delay = base_delay_s * 2 ** (attempt - 1)
            log.warning(
                "%s: transient error for %s (attempt %d/%d), retrying in %.1fs: %s",
                source.name,
                symbol,
                attempt,
                attempts,
                delay,
                exc,
            )
            sleep(delay)
    raise TransientSourceError("unreachable")  # pragma: no cover - the loop returns or raises
