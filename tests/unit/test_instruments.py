"""Instruments and the universe: quantities a broker takes, and a universe that names each symbol once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeflow.domain import AssetClass, CalendarName, Instrument, Universe


def test_whole_share_instruments_round_toward_zero_and_fractional_ones_keep_eight_decimals():
    assert Instrument("SPY").round_qty(Decimal("12.9")) == Decimal(12)
    assert Instrument("SPY").round_qty(Decimal("-12.9")) == Decimal(-12)
    btc = Instrument("BTC/USD", AssetClass.CRYPTO, CalendarName.ALWAYS, fractional=True)
    assert btc.round_qty(Decimal("0.123456789")) == Decimal("0.12345678")


def test_an_index_is_a_feature_source_not_a_tradeable_instrument():
    assert not Instrument("^VIX", AssetClass.INDEX).tradeable
    assert Instrument("AAPL").tradeable


def test_a_universe_keeps_its_order_and_refuses_duplicates_and_emptiness():
    universe = Universe.of("SPY", "AAPL", "MSFT")
    assert universe.symbols == ("SPY", "AAPL", "MSFT")
    assert universe["AAPL"].symbol == "AAPL"
    assert "MSFT" in universe
    assert universe.covers(["SPY", "MSFT"])
    assert not universe.covers(["SPY", "QQQ"])
    with pytest.raises(ValueError, match="each symbol once"):
        Universe.of("SPY", "SPY")
    with pytest.raises(ValueError, match="at least one"):
        Universe(())
    with pytest.raises(ValueError, match="multiplier"):
        Instrument("SPY", multiplier=Decimal(0))
