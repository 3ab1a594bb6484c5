"""The composition root: the only place that chooses adapters. paper = sim (or a broker's paper
account) + wall clock; live = broker + explicit opt-in (tradeflow.core.safety). Strategies, risk and
the tick depend on protocols only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tradeflow.calendar import default_calendar
from tradeflow.config import Settings
from tradeflow.core.decide import Decider, PolicyDecider, RuleDecider
from tradeflow.core.safety import check_mode
from tradeflow.core.tick import TickRuntime
from tradeflow.data.ingest import IngestRequest, ingest
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import ConfigError
from tradeflow.execution.base import Broker
from tradeflow.features import DEFAULT_SPEC, Features, features_for_live
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits


class NoChampionError(LookupError):
    """The tick is asked to trade the champion model, and the registry has none yet."""


def make_broker(settings: Settings, name: str, clock: Callable[[], dt.datetime]) -> Broker:
    if name == "sim":
        from tradeflow.execution.sim import SimBroker

        return SimBroker(settings.data_dir / "broker" / "sim-state.json", clock=clock)
    if name == "alpaca":
        from tradeflow.execution.alpaca import AlpacaBroker

        return AlpacaBroker.from_settings(settings.alpaca)
    if name == "ib":
        from tradeflow.execution.ib import IBBroker

        return IBBroker(settings.ib)
    raise ConfigError(f"unknown broker {name!r}; expected sim, alpaca or ib")


def make_decider(settings: Settings, name: str) -> Decider:
    if name != "champion":
        from tradeflow.strategies import make_strategy

        return RuleDecider(make_strategy(name))
    from tradeflow.registry import ModelRegistry
    from tradeflow.rl.artifact import load_artifact

    champion = ModelRegistry.for_data_dir(settings.data_dir).champion()
    if champion is None:
        raise NoChampionError("no champion model yet: run `tradeflow train`, or trade a rule (--strategy sma)")
    return PolicyDecider(load_artifact(champion.path))


def gated_market_data(settings: Settings, on_price: Callable[[float], None] | None = None) -> Callable[[Any], Features]:
    """Bars through the quality gate (incremental ingest), then the same features as research, whose
    last row must be the last completed session: anything else raises and the tick does not trade."""
    trading = settings.trading
    symbols = (trading.symbol, trading.vix_symbol) if trading.vix_symbol else (trading.symbol,)

    def load(now: Any) -> Features:
        when = pd.Timestamp(now)
        ingest(IngestRequest(source=trading.source, symbols=symbols, path=trading.path), settings, when)
        store = SnapshotStore(settings.snapshots_dir)
        bars = store.load(trading.symbol)
        vix = store.load(trading.vix_symbol) if trading.vix_symbol else None
        spec = DEFAULT_SPEC if trading.vix_symbol else DEFAULT_SPEC.replace(include_vix=False)
        session = default_calendar().last_completed_session(when)
        features = features_for_live(bars, vix, spec, session=session)  # type: ignore[arg-type]
        if on_price is not None:
            on_price(float(features.bars["close"].iloc[-1]))
        return features

    return load


def build_tick_runtime(
    settings: Settings, *, mode: str, broker: str | None, strategy: str | None, now: pd.Timestamp
) -> TickRuntime:
    check_mode(settings, mode)
    trading = settings.trading
    broker_name = broker or trading.broker
    if mode == "live" and broker_name == "sim":
        raise ConfigError("live mode needs a real broker (alpaca or ib)")
    instant = now.to_pydatetime()
    adapter = make_broker(settings, broker_name, clock=lambda: instant)
    on_price = None
    if broker_name == "sim":
        # The sim broker fills market orders at the latest price the tick saw.
        def on_price(price: float) -> None:
            adapter.set_price(trading.symbol, price)  # type: ignore[attr-defined]

    name = strategy or trading.strategy
    Path(settings.ledger_path).parent.mkdir(parents=True, exist_ok=True)
    return TickRuntime(
        calendar=default_calendar(),
        broker=adapter,
        ledger=Ledger(settings.ledger_path),
        governor=RiskGovernor(RiskLimits()),
        decider=lambda: make_decider(settings, name),
        market_data=gated_market_data(settings, on_price),
        strategy=name,
        symbol=trading.symbol,
        mode=mode,
        run_id=f"tick-{now.tz_convert('UTC'):%Y%m%dT%H%M%SZ}",
        abandon_after=dt.timedelta(seconds=trading.abandon_after_s),
        cash_tolerance=trading.cash_tolerance,
        cash_buffer=trading.cash_buffer,
        rebalance_band=trading.rebalance_band,
    )
