"""Property: random streams of targets, prices, positions and states never get an order past a risk limit.

The exposures are recomputed here from scratch (replaying the approved orders over the broker
positions), not with the governor's helpers, so a wrong running total in the governor shows up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.domain import OrderIntent, Side, TradingState, make_client_order_id
from tradeflow.risk import DenialReason, RiskContext, RiskGovernor, RiskLimits, StateReason

D = Decimal
SYMBOLS = ("AAA", "BBB", "CCC")
SESSION = dt.date(2025, 6, 2)
NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
FAST = settings(max_examples=400, deadline=None)


def decimals(*values: str) -> st.SearchStrategy[Decimal]:
    return st.sampled_from([D(v) for v in values])


limits_st = st.builds(
    RiskLimits,
    max_position_shares=st.none() | st.integers(20, 400).map(D),
    max_position_fraction=decimals("0.1", "0.2", "0.5", "1.0", "1.5"),
    max_order_notional=st.none() | st.integers(2_000, 80_000).map(D),
    max_order_fraction=decimals("0.1", "0.5", "1.0"),
    max_gross_exposure=decimals("0.5", "1.0", "2.0", "3.0"),
    allow_short=st.booleans(),
    daily_loss_limit=decimals("0.02", "0.05"),
    max_drawdown=decimals("0.1", "0.2"),
    max_orders_per_tick=st.integers(1, 10),
    max_orders_per_day=st.integers(1, 30),
    max_orders_per_minute=st.sampled_from([2, 5, 20, 200]),
    price_band=decimals("0.05", "0.1"),
)

# Price moves against the last close: inside a 5% band, at a band's edge, outside, a 10x bad tick (E4).
MOVES = decimals("0.97", "1.03", "1.05", "0.95", "1.1", "0.9", "1.2", "10", "0.1")
# Positions and order sizes as fractions of equity, so every exposure limit gets to bind.
POSITION_WEIGHTS = decimals("-0.3", "-0.05", "0.05", "0.2", "0.5", "0.9", "1.4")
TARGET_WEIGHTS = decimals("-0.2", "0", "0.1", "0.3", "0.5", "0.9", "1.0", "1.2")
ORDER_WEIGHTS = decimals("0.01", "0.03", "0.1", "0.2", "0.4", "0.8", "1.5")


def shares(weight: Decimal, equity: Decimal, price: Decimal) -> Decimal:
    return (weight * equity / price).to_integral_value()


def sometimes(draw: st.DrawFn, odds: int) -> bool:
    """True about once in `odds` draws (hypothesis favours the ends of an integer range, not a list's tail)."""
    return draw(st.sampled_from([False] * (odds - 1) + [True]))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RiskLimits, RiskContext, list[OrderIntent]]:
    """Limits, a context and a batch of intents, drawn together so counts land near their caps. Each
    hazard (kill switch, a restricted state, a loss, a drawdown, an unanswered query, a full limiter)
    comes now and then and mostly alone: a context that only denies proves little about the limits."""
    limits = draw(limits_st)
    closes = {s: D(draw(st.integers(10, 300))) for s in SYMBOLS}
    prices = {s: c * (draw(MOVES) if sometimes(draw, 3) else 1) for s, c in closes.items() if not sometimes(draw, 10)}
    equity = D(draw(st.integers(10_000, 200_000)))
    positions = {s: shares(draw(POSITION_WEIGHTS), equity, c) for s, c in closes.items() if draw(st.booleans())}
    restricted_state = sometimes(draw, 3)
    recent = [NOW - dt.timedelta(seconds=s) for s in draw(st.lists(st.integers(0, 120), max_size=5))]
    if sometimes(draw, 6):  # a nearly full per-minute limiter
        recent += [NOW] * max(0, limits.max_orders_per_minute - draw(st.integers(0, 4)))
    ctx = RiskContext(
        now=NOW,
        session=SESSION,
        trading_state=draw(st.sampled_from(list(TradingState))) if restricted_state else TradingState.ACTIVE,
        state_reason=draw(st.sampled_from([*StateReason, "position_drift", ""])),
        state_session=draw(st.sampled_from([SESSION, SESSION - dt.timedelta(days=1), None])),
        kill_switch=sometimes(draw, 6),
        positions=None if sometimes(draw, 20) else positions,
        equity=equity,
        cash=equity,
        session_start_equity=equity * (draw(decimals("0.97", "1.03", "1.06", "0.9")) if sometimes(draw, 3) else 1),
        equity_peak=equity * (draw(decimals("0.9", "1.1", "1.3")) if sometimes(draw, 3) else 1),
        prices=prices,
        last_close=closes,
        orders_sent_this_tick=max(0, limits.max_orders_per_tick - draw(st.integers(0, 3))) if sometimes(draw, 4) else 0,
        orders_sent_today=max(0, limits.max_orders_per_day - draw(st.integers(0, 6))) if sometimes(draw, 4) else 0,
        recent_order_times=tuple(recent),
    )
    # The tick's way first: a target weight per symbol, the order is target minus position; then
    # stray orders of any size, as a sizing bug would emit them.
    orders: list[tuple[str, Decimal]] = []
    for symbol in draw(st.permutations(SYMBOLS)):
        if draw(st.booleans()):
            delta = shares(draw(TARGET_WEIGHTS), equity, closes[symbol]) - positions.get(symbol, D(0))
            if delta != 0:
                orders.append((symbol, delta))
    for _ in range(draw(st.integers(0, 12))):
        sign = draw(st.sampled_from([1, -1]))
        symbol = draw(st.sampled_from(SYMBOLS))
        orders.append((symbol, sign * max(D(1), shares(draw(ORDER_WEIGHTS), equity, closes[symbol]))))
    batch = []
    for seq, (symbol, signed) in enumerate(orders):
        limit_factor = (draw(MOVES) if sometimes(draw, 3) else D(1)) if sometimes(draw, 3) else None
        batch.append(
            OrderIntent(
                client_order_id=make_client_order_id("prop", symbol, SESSION, seq),
                symbol=symbol,
                side=Side.BUY if signed > 0 else Side.SELL,
                qty=abs(signed),
                session=SESSION,
                strategy="prop",
                seq=seq,
                order_type="market" if limit_factor is None else "limit",
                limit_price=None if limit_factor is None else limit_factor * closes[symbol],
                reduce_only=sometimes(draw, 8),
            )
        )
    return limits, ctx, batch


