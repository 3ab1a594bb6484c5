"""Round trips rebuilt from fills: episode boundaries, hand-computed P&L, and the entry-decision context."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tradeflow.errors import InputError
from tradeflow.learning.trades import (
    DECISION_COLUMNS,
    FILL_COLUMNS,
    OPEN_EPISODE_COLUMNS,
    TRADE_COLUMNS,
    open_episodes,
    round_trips,
    summarize,
)

MON = dt.date(2025, 3, 3)  # a Monday


def day(n: int) -> dt.date:
    return MON + dt.timedelta(days=n)


def fill(
    eid: str,
    side: str,
    qty: float,
    price: float,
    *,
    session: dt.date = MON,
    minute: int = 0,
    commission: float = 0.0,
    symbol: str = "SPY",
    strategy: str = "trend",
) -> dict[str, Any]:
    ts = pd.Timestamp(dt.datetime.combine(session, dt.time(15, 0)), tz="UTC") + pd.Timedelta(minutes=minute)
    return {
        "execution_id": eid,
        "client_order_id": f"c-{eid}",
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "price": price,
        "commission": commission,
        "ts": ts,
        "session": session,
        "strategy": strategy,
    }


def fills(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(FILL_COLUMNS))


def decision(session: dt.date, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session": session,
        "strategy": "trend",
        "symbol": "SPY",
        "params": '{"window": 20}',
        "arm": None,
        "experiment_id": None,
        "target": 1.0,
        "vix": math.nan,
        "trend": "",
    }
    row.update(kw)
    return row


def decisions(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(DECISION_COLUMNS))


def test_long_with_resizes_is_one_trade_with_hand_computed_pnl() -> None:
    # buy 10 @100, add 10 @110, sell 5 @120, sell 15 @105; commissions 1 each.
    trades = round_trips(
        fills(
            fill("e1", "buy", 10, 100, session=day(0), commission=1),
            fill("e2", "buy", 10, 110, session=day(1), commission=1),
            fill("e3", "sell", 5, 120, session=day(2), commission=1),
            fill("e4", "sell", 15, 105, session=day(7), commission=1),
        )
    )
    assert list(trades.columns) == list(TRADE_COLUMNS)
    assert len(trades) == 1
    t = trades.iloc[0]
    assert t["direction"] == "long"
    assert t["max_qty"] == 20
    assert t["entry_notional"] == pytest.approx(2100.0)  # only the fills that grew the position
    # cash: -1000 - 1100 + 600 + 1575 = 75; minus 4 commission
    assert t["pnl"] == pytest.approx(71.0)
    assert t["costs"] == pytest.approx(4.0)
    assert t["return_net"] == pytest.approx(71.0 / 2100.0)
    assert bool(t["win"]) is True
    assert t["entry_session"] == day(0)
    assert t["exit_session"] == day(7)
    assert t["holding_days"] == 5  # Mon -> next Mon: five weekdays
    assert t["entry_ts"] == pd.Timestamp("2025-03-03 15:00", tz="UTC")
    assert t["trade_id"] == "trend:SPY:2025-03-03T15:00:00+00:00"


def test_short_profit_is_price_fall_minus_costs() -> None:
    trades = round_trips(
        fills(
            fill("e1", "sell", 10, 50, commission=0.5),
            fill("e2", "buy", 10, 45, session=day(1), commission=0.5),
        )
    )
    t = trades.iloc[0]
    assert t["direction"] == "short"
    assert t["pnl"] == pytest.approx(49.0)  # 500 - 450 - 1
    assert t["entry_notional"] == pytest.approx(500.0)
    assert t["return_net"] == pytest.approx(0.098)


def test_losing_short_is_not_a_win() -> None:
    trades = round_trips(fills(fill("e1", "sell", 10, 50), fill("e2", "buy", 10, 51, minute=5)))
    assert trades.iloc[0]["pnl"] == pytest.approx(-10.0)
    assert not bool(trades.iloc[0]["win"])


def test_flip_through_zero_closes_and_opens_with_commission_split_by_quantity() -> None:
    f = fills(
        fill("e1", "buy", 10, 100, commission=1.0),
        fill("e2", "sell", 15, 110, session=day(1), commission=3.0),
        fill("e3", "buy", 5, 100, session=day(2), commission=0.5),
    )
    trades = round_trips(f)
    assert list(trades["direction"]) == ["long", "short"]
    first, second = trades.iloc[0], trades.iloc[1]
    # closing part: 10 of 15 shares carries 2.0 of the 3.0 commission
    assert first["costs"] == pytest.approx(3.0)
    assert first["pnl"] == pytest.approx(1100 - 1000 - 3.0)
    assert first["exit_ts"] == second["entry_ts"]
    assert second["max_qty"] == 5
    assert second["entry_notional"] == pytest.approx(550.0)
    assert second["costs"] == pytest.approx(1.0 + 0.5)
    assert second["pnl"] == pytest.approx(550 - 500 - 1.5)
    assert second["entry_session"] == day(1)


def test_flip_remainder_is_open_when_nothing_closes_it() -> None:
    f = fills(fill("e1", "buy", 10, 100, commission=1.0), fill("e2", "sell", 15, 110, minute=1, commission=3.0))
    assert len(round_trips(f)) == 1
    still = open_episodes(f)
    assert list(still.columns) == list(OPEN_EPISODE_COLUMNS)
    assert len(still) == 1
    row = still.iloc[0]
    assert row["direction"] == "short"
    assert row["position"] == -5
    assert row["cash_flow"] == pytest.approx(550.0)
    assert row["costs"] == pytest.approx(1.0)
    assert pd.isna(row["exit_ts"])
    assert row["exit_session"] is None
    assert pd.isna(row["pnl"])


def test_same_session_round_trip_holds_zero_days() -> None:
    trades = round_trips(fills(fill("e1", "buy", 1, 10), fill("e2", "sell", 1, 11, minute=30)))
    assert trades.iloc[0]["holding_days"] == 0


def test_open_episode_is_not_a_trade() -> None:
    f = fills(
        fill("e1", "buy", 10, 100),
        fill("e2", "sell", 10, 101, minute=1),
        fill("e3", "buy", 3, 102, minute=2),
        fill("e4", "sell", 1, 103, minute=3),
    )
    trades = round_trips(f)
    assert len(trades) == 1
    assert trades.iloc[0]["exit_ts"] == pd.Timestamp("2025-03-03 15:01", tz="UTC")
    still = open_episodes(f)
    assert len(still) == 1
    assert still.iloc[0]["position"] == 2
    assert still.iloc[0]["max_qty"] == 3


def test_fills_are_folded_in_time_then_execution_id_order_whatever_the_row_order() -> None:
    ordered = fills(
        fill("e1", "buy", 10, 100),
        fill("e2", "sell", 10, 105),  # same ts as e1: the id breaks the tie
        fill("e3", "sell", 4, 106, minute=1),
        fill("e4", "buy", 4, 100, minute=2),
    )
    shuffled = ordered.iloc[[3, 1, 2, 0]]
    a, b = round_trips(ordered), round_trips(shuffled)
    assert list(b["direction"]) == ["long", "short"]
    pd.testing.assert_frame_equal(a, b)


def test_symbols_and_strategies_are_separate_positions() -> None:
    f = fills(
        fill("e1", "buy", 10, 100, symbol="SPY"),
        fill("e2", "sell", 10, 50, symbol="QQQ", minute=1),
        fill("e3", "buy", 5, 100, strategy="meanrev", minute=2),
        fill("e4", "sell", 10, 101, symbol="SPY", minute=3),
    )
    trades = round_trips(f)
    assert list(trades["symbol"]) == ["SPY"]
    assert len(open_episodes(f)) == 2


def test_equal_entry_times_still_get_unique_trade_ids() -> None:
    f = fills(
        fill("e1", "buy", 1, 10),
        fill("e2", "sell", 1, 11),
        fill("e3", "buy", 1, 10),
        fill("e4", "sell", 1, 12),
    )
    ids = list(round_trips(f)["trade_id"])
    assert ids == ["trend:SPY:2025-03-03T15:00:00+00:00", "trend:SPY:2025-03-03T15:00:00+00:00#2"]


def test_context_comes_from_the_entry_decision() -> None:
    f = fills(
        fill("e1", "buy", 10, 100, session=day(3)),  # Thursday
        fill("e2", "sell", 10, 101, session=day(4)),
    )
    d = decisions(
        decision(day(3), params='{"window": 50}', arm="test", experiment_id="exp-1", vix=14.99, trend="up"),
        decision(day(4), params='{"window": 10}', arm="control", experiment_id="exp-9", vix=40.0, trend="down"),
    )
    t = round_trips(f, d).iloc[0]
    assert t["params"] == '{"window": 50}'
    assert t["arm"] == "test"
    assert t["experiment_id"] == "exp-1"
    assert t["vix_at_entry"] == pytest.approx(14.99)
    assert t["vix_regime"] == "low"
    assert t["trend"] == "up"
    assert t["weekday"] == "Thu"


@pytest.mark.parametrize(
    ("vix", "regime"),
    [(14.999, "low"), (15.0, "normal"), (24.999, "normal"), (25.0, "high"), (80.0, "high"), (math.nan, "unknown")],
)
def test_vix_regime_boundaries(vix: float, regime: str) -> None:
    f = fills(fill("e1", "buy", 1, 10), fill("e2", "sell", 1, 10, minute=1))
    assert round_trips(f, decisions(decision(MON, vix=vix))).iloc[0]["vix_regime"] == regime


def test_decision_of_another_strategy_or_session_does_not_label_the_trade() -> None:
    f = fills(fill("e1", "buy", 1, 10), fill("e2", "sell", 1, 10, minute=1))
    d = decisions(
        decision(MON, strategy="meanrev", arm="test", vix=30.0),
        decision(day(1), arm="test", vix=30.0),
        decision(MON, symbol="QQQ", arm="test", vix=30.0),
    )
    t = round_trips(f, d).iloc[0]
    assert (t["params"], t["arm"], t["experiment_id"]) == ("", "", "")
    assert math.isnan(t["vix_at_entry"])
    assert (t["vix_regime"], t["trend"], t["weekday"]) == ("unknown", "unknown", "Mon")


def test_missing_decision_fields_fall_back_to_defaults() -> None:
    f = fills(fill("e1", "buy", 1, 10), fill("e2", "sell", 1, 10, minute=1))
    t = round_trips(f, decisions(decision(MON, params=None, arm="", experiment_id=None, trend=""))).iloc[0]
    assert (t["params"], t["arm"], t["experiment_id"], t["trend"]) == ("", "", "", "unknown")


def test_empty_fills_give_an_empty_frame_with_trade_columns() -> None:
    trades = round_trips(fills())
    assert trades.empty
    assert list(trades.columns) == list(TRADE_COLUMNS)
    assert trades["pnl"].dtype == np.float64
    assert trades["win"].dtype == bool
    assert open_episodes(fills()).empty


def test_missing_fill_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match="commission"):
        round_trips(fills(fill("e1", "buy", 1, 10)).drop(columns="commission"))


def test_naive_timestamps_are_refused() -> None:
    f = fills(fill("e1", "buy", 1, 10))
    f["ts"] = f["ts"].dt.tz_localize(None)
    with pytest.raises(InputError, match="tz-aware"):
        round_trips(f)


@pytest.mark.parametrize(("column", "value"), [("side", "hold"), ("qty", 0.0), ("qty", -1.0)])
def test_bad_side_or_quantity_is_an_input_error(column: str, value: str | float) -> None:
    f = fills(fill("e1", "buy", 1, 10))
    f[column] = [value]
    with pytest.raises(InputError):
        round_trips(f)


def test_summarize_counts_and_averages() -> None:
    trades = round_trips(
        fills(
            fill("e1", "buy", 10, 100),
            fill("e2", "sell", 10, 110, session=day(2)),  # +100, return 0.10, 2 days
            fill("e3", "buy", 10, 100, session=day(3)),
            fill("e4", "sell", 10, 95, session=day(3), minute=5),  # -50, return -0.05, 0 days
        )
    )
    s = summarize(trades)
    assert s["count"] == 2
    assert s["wins"] == 1
    assert s["win_rate"] == pytest.approx(0.5)
    assert s["mean_return"] == pytest.approx(0.025)
    assert s["median_return"] == pytest.approx(0.025)
    assert s["total_pnl"] == pytest.approx(50.0)
    assert s["mean_holding_days"] == pytest.approx(1.0)


def test_summarize_of_no_trades_is_zero_counts_and_nan_rates() -> None:
    s = summarize(round_trips(fills()))
    assert s["count"] == 0
    assert s["wins"] == 0
    assert s["total_pnl"] == 0.0
    assert math.isnan(s["win_rate"])
    assert math.isnan(s["mean_return"])
