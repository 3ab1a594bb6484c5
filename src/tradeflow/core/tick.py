"""`run_tick(runtime, now)`: one trading decision, boring on purpose.

calendar gate -> reconcile the ledger with the broker (unknown => no trading) -> gated bars ->
features -> the champion's target -> order intents -> risk governor -> idempotent submit -> ledger,
and a TickReport saying what it saw, decided, sent and why. `now` is passed in; nothing here reads
the clock. Client order ids are derived from (strategy, symbol, session, sequence), so a retry, a
re-run or a restart can never put a second order at the broker for one intent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd

from tradeflow.calendar import MarketCalendar, to_utc
from tradeflow.core.reconcile import BookView, UnknownBrokerHistory, reconcile
from tradeflow.domain import (
    Book,
    Decision,
    OrderIntent,
    OrderStatus,
    Side,
    SubmitOutcome,
    TradingState,
    make_client_order_id,
)
from tradeflow.domain.events import (
    AlertRaised,
    Breaker,
    BreakerFired,
    DuplicateTickSkipped,
    OrderAdopted,
    OrderDenied,
    OrderLookedUp,
    OrderOutcomeAmbiguous,
    OrderRejected,
    OrderSubmitted,
    SubmitAttempted,
    TickStarted,
    TradingResumed,
)
from tradeflow.errors import (
    BrokerUnavailable,
    DataQualityError,
    DataStaleError,
    InputError,
    LedgerError,
    SourceError,
    StoreError,
    TradeflowError,
)
from tradeflow.execution.base import Broker
from tradeflow.features import Features, FeaturesStaleError, PanelFeatures
from tradeflow.features.schema import FeatureError
from tradeflow.ledger import DecisionRecord, Ledger, LedgerOrder, make_tick_key
from tradeflow.risk import RiskContext, RiskGovernor, StateChange, mark_equity
from tradeflow.sim import CostModel, SizingRules, size_order
from tradeflow.strategies import Strategy

log = logging.getLogger("tradeflow.tick")

LEDGER_FAILURE = "ledger failure: no new entries until the ledger is healthy"


class _Closeable(Protocol):
    def close(self) -> None: ...


_Closing = TypeVar("_Closing", bound=_Closeable)

NON_TERMINAL = (
    OrderStatus.INTENDED,
    OrderStatus.SUBMITTED,
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.UNKNOWN,
)


@dataclass
class TickRuntime:
    """Everything a tick needs, chosen by bootstrap (paper/live) or by a test (fakes).

    It owns what was opened for it: `with runtime:` (or `close()`) closes the broker, the ledger and
    every resource registered with `own` (the learning store a governed rule opens per tick), so a
    tick never leaves a connection, an IB thread or a SQLite handle to the garbage collector."""

    calendar: MarketCalendar
    broker: Broker
    ledger: Ledger
    governor: RiskGovernor
    decider: Callable[[], Strategy]  # loaded lazily: a closed-market tick never loads a model
    # gated features ending at the last completed session: one symbol's, or a universe's panel
    market_data: Callable[[pd.Timestamp], Features | PanelFeatures]
    strategy: str
    symbol: str
    mode: str = "paper"
    run_id: str = "local"
    abandon_after: dt.timedelta = dt.timedelta(minutes=10)
    cash_tolerance: float = 0.01
    cash_buffer: float = 0.005  # equity kept back from sizing for costs
    rebalance_band: float = 0.05  # minimum change worth trading, as a fraction of equity (exits always trade)
    cost: CostModel = field(default_factory=CostModel)  # what sizing expects an order to cost (sim.sizing)
    fractional: bool = False  # the instrument trades in fractions of a share
    max_submit_attempts: int = 3  # for definitive 429-style rejections, same client id each time
    sleep: Callable[[float], None] = lambda s: None
    checkpoint: Callable[[str], None] = lambda name: None  # crash tests kill the process here
    _owned: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    def own(self, resource: _Closing) -> _Closing:
        """Close `resource` with this runtime (before the broker and the ledger); returns it."""
        self._owned.callback(resource.close)
        return resource

    def close(self) -> None:
        """Close what this runtime owns, newest first, the ledger last; idempotent. Each is closed
        even when an earlier one fails (the first failure is raised after all were tried)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.ExitStack() as stack:
            stack.callback(self.ledger.close)
            stack.callback(self.broker.close)
            stack.push(self._owned)

    def __enter__(self) -> TickRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class TickReport:
    status: str
    now: str
    session: str | None = None
    mode: str = "paper"
    strategy: str = ""
    target_weight: float | None = None  # of the one traded symbol (None for a universe: see targets)
    targets: dict[str, float] = field(default_factory=dict)  # target weight per instrument
    breakers: list[dict[str, str]] = field(default_factory=list)  # breakers the governor fired this tick
    orders_sent: list[str] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, str] = field(default_factory=dict)
    cash: str | None = None
    equity: str | None = None
    trading_state: str | None = None
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# Tick {self.now}: {self.status}", "", f"- mode: {self.mode}, strategy: {self.strategy}"]
        lines.append(f"- session: {self.session}; trading state: {self.trading_state}")
        if self.target_weight is not None:
            lines.append(f"- target weight: {self.target_weight}")
        lines.append(f"- positions: {self.positions or 'flat'}; cash {self.cash}; equity {self.equity}")
        lines.append(f"- orders sent: {', '.join(self.orders_sent) or 'none'}")
        lines += [f"- denied: {d['reason']} {d['detail']}" for d in self.denials]
        lines += [f"- ALERT: {a}" for a in self.alerts]
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines)


