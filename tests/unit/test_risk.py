"""Risk governor: RELIABILITY group E scenarios and each limit on its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pydantic
import pytest

from tradeflow.domain import OrderIntent, Side, TradingState, make_client_order_id
from tradeflow.risk import (
    RATE_WINDOW,
    DenialReason,
    RiskContext,
    RiskDecision,
    RiskGovernor,
    RiskLimits,
    StateReason,
)

D = Decimal
SESSION = dt.date(2025, 6, 2)
NEXT_SESSION = dt.date(2025, 6, 3)
NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)


def intent(
    symbol: str = "SPY",
    side: Side = Side.BUY,
    qty: int | str = 10,
    seq: int = 0,
    limit: str | None = None,
    reduce_only: bool = False,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=make_client_order_id("test", symbol, SESSION, seq),
        symbol=symbol,
        side=side,
        qty=D(qty),
        session=SESSION,
        strategy="test",
        seq=seq,
        order_type="limit" if limit is not None else "market",
        limit_price=D(limit) if limit is not None else None,
        reduce_only=reduce_only,
    )


def ctx(**over: object) -> RiskContext:
    base: dict[str, object] = {
        "now": NOW,
        "session": SESSION,
        "trading_state": TradingState.ACTIVE,
        "positions": {},
        "equity": D(100_000),
        "cash": D(100_000),
        "session_start_equity": D(100_000),
        "equity_peak": D(100_000),
        "prices": {"SPY": D(500), "QQQ": D(400), "IWM": D(200)},
        "last_close": {"SPY": D(500), "QQQ": D(400), "IWM": D(200)},
    }
    base.update(over)
    if "cash" not in over and base["equity"] is not None and base["positions"] is not None:
        # A consistent book: cash is what the equity holds beyond the positions at their prices (the
        # governor never trusts an equity the marked positions do not support).
        held = sum((q * base["prices"].get(s, D(0)) for s, q in base["positions"].items()), D(0))  # type: ignore[attr-defined,union-attr]
        base["cash"] = base["equity"] - held  # type: ignore[operator]
    return RiskContext(**base)  # type: ignore[arg-type]


GOV = RiskGovernor(RiskLimits())


def reasons(decision: RiskDecision) -> list[DenialReason]:
    return [d.reason for d in decision.denials]


def carry(decision: RiskDecision, **over: object) -> RiskContext:
    """The next tick's context, built the way the tick does: from the state the ledger persisted."""
    return ctx(
        trading_state=decision.next_state,
        state_reason=decision.state_reason,
        state_session=decision.state_session,
        equity_peak=decision.equity_peak,
        **over,
    )


# -- E1: kill switch -------------------------------------------------------------------------------


def test_e1_kill_switch_denies_opening_and_increasing_orders():
    c = ctx(kill_switch=True, positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.BUY, 5), intent("QQQ", Side.BUY, 5, seq=1)], c)
    assert decision.approved == []
    assert reasons(decision) == [DenialReason.KILL_SWITCH, DenialReason.KILL_SWITCH]


def test_e1_kill_switch_passes_reducing_and_flatten_orders():
    c = ctx(kill_switch=True, positions={"SPY": D(10), "QQQ": D(-4)})
    reduce_spy = intent("SPY", Side.SELL, 3)
    flatten_qqq = intent("QQQ", Side.BUY, 4, seq=1)
    decision = GOV.check([reduce_spy, flatten_qqq], c)
    assert decision.approved == [reduce_spy, flatten_qqq]
    assert decision.denials == []
    assert decision.next_state is TradingState.ACTIVE  # the kill switch is a flag, not a state


def test_e1_kill_switch_flattens_many_symbols_in_one_tick_past_the_per_tick_cap():
    symbols = [f"S{i}" for i in range(8)]
    c = ctx(kill_switch=True, positions={s: D(100) for s in symbols}, prices={}, last_close={})
    flatten = [intent(s, Side.SELL, 100, seq=i) for i, s in enumerate(symbols)]
    decision = GOV.check(flatten, c)
    assert decision.approved == flatten  # no price needed and no per-tick cap for a market flatten
    assert decision.next_state is TradingState.ACTIVE


