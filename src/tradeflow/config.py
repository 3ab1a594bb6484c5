"""Typed, frozen settings. The only module that reads os.environ (through pydantic-settings).

Environment variables use the prefix TRADEFLOW_ and a double underscore for nesting, e.g.
TRADEFLOW_DATA_DIR=/srv/tradeflow/data or TRADEFLOW_ALPACA__API_KEY=... Secrets are SecretStr and
print as '**********'.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradeflow.risk.limits import RiskLimits


class AlpacaSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    paper: bool = True
    # The free plan only has the IEX feed; SIP needs a subscription.
    feed: str = "iex"


class IBSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str = "127.0.0.1"
    # IB Gateway paper; TWS paper is 7497, live 7496 / 4001.
    port: int = 4002
    client_id: int = 17
    timeout_s: float = 10.0


DEFAULT_MAX_INPUT_BYTES = 100 * 2**20


class QualitySettings(BaseModel):
    """Thresholds of the data-quality gate (the statistical ones live in expectations/*.json)."""

    model_config = ConfigDict(frozen=True)
    # A close-to-close ratio within this relative distance of 2, 3, 4, 10 or their inverses looks like
    # an unadjusted split.
    split_tolerance: float = Field(0.05, gt=0, lt=0.5)
    # Stored and newly fetched closes on the same session may differ by at most this fraction.
    overlap_tolerance: float = Field(0.005, gt=0, lt=1)
    # Known real events that look like faults: expectations/known_events.json.
    known_events_file: Path | None = None
    # Bar files larger than this are refused before they are read (G5): a 200 MB CSV of hostile rows
    # took minutes and gigabytes. 100 MiB holds ~1.4 million Yahoo daily rows, centuries of one symbol.
    max_input_bytes: int = Field(DEFAULT_MAX_INPUT_BYTES, ge=1)


LIVE_CONFIRMATION = "I understand this trades real money"


class LearningSettings(BaseModel):
    """The daily learning review. The LLM only enriches the analyst notes when a key is set; it is
    never required and no decision reads what it writes."""

    model_config = ConfigDict(frozen=True)
    min_trades: int = Field(30, ge=30)
    llm_api_key: SecretStr | None = None
    llm_base_url: str = "https://api.openai.com/v1"
    llm_model: str = "gpt-4o-mini"


class TradingSettings(BaseModel):
    """The trading tick. Paper is the default; live needs `live: true`, live keys AND the exact
    confirmation value together (RELIABILITY E6)."""

    model_config = ConfigDict(frozen=True)
    mode: str = Field("paper", pattern="^(paper|live)$")
    live: bool = False
    live_confirmation: SecretStr | None = None
    broker: str = Field("sim", pattern="^(sim|alpaca|ib)$")
    strategy: str = "champion"  # a rule name, or the registry's champion model
    symbol: str = "SPY"
    # The instruments the tick trades (TRADEFLOW_TRADING__UNIVERSE='["SPY","AAPL","MSFT"]'); empty means
    # `symbol` alone. A rule trades a universe in equal sleeves; a champion only its own universe.
    universe: tuple[str, ...] = ()
    fractional: bool = False  # the broker takes fractional quantities of these instruments
    vix_symbol: str | None = "^VIX"
    source: str = "sample"
    path: str | None = None
    # An intent the broker never received is given up (ABANDONED) after this many seconds (A4, B4).
    abandon_after_s: int = Field(600, ge=0)
    # Sizing keeps this fraction of equity back for spread, slippage and commission, so a fully
    # invested target does not fail the broker's buying-power check.
    cash_buffer: float = Field(0.005, ge=0, lt=0.5)
    # No trade unless the change is worth at least this fraction of equity (exits always trade):
    # without it, every 5-minute tick would churn 1-share orders as equity moves (the backtest trades
    # only when the target changes).
    rebalance_band: float = Field(0.05, ge=0, lt=1)
    # Broker vs ledger cash may differ by this fraction before an alert; twice this sets REDUCING (B6).
    cash_tolerance: float = Field(0.01, ge=0)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The traded instruments, in order: the universe, or the one symbol."""
        return self.universe or (self.symbol,)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADEFLOW_", env_nested_delimiter="__", env_file=".env", frozen=True, extra="ignore"
    )

    data_dir: Path = Path("data")
    default_source: str = "sample"
    symbols: tuple[str, ...] = ("SPY", "^VIX")
    # How many stored sessions an incremental update fetches again to check they did not change.
    overlap_sessions: int = Field(5, ge=1, le=250)
    fetch_attempts: int = Field(3, ge=1, le=10)
    alpaca: AlpacaSettings = AlpacaSettings()
    ib: IBSettings = IBSettings()
    quality: QualitySettings = QualitySettings()
    trading: TradingSettings = TradingSettings()
    learning: LearningSettings = LearningSettings()
    # The risk governor's limits (TRADEFLOW_RISK__MAX_DRAWDOWN=0.15, ...): the tick and `resume` obey
    # the same numbers. A misspelt limit fails loudly (extra="forbid").
    risk: RiskLimits = RiskLimits()

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger" / "ledger.sqlite"

    @property
    def safety_latch_path(self) -> Path:
        """The trading state's mirror, in its own folder so that losing the ledger's cannot erase it."""
        return self.data_dir / "safety" / "trading-state.json"

    @property
    def learning_path(self) -> Path:
        """The governed parameters, experiments, patterns and learning history (issue 5)."""
        return self.data_dir / "learning" / "learning.sqlite"

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain JSON values, every secret that is set shown as REDACTED
        (F2: a config dump in a log, a report or a bug report must not carry a key)."""
        return _redact(self)


def _redact(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out[name] = "REDACTED"
        elif isinstance(value, BaseModel):
            out[name] = _redact(value)
        else:
            out[name] = TypeAdapter(Any).dump_python(value, mode="json")
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings loaded once per process; pass the object down rather than calling this deep inside."""
    return Settings()