def _last(features: Features, column: str) -> float:
    frame = features.frame
    return float(frame[column].iloc[-1]) if column in frame.columns and len(frame) else float("nan")


def _decision(
    rt: TickRuntime, decision: Decision, features: Features, symbol: str, target_qty: Decimal | None
) -> DecisionRecord:
    """The decision for `symbol` and what it was made with (parameters, experiment arm: the Decision
    says), and the regime it saw (VIX, SMA-30 vs SMA-60 trend: the symbol's features)."""
    gap_long, gap_short = _last(features, "sma_60_gap"), _last(features, "sma_30_gap")
    trend = "" if math.isnan(gap_long) or math.isnan(gap_short) else ("up" if gap_long > gap_short else "down")
    return DecisionRecord(
        rt.strategy,
        symbol,
        decision.session,
        decision.weight(symbol),
        params=dict(decision.params),
        arm=decision.arm,
        experiment_id=decision.experiment_id,
        vix=_last(features, "vix"),
        trend=trend,
        target_qty=target_qty,
    )


def _by_symbol(rt: TickRuntime, features: Any) -> dict[str, Features]:
    """The per-instrument features a tick decides on: a panel's (a universe) or the one symbol's."""
    panel = getattr(features, "by_symbol", None)
    return dict(panel) if panel is not None else {rt.symbol: features}


def _size_intents(
    rt: TickRuntime,
    decided: Decision,
    book: BookView,
    prices: dict[str, Decimal],
    equity: Decimal,
    session: dt.date,
    todays_orders: list[LedgerOrder],
    report: TickReport,
) -> tuple[list[OrderIntent], dict[str, Decimal]]:
    """Order intents for the decision with the one sizing (sim.sizing), as the backtest and the replay
    size, and the position each instrument was sized for. A changed target weight is sized afresh:
    its share of equity marked at the order's price, less the cash buffer, a buy capped by the cash
    after costs, whole shares unless fractional, a change under the band skipped. While the weight is
    the one of the previous decision, the position it was sized for is held: the backtest does not
    re-size a drifting weight either, and a short fill, a cancel or a denial is completed later.
    Sells are sized first; their proceeds count toward the cash of the buys after them."""
    rules = SizingRules(fractional=rt.fractional, cash_buffer=rt.cash_buffer, rebalance_band=rt.rebalance_band)
    plans = []
    for symbol, price in prices.items():
        if book.unresolved.get(symbol):
            report.notes.append(f"waiting on unresolved order(s) {book.unresolved[symbol]}: no new intent")
            continue
        shares = book.positions[symbol].qty if symbol in book.positions else Decimal(0)
        holding = shares + book.pending.get(symbol, Decimal(0))  # with what open orders will add
        weight = decided.weight(symbol)
        hold = rt.ledger.sized_position(rt.strategy, symbol, weight)
        wanted = hold * price if hold is not None else Decimal(str(weight)) * equity
        plans.append((float(wanted - holding * price), symbol, shares, holding, weight, hold))
    cash = float(book.account.cash)
    intents: list[OrderIntent] = []
    sized_for: dict[str, Decimal] = {}
    for _, symbol, shares, holding, weight, hold in sorted(plans, key=lambda plan: plan[0]):
        price = prices[symbol]
        sized = size_order(
            weight, float(holding), cash, float(equity), float(price), 0.0, rt.cost, rules,
            hold=None if hold is None else float(hold),
        )  # fmt: skip
        delta = Decimal(repr(sized.qty)) if rt.fractional else Decimal(round(sized.qty))
        if rt.fractional:
            delta = delta.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        sized_for[symbol] = hold if hold is not None else holding + delta
        if delta == 0:
            if hold is None and abs(Decimal(str(weight)) * equity / price - holding) * price >= 1:
                report.notes.append(
                    f"no {symbol} order: the change is under the {rt.rebalance_band:.0%} rebalance band "
                    "or the cash on hand"
                )
            continue
        cash -= float(delta * price)  # a sale's proceeds fund the buys sized after it
        seq = sum(1 for o in todays_orders if o.symbol == symbol)
        cid = make_client_order_id(rt.strategy, symbol, session, seq)
        reduces = abs(shares + delta) < abs(shares) and (shares + delta) * shares >= 0
        intents.append(
            OrderIntent(
                cid,
                symbol,
                Side.BUY if delta > 0 else Side.SELL,
                abs(delta),
                session,
                rt.strategy,
                seq,
                reduce_only=reduces,
            )
        )
    return intents, sized_for


