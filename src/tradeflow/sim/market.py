"""Market arrays for simulation: daily bars as float64 numpy, dividend-adjusted; one symbol
(`MarketArrays`) or several aligned on their common sessions (`PanelMarket`, session x symbol).

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


@dataclass(frozen=True)
class PanelMarket:
    """Several instruments' bars on their common sessions: arrays of shape (session, symbol)."""

    symbols: tuple[str, ...]
    sessions: np.ndarray  # datetime64[ns]
    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.sessions)

    @classmethod
    def of(cls, market: MarketArrays, symbol: str = "") -> PanelMarket:
        return cls((symbol,), market.sessions, market.open[:, None], market.close[:, None], market.volume[:, None])

    @classmethod
    def align(cls, markets: dict[str, MarketArrays]) -> PanelMarket:
        """The instruments on the sessions they all have (an inner join: a session one of them lacks is
        not a session the portfolio can trade at every leg)."""
        if not markets:
            raise InputError("a panel needs at least one instrument")
        common = None
        for market in markets.values():
            common = market.sessions if common is None else np.intersect1d(common, market.sessions)
        assert common is not None
        if len(common) == 0:
            raise InputError(f"{', '.join(markets)} have no session in common")
        rows = {s: np.searchsorted(m.sessions, common) for s, m in markets.items()}

        def stack(field: str) -> np.ndarray:
            return np.column_stack([getattr(m, field)[rows[s]] for s, m in markets.items()])

        return cls(tuple(markets), common, stack("open"), stack("close"), stack("volume"))

    def slice(self, start: int, stop: int) -> PanelMarket:
        return PanelMarket(
            self.symbols,
            self.sessions[start:stop],
            self.open[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )
