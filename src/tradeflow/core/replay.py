"""Paper replay: the real tick, day by day over a past window, with the sim broker and a simulated
clock, so the trading path can be held against the backtest (issue 4, item 7).

Timing is the backtest's (tradeflow.sim.portfolio): a target decided on the close of session t is
executed at the OPEN of session t+1, and equity is marked at each close. For each session s_k of the
window after the first, the replay
  1. sets the sim broker's reference price to the open of s_k (and the day's volume, for the impact
     term), so a market order fills at that open through the shared CostModel, as `rebalance` does;
  2. runs `run_tick` at `tick_time` New York time on s_k (09:35, the first cron slot after the open),
     with market data ending at s_{k-1}: the last completed session, what a live tick sees;
  3. sets the reference price to the close of s_k and marks equity (the broker's cash + shares x close).
Session s_0 is flat with equity = capital, as in `evaluate_targets`; the decision taken on the last
close is never executed, as there.

Prices: dividend-adjusted by default, like the backtest. The sim broker knows no dividend events, so
the replay hands the tick bars whose prices are already adjusted (scaled by adj_close / close, with
adj_close = close): the tick's sizing price, the fill price and the mark are the backtest's prices.
The feature frame is untouched (it is built from adjusted prices anyway). `adjust_dividends=False`
replays raw prices; compare it with `evaluate_targets` on `MarketArrays.from_bars(bars,
adjust_dividends=False)`. Either way both sides must use the same prices: that is the parity.

Sizing is the one sizing (tradeflow.sim.sizing) on both sides: the tick sizes at the broker's quote
(the open, here) with equity marked there, caps a buy by the cash after costs and rounds to whole
shares; the vector engine does the same with `SizingRules(fractional=False)`, and the two agree to
under 0.01 bp of total return over 2015-2019 (tests/integration/test_paper_replay.py). Against the
research backtest (fractional shares, no buffer) what differs is:
- whole shares: up to one share's value (~0.4% of 100k in SPY) stays in cash;
- `cash_buffer` keeps a fraction of equity back (0 by default here, 0.005 in TradingSettings);
- the governor sees equity at the tick (the open) where the vector breakers see the previous close,
  so a drawdown breaker can fire one session apart on a gap.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from tradeflow.backtest.engine import round_trips
from tradeflow.backtest.metrics import metrics_dict
from tradeflow.calendar import MarketCalendar, default_calendar
from tradeflow.core.tick import TickReport, TickRuntime, run_tick
from tradeflow.errors import InputError
from tradeflow.execution.sim import SimBroker
from tradeflow.features import (
    DEFAULT_SPEC,
    Features,
    FeatureSpec,
    PanelFeatures,
    build_features,
    features_for_live,
)
from tradeflow.ledger import Ledger
from tradeflow.risk import RiskGovernor, RiskLimits
from tradeflow.sim import CostModel, Fill
from tradeflow.strategies import Strategy

NEW_YORK = "America/New_York"
DateLike = str | dt.date | pd.Timestamp  # a session label, naive (New York date)
_PRICE_COLUMNS = ("open", "high", "low", "close")
_FILL_COLUMNS = ("session", "symbol", "client_order_id", "shares", "price", "commission")


@dataclass(frozen=True)
class LiveBars:
    """Gated bars instead of precomputed features: every tick then calls `features_for_live` on the
    bars up to the previous session, exactly as a live tick does (slower: one feature build a tick)."""

    bars: pd.DataFrame
    vix: pd.DataFrame | None
    spec: FeatureSpec = DEFAULT_SPEC


@dataclass(frozen=True)
class ReplayResult:
    strategy: str
    equity: pd.Series  # at each close of the window, indexed by session; equity[0] = capital
    fills: pd.DataFrame  # one row per execution (_FILL_COLUMNS), `session` = the session it filled in
    reports: tuple[TickReport, ...]  # one per tick, sessions 1..n-1 of the window

    @property
    def returns(self) -> pd.Series:
        """Simple close-to-close returns, from the window's second session (as BacktestResult's)."""
        return self.equity.pct_change().iloc[1:].rename("returns")

    def position(self) -> pd.Series:
        """Shares held at each close of the window (one instrument: the fills of each session, summed)."""
        per_session = self.fills.groupby("session")["shares"].sum()
        return per_session.reindex(self.equity.index, fill_value=0.0).cumsum().rename("shares")

    def holdings(self) -> pd.DataFrame:
        """Shares held at each close, one column per instrument traded."""
        table = self.fills.pivot_table(index="session", columns="symbol", values="shares", aggfunc="sum")
        return table.reindex(self.equity.index, fill_value=0.0).fillna(0.0).cumsum()

    def metrics(self, last_close: float | dict[str, float]) -> dict[str, float]:
        """The backtest's metric keys for this curve (round trips per instrument from the executions);
        `last_close` marks a position still open at the end (per symbol for a universe)."""
        sessions = self.equity.index
        pnls = []
        for symbol, own in self.fills.groupby("symbol", sort=False):
            rows = sessions.get_indexer(pd.DatetimeIndex(own["session"]))
            fills = tuple(
                Fill(int(row), float(shares), float(price), float(commission), 0.0, 0.0)
                for row, shares, price, commission in zip(
                    rows, own["shares"], own["price"], own["commission"], strict=True
                )
            )
            close = last_close[str(symbol)] if isinstance(last_close, dict) else last_close
            trips = round_trips(fills, close)
            pnls.append(trips["pnl"][trips["closed"]])
        notional = float((self.fills["shares"].abs() * self.fills["price"]).sum())
        return metrics_dict(
            self.equity.to_numpy(dtype=np.float64),
            position=self.holdings().abs().sum(axis=1).to_numpy(),
            traded_notional=notional,
            round_trip_pnl=np.concatenate(pnls) if pnls else np.array([]),
            fills=len(self.fills),
        )

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reports:
            out[r.status] = out.get(r.status, 0) + 1
        return out


class _Clock:
    """The simulated clock the broker stamps orders and fills with: set by the replay, never read from the OS."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def adjusted_features(features: Features) -> Features:
    """The same features with dividend-adjusted bars (adj_close = close), so the tick sizes, fills and
    marks on the prices `features.market()` gives the backtest."""
    bars = features.bars.copy()
    factor = bars["adj_close"].to_numpy(dtype=float) / bars["close"].to_numpy(dtype=float)
    for column in _PRICE_COLUMNS:
        bars[column] = bars[column].to_numpy(dtype=float) * factor
    bars["adj_close"] = bars["close"]
    return replace(features, bars=bars)