def _finish(rt: TickRuntime, report: TickReport, key: str | None, now: dt.datetime) -> TickReport:
    try:
        if key is not None:
            rt.ledger.record_tick(key, report.status, report.to_dict(), now, run_id=rt.run_id)
        for alert in report.alerts:
            rt.ledger.audit(AlertRaised(alert), now, run_id=rt.run_id)
    except LedgerError as exc:  # the report still reaches the flow's artifact and logs
        report.alerts.append(f"ledger unavailable while journaling the tick: {exc}")
    for alert in report.alerts:
        log.error("tick alert: %s", alert)
    return report


def run_tick(rt: TickRuntime, now: Any) -> TickReport:
    when = to_utc(now)
    now_dt: dt.datetime = when.to_pydatetime()
    report = TickReport(status="STARTED", now=when.isoformat(), mode=rt.mode, strategy=rt.strategy)
    market = rt.calendar.status(when)
    if not market.is_open:
        report.status, report.notes = "SKIPPED_MARKET_CLOSED", [market.reason]
        return report  # a closed market leaves no trace but the flow's log: nothing happened
    session: dt.date = market.session.date()  # type: ignore[union-attr]
    report.session = session.isoformat()
    key = make_tick_key(rt.strategy, session, now_dt)
    try:
        if rt.ledger.tick_seen(key):
            rt.ledger.audit(DuplicateTickSkipped(key), now_dt, run_id=rt.run_id)
            report.status = "DUPLICATE_TICK"
            report.notes.append(f"tick {key} already ran: nothing sent again")
            return report
        rt.ledger.audit(TickStarted(key, rt.mode), now_dt, run_id=rt.run_id)
        # A ledger file that was deleted, truncated or put back from an older copy opens ACTIVE: the
        # safety latch gives back its kill switch, HALTED state and drawdown peak first (G1).
        restored = rt.ledger.restore_from_latch(now_dt, run_id=rt.run_id)
        if restored:
            report.alerts.append(restored)
    except LedgerError as exc:
        report.status = "LEDGER_UNAVAILABLE"
        report.alerts.append(f"ledger unavailable, not trading: {exc}")
        return _finish(rt, report, None, now_dt)

    # 1. Reconcile: the broker's view is the truth; an unanswered query means we do not trade.
    try:
        book = reconcile(
            rt.broker,
            rt.ledger,
            now_dt,
            run_id=rt.run_id,
            abandon_after=rt.abandon_after,
            cash_tolerance=rt.cash_tolerance,
        )
    except BrokerUnavailable as exc:
        report.status = "BLOCKED_STATE_UNKNOWN"
        report.alerts.append(f"broker state unknown, not trading: {exc}")
        return _finish(rt, report, key, now_dt)
    except UnknownBrokerHistory as exc:  # G1: the ledger lost history the broker still shows
        report.status = "BLOCKED_STATE_UNKNOWN"
        report.alerts.append(f"not trading: {exc}")
        report.trading_state = str(rt.ledger.trading_state().state)
        return _finish(rt, report, key, now_dt)
    except LedgerError as exc:
        report.status = "LEDGER_UNAVAILABLE"
        report.alerts.append(f"ledger write failed during reconcile, no new entries: {exc}")
        return _finish(rt, report, None, now_dt)
    report.positions = {s: str(p.qty) for s, p in book.positions.items() if p.qty}
    report.cash, report.equity = str(book.account.cash), str(book.account.equity)
    current = rt.ledger.trading_state()
    if current.state is TradingState.REDUCING and current.reason == LEDGER_FAILURE:
        # Reconcile just wrote to the ledger: it is healthy again, and the broker's fills are in it.
        rt.ledger.set_trading_state(
            TradingState.ACTIVE, "ledger healthy again after reconcile", now_dt, run_id=rt.run_id
        )
        report.notes.append("ledger healthy again: REDUCING lifted after reconcile")
    report.alerts.extend(book.alerts)
    report.notes.extend(book.notes)

    # 2. Data through the same gate and features as research; stale or rejected => no trade.
    try:
        features = rt.market_data(when)
    except DataStaleError as exc:
        report.status, report.alerts = "DATA_STALE", [*report.alerts, f"stale data, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    except DataQualityError as exc:
        report.status, report.alerts = "DATA_REJECTED", [*report.alerts, f"data rejected, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    except FeaturesStaleError as exc:  # today's decision row is missing: bars or VIX too old
        report.status, report.alerts = "DATA_STALE", [*report.alerts, f"features not current, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    except (FeatureError, InputError) as exc:  # malformed bars or too little history: not tradeable either
        report.status, report.alerts = "DATA_REJECTED", [*report.alerts, f"features unusable, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    except StoreError as exc:  # a stored snapshot is unreadable or altered (the error names the file)
        report.status, report.alerts = "DATA_REJECTED", [*report.alerts, f"stored data unusable, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    except SourceError as exc:  # the source could not deliver (network, empty answer): no data, no trade
        report.status, report.alerts = "DATA_UNAVAILABLE", [*report.alerts, f"no data, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)

    # 3. Decide and size against the broker's positions, with equity marked at the prices the orders
    # will face (G2): the broker's own mark may still be the previous close on a gap open.
    by_symbol = _by_symbol(rt, features)
    last_closes = {s: Decimal(str(float(f.bars["close"].iloc[-1]))) for s, f in by_symbol.items()}
    prices: dict[str, Decimal] = {}
    for symbol in by_symbol:
        # The price an order will face: the broker's quote when it has one, else the last close (the
        # sim broker fills at the price it was given; an adapter without market data has no better).
        try:
            quoted = rt.broker.quote(symbol)
        except BrokerUnavailable as exc:
            report.notes.append(f"no quote for {symbol} ({exc}): sizing at the last close")
            quoted = None
        prices[symbol] = quoted if quoted is not None and quoted > 0 else last_closes[symbol]
    held = {s: p.qty for s, p in book.positions.items()}
    marked = mark_equity(book.account.cash, held, prices)
    equity = book.account.equity if marked is None else marked
    if equity != book.account.equity:
        report.notes.append(f"equity marked at the orders' prices: {equity} (broker's mark {book.account.equity})")
    report.equity = str(equity)
    try:
        strategy = rt.decider()
    except LookupError as exc:  # e.g. no champion model registered yet: nothing to trade on
        report.status, report.notes = "NO_MODEL", [*report.notes, str(exc)]
        if isinstance(exc, TradeflowError):  # a champion that exists but cannot be loaded needs a person
            report.alerts.append(f"champion unusable, not trading: {exc}")
        return _finish(rt, report, key, now_dt)
    try:
        decided = strategy.decide(features, Book(book.positions, equity))
    except (InputError, FeatureError) as exc:  # e.g. a champion given other features than it was trained on
        report.status, report.alerts = "NO_MODEL", [*report.alerts, f"model cannot decide, not trading: {exc}"]
        return _finish(rt, report, key, now_dt)
    report.targets = {s: decided.weight(s) for s in by_symbol}
    report.target_weight = decided.weight(rt.symbol) if len(by_symbol) == 1 else None
    todays_orders = [o for o in rt.ledger.orders() if o.session == session]  # read once per tick
    intents, sized_for = _size_intents(rt, decided, book, prices, equity, session, todays_orders, report)
    for symbol, symbol_features in by_symbol.items():
        record = _decision(rt, decided, symbol_features, symbol, sized_for.get(symbol))
        rt.ledger.record_decision(record, now_dt, run_id=rt.run_id)
    # 4. Risk: denials are values; the state the governor returns is persisted before sending.
    state = rt.ledger.trading_state()
    rt.ledger.start_session(session, equity, now_dt, run_id=rt.run_id)
    start_equity = rt.ledger.session_start_equity(session) or equity
    peak = rt.ledger.update_peak(equity)
    sent_today = [o for o in todays_orders if o.status is not OrderStatus.INTENDED]
    ctx = RiskContext(
        now=now_dt,
        session=session,
        trading_state=state.state,
        positions=held,
        equity=equity,
        cash=book.account.cash,
        session_start_equity=start_equity,
        equity_peak=peak,
        prices=prices,
        last_close=last_closes,
        state_reason=state.reason,
        state_session=pd.Timestamp(state.since).tz_convert("America/New_York").date() if state.since else None,
        kill_switch=state.reason.startswith("kill switch"),
        orders_sent_today=len(sent_today),
        recent_order_times=tuple(o.created_at for o in sent_today if now_dt - o.created_at < dt.timedelta(minutes=1)),
    )
    decision = rt.governor.check(intents, ctx)
    if decision.next_state is not state.state or decision.state_reason != state.reason:
        rt.ledger.set_trading_state(
            decision.next_state, decision.state_reason, now_dt, run_id=rt.run_id, cause=decision.breakers
        )
    report.trading_state = str(decision.next_state)
    report.breakers = [{k: str(v) for k, v in b.payload().items()} for b in decision.breakers]
    report.alerts.extend(decision.alerts)
    for d in decision.denials:
        denied = OrderDenied(str(d.reason), d.detail, d.qty, d.intent.symbol)
        report.denials.append(denied.payload())
        rt.ledger.audit(denied, now_dt, run_id=rt.run_id, client_order_id=d.intent.client_order_id)

    # 5. Idempotent submit: the intent is journaled before the broker hears of it.
    for intent in decision.approved:
        try:
            sent = _submit(rt, intent, now_dt, report)
        except LedgerError as exc:  # A6: accepted at the broker, ledger write failed
            report.alerts.append(f"ledger write failed around {intent.client_order_id}: {exc}; REDUCING")
            report.status = "LEDGER_UNAVAILABLE"
            try:  # best effort: the next tick reconciles the broker's order and fills into the ledger
                rt.ledger.set_trading_state(TradingState.REDUCING, LEDGER_FAILURE, now_dt, run_id=rt.run_id)
            except LedgerError:
                report.alerts.append("could not even record REDUCING: the ledger is down")
            return _finish(rt, report, None, now_dt)
        if sent:
            report.orders_sent.append(intent.client_order_id)
    if report.orders_sent:
        _sync_fills(rt, now_dt, report)
    report.status = "TRADED" if report.orders_sent else "NO_ACTION"
    return _finish(rt, report, key, now_dt)


def _sync_fills(rt: TickRuntime, now: dt.datetime, report: TickReport) -> None:
    """Journal the fills of what was just sent, so the tick ends with ledger == broker; if the broker
    cannot answer now, the next tick's reconcile applies them (each fill once, by execution id)."""
    try:
        since = now - dt.timedelta(minutes=1)
        for ex in rt.broker.executions(since=since):
            if rt.ledger.get_order(ex.client_order_id) is not None:
                rt.ledger.apply_execution(ex, now, run_id=rt.run_id)
        positions = rt.broker.positions()
    except BrokerUnavailable as exc:
        report.notes.append(f"fills not yet journaled (broker unavailable: {exc}); the next reconcile will")
        return
    report.positions = {s: str(p.qty) for s, p in positions.items() if p.qty}


def _submit(rt: TickRuntime, intent: OrderIntent, now: dt.datetime, report: TickReport) -> bool:
    cid = intent.client_order_id
    if not rt.ledger.record_intent(intent, now, rt.run_id):
        report.notes.append(f"{cid} already journaled: not sent again")
        return False
    rt.checkpoint("after_intent")
    rt.ledger.set_order_status(cid, OrderStatus.SUBMITTED, now, run_id=rt.run_id)
    for attempt in range(1, rt.max_submit_attempts + 1):
        rt.ledger.audit(SubmitAttempted(attempt), now, run_id=rt.run_id, client_order_id=cid)
        try:
            result = rt.broker.submit(intent)
        except BrokerUnavailable as exc:  # the request may have left: treat as ambiguous, never resend blindly
            result = None
            reason = str(exc)
        rt.checkpoint("after_submit")
        if result is not None and result.outcome in (SubmitOutcome.ACCEPTED, SubmitOutcome.DUPLICATE):
            rt.ledger.audit(OrderSubmitted(str(result.outcome)), now, run_id=rt.run_id, client_order_id=cid)
            if result.order is not None:
                rt.ledger.set_order_status(cid, result.order.status, now, broker_order=result.order, run_id=rt.run_id)
            rt.checkpoint("after_ack")
            return True
        if result is not None and result.outcome is SubmitOutcome.REJECTED:
            rt.ledger.audit(OrderRejected(result.reason), now, run_id=rt.run_id, client_order_id=cid)
            if result.retryable and attempt < rt.max_submit_attempts:
                rt.sleep(2.0**attempt)  # back off, then the SAME client id (A2)
                continue
            rt.ledger.set_order_status(cid, OrderStatus.REJECTED, now, run_id=rt.run_id)
            report.notes.append(f"{cid} rejected: {result.reason}")
            return False
        # Ambiguous (timeout after send, 5xx, unknown code): never resend; look it up once (A1, A10).
        why = result.reason if result is not None else reason
        rt.ledger.set_order_status(cid, OrderStatus.UNKNOWN, now, run_id=rt.run_id)
        rt.ledger.audit(OrderOutcomeAmbiguous(why), now, run_id=rt.run_id, client_order_id=cid)
        try:
            found = rt.broker.get_order(cid)
        except BrokerUnavailable:
            found = None
        rt.ledger.audit(OrderLookedUp(found is not None), now, run_id=rt.run_id, client_order_id=cid)
        if found is not None:
            rt.ledger.set_order_status(cid, found.status, now, broker_order=found, run_id=rt.run_id)
            rt.ledger.audit(OrderAdopted(found.broker_order_id), now, run_id=rt.run_id, client_order_id=cid)
            return True
        report.notes.append(f"{cid}: outcome unknown ({why}); the next reconcile resolves it")
        return False
    return False


@contextlib.contextmanager
def tick_lock(lock_dir: Path) -> Iterator[bool]:
    """One tick at a time per data directory, whatever started it (a deployment, a cron, a person).

    A non-blocking flock: a second tick finds it held and skips rather than racing the first
    (RELIABILITY F1). The kernel drops the lock when its process dies, so a killed or zombie tick can
    never hold the order section beyond its own life.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".tick.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def skipped_busy(now: Any, mode: str, strategy: str) -> TickReport:
    report = TickReport(status="SKIPPED_TICK_IN_PROGRESS", now=to_utc(now).isoformat(), mode=mode, strategy=strategy)
    report.alerts.append("another tick holds the order section: this one did nothing")
    return report


def stop_trading(ledger: Ledger, reason: str, now: Any, run_id: str = "cli") -> None:
    """The kill switch: HALTED with a 'kill switch' reason; only cancels and reducing orders pass."""
    fired = BreakerFired(Breaker.KILL_SWITCH, TradingState.HALTED, reason)
    at = to_utc(now).to_pydatetime()
    ledger.set_trading_state(TradingState.HALTED, f"kill switch: {reason}", at, run_id=run_id, cause=(fired,))


def resume_trading(
    ledger: Ledger, governor: RiskGovernor, equity: Decimal | None, *, operator: str, reason: str, now: Any
) -> StateChange:
    """`tradeflow resume`: the governor's one resume rule (RiskGovernor.resume), persisted and audited.

    `equity` is the broker's account equity now (None when it cannot be asked): the drawdown peak
    restarts there. A daily-loss stop holds for its session; resuming from HALTED while the session's
    loss is past the limit gives REDUCING."""
    when = to_utc(now)
    at: dt.datetime = when.to_pydatetime()
    session = when.tz_convert("America/New_York").date()
    state = ledger.trading_state()
    ctx = RiskContext(
        now=at,
        session=session,
        trading_state=state.state,
        positions=None,
        equity=equity,
        cash=None,
        session_start_equity=ledger.session_start_equity(session) or equity or Decimal(0),
        equity_peak=ledger.peak_equity() or equity or Decimal(0),
        state_reason=state.reason,
        state_session=pd.Timestamp(state.since).tz_convert("America/New_York").date() if state.since else None,
        kill_switch=state.reason.startswith("kill switch"),
    )
    change = governor.resume(ctx, operator=operator)
    if change.next_state is change.previous_state:
        return change
    resumed = TradingResumed(operator, reason, change.previous_state, change.next_state, change.detail)
    ledger.audit(resumed, at)
    ledger.reset_peak(change.equity_peak, f"resume by {operator}", at)
    ledger.set_trading_state(change.next_state, str(change.state_reason), at)
    return change
