"""Panel features on real SPY, AAPL and MSFT (+ VIX): a panel row is the single-symbol row, sessions
meet on the universe's common sessions, the market arrays line up, and `tradeflow features --symbols`
writes one row per (session, symbol)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.cli import EXIT_INPUT, EXIT_OK, main
from tradeflow.domain.instruments import Universe
from tradeflow.errors import InputError
from tradeflow.features import DEFAULT_SPEC, build_features, build_panel, write_panel
from tradeflow.features.build import PARQUET_ATTR

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
SYMBOLS = ("SPY", "AAPL", "MSFT")
UNIVERSE = Universe.of(*SYMBOLS)


@lru_cache(maxsize=4)
def bars(symbol: str) -> pd.DataFrame:
    return read_bar_file(REAL / f"{symbol}.csv", symbol)


@lru_cache(maxsize=1)
def vix() -> pd.DataFrame:
    return read_bar_file(REAL / "VIX.csv", "^VIX")


@lru_cache(maxsize=1)
def panel():
    return build_panel({s: bars(s) for s in SYMBOLS}, vix(), UNIVERSE)


def test_panel_row_equals_the_single_symbol_row_for_every_session_and_symbol():
    p = panel()
    names = list(DEFAULT_SPEC.names)
    for symbol in SYMBOLS:
        single = build_features(bars(symbol), vix())
        single_rows = single.frame.set_index("session").loc[p.sessions, names]
        panel_rows = p.frame.xs(symbol, level="symbol")[names]
        np.testing.assert_array_equal(panel_rows.to_numpy(), single_rows.to_numpy())
        np.testing.assert_array_equal(p.by_symbol[symbol].frame[names].to_numpy(), single_rows.to_numpy())


def test_panel_is_indexed_session_major_by_session_and_symbol_in_universe_order():
    p = panel()
    assert p.frame.index.names == ["session", "symbol"]
    assert list(p.frame.columns) == list(DEFAULT_SPEC.names)
    assert len(p.frame) == len(p) * len(SYMBOLS)
    assert list(p.frame.index.get_level_values("symbol")[:3]) == list(SYMBOLS)
    np.testing.assert_array_equal(p.frame.index.get_level_values("session")[::3].to_numpy(), p.sessions)
    assert p.matrix().shape == (len(p), len(SYMBOLS), len(DEFAULT_SPEC.names))
    np.testing.assert_array_equal(p.matrix()[:, 1, :], p.by_symbol["AAPL"].matrix())


def test_panel_sessions_are_the_inner_join_and_the_sessions_left_out_are_counted_per_symbol():
    p = panel()
    singles = {s: build_features(bars(s), vix()) for s in SYMBOLS}
    common = singles["SPY"].sessions
    for s in SYMBOLS[1:]:
        common = np.intersect1d(common, singles[s].sessions)
    np.testing.assert_array_equal(p.sessions, common)
    # SPY's history starts in 1993 and AAPL/MSFT's files end 2023-05-23: the panel spans only both.
    assert pd.Timestamp(p.sessions[-1]) == pd.Timestamp("2023-05-23")
    for s in SYMBOLS:
        assert p.dropped[s]["not_common"] == len(singles[s]) - len(p)
        assert p.dropped[s]["warmup"] == DEFAULT_SPEC.warmup_rows


def test_a_session_one_symbol_lacks_is_dropped_for_the_whole_universe():
    gap = pd.Timestamp("2015-06-15")
    msft = bars("MSFT")
    holed = msft.loc[msft["session"] != gap].reset_index(drop=True)
    p = build_panel({"SPY": bars("SPY"), "AAPL": bars("AAPL"), "MSFT": holed}, vix(), UNIVERSE, validate=False)
    assert gap.to_datetime64() not in p.sessions
    assert gap.to_datetime64() in panel().sessions
    assert len(p) == len(panel()) - 1
    assert p.dropped["SPY"]["not_common"] == panel().dropped["SPY"]["not_common"] + 1


def test_panel_market_arrays_are_each_symbols_adjusted_prices_on_the_panel_sessions():
    p = panel()
    market = p.market()
    assert list(market) == list(SYMBOLS)
    for symbol, arrays in market.items():
        np.testing.assert_array_equal(arrays.sessions, p.sessions)
        raw = bars(symbol).set_index("session").loc[p.sessions]
        np.testing.assert_allclose(arrays.close, raw["adj_close"].to_numpy(), rtol=1e-12)


def test_panel_slice_keeps_sessions_frame_and_market_aligned():
    p = panel().slice(100, 150)
    assert len(p) == 50
    np.testing.assert_array_equal(p.sessions, panel().sessions[100:150])
    np.testing.assert_array_equal(p.frame.index.get_level_values("session").unique().to_numpy(), p.sessions)
    np.testing.assert_array_equal(p.market()["MSFT"].sessions, p.sessions)


def test_a_one_symbol_panel_is_build_features():
    single = build_features(bars("SPY"), vix())
    p = build_panel({"SPY": bars("SPY")}, vix(), Universe.of("SPY"))
    pd.testing.assert_frame_equal(p.by_symbol["SPY"].frame, single.frame)
    pd.testing.assert_frame_equal(p.by_symbol["SPY"].bars, single.bars)
    assert p.dropped["SPY"]["not_common"] == 0


def test_a_universe_without_a_common_session_is_one_input_error_naming_each_range():
    spy, aapl = bars("SPY"), bars("AAPL")
    early = spy.loc[spy["session"] < pd.Timestamp("2000-01-01")].reset_index(drop=True)
    late = aapl.loc[aapl["session"] > pd.Timestamp("2005-01-01")].reset_index(drop=True)
    with pytest.raises(InputError, match="no common feature session") as info:
        build_panel({"SPY": early, "AAPL": late}, vix(), Universe.of("SPY", "AAPL"))
    message = str(info.value)
    assert "\n" not in message
    assert "SPY 1994-09-13 .. 1999-12-31" in message
    assert "AAPL 2006-" in message


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"SPY": "SPY"}, r"missing \['AAPL'\]"),
        ({"SPY": "SPY", "AAPL": "AAPL", "MSFT": "MSFT"}, r"extra \['MSFT'\]"),
        ({"SPY": "SPY", "AAPL": "MSFT"}, r"bars given for AAPL hold rows of \['MSFT'\]"),
    ],
)
def test_panel_refuses_bars_that_do_not_match_the_universe(given, message):
    with pytest.raises(InputError, match=message):
        build_panel({key: bars(s) for key, s in given.items()}, vix(), Universe.of("SPY", "AAPL"))


def test_write_panel_writes_one_row_per_session_and_symbol_with_the_spec_in_the_metadata(tmp_path):
    p = panel().slice(len(panel()) - 20, len(panel()))
    out = write_panel(p, tmp_path / "panel.parquet")
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["session", "symbol", *DEFAULT_SPEC.names]
    assert len(frame) == 20 * len(SYMBOLS)
    assert not frame.duplicated(["session", "symbol"]).any()
    meta = json.loads(frame.attrs[PARQUET_ATTR])
    assert meta["symbols"] == list(SYMBOLS)
    assert meta["spec_digest"] == DEFAULT_SPEC.digest
    assert list(tmp_path.iterdir()) == [out]


# --- the CLI ---------------------------------------------------------------------------------------


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def features_cli(capsys, real_data: Path, out: Path, symbols: str, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys, "features", "--out", str(out), "--symbols", symbols, "--source", "csv", "--path", str(real_data),
        "--end", "2023-05-23", *extra, "--json",
    )  # fmt: skip


def test_features_over_symbols_writes_one_row_per_session_and_symbol_equal_to_each_single_symbol_file(
    capsys, real_data, data_dir, tmp_path
):
    code, out, err = features_cli(capsys, real_data, tmp_path / "panel.parquet", "SPY,AAPL", "--start", "2020-01-02")
    assert code == EXIT_OK, err
    info = json.loads(out)
    frame = pd.read_parquet(tmp_path / "panel.parquet")
    assert list(frame.columns) == ["session", "symbol", *info["features"]]
    assert info["symbols"] == ["SPY", "AAPL"]
    assert info["rows"] == len(frame) == 2 * frame["session"].nunique()
    assert not frame.duplicated(["session", "symbol"]).any()
    assert str(frame["session"].iloc[0].date()) == info["first_session"] == "2020-01-02"
    assert str(frame["session"].iloc[-1].date()) == info["last_session"] == "2023-05-23"
    # One symbol keeps today's file: session + the spec's columns, no symbol column; the panel's
    # rows of that symbol are exactly its rows.
    for symbol in ("SPY", "AAPL"):
        code, _, err = features_cli(capsys, real_data, tmp_path / f"{symbol}.parquet", symbol, "--start", "2020-01-02")
        assert code == EXIT_OK, err
        single = pd.read_parquet(tmp_path / f"{symbol}.parquet")
        assert list(single.columns) == ["session", *info["features"]]
        mine = frame.loc[frame["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, single, check_dtype=False)


def test_features_with_a_symbol_the_source_lacks_is_one_line_exit_2_naming_it(capsys, real_data, data_dir, tmp_path):
    code, _, err = features_cli(capsys, real_data, tmp_path / "f.parquet", "SPY,ZZZZ")
    assert code == EXIT_INPUT
    assert "ZZZZ" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert "internal error" not in err
    assert not (tmp_path / "f.parquet").exists()


def test_features_over_symbols_with_an_earlier_end_equal_a_fresh_run_on_data_cut_there(
    capsys, real_data, tmp_path, monkeypatch
):
    from tradeflow.config import get_settings

    def features_in(data: Path, ingest_end: str, out: Path) -> pd.DataFrame:
        monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(data))
        get_settings.cache_clear()
        source = ("--source", "csv", "--path", str(real_data))
        ingest = ("ingest", *source, "--symbols", "SPY,AAPL,^VIX", "--end", ingest_end)
        assert run(capsys, *ingest)[0] == EXIT_OK
        code, _, err = run(
            capsys, "features", *source, "--symbols", "SPY,AAPL", "--end", "2015-12-31", "--out", str(out)
        )
        assert code == EXIT_OK, err
        assert not (data / "quarantine").exists() or not any((data / "quarantine").iterdir())
        return pd.read_parquet(out)

    try:
        cut = features_in(tmp_path / "to2019", "2019-12-31", tmp_path / "cut.parquet")
        fresh = features_in(tmp_path / "to2015", "2015-12-31", tmp_path / "fresh.parquet")
    finally:
        get_settings.cache_clear()
    pd.testing.assert_frame_equal(cut, fresh)
    assert str(cut["session"].iloc[-1].date()) == "2015-12-31"
    assert list(cut["symbol"].iloc[-2:]) == ["SPY", "AAPL"]
