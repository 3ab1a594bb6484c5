"""Portfolio backtests (issue 10): the equal-weight buy-and-hold of SPY, AAPL and MSFT matches an
independent computation from the raw CSVs, the simulator trades each instrument only when its target
changes and never overdraws a long-only book, and the CLI reports per-symbol figures."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.backtest import METRIC_KEYS
from tradeflow.backtest.portfolio import backtest_portfolio, evaluate_weights
from tradeflow.domain import Universe
from tradeflow.features import DEFAULT_SPEC, build_panel
from tradeflow.risk import RiskLimits
from tradeflow.sim import CostModel, MarketArrays, PanelMarket, simulate_portfolio
from tradeflow.strategies import make_strategy

UNIVERSE = ("SPY", "AAPL", "MSFT")
START, END = "2010-01-04", "2019-12-31"


@pytest.fixture(scope="module")
def features(real_data):
    vix = read_bar_file(real_data / "VIX.csv", "^VIX")
    bars = {s: read_bar_file(real_data / f"{s}.csv", s) for s in UNIVERSE}
    return build_panel(bars, vix, Universe.of(*UNIVERSE), DEFAULT_SPEC)


def test_equal_weight_buy_and_hold_matches_an_independent_computation_from_the_raw_csvs(features, real_data):
    """A third of the capital in each, bought at the open after the first session's close (the fill
    convention of every tradeflow backtest) and held to the last close, on dividend-adjusted prices
    (Adj Close / Close scales the open too). Costs (1.5 bp a leg, $1 commissions, the last buy capped
    by the cash left) keep the simulated book within 10 bp of the cost-free figure."""
    result = backtest_portfolio(make_strategy("buy_and_hold"), features, CostModel(), 100_000.0, START, END)
    independent = 0.0
    for symbol in UNIVERSE:
        raw = pd.read_csv(real_data / f"{symbol}.csv", parse_dates=["Date"]).set_index("Date").loc[START:END]
        factor = raw["Adj Close"] / raw["Close"]
        bought_at = raw["Open"].iloc[1] * factor.iloc[1]
        independent += 100_000.0 / 3 * raw["Adj Close"].iloc[-1] / bought_at
    assert result.equity.index[0] == pd.Timestamp(START)
    assert result.equity.index[-1] == pd.Timestamp(END)
    assert abs(result.equity.iloc[-1] / independent - 1) < 0.001
    assert result.equity.iloc[-1] < independent  # costs only ever take away
    assert [result.per_symbol[s]["trades"] for s in UNIVERSE] == [1, 1, 1]  # bought once, never rebalanced
    assert list(result.fills["session"].unique()) == [pd.Timestamp("2010-01-05")]
    contributions = sum(result.per_symbol[s]["pnl"] for s in UNIVERSE)
    assert contributions == pytest.approx(result.equity.iloc[-1] - 100_000.0, rel=1e-9)


def test_one_instrument_portfolio_is_the_single_asset_simulation(features):
    from tradeflow.sim import simulate_targets

    spy = features.by_symbol["SPY"]
    market = spy.market()
    targets = make_strategy("sma").targets(spy)
    single = simulate_targets(market, targets, CostModel())
    panel = simulate_portfolio(PanelMarket.of(market, "SPY"), targets[:, None], CostModel())
    np.testing.assert_array_equal(single.equity, panel.equity)
    np.testing.assert_array_equal(single.shares, panel.shares[:, 0])


def _toy_panel(n: int, k: int, seed: int) -> PanelMarket:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (n, k)))
    sessions = pd.bdate_range("2020-01-01", periods=n).to_numpy(dtype="datetime64[ns]")
    markets = {
        f"S{j}": MarketArrays(sessions, open_[:, j], open_[:, j], open_[:, j], close[:, j], np.full(n, 1e7))
        for j in range(k)
    }
    return PanelMarket.align(markets)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(2, 4),
    levels=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=2, max_size=6),
)
def test_a_long_only_book_never_overdraws_and_trades_an_instrument_only_when_its_target_changes(seed, k, levels):
    n = 60
    rng = np.random.default_rng(seed)
    panel = _toy_panel(n, k, seed)
    raw = rng.choice(levels, size=(n, k))
    weights = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1.0)  # long-only, at most fully invested
    result = simulate_portfolio(panel, weights, CostModel())
    assert (result.cash >= -1e-6).all()
    decided = np.vstack((np.zeros((1, k)), weights[:-1]))
    previous = np.vstack((np.zeros((1, k)), decided[:-1]))
    for fill in result.fills:
        assert decided[fill.index, fill.asset] != previous[fill.index, fill.asset]
    changes = {(t, j) for t, j in zip(*np.nonzero(decided != previous), strict=True)}
    assert {(f.index, f.asset) for f in result.fills} <= changes


def test_the_drawdown_breaker_halts_the_whole_portfolio(features):
    panel = PanelMarket.align(features.market())
    result = evaluate_weights(
        np.full((len(panel), 3), 1 / 3),
        panel,
        CostModel(),
        start="2007-06-01",
        end="2009-12-31",
        limits=RiskLimits(max_drawdown=Decimal("0.2")),
    )
    [event] = result.breakers
    assert (event.breaker, event.state) == ("drawdown", "HALTED")
    assert pd.Timestamp(event.session) < pd.Timestamp("2009-03-09")  # before the 2009 low


def test_cli_backtest_over_a_universe_reports_per_symbol_figures_beside_the_metric_keys(capsys, real_data, data_dir):
    from tradeflow.cli import main

    code = main(
        ["backtest", "--strategy", "buy_and_hold", "--symbols", "SPY,AAPL,MSFT", "--source", "csv",
         "--path", str(real_data), "--start", START, "--end", END, "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    payload = json.loads(out.out)
    assert set(payload) >= set(METRIC_KEYS)
    assert payload["symbols"] == list(UNIVERSE)
    assert set(payload["per_symbol"]) == set(UNIVERSE)
    assert payload["trades"] == 3
    assert payload["total_return"] == pytest.approx(5.95, abs=0.05)  # whole shares and the cash buffer


def test_cli_portfolio_engines_vector_and_replay_agree(capsys, real_data, data_dir):
    from tradeflow.cli import main

    results = {}
    for engine in ("vector", "replay"):
        code = main(
            ["backtest", "--strategy", "sma", "--symbols", "SPY,AAPL,MSFT", "--source", "csv", "--path",
             str(real_data), "--start", "2019-01-02", "--end", END, "--engine", engine, "--json"]
        )  # fmt: skip
        out = capsys.readouterr()
        assert code == 0, out.err
        results[engine] = json.loads(out.out)
    assert abs(results["vector"]["total_return"] - results["replay"]["total_return"]) < 0.001
    assert results["vector"]["trades"] == results["replay"]["trades"]