def _instant(session: pd.Timestamp, at: dt.time) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.combine(session.date(), at)).tz_localize(NEW_YORK).tz_convert("UTC")


def _day(value: DateLike) -> np.datetime64:
    return pd.Timestamp(value).normalize().as_unit("ns").to_datetime64()


def _window(sessions: np.ndarray, start: DateLike, end: DateLike) -> tuple[int, int]:
    s = np.asarray(sessions, dtype="datetime64[ns]")
    i0 = int(np.searchsorted(s, _day(start), side="left"))
    i1 = int(np.searchsorted(s, _day(end), side="right"))
    if i1 - i0 < 2:
        raise InputError(f"the replay window {start}..{end} holds {max(i1 - i0, 0)} feature session(s); need 2+")
    if i0 == 0:
        # The first tick needs the features of the session before the window (the decision it executes).
        first = pd.Timestamp(s[0]).date()
        raise InputError(f"the replay window starts at the first feature session {first}: no decision before it")
    return i0, i1


def replay(
    data: Features | PanelFeatures | LiveBars,
    strategy: Strategy | None,
    start: DateLike,
    end: DateLike,
    *,
    cost: CostModel | None = None,
    capital: float = 100_000.0,
    cash_buffer: float = 0.0,
    limits: RiskLimits | None = None,
    adjust_dividends: bool = True,
    tick_time: dt.time = dt.time(9, 35),
    calendar: MarketCalendar | None = None,
    workdir: Path | None = None,
    decider_factory: Callable[[Ledger], Strategy] | None = None,
    after_close: Callable[[dt.date, Ledger], None] | None = None,
    fractional: bool = False,
    rebalance_band: float = 0.05,
) -> ReplayResult:
    """Replay `strategy` through `run_tick` over the sessions in [start, end] (inclusive).

    The ledger lives in `workdir` (kept, for inspection) or in a temporary folder (removed); the sim
    broker keeps its books in memory. Nothing here reads the wall clock.
    `decider_factory` builds the strategy from the replay's ledger (a governed rule reads its previous
    decision there) and replaces `strategy`; `after_close(session, ledger)` runs after each session's
    close, as the daily learning review does after the real one.
    """
    full = build_features(data.bars, data.vix, data.spec) if isinstance(data, LiveBars) else data
    priced: Features | PanelFeatures
    if isinstance(full, PanelFeatures):
        adjusted = {s: adjusted_features(f) if adjust_dividends else f for s, f in full.by_symbol.items()}
        priced = replace(full, by_symbol=MappingProxyType(adjusted))
        per_symbol = dict(priced.by_symbol)
    else:
        priced = adjusted_features(full) if adjust_dividends else full
        per_symbol = {full.symbol: priced}
    symbols = tuple(per_symbol)
    sessions = pd.DatetimeIndex(full.sessions)
    i0, i1 = _window(full.sessions, start, end)
    opens = {s: f.bars["open"].to_numpy(dtype=float) for s, f in per_symbol.items()}
    closes = {s: f.bars["close"].to_numpy(dtype=float) for s, f in per_symbol.items()}
    volumes = {s: f.bars["volume"].to_numpy(dtype=float) for s, f in per_symbol.items()}
    cal = calendar or default_calendar()

    def market_data_until(row: int) -> Features | PanelFeatures:
        """Features whose last row is `row` (the previous session), the way a live tick gets them."""
        if not isinstance(data, LiveBars):
            return priced.slice(0, row + 1)  # features are causal: the slice IS what a rebuild would give
        last = sessions[row]
        bars = data.bars[data.bars["session"] <= last].reset_index(drop=True)
        vix = None if data.vix is None else data.vix[data.vix["session"] <= last].reset_index(drop=True)
        live = features_for_live(bars, vix, data.spec, session=last)
        return adjusted_features(live) if adjust_dividends else live

    clock = _Clock(_instant(sessions[i0], tick_time).to_pydatetime())
    broker_cost = cost or CostModel()
    broker = SimBroker(None, clock=clock, cost=broker_cost, initial_cash=Decimal(str(capital)))
    equity = [float(capital)]
    reports: list[TickReport] = []
    with tempfile.TemporaryDirectory(prefix="tradeflow-replay-") as tmp:
        ledger = Ledger((workdir or Path(tmp)) / "ledger.sqlite")
        if decider_factory is not None:
            decider: Strategy = decider_factory(ledger)
        elif strategy is None:
            raise InputError("replay needs a strategy or a decider_factory")
        else:
            decider = strategy
        try:
            for row in range(i0 + 1, i1):
                now = _instant(sessions[row], tick_time)
                clock.now = now.to_pydatetime()
                for symbol in symbols:
                    broker.set_price(symbol, Decimal(str(opens[symbol][row])), volumes[symbol][row])
                features = market_data_until(row - 1)
                runtime = TickRuntime(
                    calendar=cal,
                    broker=broker,
                    ledger=ledger,
                    governor=RiskGovernor(limits or RiskLimits()),
                    decider=lambda: decider,
                    market_data=lambda _now, f=features: f,  # type: ignore[misc]
                    strategy=decider.name,
                    symbol=symbols[0],
                    run_id=f"replay-{sessions[row].date().isoformat()}",
                    cash_buffer=cash_buffer,
                    cost=broker_cost,
                    fractional=fractional,
                    rebalance_band=rebalance_band,
                )
                reports.append(run_tick(runtime, now))
                clock.now = _instant(sessions[row], dt.time(16, 0)).to_pydatetime()
                for symbol in symbols:
                    broker.set_price(symbol, Decimal(str(closes[symbol][row])), volumes[symbol][row])
                broker.end_session(sessions[row].date())  # DAY orders left open expire, as at a broker
                equity.append(float(broker.account().equity))
                if after_close is not None:
                    after_close(sessions[row].date(), ledger)
        finally:
            ledger.close()
    rows = [
        (
            pd.Timestamp(e.timestamp).tz_convert(NEW_YORK).tz_localize(None).normalize(),
            e.symbol,
            e.client_order_id,
            float(e.qty if e.side.value == "buy" else -e.qty),
            float(e.price),
            float(e.commission),
        )
        for e in broker.executions()
    ]
    fills = pd.DataFrame(rows, columns=list(_FILL_COLUMNS))
    index = pd.DatetimeIndex(sessions[i0:i1], name="session")
    return ReplayResult(decider.name, pd.Series(equity, index=index, name="equity"), fills, tuple(reports))