def test_e1_kill_switch_clips_a_sell_that_would_flip_to_the_position_size():
    c = ctx(kill_switch=True, positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.SELL, 25)], c)
    assert [(a.qty, a.client_order_id) for a in decision.approved] == [(D(10), intent().client_order_id)]
    [denial] = decision.denials
    assert (denial.reason, denial.qty) == (DenialReason.NOT_REDUCING, D(15))


def test_e1_orders_in_one_batch_cannot_reduce_past_flat():
    c = ctx(kill_switch=True, positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.SELL, 6), intent("SPY", Side.SELL, 6, seq=1)], c)
    assert [a.qty for a in decision.approved] == [D(6), D(4)]
    assert reasons(decision) == [DenialReason.NOT_REDUCING]


def test_e1_reduce_only_flag_is_enforced_even_when_active():
    c = ctx(positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.BUY, 1, reduce_only=True)], c)
    assert decision.approved == []
    assert reasons(decision) == [DenialReason.NOT_REDUCING]


# -- E2: daily loss --------------------------------------------------------------------------------


def test_e2_daily_loss_trips_reducing_and_blocks_new_entries_in_the_same_tick():
    c = ctx(equity=D(94_000), session_start_equity=D(100_000), positions={"SPY": D(100)})
    decision = GOV.check([intent("QQQ", Side.BUY, 5), intent("SPY", Side.SELL, 100, seq=1)], c)
    assert decision.next_state is TradingState.REDUCING
    assert decision.state_reason == StateReason.DAILY_LOSS
    assert decision.state_session == SESSION
    assert reasons(decision) == [DenialReason.DAILY_LOSS_REDUCING]
    assert [a.symbol for a in decision.approved] == ["SPY"]  # the exit still goes out
    assert any("REDUCING" in a for a in decision.alerts)


def test_e2_loss_exactly_at_the_limit_trips_and_just_above_does_not():
    at = GOV.check([], ctx(equity=D(95_000)))
    above = GOV.check([], ctx(equity=D("95000.01")))
    assert (at.next_state, above.next_state) == (TradingState.REDUCING, TradingState.ACTIVE)


def test_e2_reducing_survives_a_restart_through_the_persisted_state_even_after_recovery():
    first = GOV.check([], ctx(equity=D(94_000)))
    # Restart mid-session: the ledger hands the persisted state back; equity has recovered.
    later = GOV.check([intent("SPY", Side.BUY, 5)], carry(first, equity=D(99_000)))
    assert later.next_state is TradingState.REDUCING
    assert reasons(later) == [DenialReason.DAILY_LOSS_REDUCING]
    assert not later.state_changed


def test_e2_reducing_resets_to_active_at_the_next_session():
    first = GOV.check([], ctx(equity=D(94_000)))
    nxt = carry(first, session=NEXT_SESSION, now=NOW + dt.timedelta(days=1), equity=D(94_000))
    nxt = dataclasses.replace(nxt, session_start_equity=D(94_000))
    decision = GOV.check([intent("SPY", Side.BUY, 5)], nxt)
    assert decision.next_state is TradingState.ACTIVE
    assert decision.state_reason == StateReason.SESSION_RESET
    assert len(decision.approved) == 1
    assert decision.alerts


def test_e2_reducing_for_another_cause_does_not_reset_at_the_next_session():
    c = ctx(
        trading_state=TradingState.REDUCING, state_reason="position_drift", state_session=SESSION, session=NEXT_SESSION
    )
    decision = GOV.check([intent("SPY", Side.BUY, 5)], c)
    assert decision.next_state is TradingState.REDUCING
    assert reasons(decision) == [DenialReason.STATE_REDUCING]


def test_e2_resume_inside_the_daily_loss_session_changes_nothing():
    first = GOV.check([], ctx(equity=D(94_000)))
    change = GOV.resume(carry(first, equity=D(94_000)), operator="alice")
    assert change.next_state is TradingState.REDUCING
    assert "alice" in change.detail


# -- E3: drawdown ----------------------------------------------------------------------------------


def test_e3_drawdown_from_peak_trips_halted():
    c = ctx(equity=D(80_000), session_start_equity=D(81_000), equity_peak=D(100_000), positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.BUY, 1), intent("SPY", Side.SELL, 10, seq=1)], c)
    assert decision.next_state is TradingState.HALTED
    assert decision.state_reason == StateReason.DRAWDOWN
    assert reasons(decision) == [DenialReason.DRAWDOWN_HALTED]
    assert [a.side for a in decision.approved] == [Side.SELL]
    assert any("HALTED" in a for a in decision.alerts)


def test_e3_halted_stays_after_recovery_and_across_sessions_until_resumed():
    halted = GOV.check([], ctx(equity=D(79_000), session_start_equity=D(79_500)))
    nxt = carry(halted, session=NEXT_SESSION, now=NOW + dt.timedelta(days=1), equity=D(99_000))
    decision = GOV.check([intent("SPY", Side.BUY, 1)], dataclasses.replace(nxt, session_start_equity=D(99_000)))
    assert decision.next_state is TradingState.HALTED
    assert reasons(decision) == [DenialReason.DRAWDOWN_HALTED]


def test_e3_resume_returns_to_active_resets_the_peak_and_names_the_operator():
    halted = GOV.check([], ctx(equity=D(79_000), session_start_equity=D(79_500)))
    c = carry(halted, session=NEXT_SESSION, now=NOW + dt.timedelta(days=1), equity=D(79_000))
    c = dataclasses.replace(c, session_start_equity=D(79_000))
    change = GOV.resume(c, operator="alice")
    assert (change.previous_state, change.next_state) == (TradingState.HALTED, TradingState.ACTIVE)
    assert change.equity_peak == D(79_000)
    assert "alice" in change.detail
    assert "HALTED -> ACTIVE" in change.detail
    # Persisting the change lets the next tick trade: the peak no longer says "drawdown".
    after = dataclasses.replace(
        c,
        trading_state=change.next_state,
        state_reason=change.state_reason,
        state_session=change.state_session,
        equity_peak=change.equity_peak,
    )
    decision = GOV.check([intent("SPY", Side.BUY, 1)], after)
    assert decision.next_state is TradingState.ACTIVE
    assert len(decision.approved) == 1


def test_e3_resume_while_the_session_loss_is_past_the_limit_gives_reducing():
    c = ctx(trading_state=TradingState.HALTED, state_reason=StateReason.DRAWDOWN, equity=D(90_000))
    change = GOV.resume(c, operator="bob")
    assert change.next_state is TradingState.REDUCING
    assert change.state_reason == StateReason.DAILY_LOSS


def test_e3_resume_refuses_with_unknown_equity_and_needs_an_operator():
    c = ctx(trading_state=TradingState.HALTED, state_reason=StateReason.DRAWDOWN, equity=None)
    assert GOV.resume(c, operator="bob").next_state is TradingState.HALTED
    with pytest.raises(ValueError, match="operator"):
        GOV.resume(c, operator=" ")


# -- E4: bad prices and oversize orders ------------------------------------------------------------


def test_e4_ten_x_price_is_denied_with_price_band():
    decision = GOV.check([intent("SPY", Side.BUY, 1)], ctx(prices={"SPY": D(5000)}, last_close={"SPY": D(500)}))
    assert decision.approved == []
    assert reasons(decision) == [DenialReason.PRICE_BAND]


def test_e4_fat_finger_limit_price_is_denied_even_on_a_reducing_order():
    c = ctx(positions={"SPY": D(10)})
    decision = GOV.check([intent("SPY", Side.SELL, 10, limit="50")], c)
    assert decision.approved == []
    assert reasons(decision) == [DenialReason.PRICE_BAND]


def test_e4_price_at_the_band_edge_passes_and_past_it_fails():
    inside = GOV.check([intent("SPY", Side.BUY, 1)], ctx(prices={"SPY": D(550)}))
    outside = GOV.check([intent("SPY", Side.BUY, 1)], ctx(prices={"SPY": D("550.01")}))
    assert (len(inside.approved), reasons(outside)) == (1, [DenialReason.PRICE_BAND])


def test_e4_sizing_bug_order_over_max_notional_is_denied():
    decision = GOV.check([intent("SPY", Side.BUY, 2000)], ctx())  # 1,000,000 against 100,000 equity
    assert decision.approved == []
    assert reasons(decision) == [DenialReason.ORDER_NOTIONAL]
    assert "1000000" in decision.denials[0].detail


def test_e4_absolute_notional_cap_binds_below_the_equity_fraction():
    gov = RiskGovernor(RiskLimits(max_order_notional=D(10_000)))
    ok = gov.check([intent("SPY", Side.BUY, 20)], ctx())
    too_big = gov.check([intent("SPY", Side.BUY, 21)], ctx())
    assert (len(ok.approved), reasons(too_big)) == (1, [DenialReason.ORDER_NOTIONAL])


def test_e4_missing_price_denies_opening_orders():
    decision = GOV.check([intent("XYZ", Side.BUY, 1)], ctx())
    assert reasons(decision) == [DenialReason.PRICE_UNKNOWN]


# -- E5: order flood -------------------------------------------------------------------------------


def test_e5_five_hundred_orders_are_capped_per_tick_and_halt_with_an_alert():
    flood = [intent("SPY", Side.BUY, 1, seq=i) for i in range(500)]
    decision = GOV.check(flood, ctx())
    assert decision.approved == flood[:5]
    assert len(decision.denials) == 495
    assert set(reasons(decision)) == {DenialReason.ORDERS_PER_TICK}
    assert decision.next_state is TradingState.HALTED
    assert decision.state_reason == StateReason.ORDER_FLOOD
    assert any("order flood" in a for a in decision.alerts)
    # From the next tick on, only reducing orders pass.
    nxt = GOV.check([intent("SPY", Side.BUY, 1, seq=900)], carry(decision, positions={"SPY": D(5)}))
    assert reasons(nxt) == [DenialReason.STATE_HALTED]


def test_e5_flood_halts_even_when_another_limit_denies_first():
    flood = [intent("SPY", Side.BUY, 150, seq=i) for i in range(500)]  # the 2nd already breaches the position
    decision = GOV.check(flood, ctx())
    assert len(decision.approved) == 1
    assert decision.next_state is TradingState.HALTED


def test_e5_per_minute_limiter_counts_recent_sends_and_halts():
    recent = tuple(NOW - dt.timedelta(seconds=s % 59) for s in range(198))
    old = tuple(NOW - RATE_WINDOW - dt.timedelta(seconds=1) for _ in range(50))  # outside the window
    c = ctx(recent_order_times=recent + old, positions={"SPY": D(100)})
    decision = GOV.check([intent("SPY", Side.SELL, 1, seq=i) for i in range(5)], c)
    assert len(decision.approved) == 2
    assert reasons(decision) == [DenialReason.RATE_LIMIT] * 3
    assert decision.next_state is TradingState.HALTED


def test_e5_per_day_cap_denies_and_alerts_without_halting():
    decision = GOV.check([intent("SPY", Side.BUY, 1, seq=i) for i in range(3)], ctx(orders_sent_today=48))
    assert len(decision.approved) == 2
    assert reasons(decision) == [DenialReason.ORDERS_PER_DAY]
    assert decision.next_state is TradingState.ACTIVE
    assert any("daily order cap" in a for a in decision.alerts)


def test_e5_orders_already_sent_this_tick_count_toward_the_cap():
    decision = GOV.check([intent("SPY", Side.BUY, 1, seq=i) for i in range(3)], ctx(orders_sent_this_tick=3))
    assert len(decision.approved) == 2
    assert decision.next_state is TradingState.HALTED


# -- the limits one by one -------------------------------------------------------------------------


def test_position_fraction_limit_holds_across_a_batch():
    # 100 SPY at 500 = 50,000; three 80-share buys would make 340 shares = 170% of equity.
    c = ctx(positions={"SPY": D(100)})
    decision = GOV.check([intent("SPY", Side.BUY, 80, seq=i) for i in range(3)], c)
    assert [a.qty for a in decision.approved] == [D(80)]  # 180 x 500 = 90,000; the next would be 130,000
    assert reasons(decision) == [DenialReason.POSITION_LIMIT] * 2


def test_position_share_limit():
    gov = RiskGovernor(RiskLimits(max_position_shares=D(50)))
    decision = gov.check([intent("SPY", Side.BUY, 40), intent("SPY", Side.BUY, 11, seq=1)], ctx())
    assert [a.qty for a in decision.approved] == [D(40)]
    assert reasons(decision) == [DenialReason.POSITION_LIMIT]


def test_gross_exposure_limit_sums_every_symbol():
    # 60,000 in SPY already; 40,000 more in QQQ fills gross to 100%; 1 IWM share would pass it.
    c = ctx(positions={"SPY": D(120)})
    decision = GOV.check([intent("QQQ", Side.BUY, 100), intent("IWM", Side.BUY, 1, seq=1)], c)
    assert [a.symbol for a in decision.approved] == ["QQQ"]
    assert reasons(decision) == [DenialReason.GROSS_EXPOSURE]


def test_gross_exposure_is_unknown_when_a_held_symbol_has_no_price():
    c = ctx(positions={"ZZZ": D(5)})
    decision = GOV.check([intent("SPY", Side.BUY, 1)], c)
    assert reasons(decision) == [DenialReason.PRICE_UNKNOWN]


def test_long_only_refuses_to_open_a_short_and_clips_a_sell_at_flat():
    opening = GOV.check([intent("SPY", Side.SELL, 5)], ctx())
    flip = GOV.check([intent("SPY", Side.SELL, 15)], ctx(positions={"SPY": D(10)}))
    assert reasons(opening) == [DenialReason.SHORT_NOT_ALLOWED]
    assert [a.qty for a in flip.approved] == [D(10)]
    assert [(d.reason, d.qty) for d in flip.denials] == [(DenialReason.SHORT_NOT_ALLOWED, D(5))]


def test_shorts_allowed_lets_a_flip_through_within_limits():
    gov = RiskGovernor(RiskLimits(allow_short=True))
    decision = gov.check([intent("SPY", Side.SELL, 15)], ctx(positions={"SPY": D(10)}))
    assert [a.qty for a in decision.approved] == [D(15)]


def test_a_flip_that_breaches_a_limit_still_closes_the_old_position():
    # Short 10 covered by a 300-share buy: long 290 x 500 breaches the position limit; the cover goes.
    decision = GOV.check([intent("SPY", Side.BUY, 300)], ctx(positions={"SPY": D(-10)}))
    assert [a.qty for a in decision.approved] == [D(10)]
    assert [(d.reason, d.qty) for d in decision.denials] == [(DenialReason.ORDER_NOTIONAL, D(290))]


def test_unknown_broker_state_denies_everything_including_a_flatten():
    for missing in ("positions", "equity", "cash"):
        c = ctx(positions={"SPY": D(10)}, kill_switch=True)
        c = dataclasses.replace(c, **{missing: None})
        decision = GOV.check([intent("SPY", Side.SELL, 10)], c)
        assert decision.approved == []
        assert reasons(decision) == [DenialReason.STATE_UNKNOWN]
        assert decision.alerts
        assert missing in decision.alerts[0]


def test_halted_beats_reducing_and_states_never_relax_by_themselves():
    c = ctx(trading_state=TradingState.HALTED, state_reason=StateReason.ORDER_FLOOD, equity=D(90_000))
    decision = GOV.check([], c)
    assert (decision.next_state, decision.state_reason) == (TradingState.HALTED, StateReason.ORDER_FLOOD)
    assert not decision.state_changed


def test_decisions_are_deterministic():
    c = ctx(positions={"SPY": D(100)}, equity=D(96_000))
    batch = [intent("SPY", Side.BUY, 30, seq=i) for i in range(9)] + [intent("SPY", Side.SELL, 500, seq=99)]
    assert GOV.check(batch, c) == GOV.check(batch, c)


