"""The offline default: real daily history bundled in the `arch` package, served under ETF names.

The bundle holds the S&P 500 and NASDAQ Composite indexes (1999-01-04 .. 2018-12-31) and the VIX
close (2014-01-03 .. 2019-01-03). They stand in for SPY, QQQ and ^VIX. Index levels are about ten
times the ETF prices and carry no dividends; every output says it is a proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import pandas as pd

from tradeflow.calendar import MarketCalendar, default_calendar
from tradeflow.data.bars import normalize_bars
from tradeflow.data.sources.base import clip_range, drop_placeholder_rows, require_rows
from tradeflow.errors import UnknownSymbolError


@dataclass(frozen=True)
class _Bundle:
    module: str
    note: str


_BUNDLES: dict[str, _Bundle] = {
    "SPY": _Bundle("arch.data.sp500", "S&P 500 index (^GSPC) daily bars from the arch package, a proxy for SPY"),
    "QQQ": _Bundle("arch.data.nasdaq", "NASDAQ Composite (^IXIC) daily bars from the arch package, a proxy for QQQ"),
    "^VIX": _Bundle("arch.data.vix", "CBOE VIX closes from the arch package (open=high=low=close, no volume)"),
}
SAMPLE_END = pd.Timestamp("2018-12-31")


class SampleSource:
    """Real S&P 500 / NASDAQ / VIX history from `arch`, no network needed."""

    name = "sample"

    def __init__(self, calendar: MarketCalendar | None = None) -> None:
        self._calendar = calendar or default_calendar()
        self._cache: dict[str, pd.DataFrame] = {}
        self.dropped_placeholders: dict[str, int] = {}

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return SAMPLE_END

    @staticmethod
    def symbols() -> list[str]:
        return list(_BUNDLES)

    def describe(self, symbol: str) -> str:
        return self._bundle(symbol).note

    def _bundle(self, symbol: str) -> _Bundle:
        try:
            return _BUNDLES[symbol]
        except KeyError:
            raise UnknownSymbolError(f"the sample source has no {symbol!r}; it serves {', '.join(_BUNDLES)}") from None

    def _load(self, symbol: str) -> pd.DataFrame:
        if symbol not in self._cache:
            raw = import_module(self._bundle(symbol).module).load()
            if list(raw.columns) == ["vix"]:
                # A close-only index: the close is the whole bar; an index trades no volume.
                close = raw["vix"]
                raw = pd.DataFrame(
                    {"Open": close, "High": close, "Low": close, "Close": close, "Adj Close": close, "Volume": 0.0},
                    index=raw.index,
                )
                raw.loc[close.isna(), "Volume"] = float("nan")
            frame = normalize_bars(raw, symbol)
            frame, dropped = drop_placeholder_rows(frame, self._calendar)
            self.dropped_placeholders[symbol] = dropped
            self._cache[symbol] = frame
        return self._cache[symbol]

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        frame = clip_range(self._load(symbol), start, end)
        require_rows(frame, self.name, symbol, start, end)
        return frame
