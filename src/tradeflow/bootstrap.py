"""The composition root: the only place that chooses adapters. paper = sim (or a broker's paper
account) + wall clock; live = broker + explicit opt-in (tradeflow.core.safety). Strategies, risk and
the tick depend on protocols only."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradeflow.calendar import default_calendar
from tradeflow.config import Settings
from tradeflow.core.safety import check_mode
from tradeflow.core.tick import TickRuntime
from tradeflow.data.ingest import IngestRequest, ingest_missing
from tradeflow.data.sources import SOURCE_NAMES
from tradeflow.data.store import SnapshotStore
from tradeflow.domain import Book, Position, Universe
from tradeflow.errors import ConfigError, InputError, StoreError, TradeflowError
from tradeflow.execution.base import Broker
from tradeflow.features import DEFAULT_SPEC, Features, FeatureSpec, PanelFeatures, features_for_live, panel_of
from tradeflow.features.cache import FeatureCache
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor
from tradeflow.rl.policy import RLPolicyStrategy
from tradeflow.strategies import Sleeves, Strategy

if TYPE_CHECKING:
    from tradeflow.learning import LearningStore

BROKER_NAMES = ("sim", "alpaca", "ib")


class NoChampionError(LookupError):
    """The tick is asked to trade the champion model, and the registry has none yet."""


class ChampionUnusableError(NoChampionError, TradeflowError):
    """There is a champion, but its pointer, version file or artifact is damaged (G8): a tick reports
    NO_MODEL with the reason and sends nothing; a command exits 2 with the same one line."""


def check_tick_choices(settings: Settings, *, mode: str, broker: str | None, strategy: str | None) -> None:
    """Everything a tick is told to use by name, checked before anything is ingested or written:
    a misspelt strategy or source must not leave snapshots, a ledger or a lock behind."""
    from tradeflow.strategies import strategy_names

    check_mode(settings, mode)
    broker_name = broker or settings.trading.broker
    if broker_name not in BROKER_NAMES:
        raise ConfigError(f"unknown broker {broker_name!r}; expected one of {', '.join(BROKER_NAMES)}")
    name = strategy or settings.trading.strategy
    names = (*strategy_names(), "champion")
    if name not in names:
        raise InputError(f"unknown strategy {name!r}; expected one of {', '.join(names)}")
    source = settings.trading.source
    if source not in SOURCE_NAMES:
        raise ConfigError(
            f"unknown trading source {source!r} (TRADEFLOW_TRADING__SOURCE); expected one of {', '.join(SOURCE_NAMES)}"
        )


def make_broker(settings: Settings, name: str, clock: Callable[[], dt.datetime]) -> Broker:
    if name == "sim":
        from tradeflow.execution.sim import SimBroker

        return SimBroker(settings.data_dir / "broker" / "sim-state.json", clock=clock)
    if name == "alpaca":
        from tradeflow.adapters.alpaca.execution import AlpacaBroker

        return AlpacaBroker.from_settings(settings.alpaca)
    if name == "ib":
        from tradeflow.adapters.ib.execution import IBBroker

        return IBBroker(settings.ib)
    raise ConfigError(f"unknown broker {name!r}; expected one of {', '.join(BROKER_NAMES)}")


def open_ledger(settings: Settings) -> Ledger:
    """This installation's ledger, with its safety latch outside the ledger's folder (G1)."""
    Path(settings.ledger_path).parent.mkdir(parents=True, exist_ok=True)
    return Ledger(settings.ledger_path, latch_path=settings.safety_latch_path)


def make_tick_strategy(
    settings: Settings,
    name: str,
    ledger: Ledger | None = None,
    symbol: str = "",
    *,
    own: Callable[[LearningStore], LearningStore] | None = None,
) -> Strategy:
    """A rule reads its parameters from the governed learning store (defaults until a change is
    adopted; control/test values while an experiment runs); the champion is the registry's model.
    `own` takes the learning store a rule opens, to close it (a tick runtime's `own`)."""
    if name != "champion":
        from tradeflow.core.decide import GovernedRule
        from tradeflow.learning import LearningStore

        last = (lambda: ledger.last_decision(name, symbol)) if ledger is not None else (lambda: None)
        store = LearningStore(settings.learning_path)
        return GovernedRule(name, own(store) if own is not None else store, last_decision=last)
    return RLPolicyStrategy(load_champion(settings), name="champion")


def load_champion(settings: Settings) -> Any:
    """The champion model, loaded; NoChampionError without one, ChampionUnusableError (naming the
    damaged file) when its pointer, version file or artifact cannot be read."""
    from tradeflow.registry import ModelRegistry
    from tradeflow.rl.artifact import load_artifact

    try:
        champion = ModelRegistry.for_data_dir(settings.data_dir).champion()
        if champion is None:
            raise NoChampionError("no champion model yet: run `tradeflow train`, or trade a rule (--strategy sma)")
        return load_artifact(champion.path)
    except TradeflowError as exc:
        raise ChampionUnusableError(f"champion model unusable: {exc}") from None


def default_trading_spec(settings: Settings) -> FeatureSpec:
    """The rules' feature spec: the default, without the VIX columns when no VIX symbol is traded."""
    return DEFAULT_SPEC if settings.trading.vix_symbol else DEFAULT_SPEC.replace(include_vix=False)


def champion_spec(model: Any, settings: Settings) -> FeatureSpec:
    """The feature spec the champion was trained on, which the tick must rebuild exactly (it used to
    build the default spec whatever the model was trained on). Artifacts from before specs were
    stored are accepted only when their names and digest are the default's."""
    params = model.feature_params
    if params is not None:
        try:
            return FeatureSpec.from_dict(params)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ChampionUnusableError(f"champion model unusable: its feature spec is invalid ({exc})") from None
    default = default_trading_spec(settings)
    if model.feature_names == default.names and model.feature_hash in (None, default.digest):
        return default
    raise ChampionUnusableError(
        "champion model unusable: its artifact does not record its feature spec and it was not trained on the "
        "default one; retrain it (`tradeflow train`)"
    )


def gated_market_data(
    settings: Settings,
    on_price: Callable[[str, float], None] | None = None,
    spec: Callable[[], FeatureSpec] | None = None,
) -> Callable[[Any], Features | PanelFeatures]:
    """The tick reads, ingest writes: the latest gated snapshots and the features cached for them
    (the spec `spec()` names: the champion's own), whose last row must be the last completed
    session: anything else raises and the tick does not trade. One traded symbol gives its Features;
    a universe gives the panel of its instruments' features on their common sessions.

    The source is fetched and gated only when the store lacks a session's bars (the first tick of
    a session when the after-close ingest has not run); every other tick reads the snapshots' digests
    from the manifest and, after the first of its session, loads its features from the cache."""
    trading = settings.trading
    traded = trading.symbols
    symbols = (*traded, trading.vix_symbol) if trading.vix_symbol else traded
    request = IngestRequest(source=trading.source, symbols=symbols, path=trading.path)  # checks the source now
    cache = FeatureCache(settings.data_dir / "features" / "cache")

    def load(now: Any) -> Features | PanelFeatures:
        when = pd.Timestamp(now)
        ingest_missing(request, settings, when)
        store = SnapshotStore(settings.snapshots_dir)
        wanted = spec() if spec is not None else default_trading_spec(settings)
        with_vix = trading.vix_symbol if trading.vix_symbol and wanted.include_vix else None
        # The snapshots are read by the very entries whose digests key the cache, so a concurrent
        # ingest cannot slip other bars under this key.
        infos = {}
        for symbol in (*traded, *([with_vix] if with_vix else [])):
            info = store.current(symbol)
            if info is None:
                raise StoreError(f"no gated snapshot of {symbol} in {store.root}: run `tradeflow ingest`")
            infos[symbol] = info
        session = default_calendar().last_completed_session(when)
        per_symbol: dict[str, Features] = {}
        for symbol in traded:

            def build(symbol: str = symbol) -> Features:
                bars = store.read(infos[symbol])
                vix = store.read(infos[with_vix]) if with_vix else None
                return features_for_live(bars, vix, wanted, session=session)

            key = {symbol: infos[symbol].digest, **({with_vix: infos[with_vix].digest} if with_vix else {})}
            per_symbol[symbol] = cache.get_or_build(key, wanted, session, build)
            if on_price is not None:
                on_price(symbol, float(per_symbol[symbol].bars["close"].iloc[-1]))
        if len(traded) == 1:
            return per_symbol[traded[0]]
        return panel_of(per_symbol, Universe.of(*traded), wanted)

    return load


def build_tick_runtime(
    settings: Settings, *, mode: str, broker: str | None, strategy: str | None, now: pd.Timestamp
) -> TickRuntime:
    """The runtime of one tick, owning the broker, the ledger and the learning stores its decider
    opens: use it as `with build_tick_runtime(...) as runtime:`. If building fails half-way, what
    was already opened is closed before the error leaves."""
    check_tick_choices(settings, mode=mode, broker=broker, strategy=strategy)
    trading = settings.trading
    broker_name = broker or trading.broker
    if mode == "live" and broker_name == "sim":
        raise ConfigError("live mode needs a real broker (alpaca or ib)")
    instant = now.to_pydatetime()
    with contextlib.ExitStack() as opened:
        adapter = make_broker(settings, broker_name, clock=lambda: instant)
        opened.callback(adapter.close)
        on_price = None
        if broker_name == "sim":
            # The sim broker fills market orders at the latest price the tick saw.
            def on_price(symbol: str, price: float) -> None:
                adapter.set_price(symbol, price)  # type: ignore[attr-defined]

        name = strategy or trading.strategy
        ledger = open_ledger(settings)
        opened.callback(ledger.close)

        # The champion is loaded once per tick, lazily (a closed market never loads it), for its
        # features and its decision.
        model = functools.cache(lambda: load_champion(settings))

        def decider() -> Strategy:
            if name == "champion":
                return RLPolicyStrategy(model(), name="champion")
            # `runtime` is bound below, before any tick can call this; it closes the rule's learning store.
            if len(trading.symbols) == 1:
                return make_tick_strategy(settings, name, ledger, trading.symbol, own=runtime.own)
            return Sleeves(make_tick_strategy(settings, name, None, "", own=runtime.own), trading.symbols)

        spec: Callable[[], FeatureSpec] | None = None
        if name == "champion":

            def spec() -> FeatureSpec:
                try:
                    return champion_spec(model(), settings)
                except LookupError:  # no or an unusable champion: the decision step reports it (NO_MODEL)
                    return default_trading_spec(settings)

        runtime = TickRuntime(
            calendar=default_calendar(),
            broker=adapter,
            ledger=ledger,
            governor=RiskGovernor(settings.risk),
            decider=decider,
            market_data=gated_market_data(settings, on_price, spec),
            strategy=name,
            symbol=trading.symbol,
            mode=mode,
            run_id=f"tick-{now.tz_convert('UTC'):%Y%m%dT%H%M%SZ}",
            abandon_after=dt.timedelta(seconds=trading.abandon_after_s),
            cash_tolerance=trading.cash_tolerance,
            cash_buffer=trading.cash_buffer,
            rebalance_band=trading.rebalance_band,
            fractional=trading.fractional,
        )
        opened.pop_all()  # the runtime owns (and closes) the broker and the ledger from here on
    return runtime


def champion_health(settings: Settings, ledger: Ledger, session: dt.date, live_window: int = 60) -> Any:
    """The RL champion's health on `session` (None without a champion): feature drift of the last
    `live_window` sessions against its training window, realised against modelled costs of its fills
    (modelled at each session's open, where the backtest fills), and agreement of its live decisions
    with a replay of the policy over the same days.

    The replay feeds the policy the features each live decision saw and the position the previous
    live decision left (its sign; the unrealised P&L input is taken as 0, as the book's fill prices
    are not replayed), so a disagreement means the model or its inputs changed, not the book."""
    from tradeflow.features import build_features
    from tradeflow.learning.health import assess_health

    try:
        model = load_champion(settings)
    except ChampionUnusableError:
        raise  # a damaged champion is reported, never read as "no champion"
    except NoChampionError:
        return None
    trading = settings.trading
    store = SnapshotStore(settings.snapshots_dir)
    bars = store.load(trading.symbol)
    if bars is None:
        return None  # nothing ingested yet: no live window to assess
    vix = store.load(trading.vix_symbol) if trading.vix_symbol else None
    features = build_features(bars, vix, champion_spec(model, settings))
    frame = features.frame
    days = pd.to_datetime(frame["session"]).dt.date
    start, end = (pd.Timestamp(d).date() for d in model.meta["train_range"])
    train = frame[(days >= start) & (days <= end)]
    live = frame[(days > end) & (days <= session)].tail(live_window)

    decisions = [d for d in ledger.decisions("champion", trading.symbol) if d.session <= session]
    live_targets = pd.Series({d.session: d.target for d in decisions}, dtype=float)
    replayed: dict[dt.date, float] = {}
    position = 0.0
    for d in decisions:
        row = int(np.searchsorted(np.asarray(features.sessions), np.datetime64(d.session), side="left")) - 1
        if row + 1 >= model.env_config.window:
            held = Position(trading.symbol, Decimal(int(np.sign(position))), Decimal(0))
            book = Book({trading.symbol: held}, Decimal(1))
            decision = RLPolicyStrategy(model, name="champion").decide(features.slice(0, row + 1), book)
            replayed[d.session] = decision.weight(trading.symbol)
        position = d.target
    orders = {o.client_order_id: o for o in ledger.orders() if o.strategy == "champion"}
    fills = pd.DataFrame(
        [
            (orders[e.client_order_id].session, e.side.value, float(e.qty), float(e.price), float(e.commission))
            for e in ledger.fills()
            if e.client_order_id in orders
        ],
        columns=["session", "side", "qty", "price", "commission"],
    )
    opens = pd.Series(bars["open"].to_numpy(dtype=float), index=pd.to_datetime(bars["session"]).dt.date)
    return assess_health(
        train_features=train,
        live_features=live,
        fills=fills,
        reference=opens,
        cost_model=model.cost,
        live_targets=live_targets,
        replay_targets=pd.Series(replayed, dtype=float),
    )


def review_session(settings: Settings, session: dt.date, now: dt.datetime) -> tuple[Any, Path]:
    """The daily learning review of `session` with this installation's ledger, learning store,
    champion health and optional LLM: one wiring for the flow's task and `tradeflow review`."""
    from tradeflow.learning.daily_review import run_review, write_report
    from tradeflow.learning.notes import LlmSettings
    from tradeflow.learning.store import LearningStore

    learning = settings.learning
    llm = LlmSettings(learning.llm_api_key, learning.llm_base_url, learning.llm_model) if learning.llm_api_key else None
    with open_ledger(settings) as ledger, LearningStore(settings.learning_path) as store:
        health = champion_health(settings, ledger, session)
        result = run_review(ledger, store, session, health=health, llm=llm, min_trades=learning.min_trades, now=now)
    return result, write_report(result, settings.reports_dir)
