"""RELIABILITY E6: paper by default; live needs the live flag, live keys and the confirmation
value together; keys and endpoint must match; secrets never appear in the refusal."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tradeflow.config import LIVE_CONFIRMATION, AlpacaSettings, Settings, TradingSettings
from tradeflow.core.safety import check_mode
from tradeflow.errors import LiveTradingRefused

CANARY_KEY = "AKCANARY0123456789"
CANARY_SECRET = "canary-secret-7f3a9"


def settings(**trading: object) -> Settings:
    alpaca = AlpacaSettings(api_key=SecretStr(CANARY_KEY), secret_key=SecretStr(CANARY_SECRET), paper=False)
    return Settings(trading=TradingSettings(broker="alpaca", **trading), alpaca=alpaca)


def test_e6_default_settings_are_paper_on_the_sim_broker():
    s = Settings()
    assert s.trading.mode == "paper"
    assert s.trading.broker == "sim"
    assert check_mode(s, "paper") == "paper"


def test_e6_live_with_flag_keys_and_confirmation_is_allowed():
    s = settings(live=True, live_confirmation=SecretStr(LIVE_CONFIRMATION))
    assert check_mode(s, "live") == "live"


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"live": False, "live_confirmation": SecretStr(LIVE_CONFIRMATION)}, "LIVE is not true"),
        ({"live": True}, "confirmation"),
        ({"live": True, "live_confirmation": SecretStr("yes")}, "confirmation"),
    ],
)
def test_e6_live_without_every_opt_in_refuses_to_start(changes, missing):
    with pytest.raises(LiveTradingRefused, match=missing) as info:
        check_mode(settings(**changes), "live")
    assert CANARY_KEY not in str(info.value)
    assert CANARY_SECRET not in str(info.value)


def test_e6_paper_key_with_live_mode_or_live_key_with_paper_mode_is_a_mismatch():
    paper_key = AlpacaSettings(api_key=SecretStr("PKPAPER123"), secret_key=SecretStr("x"), paper=False)
    s = Settings(
        trading=TradingSettings(broker="alpaca", live=True, live_confirmation=SecretStr(LIVE_CONFIRMATION)),
        alpaca=paper_key,
    )
    with pytest.raises(LiveTradingRefused, match="PAPER key"):
        check_mode(s, "live")
    with pytest.raises(LiveTradingRefused, match="LIVE Alpaca key"):
        check_mode(settings(), "paper")


def test_e6_the_sim_broker_cannot_trade_live():
    s = Settings(trading=TradingSettings(live=True, live_confirmation=SecretStr(LIVE_CONFIRMATION)))
    with pytest.raises(LiveTradingRefused, match="sim broker"):
        check_mode(s, "live")


def test_f2_secrets_are_redacted_in_settings_dumps():
    s = settings(live=True, live_confirmation=SecretStr(LIVE_CONFIRMATION))
    dumped = s.model_dump_json() + repr(s) + str(s)
    assert CANARY_KEY not in dumped
    assert CANARY_SECRET not in dumped
    assert LIVE_CONFIRMATION not in dumped
