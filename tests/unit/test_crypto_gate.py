"""The quality gate judges crypto bars by the 24/7 calendar and the crypto expectation suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeflow.calendar import AlwaysCalendar, default_calendar
from tradeflow.data.quality import GateContext, QualityReport, gx_layer, run_gate

FIRST, LAST = pd.Timestamp("2024-12-01"), pd.Timestamp("2025-01-05")  # Christmas, New Year, 5 weekends


@pytest.fixture(scope="module", autouse=True)
def warm_gx() -> None:
    gx_layer.warm_up(GateContext(default_calendar()).expectations_dir)


def btc_bars(symbol: str = "BTC/USD", start: pd.Timestamp = FIRST, end: pd.Timestamp = LAST) -> pd.DataFrame:
    """A daily BTC-like series: a bar on every UTC day, prices near 95k, fractional coin volumes."""
    days = pd.date_range(start, end, freq="D")
    rng = np.random.default_rng(11)
    close = 95_000 * np.exp(np.cumsum(rng.normal(0, 0.03, len(days))))
    open_ = np.r_[close[0] * 0.99, close[:-1]]
    return pd.DataFrame(
        {
            "session": days.as_unit("ns"),
            "symbol": symbol,
            "open": open_,
            "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99,
            "close": close,
            "adj_close": close,
            "volume": rng.uniform(800, 3000, len(days)).round(6),  # e.g. 1523.418207 BTC
        }
    )


def gate(frame: pd.DataFrame, as_of: pd.Timestamp, symbols: tuple[str, ...] = ("BTC/USD",)) -> QualityReport:
    # The NYSE calendar is the context's, as in every ingest: crypto symbols must not be judged by it.
    return run_gate(frame, GateContext(default_calendar(), as_of=as_of, symbols=symbols))


def checks(report: QualityReport) -> set[str]:
    return {f.check for f in report.failures}


def test_crypto_bars_pass_the_gate_on_every_calendar_day_of_a_month_with_weekends_and_holidays():
    frame = btc_bars()
    assert frame["volume"].mod(1).gt(0).any(), "the series has fractional volume"
    cal = AlwaysCalendar()
    for day in pd.date_range("2024-12-03", LAST, freq="D"):
        # On each day the last completed bar is the day before: the gate must pass then, weekends
        # and NYSE holidays (2024-12-25, 2025-01-01) included.
        as_of = cal.last_completed_session(day.tz_localize("UTC") + pd.Timedelta(hours=1))
        assert as_of == day - pd.Timedelta(days=1)
        report = gate(frame.loc[frame["session"] <= as_of], as_of)
        assert report.passed, (day.date(), report.to_markdown())


def test_a_missing_weekend_day_fails_crypto_completeness():
    frame = btc_bars()
    saturday = pd.Timestamp("2024-12-21")
    report = gate(frame.loc[frame["session"] != saturday].reset_index(drop=True), LAST)
    assert not report.passed
    missing = [f for f in report.failures if f.check == "missing_session"]
    assert [(f.symbol, f.session) for f in missing] == [("BTC/USD", "2024-12-21")]
    assert "24/7" in missing[0].detail


def test_a_missing_us_holiday_fails_crypto_completeness():
    frame = btc_bars()
    report = gate(frame.loc[frame["session"] != pd.Timestamp("2024-12-25")].reset_index(drop=True), LAST)
    assert [(f.check, f.session) for f in report.failures] == [("missing_session", "2024-12-25")]


def test_crypto_freshness_is_judged_against_the_previous_utc_day():
    sunday_noon = pd.Timestamp("2024-12-29T12:00Z")
    as_of = AlwaysCalendar().last_completed_session(sunday_noon)  # Saturday 2024-12-28
    friday_close = btc_bars(end=pd.Timestamp("2024-12-27"))  # fresh for the NYSE, a day late for crypto
    report = gate(friday_close, as_of)
    stale = [f for f in report.failures if f.check == "stale"]
    assert [(f.symbol, f.value) for f in stale] == [("BTC/USD", 1.0)]


def test_equities_keep_the_nyse_completeness_rule_beside_crypto():
    spy = btc_bars("SPY").assign(close=lambda f: f["close"] / 200, open=lambda f: f["open"] / 200)
    spy = spy.assign(high=spy[["open", "close"]].max(axis=1) * 1.01, low=spy[["open", "close"]].min(axis=1) * 0.99)
    spy = spy.assign(adj_close=spy["close"], volume=spy["volume"].round() * 1000)
    frame = pd.concat([btc_bars(), spy], ignore_index=True)
    report = gate(frame, LAST, symbols=("BTC/USD", "SPY"))
    non_session = {(f.symbol, f.session) for f in report.failures if f.check == "non_session_row"}
    assert ("SPY", "2024-12-25") in non_session
    assert ("SPY", "2024-12-21") in non_session
    assert not any(f.symbol == "BTC/USD" for f in report.failures)


def test_a_frozen_crypto_feed_fails_the_crypto_suite():
    frame = btc_bars()
    frozen = frame["session"].between(pd.Timestamp("2024-12-14"), pd.Timestamp("2024-12-16"))
    value = float(frame.loc[frozen, "close"].iloc[0])
    frame.loc[frozen, ["open", "high", "low", "close", "adj_close"]] = value
    report = gate(frame, LAST)
    assert "stale_close_run" in checks(report)


def test_a_crypto_pair_halving_in_a_day_is_not_mistaken_for_a_split():
    frame = btc_bars()
    crash = frame["session"] >= pd.Timestamp("2024-12-20")
    for col in ("open", "high", "low", "close", "adj_close"):
        frame.loc[crash, col] = frame.loc[crash, col] / 2
    report = gate(frame, LAST)
    assert "split_like" not in checks(report)


def test_validate_judges_a_crypto_file_by_the_24_7_calendar(tmp_path, capsys, data_dir):
    """`tradeflow validate --symbol BTC/USD --as-of <a Sunday>`: the as-of day is a crypto session (not
    moved back to the NYSE's Friday, which made the Sunday bar 'after as-of'), and the file's weekend
    rows are real bars, not NYSE placeholders to drop."""
    from tradeflow.cli import main

    frame = btc_bars()
    csv = tmp_path / "btc.csv"
    pd.DataFrame(
        {
            "Date": frame["session"].dt.strftime("%Y-%m-%d"),
            "Open": frame["open"],
            "High": frame["high"],
            "Low": frame["low"],
            "Close": frame["close"],
            "Adj Close": frame["adj_close"],
            "Volume": frame["volume"],
        }
    ).to_csv(csv, index=False)
    assert LAST.day_name() == "Sunday"
    code = main(["validate", str(csv), "--symbol", "BTC/USD", "--as-of", LAST.date().isoformat(), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
