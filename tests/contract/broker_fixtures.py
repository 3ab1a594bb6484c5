"""One `BrokerCase` per adapter for the conformance suite: the sim broker (persisted to a file), the
FakeBroker without faults, Alpaca on the recorded paper API (real alpaca-py, fake socket) and IB on
the paper gateway (real ib_async, fake socket). Each case carries the means to move its market and
to count the orders its broker really holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tests.fixtures.recorded.alpaca_trading.paper_api import AlpacaPaperAPI
from tests.fixtures.recorded.ib_trading.paper_gateway import PaperGateway
from tradeflow.adapters.alpaca.execution import AlpacaBroker, RequestRateLimiter
from tradeflow.adapters.ib.execution import IBBroker
from tradeflow.config import IBSettings
from tradeflow.domain import OrderIntent, Side
from tradeflow.execution.base import Broker
from tradeflow.execution.fake import FakeBroker
from tradeflow.execution.sim import SimBroker

BROKER_CASES = ("sim", "fake", "alpaca", "ib")
SESSION = dt.date(2024, 1, 5)
OPEN = dt.datetime(2024, 1, 5, 14, 30, tzinfo=dt.UTC)  # 09:30 New York
SPY_CLOSE = Decimal("467.92")  # SPY's real close on 2024-01-05 (shared/data/real/SPY.csv)
CANARY_KEY = "PK-CANARY-7Q2Z9X-KEY-0001"
CANARY_SECRET = "canary-secret-5f0c2e9b8d1a4f6e"


class SteppingClock:
    """A frozen clock that moves only when told to."""

    def __init__(self, start: dt.datetime = OPEN) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


class FakeMonotonic:
    """A monotonic clock and the sleep that advances it, for rate limiters."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class BrokerCase:
    name: str
    broker: Broker
    clock: SteppingClock
    set_price: Callable[[str, Decimal], object]
    broker_orders: Callable[[str], int]  # orders the broker really holds under a client id
    secrets: tuple[str, ...] = ()
    # IB's average cost includes the commission paid; the others report the price alone.
    avg_includes_commission: bool = False
    closers: list[Callable[[], object]] = field(default_factory=list)
    # Alpaca and IB hold a session or a connection: once closed, their queries raise BrokerUnavailable.
    holds_connection: bool = False

    def close(self) -> None:
        for closer in self.closers:
            closer()


def intent(
    cid: str,
    side: Side = Side.BUY,
    qty: int | str = 10,
    *,
    symbol: str = "SPY",
    limit: Decimal | None = None,
    seq: int = 0,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        session=SESSION,
        strategy="conformance",
        seq=seq,
        order_type="limit" if limit is not None else "market",
        limit_price=limit,
    )


def make_case(name: str, tmp_path: Path) -> BrokerCase:
    clock = SteppingClock()
    if name == "sim":
        sim = SimBroker(tmp_path / "sim_broker.json", clock=clock)
        return BrokerCase(name, sim, clock, sim.set_price, lambda cid: len(sim.orders_for(cid)))
    if name == "fake":
        fake = FakeBroker(clock)
        return BrokerCase(name, fake, clock, fake.set_price, lambda cid: len(fake.broker_orders_for(cid)))
    if name == "alpaca":
        api = AlpacaPaperAPI(clock)
        mono = FakeMonotonic()
        limiter = RequestRateLimiter(monotonic=mono, sleep=mono.sleep)
        broker = AlpacaBroker(api.client(CANARY_KEY, CANARY_SECRET), paper=True, limiter=limiter)
        return BrokerCase(
            name,
            broker,
            clock,
            api.set_price,
            lambda cid: len(api.orders_with_client_id(cid)),
            secrets=(CANARY_KEY, CANARY_SECRET),
            holds_connection=True,
        )
    if name == "ib":
        gateway = PaperGateway(clock)
        ib = IBBroker(IBSettings(timeout_s=2.0), ib_factory=gateway.ib_factory, ack_timeout_s=1.0, poll_s=0.01)
        return BrokerCase(
            name,
            ib,
            clock,
            lambda symbol, price: gateway.set_price(symbol, float(price)),
            lambda cid: len(gateway.orders_with_ref(cid)),
            avg_includes_commission=True,
            closers=[ib.close],
            holds_connection=True,
        )
    raise ValueError(name)
