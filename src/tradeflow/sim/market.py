"""Market arrays for simulation: one symbol's daily bars as float64 numpy, dividend-adjusted.

Prices are scaled by adj_close / close, so a position's return includes the dividends a holder of
the asset receives (SPY pays ~1.5%/year): Yahoo's `Close` is adjusted for splits only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeflow.errors import InputError


@dataclass(frozen=True)
class MarketArrays:
    sessions: np.ndarray  # datetime64[ns]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.sessions)

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, *, adjust_dividends: bool = True) -> MarketArrays:
        """From a normalized bar frame of ONE symbol, sorted by session (as stored snapshots are)."""
        if bars.empty:
            raise InputError("no bars to simulate on")
        if bars["symbol"].nunique() != 1:
            raise InputError(f"market arrays hold one symbol, got {sorted(bars['symbol'].unique())}")
        sessions = bars["session"].to_numpy(dtype="datetime64[ns]")
        if len(sessions) > 1 and not (np.diff(sessions.astype("int64")) > 0).all():
            raise InputError("bars must be sorted by session without duplicates")
        factor = (bars["adj_close"] / bars["close"]).to_numpy(dtype=float) if adjust_dividends else 1.0
        return cls(
            sessions=sessions,
            open=bars["open"].to_numpy(dtype=float) * factor,
            high=bars["high"].to_numpy(dtype=float) * factor,
            low=bars["low"].to_numpy(dtype=float) * factor,
            close=bars["close"].to_numpy(dtype=float) * factor,
            volume=bars["volume"].to_numpy(dtype=float),
        )

    def slice(self, start: int, stop: int) -> MarketArrays:
        return MarketArrays(
            self.sessions[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )

    def index_of(self, session: str | pd.Timestamp) -> int:
        """Position of a session label; raises InputError when absent."""
        ts = pd.Timestamp(session).normalize().as_unit("ns").to_datetime64()
        i = int(np.searchsorted(self.sessions, ts))
        if i >= len(self.sessions) or self.sessions[i] != ts:
            raise InputError(f"session {pd.Timestamp(session).date()} is not in the data")
        return i
