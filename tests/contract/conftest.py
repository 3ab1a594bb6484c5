"""One `case` per bar source, each set up to serve real SPY bars: the bundled sample (a proxy), the
real Yahoo CSV, a Parquet copy of it, and yfinance / Alpaca / IB replaying recorded answers
(tests/fixtures/recorded). The suite in test_bar_source_contract.py holds every case to the same
BarSource contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.recorded.replay import AlpacaReplay, IBReplay, YahooReplay, alpaca_error
from tradeflow.adapters.alpaca.data import AlpacaSource
from tradeflow.adapters.files.data import FileSource
from tradeflow.adapters.ib.data import IBSource
from tradeflow.adapters.sample.data import SampleSource
from tradeflow.adapters.yahoo.data import YFinanceSource
from tradeflow.config import AlpacaSettings, IBSettings
from tradeflow.data.sources.base import BarSource

SOURCE_CASES = ("sample", "csv", "parquet", "yfinance", "alpaca", "ib")
# Inside the recorded 2023-12-13 .. 2024-01-05 with a session left out on either side, so clipping
# shows; it spans the 2023-12-15 ex-dividend date (adj_close != close before it), Christmas and New Year.
WINDOW = (pd.Timestamp("2023-12-14"), pd.Timestamp("2024-01-04"))
# Sessions nobody serves: after the CSV's last row (2024-01-24) and outside every recording.
EMPTY_RANGE = (pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-08"))


@dataclass
class SourceCase:
    """A source under test plus the means to make it fail the ways the contract talks about."""

    name: str
    source: BarSource
    window: tuple[pd.Timestamp, pd.Timestamp] = WINDOW
    symbol: str = "SPY"
    unknown_symbol: str = "ZZZZ"
    real_spy: bool = True  # serves real SPY prices (the sample serves the S&P 500 index as a proxy)
    # A fresh source whose first n fetches meet an injected transient fault; None for local data.
    flaky: Callable[[int], BarSource] | None = None
    # How many requests reached the vendor's SDK (None for local data).
    vendor_calls: Callable[[], int] | None = None


class CountingSource:
    """Wraps a source and counts fetch calls, so retry tests can see how often it was asked."""

    def __init__(self, inner: BarSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    @property
    def coverage_end(self) -> pd.Timestamp | None:
        return self.inner.coverage_end

    def describe(self, symbol: str) -> str:
        return self.inner.describe(symbol)

    def fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        self.calls += 1
        return self.inner.fetch(symbol, start, end)


def _yfinance_case() -> SourceCase:
    from yfinance.exceptions import YFRateLimitError

    replay = YahooReplay()

    def flaky(n: int) -> BarSource:
        return YFinanceSource(client=YahooReplay().fail_with(*(YFRateLimitError() for _ in range(n))))

    return SourceCase("yfinance", YFinanceSource(client=replay), flaky=flaky, vendor_calls=lambda: len(replay.calls))


def _alpaca_source(replay: AlpacaReplay) -> AlpacaSource:
    data, trading = replay.clients()
    return AlpacaSource(AlpacaSettings(feed="sip"), client=data, asset_client=trading)


def _alpaca_case() -> SourceCase:
    replay = AlpacaReplay()

    def flaky(n: int) -> BarSource:
        # A 502 from Alpaca's gateway: alpaca-py does not retry it itself, so each one reaches the adapter.
        return _alpaca_source(AlpacaReplay().fail_with(*(alpaca_error("bad_gateway") for _ in range(n))))

    return SourceCase("alpaca", _alpaca_source(replay), flaky=flaky, vendor_calls=lambda: len(replay.requests))


def _ib_case() -> SourceCase:
    replay = IBReplay()

    def flaky(n: int) -> BarSource:
        refused = (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4002)") for _ in range(n))
        return IBSource(IBSettings(), ib_factory=IBReplay().fail_connect_with(*refused))

    return SourceCase(
        "ib", IBSource(IBSettings(), ib_factory=replay), flaky=flaky, vendor_calls=lambda: replay.connects
    )


@pytest.fixture(scope="session")
def spy_parquet_dir(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SPY.csv written to Parquet as it was read (Yahoo columns, Date as text)."""
    folder = tmp_path_factory.mktemp("parquet")
    pd.read_csv(real_data / "SPY.csv").to_parquet(folder / "SPY.parquet")
    return folder


@pytest.fixture(params=SOURCE_CASES)
def case(request: pytest.FixtureRequest, real_data: Path, spy_parquet_dir: Path) -> SourceCase:
    name = request.param
    if name == "sample":
        return SourceCase(
            "sample", SampleSource(), window=(pd.Timestamp("2018-12-14"), pd.Timestamp("2018-12-28")), real_spy=False
        )
    if name == "csv":
        return SourceCase("csv", FileSource(real_data, "csv"))
    if name == "parquet":
        return SourceCase("parquet", FileSource(spy_parquet_dir, "parquet"))
    builders = {"yfinance": _yfinance_case, "alpaca": _alpaca_case, "ib": _ib_case}
    return builders[name]()
