"""Round trips over random fill streams: cash is conserved between trades and open episodes, every
trade ends exactly where the position goes flat (or flips), and trades of one (strategy, symbol)
never overlap. The reference is a plain running sum of signed quantities, independent of the fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.learning.trades import FILL_COLUMNS, open_episodes, round_trips

T0 = pd.Timestamp("2025-03-03 14:30", tz="UTC")
FAST = settings(max_examples=50, deadline=None)


@st.composite
def fill_streams(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 40))
    # Distinct seconds, so a trade's exit_ts names exactly one fill of the stream.
    seconds = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    rows: list[dict[str, Any]] = []
    for i, sec in enumerate(sorted(seconds)):
        ts = T0 + pd.Timedelta(seconds=sec * 60)
        # Quarter shares are exact in binary, so "flat" is exact and the check needs no tolerance.
        signed = draw(st.integers(-12, 12).filter(lambda q: q != 0)) / 4
        rows.append(
            {
                "execution_id": f"e{i:03d}",
                "client_order_id": f"c{i}",
                "symbol": draw(st.sampled_from(["SPY", "QQQ"])),
                "side": "buy" if signed > 0 else "sell",
                "qty": abs(signed),
                "price": draw(st.integers(100, 20_000)) / 100,
                "commission": draw(st.integers(0, 300)) / 100,
                "ts": ts,
                "session": (ts.tz_convert("America/New_York")).date(),
                "strategy": draw(st.sampled_from(["trend", "meanrev"])),
            }
        )
    df = pd.DataFrame(rows, columns=list(FILL_COLUMNS))
    # The fold must not depend on the row order it is handed.
    return df.sample(frac=1.0, random_state=draw(st.integers(0, 2**16))) if n else df


def _signed(df: pd.DataFrame) -> np.ndarray:
    return np.where(df["side"] == "buy", df["qty"], -df["qty"])


@FAST
@given(fill_streams())
def test_trade_pnl_plus_open_cash_equals_total_cash_minus_commissions(f: pd.DataFrame) -> None:
    trades, still = round_trips(f), open_episodes(f)
    total = float(-(_signed(f) * f["price"]).sum() - f["commission"].sum()) if len(f) else 0.0
    accounted = float(trades["pnl"].sum() + (still["cash_flow"] - still["costs"]).sum())
    assert accounted == pytest.approx(total, abs=1e-6)
    # the costs are all the commissions, each counted once
    assert float(trades["costs"].sum() + still["costs"].sum()) == pytest.approx(float(f["commission"].sum()), abs=1e-9)


@FAST
@given(fill_streams())
def test_every_trade_ends_where_the_position_goes_flat_or_flips(f: pd.DataFrame) -> None:
    trades = round_trips(f)
    ordered = f.sort_values("ts")
    for (strategy, symbol), group in ordered.groupby(["strategy", "symbol"], sort=False):
        position = np.cumsum(_signed(group))
        before = np.r_[0.0, position[:-1]]
        # a trade ends at each fill that takes a non-zero position to zero or across it
        ends = (before != 0) & ((position == 0) | (np.sign(position) == -np.sign(before)))
        mine = trades[(trades["strategy"] == strategy) & (trades["symbol"] == symbol)]
        assert list(mine["exit_ts"]) == list(group["ts"][ends])
        for t in mine.itertuples():
            inside = (group["ts"] >= t.entry_ts).to_numpy() & (group["ts"] < t.exit_ts).to_numpy()
            held = position[inside]
            sign = 1 if t.direction == "long" else -1
            # strictly on one side of zero from entry until the exit fill
            assert (np.sign(held) == sign).all()
            assert np.abs(held).max() == t.max_qty


@FAST
@given(fill_streams())
def test_trades_never_overlap_per_strategy_and_symbol(f: pd.DataFrame) -> None:
    trades = round_trips(f)
    assert trades["trade_id"].is_unique
    for _, group in trades.groupby(["strategy", "symbol"]):
        g = group.sort_values("entry_ts")
        assert (g["exit_ts"] >= g["entry_ts"]).all()
        assert (g["entry_ts"].to_numpy()[1:] >= g["exit_ts"].to_numpy()[:-1]).all()
        assert (g["holding_days"] >= 0).all()
