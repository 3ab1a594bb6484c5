"""The risk governor: a pure function between order intents and the broker.

It takes the state in (a RiskContext built from broker positions and the ledger) and returns the
decision and the next state; the tick persists that state through the ledger, so a restart resumes
exactly where the governor left off. Denials are values with reason codes, never exceptions.

Rules, in order:
1. Unknown state (positions, equity or cash unanswered) -> nothing passes, not even a flatten: an
   order cannot be known to reduce a position nobody can see (RELIABILITY B3).
2. Breakers: a REDUCING set by the daily-loss breaker in an earlier session resets to ACTIVE; then
   drawdown from the equity peak >= max_drawdown -> HALTED (E3); session P&L <= -daily_loss_limit ->
   REDUCING (E2). States only escalate; HALTED needs `resume`.
3. Per intent, with running positions and counts so a batch cannot sum past a limit:
   - reducing orders (|position| shrinks toward 0 without flipping; a flatten is one) pass in every
     state and under the kill switch (E1). They skip the exposure limits, which they can only lower,
     and the per-tick/per-day caps, so an emergency flatten of many symbols is never held back; they
     count toward those caps and obey the per-minute limiter (the broker's own limit) and the price
     band on a limit price (a fat-fingered limit is a bug in either direction).
   - an order that would flip the position is clipped at flat when flipping is not allowed (kill
     switch, REDUCING, HALTED, reduce_only, or a long going short while shorts are off) or when the
     new position fails a limit: the clipped intent (same client_order_id) is approved and a denial
     carries the excess. Clipping rather than denying keeps the closing part, which is never blocked.
   - opening/increasing orders are denied under the kill switch, REDUCING or HALTED; otherwise they
     must pass, in order: price known, price band, order notional, position, gross exposure,
     per-tick and per-day caps, the per-minute limiter.
4. Order flood (E5): more opening attempts in a tick than the per-tick cap, or any per-minute limiter
   denial -> HALTED with an alert, from the next decision on.

Cancels never come through here: cancelling only ever lowers risk, so the tick may always send them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from tradeflow.domain import OrderIntent, TradingState
from tradeflow.domain.events import Breaker, BreakerFired
from tradeflow.risk.limits import RiskLimits

_ZERO = Decimal(0)
RATE_WINDOW = dt.timedelta(minutes=1)

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class DenialReason(StrEnum):
    STATE_UNKNOWN = "STATE_UNKNOWN"  # positions, equity or cash unanswered: nothing trades
    KILL_SWITCH = "KILL_SWITCH"
    DAILY_LOSS_REDUCING = "DAILY_LOSS_REDUCING"
    STATE_REDUCING = "STATE_REDUCING"  # REDUCING for another cause (ledger failure, drift, ...)
    DRAWDOWN_HALTED = "DRAWDOWN_HALTED"
    STATE_HALTED = "STATE_HALTED"  # HALTED for another cause (order flood, ...)
    NOT_REDUCING = "NOT_REDUCING"  # the part of an order past flat, where only reducing is allowed
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
    PRICE_UNKNOWN = "PRICE_UNKNOWN"
    PRICE_BAND = "PRICE_BAND"
    ORDER_NOTIONAL = "ORDER_NOTIONAL"
    POSITION_LIMIT = "POSITION_LIMIT"
    GROSS_EXPOSURE = "GROSS_EXPOSURE"
    ORDERS_PER_TICK = "ORDERS_PER_TICK"
    ORDERS_PER_DAY = "ORDERS_PER_DAY"
    RATE_LIMIT = "RATE_LIMIT"


class StateReason(StrEnum):
    """Why the trading state is what it is; persisted beside it, because the cause decides how it ends."""

    DAILY_LOSS = "daily_loss"  # ends by itself at the next session
    DRAWDOWN = "drawdown"  # ends only by `resume`
    ORDER_FLOOD = "order_flood"  # ends only by `resume`
    SESSION_RESET = "session_reset"
    RESUMED = "resumed"


@dataclass(frozen=True)
class Denial:
    intent: OrderIntent
    reason: DenialReason
    detail: str
    qty: Decimal  # the denied quantity: all of the intent, or the excess past flat of a clipped one


@dataclass(frozen=True)
class RiskContext:
    """Everything the governor may look at. Built by the tick from the broker (positions, equity,
    cash: None when the query went unanswered) and the ledger (state, peak, counts)."""

    now: dt.datetime
    session: dt.date  # the NYSE session this decision belongs to
    trading_state: TradingState
    positions: Mapping[str, Decimal] | None  # signed quantities from the broker, never the ledger
    equity: Decimal | None
    cash: Decimal | None
    session_start_equity: Decimal  # equity when this session's first tick ran
    equity_peak: Decimal  # highest equity seen since the last resume
    prices: Mapping[str, Decimal] = field(default_factory=dict)  # latest price per symbol (the one sizing used)
    last_close: Mapping[str, Decimal] = field(default_factory=dict)  # last completed session's close
    state_reason: str = ""  # a StateReason value, or another cause the tick recorded
    state_session: dt.date | None = None  # the session in which trading_state was set
    kill_switch: bool = False
    orders_sent_this_tick: int = 0
    orders_sent_today: int = 0
    recent_order_times: tuple[dt.datetime, ...] = ()  # send times, for the per-minute limiter

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("RiskContext.now must be timezone-aware")


@dataclass(frozen=True)
class RiskDecision:
    approved: list[OrderIntent]  # to send, in order; a clipped intent keeps its client_order_id
    denials: list[Denial]
    previous_state: TradingState
    next_state: TradingState  # persist these four through the ledger
    state_reason: str
    state_session: dt.date | None
    equity_peak: Decimal
    alerts: list[str]
    # The breakers that escalated the state in this decision, named, for the audit log (the tick
    # records them with the state change they caused).
    breakers: tuple[BreakerFired, ...] = ()
    # State, reason or session differ from the context's: an audit row. A new session's daily-loss stop
    # can leave REDUCING as it was and still change the session it belongs to.
    state_changed: bool = False


@dataclass(frozen=True)
class StateChange:
    """A human-initiated transition (`resume`), for the CLI to persist and audit."""

    previous_state: TradingState
    next_state: TradingState
    state_reason: str
    state_session: dt.date | None
    equity_peak: Decimal
    detail: str


@dataclass
class _State:
    """The trading state as it evolves inside one decision."""

    state: TradingState
    reason: str
    session: dt.date | None
    alerts: list[str] = field(default_factory=list)
    fired: list[BreakerFired] = field(default_factory=list)

    def escalate(self, to: TradingState, reason: StateReason, session: dt.date, detail: str) -> None:
        if _SEVERITY[to] > _SEVERITY[self.state]:
            self.alerts.append(f"trading state {self.state} -> {to}: {detail}")
            self.fired.append(BreakerFired(Breaker(reason.value), to, detail))
            self.state, self.reason, self.session = to, reason, session


@dataclass
class _Batch:
    """Running totals over one batch of intents."""

    positions: dict[str, Decimal]
    window: int  # orders already sent inside the per-minute limiter's window
    approved: list[OrderIntent] = field(default_factory=list)
    denials: list[Denial] = field(default_factory=list)
    opening_attempts: int = 0
    rate_limited: bool = False
    day_capped: bool = False

    def deny(self, intent: OrderIntent, reason: DenialReason, detail: str, qty: Decimal | None = None) -> None:
        self.denials.append(Denial(intent, reason, detail, intent.qty if qty is None else qty))

    def approve(self, intent: OrderIntent) -> None:
        self.approved.append(intent)
        self.positions[intent.symbol] = self.positions.get(intent.symbol, _ZERO) + intent.signed_qty


def _unknown_state(ctx: RiskContext) -> str:
    missing = [n for n, v in (("positions", ctx.positions), ("equity", ctx.equity), ("cash", ctx.cash)) if v is None]
    if missing:
        return f"broker state unknown ({', '.join(missing)} unanswered)"
    if ctx.session_start_equity <= 0 or ctx.equity_peak <= 0:
        return "session start equity and equity peak must be positive"
    return ""


def mark_equity(cash: Decimal, positions: Mapping[str, Decimal], prices: Mapping[str, Decimal]) -> Decimal | None:
    """Equity marked at `prices` (cash plus signed quantity x price), or None when a held position has
    no price. Sizing and every risk fraction use this, not an equity the broker marked at another
    time: on a gap open the broker's last mark can be the previous close while the order faces the
    new price, and a buy sized from the stale figure can reach 140% of real equity (issue 9, G2)."""
    total = cash
    for symbol, qty in positions.items():
        if qty == 0:
            continue
        price = prices.get(symbol)
        if price is None or price <= 0:
            return None
        total += qty * price
    return total


def _pct(x: Decimal) -> str:
    return f"{float(x) * 100:.2f}%"


class RiskGovernor:
    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits

    # -- breakers ---------------------------------------------------------------------------------

    def _breakers(self, ctx: RiskContext, equity: Decimal) -> _State:
        st = _State(ctx.trading_state, ctx.state_reason, ctx.state_session)
        stale_daily_loss = ctx.state_session is None or ctx.state_session < ctx.session
        if st.state is TradingState.REDUCING and st.reason == StateReason.DAILY_LOSS and stale_daily_loss:
            # The only state that relaxes by itself: a daily-loss REDUCING lasts one session (E2).
            st.alerts.append(f"trading state REDUCING -> ACTIVE: new session {ctx.session} after a daily-loss stop")
            st.state, st.reason, st.session = TradingState.ACTIVE, StateReason.SESSION_RESET, ctx.session
        peak = max(ctx.equity_peak, equity)
        drawdown = (peak - equity) / peak
        if drawdown >= self.limits.max_drawdown:
            detail = f"drawdown {_pct(drawdown)} from peak {peak} >= {_pct(self.limits.max_drawdown)}"
            st.escalate(TradingState.HALTED, StateReason.DRAWDOWN, ctx.session, detail)
        session_pnl = (equity - ctx.session_start_equity) / ctx.session_start_equity
        if session_pnl <= -self.limits.daily_loss_limit:
            detail = f"session P&L {_pct(session_pnl)} <= -{_pct(self.limits.daily_loss_limit)}"
            st.escalate(TradingState.REDUCING, StateReason.DAILY_LOSS, ctx.session, detail)
        return st

    # -- the decision -----------------------------------------------------------------------------

    def check(self, intents: Sequence[OrderIntent], ctx: RiskContext) -> RiskDecision:
        unknown = _unknown_state(ctx)
        if unknown or ctx.positions is None or ctx.equity is None:
            return RiskDecision(
                approved=[],
                denials=[Denial(i, DenialReason.STATE_UNKNOWN, unknown, i.qty) for i in intents],
                previous_state=ctx.trading_state,
                next_state=ctx.trading_state,
                state_reason=ctx.state_reason,
                state_session=ctx.state_session,
                equity_peak=ctx.equity_peak,
                alerts=[f"no trading: {unknown}"],
            )
        # Limits are fractions of the equity the orders will face. Fail closed: never a larger equity
        # than the positions marked at the context's prices support, whatever the broker last
        # reported (a stale mark on a gap open; G2).
        marked = None if ctx.cash is None else mark_equity(ctx.cash, ctx.positions, ctx.prices)
        equity = ctx.equity if marked is None else min(ctx.equity, marked)
        st = self._breakers(ctx, equity)
        # Timestamps after `now` count too: a clock step backwards must not reopen the limiter.
        window = sum(1 for t in ctx.recent_order_times if t > ctx.now - RATE_WINDOW)
        batch = _Batch(positions=dict(ctx.positions), window=window)
        restriction = self._restriction(ctx, st)
        for intent in intents:
            self._check_one(intent, ctx, equity, restriction, batch)

        limits = self.limits
        if batch.day_capped:
            st.alerts.append(f"daily order cap {limits.max_orders_per_day} reached: further orders denied")
        if ctx.orders_sent_this_tick + batch.opening_attempts > limits.max_orders_per_tick or batch.rate_limited:
            detail = (
                f"order flood: {batch.opening_attempts} opening orders this tick "
                f"(cap {limits.max_orders_per_tick}, {ctx.orders_sent_this_tick} already sent)"
                + (f", per-minute limit {limits.max_orders_per_minute} hit" if batch.rate_limited else "")
            )
            if st.state is TradingState.HALTED:
                st.alerts.append(detail)
            st.escalate(TradingState.HALTED, StateReason.ORDER_FLOOD, ctx.session, detail)
        return RiskDecision(
            approved=batch.approved,
            denials=batch.denials,
            previous_state=ctx.trading_state,
            next_state=st.state,
            state_reason=st.reason,
            state_session=st.session,
            equity_peak=max(ctx.equity_peak, equity),
            alerts=st.alerts,
            breakers=tuple(st.fired),
            state_changed=(st.state, st.reason, st.session) != (ctx.trading_state, ctx.state_reason, ctx.state_session),
        )

    @staticmethod
    def _restriction(ctx: RiskContext, st: _State) -> DenialReason | None:
        """Why opening orders are refused this decision, or None when they may be checked."""
        if ctx.kill_switch:
            return DenialReason.KILL_SWITCH
        if st.state is TradingState.HALTED:
            return DenialReason.DRAWDOWN_HALTED if st.reason == StateReason.DRAWDOWN else DenialReason.STATE_HALTED
        if st.state is TradingState.REDUCING:
            daily = st.reason == StateReason.DAILY_LOSS
            return DenialReason.DAILY_LOSS_REDUCING if daily else DenialReason.STATE_REDUCING
        return None

    def _check_one(
        self,
        intent: OrderIntent,
        ctx: RiskContext,
        equity: Decimal,
        restriction: DenialReason | None,
        batch: _Batch,
    ) -> None:
        pos = batch.positions.get(intent.symbol, _ZERO)
        opposes = pos != 0 and (intent.signed_qty > 0) != (pos > 0)
        closable = min(intent.qty, abs(pos)) if opposes else _ZERO
        excess = intent.qty - closable
        if closable > 0 and excess == 0:
            self._check_reducing(intent, intent, ctx, batch)
            return
        if closable > 0:  # the order would flip the position
            refused: tuple[DenialReason, str] | None = None
            if restriction is not None or intent.reduce_only:
                why = f"{restriction} in force" if restriction is not None else "reduce-only"
                refused = DenialReason.NOT_REDUCING, f"only reducing allowed ({why})"
            elif pos > 0 and not self.limits.allow_short:
                refused = DenialReason.SHORT_NOT_ALLOWED, "shorts are off"
            else:
                # A flip that is allowed builds a new position: check it all, and if it fails still
                # close the old position, because the governor never blocks the closing part.
                refused = self._opening_refusal(intent, ctx, equity, batch)
                if refused is None:
                    batch.approve(intent)
                    return
            clipped = replace(intent, qty=closable)
            if self._check_reducing(clipped, intent, ctx, batch):
                reason, why = refused
                detail = f"{intent.side} {intent.qty} would flip position {pos}: clipped to {closable} ({why})"
                batch.deny(intent, reason, detail, excess)
            return
        if restriction is not None:
            batch.deny(intent, restriction, f"{restriction}: only cancels and position-reducing orders pass")
            return
        if intent.reduce_only:
            batch.deny(intent, DenialReason.NOT_REDUCING, f"reduce-only order would grow position {pos}")
            return
        if pos + intent.signed_qty < 0 and not self.limits.allow_short:
            batch.deny(intent, DenialReason.SHORT_NOT_ALLOWED, f"would leave position {pos + intent.signed_qty}")
            return
        refused = self._opening_refusal(intent, ctx, equity, batch)
        if refused is None:
            batch.approve(intent)
        else:
            batch.deny(intent, *refused)

    def _band_violation(self, price: Decimal, close: Decimal) -> bool:
        return abs(price - close) > self.limits.price_band * close

    def _check_reducing(self, send: OrderIntent, original: OrderIntent, ctx: RiskContext, batch: _Batch) -> bool:
        """Approve `send` (all of `original`, or its part up to flat) unless its limit price is out of
        the band or the per-minute limiter is full; a denial names `original`."""
        if send.limit_price is not None:
            close = ctx.last_close.get(send.symbol)
            if close is None or close <= 0:
                batch.deny(original, DenialReason.PRICE_UNKNOWN, f"no last close to check limit {send.limit_price}")
                return False
            if self._band_violation(send.limit_price, close):
                band = _pct(self.limits.price_band)
                batch.deny(original, DenialReason.PRICE_BAND, f"limit {send.limit_price} vs close {close} > {band}")
                return False
        if batch.window + len(batch.approved) >= self.limits.max_orders_per_minute:
            batch.rate_limited = True
            batch.deny(original, DenialReason.RATE_LIMIT, f"{self.limits.max_orders_per_minute} orders per minute")
            return False
        batch.approve(send)
        return True

    def _opening_refusal(
        self, intent: OrderIntent, ctx: RiskContext, equity: Decimal, batch: _Batch
    ) -> tuple[DenialReason, str] | None:
        """Why an opening or increasing order may not go, or None when it passes every limit."""
        limits, sym = self.limits, intent.symbol
        batch.opening_attempts += 1
        mark, close = ctx.prices.get(sym), ctx.last_close.get(sym)
        if mark is None or close is None or mark <= 0 or close <= 0:
            return DenialReason.PRICE_UNKNOWN, f"price {mark} / last close {close} unknown for {sym}"
        for label, price in (("price", mark), ("limit", intent.limit_price)):
            if price is not None and self._band_violation(price, close):
                return (
                    DenialReason.PRICE_BAND,
                    f"{label} {price} vs last close {close} outside ±{_pct(limits.price_band)}",
                )
        notional = intent.qty * (intent.limit_price if intent.limit_price is not None else mark)
        cap = limits.order_notional_cap(equity)
        if notional > cap:
            return DenialReason.ORDER_NOTIONAL, f"order notional {notional} > cap {cap}"
        new_pos = batch.positions.get(sym, _ZERO) + intent.signed_qty
        if limits.max_position_shares is not None and abs(new_pos) > limits.max_position_shares:
            return DenialReason.POSITION_LIMIT, f"position {new_pos} > {limits.max_position_shares} shares"
        value = abs(new_pos) * mark
        if value > limits.max_position_fraction * equity:
            frac = _pct(limits.max_position_fraction)
            return DenialReason.POSITION_LIMIT, f"position value {value} > {frac} of equity {equity}"
        gross = _ZERO
        for s, q in {**batch.positions, sym: new_pos}.items():
            if q == 0:
                continue
            p = ctx.prices.get(s)
            if p is None or p <= 0:
                return DenialReason.PRICE_UNKNOWN, f"no price for held {s}: gross exposure unknown"
            gross += abs(q) * p
        if gross > limits.max_gross_exposure * equity:
            frac = _pct(limits.max_gross_exposure)
            return DenialReason.GROSS_EXPOSURE, f"gross exposure {gross} > {frac} of equity {equity}"
        sent = len(batch.approved)
        if ctx.orders_sent_this_tick + sent >= limits.max_orders_per_tick:
            return DenialReason.ORDERS_PER_TICK, f"{limits.max_orders_per_tick} orders per tick"
        if ctx.orders_sent_today + sent >= limits.max_orders_per_day:
            batch.day_capped = True
            return DenialReason.ORDERS_PER_DAY, f"{limits.max_orders_per_day} orders per day"
        if batch.window + sent >= limits.max_orders_per_minute:
            batch.rate_limited = True
            return DenialReason.RATE_LIMIT, f"{limits.max_orders_per_minute} orders per minute"
        return None

    # -- the human reset --------------------------------------------------------------------------

    def resume(self, ctx: RiskContext, *, operator: str) -> StateChange:
        """What `tradeflow resume` asks for, as a value for the CLI to persist and audit.

        HALTED (or a REDUCING a person must acknowledge, e.g. drift) goes back to ACTIVE, and the equity
        peak restarts at today's equity: the loss is acknowledged, or the drawdown breaker would trip
        again on the next tick. A daily-loss stop holds for the rest of its session whatever a person
        says (E2): resuming inside it changes nothing, and resuming from HALTED while the session's
        loss is past the limit gives REDUCING. The kill switch is a separate flag the CLI clears."""
        if not operator.strip():
            raise ValueError("resume needs the operator's name for the audit trail")
        prev = ctx.trading_state

        def unchanged(why: str) -> StateChange:
            detail = f"resume by {operator}: {why}; state stays {prev}"
            return StateChange(prev, prev, ctx.state_reason, ctx.state_session, ctx.equity_peak, detail)

        if prev is TradingState.ACTIVE:
            return unchanged("already ACTIVE")
        if ctx.equity is None or ctx.equity <= 0 or ctx.session_start_equity <= 0:
            return unchanged("equity unknown or not positive")
        if ctx.state_reason == StateReason.DAILY_LOSS and ctx.state_session == ctx.session:
            return unchanged(f"the daily-loss stop holds until the session after {ctx.session}")
        session_pnl = (ctx.equity - ctx.session_start_equity) / ctx.session_start_equity
        if session_pnl <= -self.limits.daily_loss_limit:
            nxt, reason = TradingState.REDUCING, StateReason.DAILY_LOSS
        else:
            nxt, reason = TradingState.ACTIVE, StateReason.RESUMED
        detail = f"resume by {operator}: {prev} -> {nxt}; equity peak reset to {ctx.equity}"
        return StateChange(prev, nxt, reason, ctx.session, ctx.equity, detail)
