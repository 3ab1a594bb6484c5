"""The `tradeflow` command line: the pipeline's steps by hand, each with --json for machines.

Exit codes: 0 success, 2 bad input (one line on stderr, never a traceback), 3 the data-quality gate
failed, 1 an unexpected internal error. The CLI calls the library directly (no Prefect start-up
cost); `prefect deployment run ...` is the orchestrated path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pandas as pd
import typer
from pydantic import ValidationError

from tradeflow import __version__
from tradeflow.calendar import default_calendar, parse_date_option, to_utc
from tradeflow.config import Settings, get_settings
from tradeflow.domain.instruments import CalendarName
from tradeflow.errors import ConfigError, DataQualityError, InputError, TradeflowError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_GATE = 0, 1, 2, 3

app = typer.Typer(
    name="tradeflow",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Gated market data, strategies and NYSE-hours trading. Every command takes --json.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TradeflowError(f"bad configuration: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    _check_dir_path(settings.data_dir, "data directory (TRADEFLOW_DATA_DIR)")
    return settings


def _check_dir_path(path: Path, what: str) -> None:
    """Refuse a directory path that exists as a file, or lies under one: every command would
    otherwise fail deep inside a store with NotADirectoryError."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({candidate} is a file)"
                raise ConfigError(f"{what} {path} is not a directory{where}")
            return


def _date(option: str, value: str | None) -> str | None:
    """A date option checked up front and passed on as YYYY-MM-DD (see parse_date_option)."""
    day = parse_date_option(option, value)
    return None if day is None else str(day.date())


def _window(
    start: str | None, end: str | None, now: pd.Timestamp, names: tuple[str, str] = ("--start", "--end")
) -> tuple[str | None, str | None]:
    """A historical window checked before any work: dates as YYYY-MM-DD, a start not after the end
    and not after the last completed session (no source can serve a window that has not happened)."""
    first, last = _date(names[0], start), _date(names[1], end)
    if first is not None and last is not None and first > last:
        raise InputError(f"{names[0]} {first} is after {names[1]} {last}: the window holds no session")
    completed = default_calendar().last_completed_session(now)
    if first is not None and pd.Timestamp(first) > completed:
        raise InputError(f"{names[0]} {first} is after the last completed session ({completed.date()})")
    return first, last


def _writable_out(out: str) -> Path:
    """--out checked before any work: not a directory, under a directory we may write to."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"--out {path} is a directory; give a file name")
    _check_dir_path(path.parent, f"--out {path}: its folder")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise InputError(f"--out {path}: {existing} is not writable")
    return path


def _now(now: str | None) -> pd.Timestamp:
    # The only wall-clock read on the CLI path; --now replays a past instant.
    return to_utc(now) if now else pd.Timestamp.now(tz="UTC")


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def _gate_failed(exc: DataQualityError, as_json: bool) -> NoReturn:
    report = exc.report
    if as_json:
        payload = report.to_dict()
        payload["status"] = exc.status
        if exc.quarantined:
            payload["quarantined"] = str(exc.quarantined)
        _emit(payload)
    else:
        typer.echo(f"{exc.status}: {report.summary_line()}", err=True)
        for f in report.failures[:20]:
            where = " ".join(x for x in (f.symbol, f.session) if x)
            typer.echo(f"  - {f.check} {where}: {f.detail}", err=True)
        if report.failure_count > 20:
            typer.echo(f"  ... and {report.failure_count - 20} more", err=True)
        if exc.quarantined:
            typer.echo(f"quarantined: {exc.quarantined}", err=True)
    raise typer.Exit(EXIT_GATE)


@app.command()
def ingest(
    source: Annotated[str, typer.Option(help="sample|csv|parquet|yfinance|alpaca|ib")] = "sample",
    symbols: Annotated[str, typer.Option(help="Comma-separated, e.g. SPY,^VIX")] = "SPY,^VIX",
    start: Annotated[str | None, typer.Option(help="First session (YYYY-MM-DD) of a first ingest.")] = None,
    end: Annotated[str | None, typer.Option(help="Last session to ingest (default: last completed).")] = None,
    path: Annotated[str | None, typer.Option(help="File or directory for csv/parquet sources.")] = None,
    now: Annotated[str | None, typer.Option(help="Pretend it is this instant (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch bars, prove them clean with the quality gate, store an immutable snapshot."""
    from tradeflow.data.ingest import IngestRequest
    from tradeflow.data.ingest import ingest as run_ingest

    start, end = _date("--start", start), _date("--end", end)
    settings = _settings()
    request = IngestRequest(source=source, symbols=tuple(symbols.split(",")), start=start, end=end, path=path)
    try:
        result = run_ingest(request, settings, _now(now))
    except DataQualityError as exc:
        _gate_failed(exc, as_json)
    if as_json:
        _emit(result.to_dict())
    else:
        typer.echo(result.summary_text())