def test_limits_are_frozen_and_reject_bad_values():
    with pytest.raises(pydantic.ValidationError):
        RiskLimits(daily_loss_limit=D("1.5"))
    with pytest.raises(pydantic.ValidationError):
        RiskLimits(max_orders_per_tick=0)
    with pytest.raises(pydantic.ValidationError):
        RiskLimits(max_drawdwn=D("0.1"))  # a misspelt key fails loudly
    with pytest.raises(pydantic.ValidationError):
        RiskLimits().max_drawdown = D("0.9")  # type: ignore[misc]


def test_seed_defaults():
    limits = RiskLimits()
    assert (limits.daily_loss_limit, limits.max_drawdown, limits.price_band) == (D("0.05"), D("0.20"), D("0.10"))
    assert (limits.max_orders_per_tick, limits.max_orders_per_day, limits.max_orders_per_minute) == (5, 50, 200)
    assert (limits.max_gross_exposure, limits.allow_short) == (D("1.0"), False)


def test_context_needs_an_aware_clock():
    with pytest.raises(ValueError, match="timezone-aware"):
        ctx(now=dt.datetime(2025, 6, 2, 15, 0))


def test_limit_order_notional_is_priced_at_its_limit():
    # 190 x 525 = 99,750 passes; at a limit of 530, 100,700 breaches the 100% of equity cap.
    ok = GOV.check([intent("SPY", Side.BUY, 190, limit="525")], ctx())
    too_big = GOV.check([intent("SPY", Side.BUY, 190, limit="530")], ctx())
    assert (len(ok.approved), reasons(too_big)) == (1, [DenialReason.ORDER_NOTIONAL])


def test_reduce_only_flip_is_clipped_at_flat_even_when_flips_are_allowed():
    gov = RiskGovernor(RiskLimits(allow_short=True))
    decision = gov.check([intent("SPY", Side.SELL, 15, reduce_only=True)], ctx(positions={"SPY": D(10)}))
    assert [a.qty for a in decision.approved] == [D(10)]
    assert [(d.reason, d.qty) for d in decision.denials] == [(DenialReason.NOT_REDUCING, D(5))]


def test_non_positive_session_equity_or_peak_is_an_unknown_state():
    for bad in ({"session_start_equity": D(0)}, {"equity_peak": D(-1)}):
        decision = GOV.check([intent("SPY", Side.BUY, 1)], ctx(**bad))
        assert reasons(decision) == [DenialReason.STATE_UNKNOWN]


def test_e2_a_new_sessions_daily_loss_records_the_new_session_though_the_state_stays_reducing():
    first = GOV.check([], ctx(equity=D(94_000)))
    nxt = carry(first, session=NEXT_SESSION, now=NOW + dt.timedelta(days=1), equity=D(88_000))
    decision = GOV.check([], dataclasses.replace(nxt, session_start_equity=D(94_000)))
    assert (decision.previous_state, decision.next_state) == (TradingState.REDUCING, TradingState.REDUCING)
    assert decision.state_session == NEXT_SESSION
    assert decision.state_changed


# -- breakers named for the audit log --------------------------------------------------------------


def test_each_escalation_names_its_breaker_and_the_governors_detail():
    drawdown = GOV.check([], ctx(equity=D(79_000), session_start_equity=D(79_500)))
    daily = GOV.check([], ctx(equity=D(94_000)))
    flood = GOV.check([intent("SPY", Side.BUY, 1, seq=i) for i in range(50)], ctx())
    named = [[(str(b.breaker), b.state) for b in d.breakers] for d in (drawdown, daily, flood)]
    assert named == [
        [("drawdown", TradingState.HALTED)],
        [("daily_loss", TradingState.REDUCING)],
        [("order_flood", TradingState.HALTED)],
    ]
    assert drawdown.breakers[0].detail.startswith("drawdown 21.00% from peak")
    # A state already at or past a breaker's level is not escalated again: no second event.
    assert GOV.check([], carry(drawdown, equity=D(78_000), session_start_equity=D(79_500))).breakers == ()