def effective_state(ctx: RiskContext, limits: RiskLimits) -> TradingState:
    """The state the batch is judged under, derived independently from the spec (E2, E3)."""
    assert ctx.equity is not None
    state = ctx.trading_state
    if (
        state is TradingState.REDUCING
        and ctx.state_reason == StateReason.DAILY_LOSS
        and (ctx.state_session is None or ctx.state_session < ctx.session)
    ):
        state = TradingState.ACTIVE
    peak = max(ctx.equity_peak, ctx.equity)
    if (peak - ctx.equity) / peak >= limits.max_drawdown:
        state = TradingState.HALTED
    loss = (ctx.equity - ctx.session_start_equity) / ctx.session_start_equity <= -limits.daily_loss_limit
    if loss and state is TradingState.ACTIVE:
        state = TradingState.REDUCING
    return state


def in_band(price: Decimal, close: Decimal, band: Decimal) -> bool:
    return close * (1 - band) <= price <= close * (1 + band)


@FAST
@given(scenario=scenarios())
def test_approved_orders_never_breach_a_limit(scenario: tuple[RiskLimits, RiskContext, list[OrderIntent]]) -> None:
    limits, ctx, batch = scenario
    decision = RiskGovernor(limits).check(batch, ctx)
    assert decision == RiskGovernor(limits).check(batch, ctx)  # deterministic

    # Every intent is accounted for: its approved part plus its denied part is the whole order.
    by_id = {i.client_order_id: i for i in batch}
    accounted = dict.fromkeys(by_id, D(0))
    for a in decision.approved:
        original = by_id[a.client_order_id]
        assert replace(original, qty=a.qty) == a  # only the quantity may change (a clip)
        accounted[a.client_order_id] += a.qty
    for d in decision.denials:
        accounted[d.intent.client_order_id] += d.qty
    assert accounted == {k: i.qty for k, i in by_id.items()}

    if ctx.positions is None:
        assert decision.approved == []
        return
    assert ctx.equity is not None
    equity = ctx.equity
    restricted = ctx.kill_switch or effective_state(ctx, limits) is not TradingState.ACTIVE
    window = sum(1 for t in ctx.recent_order_times if t > NOW - dt.timedelta(minutes=1))
    positions = dict(ctx.positions)
    opening = 0
    for k, a in enumerate(decision.approved):
        before = positions.get(a.symbol, D(0))
        after = before + a.signed_qty
        positions[a.symbol] = after
        reducing = before != 0 and (a.signed_qty > 0) != (before > 0) and a.qty <= abs(before)
        close = ctx.last_close[a.symbol]
        assert window + k + 1 <= limits.max_orders_per_minute
        if a.limit_price is not None:
            assert in_band(a.limit_price, close, limits.price_band)
        if restricted or by_id[a.client_order_id].reduce_only:
            assert reducing, f"{a} is not reducing {before} under a restriction"
        if reducing:
            assert abs(after) < abs(before)
            assert after * before >= 0
            continue
        opening += 1
        assert ctx.orders_sent_this_tick + k + 1 <= limits.max_orders_per_tick
        assert ctx.orders_sent_today + k + 1 <= limits.max_orders_per_day
        mark = ctx.prices[a.symbol]
        assert in_band(mark, close, limits.price_band)
        notional = a.qty * (a.limit_price or mark)
        assert notional <= limits.max_order_fraction * equity
        assert limits.max_order_notional is None or notional <= limits.max_order_notional
        assert limits.max_position_shares is None or abs(after) <= limits.max_position_shares
        assert abs(after) * mark <= limits.max_position_fraction * equity
        gross = sum((abs(q) * ctx.prices[s] for s, q in positions.items() if q != 0), D(0))
        assert gross <= limits.max_gross_exposure * equity
        assert limits.allow_short or after >= 0
    assert opening <= max(0, limits.max_orders_per_tick - ctx.orders_sent_this_tick)
    assert opening <= max(0, limits.max_orders_per_day - ctx.orders_sent_today)

    # E5: more opening orders than the tick allows, or a full per-minute limiter, is a runaway strategy.
    denied = [d.reason for d in decision.denials]
    over_tick = ctx.orders_sent_this_tick + opening + denied.count(DenialReason.ORDERS_PER_TICK)
    if over_tick > limits.max_orders_per_tick or DenialReason.RATE_LIMIT in denied:
        assert decision.next_state is TradingState.HALTED
    if effective_state(ctx, limits) is TradingState.HALTED:
        assert decision.next_state is TradingState.HALTED  # never relaxes by itself


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), symbol=st.sampled_from(SYMBOLS), qty=st.integers(1, 300))
def test_a_market_flatten_is_never_blocked(
    scenario: tuple[RiskLimits, RiskContext, list[OrderIntent]], symbol: str, qty: int
) -> None:
    """Whatever the state, the kill switch, the prices or the caps, closing a known position goes out,
    as long as the broker's own per-minute limit has room."""
    limits, ctx, _ = scenario
    ctx = replace(ctx, positions={symbol: D(qty) if qty % 2 else -D(qty)}, recent_order_times=())
    flatten = OrderIntent(
        client_order_id=make_client_order_id("prop", symbol, SESSION, 0),
        symbol=symbol,
        side=Side.SELL if qty % 2 else Side.BUY,
        qty=D(qty),
        session=SESSION,
        strategy="prop",
    )
    decision = RiskGovernor(limits).check([flatten], ctx)
    assert decision.approved == [flatten]
    assert decision.denials == []
