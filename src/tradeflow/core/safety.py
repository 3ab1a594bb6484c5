"""Paper by default; live only on an explicit, consistent opt-in (RELIABILITY E6)."""

from __future__ import annotations

from tradeflow.config import LIVE_CONFIRMATION, Settings
from tradeflow.errors import LiveTradingRefused

# Alpaca key ids carry the environment in their prefix: PK... for paper, AK... for live.
_PAPER_PREFIX, _LIVE_PREFIX = "PK", "AK"


def check_mode(settings: Settings, mode: str) -> str:
    """The mode to run in, or LiveTradingRefused naming what is missing. Never prints a secret."""
    trading = settings.trading
    if mode not in ("paper", "live"):
        raise LiveTradingRefused(f"unknown mode {mode!r}; expected paper or live")
    key = settings.alpaca.api_key.get_secret_value() if settings.alpaca.api_key else ""
    if mode == "paper":
        if trading.broker == "alpaca" and key.startswith(_LIVE_PREFIX):
            raise LiveTradingRefused("paper mode was asked with a LIVE Alpaca key; refusing to start")
        return "paper"
    problems = []
    if not trading.live:
        problems.append("TRADEFLOW_TRADING__LIVE is not true")
    confirm = trading.live_confirmation.get_secret_value() if trading.live_confirmation else ""
    if confirm != LIVE_CONFIRMATION:
        problems.append("TRADEFLOW_TRADING__LIVE_CONFIRMATION does not hold the confirmation sentence")
    if trading.broker == "sim":
        problems.append("the sim broker cannot trade live; choose alpaca or ib")
    if trading.broker == "alpaca":
        if not key or not settings.alpaca.secret_key:
            problems.append("live Alpaca keys are missing (TRADEFLOW_ALPACA__API_KEY / __SECRET_KEY)")
        elif key.startswith(_PAPER_PREFIX):
            problems.append("the Alpaca key is a PAPER key but live mode was asked")
        if settings.alpaca.paper:
            problems.append("TRADEFLOW_ALPACA__PAPER is true (paper endpoint) but live mode was asked")
    if problems:
        raise LiveTradingRefused("live trading refused: " + "; ".join(problems))
    return "live"
