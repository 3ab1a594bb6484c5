"""Bar sources behind one protocol. `make_source` is the only place that picks an adapter, and it
imports vendor adapters lazily so their SDKs load only when used."""

from __future__ import annotations

from pathlib import Path

from tradeflow.calendar import MarketCalendar
from tradeflow.config import Settings
from tradeflow.data.sources.base import BarSource, fetch_with_retry
from tradeflow.errors import InputError

SOURCE_NAMES: tuple[str, ...] = ("sample", "csv", "parquet", "yfinance", "alpaca", "ib")

__all__ = ["SOURCE_NAMES", "BarSource", "fetch_with_retry", "make_source"]


def make_source(
    name: str, settings: Settings, *, path: str | Path | None = None, calendar: MarketCalendar | None = None
) -> BarSource:
    """The adapter for `name`, configured from settings; file sources need `path`."""
    if name == "sample":
        from tradeflow.adapters.sample.data import SampleSource

        return SampleSource(calendar)
    if name in ("csv", "parquet"):
        if path is None:
            raise InputError(f"--source {name} needs --path (a file or a directory of files)")
        from tradeflow.adapters.files.data import FileSource

        return FileSource(path, name, calendar, max_bytes=settings.quality.max_input_bytes)
    if name == "yfinance":
        from tradeflow.adapters.yahoo.data import YFinanceSource

        return YFinanceSource(calendar=calendar)
    if name == "alpaca":
        from tradeflow.adapters.alpaca.data import AlpacaSource

        return AlpacaSource(settings.alpaca, calendar=calendar)
    if name == "ib":
        from tradeflow.adapters.ib.data import IBSource

        return IBSource(settings.ib, calendar=calendar)
    raise InputError(f"unknown source {name!r}; expected one of {', '.join(SOURCE_NAMES)}")