@app.command()
def validate(
    path: Annotated[str, typer.Argument(help="A CSV or Parquet file of daily bars.")],
    symbol: Annotated[str | None, typer.Option(help="Symbol of the file (default: file name).")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Judge freshness against this session (default: last completed).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the quality gate on a file: exit 0 when it passes, 3 when it fails."""
    from tradeflow.adapters.files.data import read_bar_file
    from tradeflow.calendar import resolve_calendar
    from tradeflow.data.bars import check_symbol
    from tradeflow.data.quality import GateContext, run_gate
    from tradeflow.data.quality.known_events import KnownEvents

    settings = _settings()
    sym = check_symbol(symbol) if symbol else None
    # A crypto pair is judged by its own 24/7 calendar (sessions, placeholders, freshness).
    cal = resolve_calendar(sym, default_calendar()) if sym else default_calendar()
    as_of_day = parse_date_option("--as-of", as_of)
    expected = as_of_day if as_of_day is not None else cal.last_completed_session(_now(None))
    if not cal.is_session(expected):
        expected = cal.previous_session(expected)
    frame = read_bar_file(path, sym, cal, max_bytes=settings.quality.max_input_bytes)
    symbols = tuple(sorted(frame["symbol"].unique())) if len(frame) else ((sym,) if sym else ())
    ctx = GateContext(
        calendar=cal,
        as_of=expected,
        stored=None,
        settings=settings.quality,
        known_events=KnownEvents.load(settings.quality.known_events_file),
        docs_dir=None,
        symbols=symbols,
    )
    report = run_gate(frame, ctx)
    dropped = frame.attrs.get("dropped_placeholders", 0)
    if dropped:
        report.notes.append(f"ignored {dropped} all-null placeholder rows on non-session dates")
    if as_json:
        _emit(report.to_dict())
    else:
        typer.echo(report.to_markdown())
    raise typer.Exit(EXIT_OK if report.passed else EXIT_GATE)


@app.command()
def calendar(
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD).")],
    symbol: Annotated[
        str | None, typer.Option(help="Use this symbol's calendar: BTC/USD trades every day (default: NYSE).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sessions in a range with open/close times (UTC), early closes and closed weekdays: the NYSE's,
    or the 24/7 calendar of a crypto --symbol."""
    from tradeflow.calendar import calendar_for
    from tradeflow.data.bars import check_symbol

    cal = calendar_for(check_symbol(symbol)) if symbol else default_calendar()
    lo, hi = parse_date_option("--start", start), parse_date_option("--end", end)
    if hi < lo:
        raise TradeflowError(f"--end {hi.date()} is before --start {lo.date()}")
    cal.check_covered(lo, hi)
    sessions = cal.session_times(lo, hi)
    closed = cal.holidays(lo, hi)
    if as_json:
        _emit(
            {
                "calendar": str(cal.name),
                "sessions": [
                    {
                        "session": str(s.session.date()),
                        "open": s.open.isoformat(),
                        "close": s.close.isoformat(),
                        "early_close": s.early_close,
                    }
                    for s in sessions
                ],
                "closed_weekdays": [str(d.date()) for d in closed],
            }
        )
        return
    label = "NYSE" if cal.name is CalendarName.XNYS else f"{cal.name} ({symbol})"
    typer.echo(f"{label} {lo.date()} .. {hi.date()}: {len(sessions)} sessions (times in UTC)")
    for s in sessions:
        flag = "  early close" if s.early_close else ""
        typer.echo(f"  {s.session.date()}  {s.open:%H:%M} - {s.close:%H:%M}{flag}")
    if closed:
        typer.echo("closed weekdays: " + ", ".join(str(d.date()) for d in closed))


def _ingest_for(data: Any, settings: Settings, now: pd.Timestamp, with_vix: bool) -> None:
    """Make the store reach the end of a research command's window: only symbols whose snapshot
    ends earlier are fetched and gated; the window itself is then cut from the store (load_dataset)."""
    from tradeflow.data.ingest import IngestRequest, ingest_missing

    symbols = (data.symbol, data.vix_symbol) if with_vix and data.vix_symbol else (data.symbol,)
    request = IngestRequest(source=data.source, symbols=symbols, end=data.end, path=data.path)
    ingest_missing(request, settings, now)


def _research_config(
    source: str, symbol: str, vix: str | None, path: str | None, end: str | None, config: str | None = None
) -> Any:
    from tradeflow.research.config import TrainSpyConfig

    base = TrainSpyConfig.load(config) if config else TrainSpyConfig()
    raw = base.model_dump(mode="json")
    raw["data"] = {"source": source, "symbol": symbol, "vix_symbol": vix, "path": path, "start": None, "end": end}
    if vix is None:
        raw["features"] = {**raw["features"], "include_vix": False}
    return TrainSpyConfig.from_dict(raw, origin="command line")


def _gated_features(
    source: str,
    symbols: str,
    vix: str,
    path: str | None,
    window: tuple[str | None, str | None],
    instant: pd.Timestamp,
    as_json: bool,
) -> tuple[Settings, Any, Any, int]:
    """The one-symbol features `backtest` starts from (_gated_panel's data step), with its settings
    and research config. Also the row of the window's first session."""
    from tradeflow.data.bars import parse_symbols

    syms = parse_symbols(symbols)
    if len(syms) != 1:
        raise TradeflowError("one traded symbol at a time (the VIX comes from --vix)")
    settings, config, panel, first = _gated_panel(source, symbols, vix, path, window, instant, as_json)
    return settings, config, panel.by_symbol[syms[0]], first


def _first_row(sessions: Any, window: tuple[str | None, str | None]) -> int:
    """The row of the window's first session; InputError when the features end before it."""
    start, end = window
    first = 0 if start is None else int((sessions < pd.Timestamp(start).to_datetime64()).sum())
    if first == len(sessions):
        raise InputError(
            f"no session in the window {start} .. {end or '(last)'}: the stored features end "
            f"{pd.Timestamp(sessions[-1]).date()}"
        )
    return first


def _gated_panel(
    source: str,
    symbols: str,
    vix: str,
    path: str | None,
    window: tuple[str | None, str | None],
    instant: pd.Timestamp,
    as_json: bool,
) -> tuple[Settings, Any, Any, int]:
    """The features `features` and `backtest` start from: every symbol (and the VIX) brought up to
    the window's end through the gate (fetching only the sessions the store lacks), cut from the
    stored, gated bars up to that end (history before --start warms the indicators up), built into
    one panel on the symbols' common sessions (features/panel.py). Also the settings, the research
    config (costs, capital, spec) and the row of the window's first session."""
    from tradeflow.data.bars import check_symbol, parse_symbols
    from tradeflow.data.ingest import IngestRequest, ingest_missing
    from tradeflow.domain.instruments import Universe
    from tradeflow.features import build_panel
    from tradeflow.research.walkforward import cut_stored_bars

    syms = parse_symbols(symbols)
    vix_symbol = check_symbol(vix) if vix else None
    settings = _settings()
    config = _research_config(source, syms[0], vix_symbol, path, window[1])
    request = IngestRequest(
        source=source, symbols=(*syms, *([vix_symbol] if vix_symbol else [])), end=window[1], path=path
    )
    try:
        ingest_missing(request, settings, instant)
    except DataQualityError as exc:
        _gate_failed(exc, as_json)
    frames, _ = cut_stored_bars(settings, request.symbols, None, window[1])
    vix_bars = frames[vix_symbol] if vix_symbol else None
    panel = build_panel({s: frames[s] for s in syms}, vix_bars, Universe.of(*syms), config.feature_spec)
    return settings, config, panel, _first_row(panel.sessions, window)


@app.command()
def features(
    out: Annotated[str, typer.Option(help="Parquet file to write.")],
    source: Annotated[str, typer.Option(help="sample|csv|parquet|yfinance|alpaca|ib")] = "sample",
    symbols: Annotated[
        str, typer.Option(help="Comma-separated universe, e.g. SPY,AAPL (one row per session and symbol).")
    ] = "SPY",
    vix: Annotated[str, typer.Option(help="Volatility index for the VIX features ('' to leave them out).")] = "^VIX",
    path: Annotated[str | None, typer.Option(help="File or directory for csv/parquet sources.")] = None,
    start: Annotated[str | None, typer.Option(help="First session to write (history before it warms up).")] = None,
    end: Annotated[str | None, typer.Option(help="Last session.")] = None,
    now: Annotated[str | None, typer.Option(help="Pretend it is this instant (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest through the quality gate, build the causal features, write them to Parquet.

    One symbol writes `session` + the spec's columns; several write one row per (session, symbol)
    with a `symbol` column, on the sessions common to every symbol."""
    from tradeflow.features import write_features, write_panel

    instant = _now(now)
    window = _window(start, end, instant)
    out_path = _writable_out(out)
    _, _, panel, first = _gated_panel(source, symbols, vix, path, window, instant, as_json)
    panel = panel.slice(first, len(panel))
    try:
        if len(panel.symbols) == 1:
            written = write_features(panel.by_symbol[panel.symbols[0]], out_path)
        else:
            written = write_panel(panel, out_path)
    except OSError as exc:  # e.g. the disk filled up or permissions changed since the check
        raise InputError(f"--out {out_path}: cannot write: {exc.strerror or exc}") from None
    sessions = panel.sessions
    info: dict[str, Any] = {
        "path": str(written),
        "rows": len(panel.frame),
        "symbols": list(panel.symbols),
        "first_session": str(pd.Timestamp(sessions[0]).date()) if len(sessions) else None,
        "last_session": str(pd.Timestamp(sessions[-1]).date()) if len(sessions) else None,
        "features": list(panel.spec.names),
        "spec_version": panel.spec.version,
        "spec_digest": panel.spec.digest,
    }
    if as_json:
        _emit(info)
    else:
        of = f" of {','.join(panel.symbols)}" if len(panel.symbols) > 1 else ""
        typer.echo(
            f"wrote {info['rows']} rows x {len(info['features'])} features{of} "
            f"({info['first_session']} .. {info['last_session']}, spec {info['spec_version']}) to {written}"
        )


@app.command()
def backtest(
    strategy: Annotated[str, typer.Option(help="buy_and_hold|sma|rsi|macd|mean_reversion|ensemble|champion")],
    source: Annotated[str, typer.Option(help="sample|csv|parquet|yfinance|alpaca|ib")] = "sample",
    symbols: Annotated[
        str, typer.Option(help="The traded symbol, or several (SPY,AAPL,MSFT) for a portfolio.")
    ] = "SPY",
    vix: Annotated[str, typer.Option(help="Volatility index for the VIX features ('' to leave them out).")] = "^VIX",
    path: Annotated[str | None, typer.Option(help="File or directory for csv/parquet sources.")] = None,
    start: Annotated[str | None, typer.Option(help="First session of the backtest.")] = None,
    end: Annotated[str | None, typer.Option(help="Last session of the backtest.")] = None,
    now: Annotated[str | None, typer.Option(help="Pretend it is this instant (ISO with timezone).")] = None,
    engine: Annotated[
        str, typer.Option(help="vector (fast) or replay (the real tick, day by day, on the sim broker).")
    ] = "vector",
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy net of costs (dividends included); --json prints the metrics."""
    from tradeflow.backtest.engine import backtest as run_backtest
    from tradeflow.backtest.metrics import to_jsonable
    from tradeflow.sim import SizingRules
    from tradeflow.strategies import strategy_names

    if engine not in ("vector", "replay"):
        raise TradeflowError(f"unknown engine {engine!r}; expected vector or replay")
    names = (*strategy_names(), "ensemble", "champion")
    if strategy not in names:
        raise TradeflowError(f"unknown strategy {strategy!r}; expected one of {', '.join(names)}")
    instant = _now(now)
    start, end = _window(start, end, instant)
    from tradeflow.data.bars import parse_symbols

    universe = tuple(parse_symbols(symbols))
    if len(universe) > 1:
        _backtest_portfolio(strategy, universe, source, vix, path, (start, end), instant, engine, as_json)
        return
    settings, config, feats, _ = _gated_features(source, symbols, vix, path, (start, end), instant, as_json)
    if strategy == "champion":
        from tradeflow.registry import ModelRegistry
        from tradeflow.rl.artifact import load_artifact
        from tradeflow.rl.policy import RLPolicyStrategy

        champ = ModelRegistry.for_data_dir(settings.data_dir).champion()
        if champ is None:
            raise TradeflowError("there is no champion model yet: run `tradeflow train` (or promote one)")
        strat: Any = RLPolicyStrategy(load_artifact(champ.path), cost=config.cost)
    else:
        strat = _backtest_strategy(strategy, config, settings)
    # Both engines size as the trading path does (whole shares, the settings' cash buffer and band:
    # sim.sizing), so they agree; the governor's limits apply as live (a curve live would have HALTED
    # is HALTED here too).
    trading = settings.trading
    rules = SizingRules(fractional=False, cash_buffer=trading.cash_buffer, rebalance_band=trading.rebalance_band)
    if engine == "replay":
        from tradeflow.core.replay import replay

        first_session = pd.Timestamp(feats.sessions[1]).date().isoformat()
        replayed = replay(
            feats,
            strat,
            start or first_session,
            end or pd.Timestamp(feats.sessions[-1]).date().isoformat(),
            cost=config.cost,
            capital=config.capital,
            cash_buffer=trading.cash_buffer,
            limits=settings.risk,
        )
        equity = replayed.equity
        metrics = to_jsonable(replayed.metrics(float(feats.market().close[-1])))
        # The breakers the tick's governor fired, on the tick that saw them fire.
        breakers = [{"session": r.session, **b} for r in replayed.reports for b in r.breakers]
    else:
        result = run_backtest(strat, feats, config.cost, config.capital, start, end, limits=settings.risk, rules=rules)
        equity = result.equity
        metrics = to_jsonable(result.metrics)
        breakers = [event.to_dict() for event in result.breakers]
    if as_json:
        _emit({**metrics, "engine": engine, "breakers": breakers})
        return
    first, last = equity.index[0].date(), equity.index[-1].date()
    typer.echo(f"{strategy} on {feats.symbol} {first} .. {last}, net of costs, dividends included:")
    for key, value in metrics.items():
        typer.echo(f"  {key:<14} {value}")
    for event in breakers:
        typer.echo(f"  breaker: {event['breaker']} -> {event['state']} ({event['session']}): {event['detail']}")


def _backtest_strategy(name: str, config: Any, settings: Settings) -> Any:
    """A rule by name, or `ensemble`: the registered rules voted by their out-of-sample evidence
    (strategies/ensemble.py). The ensemble is not in the rule registry (`make_strategy`): its evidence
    is judged with the research config's costs and capital, the governor's limits and the promotion
    policy, which a rule's parameters do not carry."""
    from tradeflow.strategies import Ensemble, EnsembleConfig, make_strategy

    if name == "ensemble":
        return Ensemble.of_rules(
            cost=config.cost,
            capital=config.capital,
            limits=settings.risk,
            config=EnsembleConfig(policy=config.promotion),
        )
    return make_strategy(name)


def _backtest_portfolio(
    strategy: str,
    universe: tuple[str, ...],
    source: str,
    vix: str,
    path: str | None,
    window: tuple[str | None, str | None],
    instant: pd.Timestamp,
    engine: str,
    as_json: bool,
) -> None:
    """`backtest --symbols A,B,C`: the rule in equal sleeves over the universe (strategies.Sleeves), by
    the vector engine (backtest/portfolio.py) or the replay of the real tick over the universe."""
    from tradeflow.backtest.metrics import to_jsonable
    from tradeflow.backtest.portfolio import backtest_portfolio
    from tradeflow.sim import SizingRules
    from tradeflow.strategies import Sleeves

    if strategy == "champion":
        raise TradeflowError("the champion decides for the universe it was trained on (one symbol): pass --symbols X")
    settings, config, panel, _ = _gated_panel(source, ",".join(universe), vix, path, window, instant, as_json)
    trading = settings.trading
    rules = SizingRules(fractional=False, cash_buffer=trading.cash_buffer, rebalance_band=trading.rebalance_band)
    start, end = window
    rule = _backtest_strategy(strategy, config, settings)
    if engine == "replay":
        from tradeflow.core.replay import replay

        replayed = replay(
            panel,
            Sleeves(rule, universe),
            start or pd.Timestamp(panel.sessions[1]).date().isoformat(),
            end or pd.Timestamp(panel.sessions[-1]).date().isoformat(),
            cost=config.cost,
            capital=config.capital,
            cash_buffer=trading.cash_buffer,
            limits=settings.risk,
        )
        closes = {s: float(m.close[-1]) for s, m in panel.market().items()}
        equity = replayed.equity
        metrics = replayed.metrics(closes)
        payload = to_jsonable({**metrics, "symbols": list(universe), "engine": engine})
    else:
        result = backtest_portfolio(
            rule, panel, config.cost, config.capital, start, end, limits=settings.risk, rules=rules
        )
        equity, metrics = result.equity, result.metrics
        payload = to_jsonable({**result.to_json(), "engine": engine})
    if as_json:
        _emit(payload)
        return
    first, last = equity.index[0].date(), equity.index[-1].date()
    typer.echo(f"{strategy} in equal sleeves over {', '.join(universe)} {first} .. {last}, net of costs ({engine}):")
    for key, value in to_jsonable(metrics).items():
        typer.echo(f"  {key:<14} {value}")
    for symbol, figures in payload.get("per_symbol", {}).items():
        typer.echo(
            f"  {symbol:<6} P&L {figures['pnl']:,.0f} ({figures['contribution']:+.1%} of capital), "
            f"{figures['trades']} trade(s), final weight {figures['final_weight']:.1%}"
        )
    for event in payload.get("breakers", []):
        typer.echo(f"  breaker: {event['breaker']} -> {event['state']} ({event['session']}): {event['detail']}")


@app.command()
def train(
    config: Annotated[str | None, typer.Option(help="A TrainSpyConfig YAML/JSON file.")] = None,
    replay: Annotated[str | None, typer.Option(help="Re-run the config of an earlier run's manifest.json.")] = None,
    start: Annotated[str | None, typer.Option(help="First session of the data window (overrides data.start).")] = None,
    end: Annotated[str | None, typer.Option(help="Last session of the data window (overrides data.end).")] = None,
    now: Annotated[str | None, typer.Option(help="Pretend it is this instant (ISO with timezone).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per trained model.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """train-spy by hand: ingest, walk-forward PPO against the baselines, register, promotion gate."""
    from tradeflow.research.config import TrainSpyConfig
    from tradeflow.research.pipeline import replay_config, run_train_spy

    if config and replay:
        raise TradeflowError("give --config or --replay, not both")
    if replay and (start or end):
        raise InputError("--replay re-runs its manifest's own data window; leave out --start and --end")
    instant = _now(now)
    window = _window(start, end, instant)
    cfg = replay_config(replay) if replay else (TrainSpyConfig.load(config) if config else TrainSpyConfig())
    if start or end:
        raw = cfg.model_dump(mode="json")
        raw["data"] = {**raw["data"], **({"start": window[0]} if start else {}), **({"end": window[1]} if end else {})}
        cfg = TrainSpyConfig.from_dict(raw, origin="command line")
    _window(cfg.data.start, cfg.data.end, instant, names=("data.start", "data.end"))
    settings = _settings()
    try:
        _ingest_for(cfg.data, settings, instant, with_vix=cfg.feature_spec.include_vix)
    except DataQualityError as exc:
        _gate_failed(exc, as_json)
    result = run_train_spy(cfg, settings, instant, progress=progress)
    if as_json:
        _emit(result.to_dict())
    else:
        typer.echo(result.summary_text())


@app.command()
def tick(
    mode: Annotated[str, typer.Option(help="paper (default) or live (needs the live opt-in).")] = "paper",
    broker: Annotated[str | None, typer.Option(help="sim|alpaca|ib (default: settings).")] = None,
    strategy: Annotated[str | None, typer.Option(help="champion or a rule name (default: settings).")] = None,
    now: Annotated[str | None, typer.Option(help="The tick's instant (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One trading tick: calendar, reconcile, gated data, decide, risk, idempotent submit, ledger."""
    from tradeflow.bootstrap import build_tick_runtime, check_tick_choices
    from tradeflow.core.tick import run_tick, skipped_busy, tick_lock

    instant = _now(now)
    settings = _settings()
    # Before the lock: a refused tick must not even create the ledger's directory.
    check_tick_choices(settings, mode=mode, broker=broker, strategy=strategy)
    with tick_lock(settings.ledger_path.parent) as held:
        if not held:
            report = skipped_busy(instant, mode, strategy or settings.trading.strategy)
        else:
            with build_tick_runtime(settings, mode=mode, broker=broker, strategy=strategy, now=instant) as runtime:
                report = run_tick(runtime, instant)
    if as_json:
        _emit(report.to_dict())
    else:
        typer.echo(report.to_markdown())


def _ledger() -> Any:
    from tradeflow.bootstrap import open_ledger

    return open_ledger(_settings())


@app.command()
def stop(
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "manual stop",
    now: Annotated[str | None, typer.Option(help="Time of the stop (ISO with timezone).")] = None,
) -> None:
    """The kill switch: from now on only cancels and position-reducing orders pass."""
    from tradeflow.core.tick import stop_trading

    ledger = _ledger()
    try:
        stop_trading(ledger, reason, _now(now))
    finally:
        ledger.close()
    typer.echo(f"trading HALTED (kill switch): {reason}")


@app.command()
def resume(
    operator: Annotated[str, typer.Option(help="Who resumes (recorded in the audit log).")],
    reason: Annotated[str, typer.Option(help="Why it is safe to resume.")] = "acknowledged",
    broker: Annotated[
        str | None, typer.Option(help="sim|alpaca|ib, asked for today's equity (default: settings).")
    ] = None,
    now: Annotated[str | None, typer.Option(help="Time of the resume (ISO with timezone).")] = None,
) -> None:
    """Clear the kill switch or a HALTED / drift state by the risk governor's rule: audited, and the
    equity peak restarts at the broker's equity now. A daily-loss stop holds for its session."""
    from tradeflow.bootstrap import make_broker
    from tradeflow.core.tick import resume_trading
    from tradeflow.domain import TradingState
    from tradeflow.errors import BrokerUnavailable
    from tradeflow.risk import RiskGovernor

    settings = _settings()
    instant = _now(now)
    ledger = _ledger()
    try:
        if ledger.trading_state().state is TradingState.ACTIVE:
            typer.echo("trading is already ACTIVE")
            return
        adapter = make_broker(settings, broker or settings.trading.broker, clock=instant.to_pydatetime)
        try:
            equity = adapter.account().equity
        except BrokerUnavailable as exc:
            raise TradeflowError(f"cannot ask the broker for today's equity, not resuming: {exc}") from None
        change = resume_trading(
            ledger, RiskGovernor(settings.risk), equity, operator=operator, reason=reason, now=instant
        )
    finally:
        ledger.close()
    if change.next_state is change.previous_state:
        raise TradeflowError(change.detail)
    typer.echo(f"trading {change.next_state} again (was {change.previous_state}): {change.detail}")


@app.command()
def adopt(
    operator: Annotated[str, typer.Option(help="Who adopts (recorded in the audit log).")],
    reason: Annotated[str, typer.Option(help="Why the broker's state is right (recorded in the audit log).")],
    broker: Annotated[str | None, typer.Option(help="sim|alpaca|ib (default: settings).")] = None,
    now: Annotated[str | None, typer.Option(help="Time of the adoption (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Take the broker's orders, fills, positions and cash into a ledger that lost them (audited).

    A tick refuses to trade (BLOCKED_STATE_UNKNOWN) while the broker shows tradeflow orders or
    positions the ledger does not know. Check the broker first; adopting does not lift a kill switch
    or HALTED state (that is `tradeflow resume`)."""
    import datetime as dt

    from tradeflow.bootstrap import make_broker, open_ledger
    from tradeflow.core.reconcile import adopt_broker_state
    from tradeflow.core.tick import tick_lock

    settings = _settings()
    instant = _now(now).to_pydatetime()
    adapter = make_broker(settings, broker or settings.trading.broker, clock=lambda: instant)
    with tick_lock(settings.ledger_path.parent) as held:
        if not held:
            raise TradeflowError("a tick is running: adopt when it has finished")
        ledger = open_ledger(settings)
        try:
            view = adopt_broker_state(
                adapter,
                ledger,
                instant,
                operator=operator,
                reason=reason,
                abandon_after=dt.timedelta(seconds=settings.trading.abandon_after_s),
            )
            state = ledger.trading_state()
            payload = {
                "adopted": True,
                "positions": {s: str(p.qty) for s, p in ledger.positions().items() if p.qty},
                "cash": str(ledger.cash()),
                "orders": len(ledger.orders()),
                "trading_state": str(state.state),
                "reason": state.reason,
                "notes": view.notes,
            }
        finally:
            ledger.close()
    if as_json:
        _emit(payload)
        return
    typer.echo(f"adopted the broker's state: positions {payload['positions'] or 'flat'}, cash {payload['cash']}")
    typer.echo(f"trading state stays {payload['trading_state']} ({payload['reason']})")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Positions, cash, trading state and the last tick, from the ledger."""
    ledger = _ledger()
    try:
        state = ledger.trading_state()
        last = ledger.last_tick()
        payload: dict[str, Any] = {
            "trading_state": str(state.state),
            "reason": state.reason,
            "since": state.since.isoformat() if state.since else None,
            "positions": {s: {"qty": str(p.qty), "avg_price": str(p.avg_price)} for s, p in ledger.positions().items()},
            "cash": str(ledger.cash()),
            "open_orders": [o.client_order_id for o in ledger.open_orders()],
            "last_tick": None if last is None else {"key": last.key, "status": last.status},
        }
    finally:
        ledger.close()
    if as_json:
        _emit(payload)
        return
    typer.echo(f"trading state: {payload['trading_state']} ({payload['reason']})")
    typer.echo(f"cash: {payload['cash']}")
    for sym, pos in payload["positions"].items():
        typer.echo(f"  {sym}: {pos['qty']} @ {pos['avg_price']}")
    typer.echo(f"open orders: {', '.join(payload['open_orders']) or 'none'}")
    typer.echo(f"last tick: {payload['last_tick']}")


models_app = typer.Typer(no_args_is_help=True, help="The model registry: versions, champion, promotions.")
app.add_typer(models_app, name="models")


def _registry() -> Any:
    from tradeflow.registry import ModelRegistry

    return ModelRegistry.for_data_dir(_settings().data_dir)


def _version_row(mv: Any, champion: str | None) -> dict[str, Any]:
    sharpe = mv.metrics.get("sharpe")
    return {
        "version": mv.version,
        "created_at": mv.created_at,
        "champion": mv.version == champion,
        "sharpe": sharpe,
        "data_hash": str(mv.lineage.get("data_hash", ""))[:12],
        "seed": mv.lineage.get("seed"),
        "path": str(mv.path),
    }


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every registered model version, the champion marked."""
    reg = _registry()
    champ = reg.champion()
    rows = [_version_row(mv, champ.version if champ else None) for mv in reg.list_versions()]
    if as_json:
        _emit({"champion": champ.version if champ else None, "versions": rows})
        return
    if not rows:
        typer.echo("no models registered yet (run `tradeflow train`)")
        return
    for r in rows:
        mark = "*" if r["champion"] else " "
        sharpe = f"{r['sharpe']:.2f}" if isinstance(r["sharpe"], float) else "-"
        typer.echo(
            f"{mark} {r['version']}  {r['created_at']}  sharpe {sharpe}  data {r['data_hash']}  seed {r['seed']}"
        )


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="Version id, its prefix (v0007), or 'champion'.")] = "champion",
    as_json: JsonOpt = False,
) -> None:
    """One version's metrics, lineage and files, and the decisions that concerned it."""
    reg = _registry()
    if version == "champion":
        mv = reg.champion()
        if mv is None:
            raise TradeflowError("there is no champion yet")
    else:
        mv = reg.get(version)
    decisions = [d.to_dict() for d in reg.decisions() if mv.version in (d.challenger, d.champion)]
    payload = mv.to_dict() | {"path": str(mv.path), "decisions": decisions}
    if as_json:
        _emit(payload)
        return
    typer.echo(json.dumps(payload, indent=2, default=str))


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version id or prefix to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the champion history).")],
    now: Annotated[str | None, typer.Option(help="Decision time (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a version the champion by hand (audited: the reason and time are recorded)."""
    mv = _registry().set_champion(version, reason=f"manual: {reason}", decided_at=_now(now).isoformat())
    if as_json:
        _emit({"champion": mv.version})
    else:
        typer.echo(f"champion is now {mv.version}")


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded in the champion history).")],
    now: Annotated[str | None, typer.Option(help="Decision time (ISO with timezone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Return to the previous champion."""
    mv = _registry().rollback(reason=f"manual: {reason}", decided_at=_now(now).isoformat())
    if as_json:
        _emit({"champion": mv.version if mv else None})
    else:
        typer.echo(f"champion is now {mv.version}" if mv else "no champion remains")


@app.command()
def review(
    session: Annotated[
        str | None, typer.Option(help="Session to review (YYYY-MM-DD); default: the last completed.")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="The present instant (ISO with timezone); default: the clock.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The daily learning review: trades, patterns, experiments (and governed changes), model health."""
    from tradeflow.bootstrap import review_session

    requested = parse_date_option("--session", session)
    settings = _settings()
    instant = _now(now)
    cal = default_calendar()
    last = cal.last_completed_session(instant)
    if requested is not None:
        if not cal.is_session(requested):
            raise InputError(f"{requested.date()} is not an NYSE session")
        if requested > last:
            # Its trades and closes are not final yet: a report now would be a wrong one on record.
            raise InputError(
                f"--session {requested.date()} has not completed at {instant.isoformat()}: "
                f"the last completed session is {last.date()}"
            )
    day = (last if requested is None else requested).date()
    result, report = review_session(settings, day, instant.to_pydatetime())
    if as_json:
        _emit({**result.to_dict(), "report": str(report)})
        return
    s = result.summary
    typer.echo(f"review {day}: {s.get('count', 0)} trades so far, {len(result.day_trades)} closed today")
    for action in result.actions:
        typer.echo(f"  {action.kind}: {action.strategy}.{action.param} — {action.reasoning}")
    for note in result.notes:
        typer.echo(f"  [{note.severity}] {note.text}")
    typer.echo(f"report: {report}")


@app.command("config")
def show_config(as_json: JsonOpt = False) -> None:
    """Print the effective settings (environment and defaults); secrets are shown as REDACTED."""
    dump = _settings().redacted()
    if as_json:
        _emit(dump)
        return

    def lines(tree: dict[str, Any], prefix: str = "") -> list[str]:
        out: list[str] = []
        for key, value in tree.items():
            out += lines(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key} = {value}"]
        return out

    typer.echo("\n".join(lines(dump)))


@app.command()
def version() -> None:
    """Print the tradeflow version."""
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line on stderr and a non-zero exit for every expected failure."""
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except DataQualityError as exc:  # pragma: no cover - commands handle it themselves
        typer.echo(f"{exc.status}: {exc}", err=True)
        return EXIT_GATE
    except TradeflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_INPUT
    except Exception as exc:  # usage errors and the unexpected
        # typer 0.29 vendors click; its usage errors have show() and an exit_code.
        exit_code = getattr(exc, "exit_code", None)
        if hasattr(exc, "show") and isinstance(exit_code, int):
            exc.show()
            return exit_code
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            return EXIT_INTERNAL
        typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        return EXIT_INTERNAL
    return int(code) if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
