"""The train-spy configuration: one typed, frozen object, loadable from YAML or JSON (`--config FILE`)
and written whole into every run's manifest, so a run can be reproduced from its manifest alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tradeflow.errors import ConfigError, InputError
from tradeflow.features import DEFAULT_SPEC, FeatureSpec
from tradeflow.registry import PromotionPolicy
from tradeflow.risk.limits import RiskLimits
from tradeflow.rl.config import PPOConfig
from tradeflow.sim import CostModel

BASELINES: tuple[str, ...] = ("buy_and_hold", "sma", "rsi", "macd", "mean_reversion")


class DataConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str = "sample"
    symbol: str = "SPY"
    vix_symbol: str | None = "^VIX"
    start: str | None = None
    end: str | None = None
    path: str | None = None


class FoldConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    scheme: Literal["expanding", "rolling"] = "expanding"
    train_size: int = Field(504, ge=20)  # two years of sessions
    test_size: int = Field(126, ge=5)  # half a year
    embargo: int = Field(5, ge=0)  # sessions dropped between train and test (the feature window overlaps)
    max_folds: int | None = Field(4, ge=1)


class TrainSpyConfig(BaseModel):
    """Defaults are `make run`'s: a few minutes on 2 cores. The nightly deployment raises timesteps."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    data: DataConfig = DataConfig()
    features: dict[str, Any] = Field(default_factory=dict)  # FeatureSpec overrides of DEFAULT_SPEC
    folds: FoldConfig = FoldConfig()
    ppo: PPOConfig = PPOConfig(total_timesteps=16_384)
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1)
    cost: CostModel = CostModel()
    promotion: PromotionPolicy = PromotionPolicy()
    baselines: tuple[str, ...] = BASELINES
    capital: float = Field(100_000.0, gt=0)
    # The governor's limits the out-of-sample curves are judged under (its drawdown breaker HALTs a
    # curve where live trading would): a challenger is never promoted on a curve live would have stopped.
    risk: RiskLimits = RiskLimits()

    @property
    def feature_spec(self) -> FeatureSpec:
        return DEFAULT_SPEC.replace(**self.features) if self.features else DEFAULT_SPEC

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> TrainSpyConfig:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"config file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
            raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read config {p}: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(raw or {}, origin=str(p))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "config") -> TrainSpyConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(root)"
            raise ConfigError(f"{origin}: {where}: {first['msg']}") from None
