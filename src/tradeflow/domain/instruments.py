"""Instruments and the universe a strategy trades: stdlib values every layer can share.

An instrument says how it trades (its calendar, whether fractional quantities are allowed, its
contract multiplier, the smallest order worth sending); sizing, the calendar gate and the risk checks
read these instead of assuming one NYSE stock. Options and crypto enter as instruments, never as a
second engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum


class AssetClass(StrEnum):
    EQUITY = "equity"  # stocks and ETFs
    INDEX = "index"  # not tradeable itself (^VIX, the sample's index levels): a feature source
    CRYPTO = "crypto"
    OPTION = "option"


class CalendarName(StrEnum):
    XNYS = "XNYS"  # NYSE sessions, early closes
    ALWAYS = "24/7"  # crypto: every day, daily bars at 00:00 UTC


@dataclass(frozen=True)
class Instrument:
    symbol: str
    asset_class: AssetClass = AssetClass.EQUITY
    calendar: CalendarName = CalendarName.XNYS
    multiplier: Decimal = Decimal(1)  # units per contract (100 for a US equity option)
    fractional: bool = False  # whether the broker takes fractional quantities
    min_notional: Decimal = Decimal(0)  # an order worth less than this is not sent

    def __post_init__(self) -> None:
        if not self.symbol or self.symbol != self.symbol.strip():
            raise ValueError(f"instrument symbol {self.symbol!r} is empty or padded")
        if self.multiplier <= 0 or self.min_notional < 0:
            raise ValueError(f"{self.symbol}: multiplier must be positive and min_notional not negative")

    @property
    def tradeable(self) -> bool:
        return self.asset_class is not AssetClass.INDEX

    def round_qty(self, qty: Decimal) -> Decimal:
        """A quantity the broker takes: whole units toward zero unless fractional (8 decimals)."""
        quantum = Decimal("0.00000001") if self.fractional else Decimal(1)
        return qty.quantize(quantum, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Universe:
    """The instruments a strategy decides for, in a fixed order (the order of weights and columns)."""

    instruments: tuple[Instrument, ...]

    def __post_init__(self) -> None:
        symbols = [i.symbol for i in self.instruments]
        if not symbols:
            raise ValueError("a universe needs at least one instrument")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"a universe lists each symbol once, got {symbols}")

    @classmethod
    def of(cls, *symbols: str) -> Universe:
        """Equities by symbol, with the defaults (NYSE calendar, whole shares)."""
        return cls(tuple(Instrument(s) for s in symbols))

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self.instruments)

    def __getitem__(self, symbol: str) -> Instrument:
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        raise KeyError(symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.instruments)

    def __len__(self) -> int:
        return len(self.instruments)

    def covers(self, symbols: Iterable[str]) -> bool:
        return set(symbols) <= set(self.symbols)
