"""A11 (the nautilus reconciliation proptests pattern): executions delivered shuffled, duplicated,
and partly dropped then replayed after a "reconnect" leave the ledger with the positions, average
prices and cash of a plain model that folds each unique execution once, in execution-time order,
which is how the broker computes its own books."""

from __future__ import annotations

import datetime as dt
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.domain import Execution, Position, Side
from tradeflow.ledger import Ledger

T0 = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)
FAST = settings(max_examples=60, deadline=None)


@st.composite
def executions(draw: st.DrawFn) -> list[Execution]:
    n = draw(st.integers(1, 18))
    out = []
    for i in range(n):
        out.append(
            Execution(
                execution_id=f"e{i}",
                client_order_id=f"tf-x-{i % 3}",
                symbol=draw(st.sampled_from(["SPY", "AAPL"])),
                side=draw(st.sampled_from(list(Side))),
                qty=Decimal(draw(st.integers(1, 60))),
                price=Decimal(draw(st.integers(100, 50_000))) / 100,
                commission=Decimal(draw(st.integers(0, 300))) / 100,
                # few distinct seconds, so equal timestamps (ties broken by execution id) are common
                timestamp=T0 + dt.timedelta(seconds=draw(st.integers(0, 8))),
            )
        )
    return out


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Execution], list[Execution]]:
    """(the unique executions, the stream the ledger receives)."""
    unique = draw(executions())
    order = draw(st.permutations(unique))
    dropped = draw(st.lists(st.sampled_from(unique), unique_by=lambda e: e.execution_id))
    first_pass = [e for e in order if e not in dropped]
    for dup in draw(st.lists(st.sampled_from(unique), max_size=6)):
        first_pass.insert(draw(st.integers(0, len(first_pass))), dup)
    replay = draw(st.permutations(dropped + draw(st.lists(st.sampled_from(unique), max_size=4))))
    return unique, first_pass + list(replay)


def model(unique: list[Execution]) -> tuple[dict[str, Position], Decimal]:
    books: dict[str, tuple[Decimal, Decimal]] = {}
    cash = Decimal(0)
    for e in sorted(unique, key=lambda e: (e.timestamp, e.execution_id)):
        qty, avg = books.get(e.symbol, (Decimal(0), Decimal(0)))
        signed = e.qty if e.side is Side.BUY else -e.qty
        if qty == 0:
            books[e.symbol] = (signed, e.price)
        elif (qty > 0) == (signed > 0):
            books[e.symbol] = (qty + signed, (abs(qty) * avg + abs(signed) * e.price) / abs(qty + signed))
        elif abs(signed) < abs(qty):
            books[e.symbol] = (qty + signed, avg)
        elif abs(signed) == abs(qty):
            books[e.symbol] = (Decimal(0), Decimal(0))
        else:
            books[e.symbol] = (qty + signed, e.price)
        cash += -signed * e.price - e.commission
    return {s: Position(s, q, a) for s, (q, a) in books.items() if q != 0}, cash


@FAST
@given(deliveries())
def test_a11_shuffled_duplicated_and_replayed_fills_equal_the_model(
    case: tuple[list[Execution], list[Execution]],
) -> None:
    unique, stream = case
    expected_positions, expected_cash = model(unique)
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "ledger.sqlite") as ledger:
        applied = [ledger.apply_execution(e, T0 + dt.timedelta(minutes=1)) for e in stream]
        assert sum(applied) == len(unique)  # each execution applied exactly once
        assert ledger.positions() == expected_positions
        assert ledger.recompute_positions() == expected_positions
        assert ledger.cash() == expected_cash
        assert ledger.recompute_cash() == expected_cash
        assert sorted(e.execution_id for e in ledger.fills()) == sorted(e.execution_id for e in unique)
        assert [r.kind for r in ledger.audit_rows()] == ["fill"] * len(unique)
