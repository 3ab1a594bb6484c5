"""The `tradeflow` command line: the pipeline's steps by hand, each with --json for machines.

Exit codes: 0 success, 2 bad input (one line on stderr, never a traceback), 3 the data-quality gate
failed, 1 an unexpected internal error. The CLI calls the library directly (no Prefect start-up
cost); `prefect deployment run ...` is the orchestrated path.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import pandas as pd
import typer
from pydantic import ValidationError

from tradeflow import __version__
from tradeflow.calendar import default_calendar, to_session, to_utc
from tradeflow.config import Settings, get_settings
from tradeflow.errors import DataQualityError, TradeflowError

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
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TradeflowError(f"bad configuration: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


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
        if len(report.failures) > 20:
            typer.echo(f"  ... and {len(report.failures) - 20} more", err=True)
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
    from tradeflow.data.bars import check_symbol
    from tradeflow.data.quality import GateContext, run_gate
    from tradeflow.data.quality.known_events import KnownEvents
    from tradeflow.data.sources.files import read_bar_file

    settings = _settings()
    cal = default_calendar()
    sym = check_symbol(symbol) if symbol else None
    expected = to_session(as_of) if as_of else cal.last_completed_session(_now(None))
    if not cal.is_session(expected):
        expected = cal.previous_session(expected)
    frame = read_bar_file(path, sym, cal)
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
    as_json: JsonOpt = False,
) -> None:
    """NYSE sessions in a range with open/close times (UTC), early closes and closed weekdays."""
    cal = default_calendar()
    lo, hi = to_session(start), to_session(end)
    if hi < lo:
        raise TradeflowError(f"--end {hi.date()} is before --start {lo.date()}")
    sessions = cal.session_times(lo, hi)
    closed = cal.holidays(lo, hi)
    if as_json:
        _emit(
            {
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
    typer.echo(f"NYSE {lo.date()} .. {hi.date()}: {len(sessions)} sessions (times in UTC)")
    for s in sessions:
        flag = "  early close" if s.early_close else ""
        typer.echo(f"  {s.session.date()}  {s.open:%H:%M} - {s.close:%H:%M}{flag}")
    if closed:
        typer.echo("closed weekdays: " + ", ".join(str(d.date()) for d in closed))


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
    except Exception as exc:  # click usage errors and the unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return int(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            return EXIT_INTERNAL
        typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        return EXIT_INTERNAL
    return int(code) if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
