"""Alpaca crypto bars (BTC/USD, ETH/USD) through alpaca-py's real CryptoHistoricalDataClient, replayed
from recorded answers; and `tradeflow ingest --source alpaca --symbols BTC/USD` through the gate."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.fixtures.recorded.replay import AlpacaReplay, load_json
from tradeflow.adapters.alpaca import data as alpaca_data
from tradeflow.adapters.alpaca.data import AlpacaSource, crypto_bars_to_frame
from tradeflow.cli import EXIT_OK, main
from tradeflow.config import AlpacaSettings
from tradeflow.data.bars import BAR_COLUMNS
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import EmptyDataError

RECORDED = load_json("alpaca/crypto_bars_1Day.json")["bars"]


def _source(replay: AlpacaReplay) -> AlpacaSource:
    return AlpacaSource(AlpacaSettings(), client=replay.clients()[0], crypto_client=replay.crypto_client())


def test_crypto_bar_stamped_0000_utc_is_the_session_of_that_utc_day():
    frame = crypto_bars_to_frame(RECORDED["BTC/USD"], "BTC/USD")
    assert tuple(frame.columns) == BAR_COLUMNS
    # 2024-12-25T00:00:00Z read in New York time would be the 24th: the crypto session is the UTC date.
    assert list(frame["session"]) == list(pd.date_range("2024-12-20", "2025-01-05", freq="D"))
    assert (frame["adj_close"] == frame["close"]).all()
    assert frame["volume"].mod(1).gt(0).all(), "coin volumes are fractional"


@pytest.mark.parametrize("symbol", ["BTC/USD", "ETH/USD"])
def test_alpaca_source_fetches_crypto_bars_on_every_day_through_the_crypto_endpoint(symbol):
    replay = AlpacaReplay()
    frame = _source(replay).fetch(symbol, pd.Timestamp("2024-12-21"), pd.Timestamp("2024-12-29"))
    assert list(frame["session"]) == list(pd.date_range("2024-12-21", "2024-12-29", freq="D"))
    assert set(frame["symbol"]) == {symbol}
    [(url, query)] = replay.requests
    assert url.endswith("/v1beta3/crypto/us/bars")
    assert query["symbols"] == symbol
    assert query["start"].startswith("2024-12-21T00:00:00")  # UTC day bounds, not New York's


def test_a_crypto_range_without_bars_is_empty_data_not_a_crash():
    with pytest.raises(EmptyDataError, match="BTC/USD"):
        _source(AlpacaReplay()).fetch("BTC/USD", pd.Timestamp("2023-01-01"), pd.Timestamp("2023-01-31"))


def test_cli_ingest_alpaca_btc_usd_passes_the_gate_and_stores_a_snapshot(capsys, monkeypatch, data_dir):
    replay = AlpacaReplay()
    monkeypatch.setattr(alpaca_data, "CryptoHistoricalDataClient", lambda **_: replay.crypto_client())
    monkeypatch.setenv("TRADEFLOW_ALPACA__API_KEY", "recorded-key")
    monkeypatch.setenv("TRADEFLOW_ALPACA__SECRET_KEY", "recorded-secret")
    # Monday 2025-01-06 01:00 UTC: Sunday the 5th's bar is the last completed crypto session.
    code = main(
        [
            "ingest",
            "--source",
            "alpaca",
            "--symbols",
            "BTC/USD",
            "--start",
            "2024-12-20",
            "--now",
            "2025-01-06T01:00Z",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert payload["as_of"] == "2025-01-05"
    stored = SnapshotStore(data_dir / "snapshots").load("BTC/USD")
    assert stored is not None
    assert len(stored) == 17  # every day, Christmas, New Year and the weekends included
