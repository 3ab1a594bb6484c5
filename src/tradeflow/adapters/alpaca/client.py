"""The alpaca-py set-up the Alpaca data source and the Alpaca broker share: the keys, read and
checked in one place, the TradingClient built in one place, and the warning filter every import of
the SDK needs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from tradeflow.config import AlpacaSettings
from tradeflow.errors import ConfigError

KEY_ENV = "TRADEFLOW_ALPACA__API_KEY"
SECRET_ENV = "TRADEFLOW_ALPACA__SECRET_KEY"


@contextmanager
def quiet_sdk_import() -> Iterator[None]:
    """Wrap imports from alpaca.data and alpaca.trading: they import their websocket streams, which
    import the deprecated websockets.legacy, a warning about code these adapters never run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"websockets(\.|$)")
        yield


with quiet_sdk_import():
    from alpaca.trading.client import TradingClient


def require_keys(settings: AlpacaSettings) -> tuple[str, str]:
    """(api key, secret key), or a ConfigError naming the missing variables (never a value)."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    missing = [name for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise ConfigError(
            f"alpaca API keys are missing: set {KEY_ENV} and {SECRET_ENV} (missing: {', '.join(missing)})"
        )
    return key, secret


def trading_client(settings: AlpacaSettings, *, raw_data: bool = False) -> TradingClient:
    """A TradingClient on the paper or live endpoint as `settings.paper` says. `raw_data`: answers
    as the REST JSON instead of alpaca-py's models."""
    key, secret = require_keys(settings)
    return TradingClient(key, secret, paper=settings.paper, raw_data=raw_data)
