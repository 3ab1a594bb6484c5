"""The Alpaca adapter: bars translation, the requests it sends through alpaca-py, keys, and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from tests.fixtures.recorded.replay import AlpacaReplay, alpaca_error, load_json
from tradeflow.adapters.alpaca.client import SECRET_ENV
from tradeflow.adapters.alpaca.data import (
    AlpacaSource,
    bars_for_symbol,
    bars_to_frame,
    classify_alpaca_error,
)
from tradeflow.config import AlpacaSettings
from tradeflow.data.bars import BAR_COLUMNS
from tradeflow.data.sources.base import fetch_with_retry
from tradeflow.errors import (
    ConfigError,
    EmptyDataError,
    SourceError,
    TransientSourceError,
    UnknownSymbolError,
)

START, END = pd.Timestamp("2023-12-14"), pd.Timestamp("2024-01-04")
SPLIT = load_json("alpaca/bars_SPY_1Day_split.json")
ALL = load_json("alpaca/bars_SPY_1Day_all.json")


def _source(replay: AlpacaReplay, **settings: object) -> AlpacaSource:
    data, trading = replay.clients()
    return AlpacaSource(AlpacaSettings(**settings), client=data, asset_client=trading)  # type: ignore[arg-type]


def test_bars_json_maps_to_bar_columns_on_new_york_sessions() -> None:
    frame = bars_to_frame(SPLIT["bars"]["SPY"], ALL["bars"]["SPY"], "SPY")
    assert tuple(frame.columns) == BAR_COLUMNS
    first = frame.iloc[0]
    # 2023-12-13T05:00:00Z is midnight in New York: the 2023-12-13 session.
    assert first["session"] == pd.Timestamp("2023-12-13")
    assert (first["open"], first["high"], first["low"], first["close"]) == (464.49, 470.76, 464.12, 470.5)
    assert first["volume"] == 93278000.0


def test_summer_bars_stamped_0400z_land_on_the_same_new_york_session() -> None:
    bar = {"t": "2024-07-01T04:00:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "n": 1, "vw": 1.2}
    assert bars_to_frame([bar], None, "SPY")["session"].iloc[0] == pd.Timestamp("2024-07-01")


def test_adj_close_is_the_close_of_the_adjustment_all_bars() -> None:
    frame = bars_to_frame(SPLIT["bars"]["SPY"], ALL["bars"]["SPY"], "SPY").set_index("session")
    # Before the 2023-12-15 ex-dividend date the two differ, after it they agree.
    assert frame.loc[pd.Timestamp("2023-12-14"), "adj_close"] == pytest.approx(470.104)
    assert frame.loc[pd.Timestamp("2023-12-14"), "close"] == 472.01
    assert frame.loc[pd.Timestamp("2024-01-02"), "adj_close"] == frame.loc[pd.Timestamp("2024-01-02"), "close"]


def test_a_session_missing_from_the_adjusted_answer_leaves_adj_close_nan_for_the_gate() -> None:
    frame = bars_to_frame(SPLIT["bars"]["SPY"], ALL["bars"]["SPY"][1:], "SPY")
    assert np.isnan(frame["adj_close"].iloc[0])
    assert not frame["adj_close"].iloc[1:].isna().any()


def test_alpaca_py_bar_models_translate_like_the_wire_json() -> None:
    from alpaca.data.models.bars import BarSet

    barset = BarSet(SPLIT["bars"])
    adjusted = BarSet(ALL["bars"])
    from_models = bars_to_frame(barset.data["SPY"], adjusted.data["SPY"], "SPY")
    from_json = bars_to_frame(SPLIT["bars"]["SPY"], ALL["bars"]["SPY"], "SPY")
    pd.testing.assert_frame_equal(from_models, from_json)


def test_bars_for_symbol_reads_a_barset_the_raw_dict_and_the_rest_body() -> None:
    from alpaca.data.models.bars import BarSet

    expected = len(SPLIT["bars"]["SPY"])
    assert len(bars_for_symbol(BarSet(SPLIT["bars"]), "SPY")) == expected
    assert len(bars_for_symbol(SPLIT["bars"], "SPY")) == expected
    assert len(bars_for_symbol(SPLIT, "SPY")) == expected
    assert bars_for_symbol({"bars": {}, "next_page_token": None}, "SPY") == []


def test_fetch_requests_split_then_all_adjusted_bars_on_the_configured_feed_in_new_york_bounds() -> None:
    replay = AlpacaReplay()
    _source(replay).fetch("SPY", START, END)
    split, everything = replay.bar_requests
    assert (split["adjustment"], everything["adjustment"]) == ("split", "all")
    for query in (split, everything):
        assert query["symbols"] == "SPY"
        assert query["timeframe"] == "1Day"
        assert query["feed"] == "iex"  # the free plan's feed is the default
        assert pd.Timestamp(query["start"]) == pd.Timestamp("2023-12-14 00:00", tz="America/New_York")
        assert pd.Timestamp(query["end"]) == pd.Timestamp("2024-01-04 23:59:59", tz="America/New_York")


def test_sip_feed_setting_is_sent() -> None:
    replay = AlpacaReplay()
    _source(replay, feed="SIP").fetch("SPY", START, END)
    assert {q["feed"] for q in replay.bar_requests} == {"sip"}


def test_unknown_feed_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="feed"):
        _source(AlpacaReplay(), feed="nasdaq")


def test_share_class_dash_is_sent_with_alpacas_dot() -> None:
    replay = AlpacaReplay()
    with pytest.raises(UnknownSymbolError):
        _source(replay).fetch("BRK-B", START, END)
    assert replay.bar_requests[0]["symbols"] == "BRK.B"
    assert replay.requests[-1][0].endswith("/v2/assets/BRK.B")


def test_missing_keys_raise_a_config_error_naming_the_variables_but_no_value() -> None:
    settings = AlpacaSettings(api_key=SecretStr("PKTESTKEY123456"), secret_key=None)
    with pytest.raises(ConfigError) as info:
        AlpacaSource(settings)
    message = str(info.value)
    assert SECRET_ENV in message
    assert "missing: TRADEFLOW_ALPACA__SECRET_KEY" in message
    assert "PKTESTKEY123456" not in message


def test_both_keys_missing_names_both_variables() -> None:
    with pytest.raises(ConfigError, match="missing: TRADEFLOW_ALPACA__API_KEY, TRADEFLOW_ALPACA__SECRET_KEY"):
        AlpacaSource(AlpacaSettings())


def test_keys_present_build_the_sdk_clients_without_a_request() -> None:
    settings = AlpacaSettings(api_key=SecretStr("PKTESTKEY123456"), secret_key=SecretStr("s3cr3t-value"))
    source = AlpacaSource(settings)
    assert "s3cr3t-value" not in source.describe("SPY")
    assert source._bars_client() is source._bars_client()


def test_alpaca_429_is_transient_and_retried() -> None:
    # alpaca-py answers a 429 by retrying three times itself; only the fourth 429 reaches the adapter.
    replay = AlpacaReplay().fail_with(*(alpaca_error("rate_limited") for _ in range(4)))
    sleeps: list[float] = []
    frame = fetch_with_retry(_source(replay), "SPY", START, END, sleep=sleeps.append)
    assert sleeps == [1.0]
    assert len(replay.bar_requests) == 4 + 2  # four refused, then split and all
    assert len(frame) == 14


def test_alpaca_429_after_the_sdk_retries_is_a_transient_source_error() -> None:
    replay = AlpacaReplay().fail_with(*(alpaca_error("rate_limited") for _ in range(4)))
    with pytest.raises(TransientSourceError, match="429"):
        _source(replay).fetch("SPY", START, END)


def test_alpaca_5xx_with_an_html_body_is_transient() -> None:
    replay = AlpacaReplay().fail_with(alpaca_error("bad_gateway"))
    with pytest.raises(TransientSourceError, match="502"):
        _source(replay).fetch("SPY", START, END)


@pytest.mark.parametrize(
    "exc", [requests.ConnectionError("Connection refused"), requests.ReadTimeout("Read timed out")]
)
def test_alpaca_connection_errors_and_timeouts_are_transient(exc: Exception) -> None:
    with pytest.raises(TransientSourceError):
        _source(AlpacaReplay().fail_with(exc)).fetch("SPY", START, END)


def test_alpaca_invalid_symbol_400_is_an_unknown_symbol() -> None:
    replay = AlpacaReplay().fail_with(alpaca_error("invalid_symbol", "SPY.WS"))
    with pytest.raises(UnknownSymbolError, match="invalid symbol"):
        _source(replay).fetch("SPY.WS", START, END)


def test_alpaca_403_is_a_non_transient_source_error_pointing_at_keys_and_feed() -> None:
    replay = AlpacaReplay().fail_with(alpaca_error("forbidden_sip"))
    with pytest.raises(SourceError) as info:
        _source(replay, feed="sip").fetch("SPY", START, END)
    assert not isinstance(info.value, TransientSourceError)
    assert "TRADEFLOW_ALPACA__API_KEY" in str(info.value)


def test_no_bars_for_an_unknown_asset_is_an_unknown_symbol_after_one_lookup() -> None:
    replay = AlpacaReplay()
    with pytest.raises(UnknownSymbolError):
        _source(replay).fetch("ZZZZ", START, END)
    assert [url.rsplit("/v2/", 1)[-1] for url, _ in replay.requests] == ["stocks/bars", "assets/ZZZZ"]


def test_no_bars_for_a_known_asset_is_an_empty_answer() -> None:
    replay = AlpacaReplay()
    with pytest.raises(EmptyDataError):
        _source(replay).fetch("SPY", pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-08"))
    assert replay.requests[-1][0].endswith("/v2/assets/SPY")


def test_without_an_asset_lookup_an_empty_answer_says_the_symbol_may_be_unknown() -> None:
    data, _ = AlpacaReplay().clients()
    source = AlpacaSource(AlpacaSettings(), client=data)  # no keys, no trading client
    with pytest.raises(EmptyDataError, match="unknown"):
        source.fetch("ZZZZ", START, END)


def test_index_symbols_are_refused_without_a_request() -> None:
    replay = AlpacaReplay()
    with pytest.raises(UnknownSymbolError, match="index"):
        _source(replay).fetch("^VIX", START, END)
    assert replay.requests == []


def test_a_programming_error_is_not_disguised_as_a_source_error() -> None:
    assert classify_alpaca_error(KeyError("bars"), "SPY") is None
