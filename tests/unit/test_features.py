"""Features on real SPY + VIX: values against straightforward reference computations, row policy,
VIX alignment, alignment with the market arrays, Parquet output and the schema's failure messages."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.adapters.sample.data import SampleSource
from tradeflow.errors import ConfigError, InputError
from tradeflow.features import (
    DEFAULT_SPEC,
    Features,
    FeatureSchemaError,
    FeatureSpec,
    FeaturesStaleError,
    build_features,
    features_for_live,
    validate_features,
    write_features,
)
from tradeflow.features.build import PARQUET_ATTR

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
SHARED_NAMES = (
    "log_return",
    "realized_vol_20",
    "macd",
    "macd_signal",
    "macd_hist",
    "boll_upper",
    "boll_lower",
    "rsi_30",
    "cci_30",
    "dx_30",
    "sma_30_gap",
    "sma_60_gap",
    "vix",
    "vix_change",
    "turbulence",
)
CHECK_SESSIONS = ("1998-10-08", "2008-10-10", "2020-03-16", "2023-06-30")


@lru_cache(maxsize=1)
def spy() -> pd.DataFrame:
    return read_bar_file(REAL / "SPY.csv", "SPY")


@lru_cache(maxsize=1)
def vix() -> pd.DataFrame:
    return read_bar_file(REAL / "VIX.csv", "^VIX")


@lru_cache(maxsize=1)
def full() -> Features:
    return build_features(spy(), vix())


def adjusted(col: str) -> np.ndarray:
    """Independent dividend adjustment: Yahoo's own adj_close for the close, the same ratio for h/l."""
    bars = spy()
    if col == "close":
        return bars["adj_close"].to_numpy()
    return (bars[col] * bars["adj_close"] / bars["close"]).to_numpy()


def feature_at(name: str, session: str) -> float:
    frame = full().frame
    return float(frame.loc[frame["session"] == pd.Timestamp(session), name].iloc[0])


def bar_index(session: str) -> int:
    return int(np.flatnonzero(spy()["session"].to_numpy() == np.datetime64(session, "ns"))[0])


def kept_positions() -> np.ndarray:
    """Bar row of each feature row."""
    return np.searchsorted(spy()["session"].to_numpy(), full().sessions)


# --- spec ---------------------------------------------------------------------------------------


def test_default_spec_names_are_the_shared_feature_columns_in_order():
    assert DEFAULT_SPEC.names == SHARED_NAMES
    assert DEFAULT_SPEC.version == "v1"


def test_spec_without_vix_has_no_vix_columns():
    names = DEFAULT_SPEC.replace(include_vix=False).names
    assert "vix" not in names
    assert "vix_change" not in names
    assert names == tuple(n for n in SHARED_NAMES if not n.startswith("vix"))


def test_spec_digest_is_stable_and_changes_with_any_field():
    assert FeatureSpec().digest == DEFAULT_SPEC.digest
    assert FeatureSpec.from_dict(json.loads(json.dumps(DEFAULT_SPEC.to_dict()))) == DEFAULT_SPEC
    digests = {DEFAULT_SPEC.digest}
    for change in ({"rsi_window": 14}, {"vix_max_ffill": 2}, {"turbulence_window": 60}, {"version": "v2"}):
        digests.add(DEFAULT_SPEC.replace(**change).digest)
    assert len(digests) == 5


def test_spec_rejects_unknown_fields_and_bad_windows():
    with pytest.raises(ConfigError, match="unknown fields"):
        FeatureSpec.from_dict({**DEFAULT_SPEC.to_dict(), "lookahead": 1})
    with pytest.raises(ConfigError, match="rsi_window"):
        FeatureSpec(rsi_window=1)
    with pytest.raises(ConfigError, match="macd_fast"):
        FeatureSpec(macd_fast=26, macd_slow=12)


def test_window_names_follow_the_spec_windows():
    spec = DEFAULT_SPEC.replace(rsi_window=14, sma_short=10, sma_long=50, vol_window=10)
    assert {"rsi_14", "sma_10_gap", "sma_50_gap", "realized_vol_10"} <= set(spec.names)


# --- frame shape and row policy ------------------------------------------------------------------


def test_frame_is_session_plus_names_with_warmup_rows_dropped_and_nothing_missing():
    f = full()
    assert tuple(f.frame.columns) == ("session", *SHARED_NAMES)
    assert isinstance(f.frame.index, pd.RangeIndex)
    assert (f.frame.dtypes.iloc[1:] == "float64").all()
    assert np.isfinite(f.frame[list(SHARED_NAMES)].to_numpy()).all()
    warm = DEFAULT_SPEC.warmup_rows
    assert f.sessions[0] == spy()["session"].to_numpy()[warm]
    assert dict(f.dropped) == {"warmup": warm, "vix_missing": 0, "undefined": 0}
    assert len(f) == len(spy()) - warm


def test_bars_market_and_matrix_are_aligned_one_to_one_with_frame_rows():
    f = full()
    assert (f.bars["session"].to_numpy() == f.sessions).all()
    market = f.market()
    assert (market.sessions == f.sessions).all()
    np.testing.assert_allclose(market.close, f.bars["adj_close"].to_numpy(), rtol=1e-12)
    m = f.matrix()
    assert m.dtype == np.float32
    assert m.shape == (len(f), len(SHARED_NAMES))
    assert m.flags.c_contiguous
    np.testing.assert_array_equal(m[:, SHARED_NAMES.index("rsi_30")], f.frame["rsi_30"].to_numpy(np.float32))


def test_slice_keeps_frame_and_bars_aligned():
    part = full().slice(100, 350)
    assert len(part) == 250
    assert len(part.bars) == 250
    assert (part.bars["session"].to_numpy() == part.sessions).all()
    assert part.sessions[0] == full().sessions[100]


# --- values against reference computations --------------------------------------------------------


def test_log_return_includes_dividends():
    close = adjusted("close")
    rows = kept_positions()
    expected = np.log(close[rows] / close[rows - 1])
    np.testing.assert_allclose(full().frame["log_return"].to_numpy(), expected, rtol=1e-10, atol=1e-15)
    # SPY went ex-dividend on 2023-12-15: the price-only return misses the ~0.4% payout.
    i = bar_index("2023-12-15")
    raw = math.log(spy()["close"][i] / spy()["close"][i - 1])
    assert feature_at("log_return", "2023-12-15") - raw > 0.003


@pytest.mark.parametrize("session", CHECK_SESSIONS)
def test_windowed_features_match_hand_computation(session):
    i = bar_index(session)
    close, high, low = adjusted("close"), adjusted("high"), adjusted("low")
    rets = [math.log(close[j] / close[j - 1]) for j in range(i - 300, i + 1)]
    assert feature_at("realized_vol_20", session) == pytest.approx(statistics.stdev(rets[-20:]) * math.sqrt(252))
    sma30 = sum(close[i - 29 : i + 1]) / 30
    sma60 = sum(close[i - 59 : i + 1]) / 60
    assert feature_at("sma_30_gap", session) == pytest.approx(close[i] / sma30 - 1, rel=1e-9, abs=1e-13)
    assert feature_at("sma_60_gap", session) == pytest.approx(close[i] / sma60 - 1, rel=1e-9, abs=1e-13)
    mid = statistics.fmean(close[i - 19 : i + 1])
    sd = statistics.pstdev(close[i - 19 : i + 1])
    assert feature_at("boll_upper", session) == pytest.approx((mid + 2 * sd) / close[i] - 1, rel=1e-9)
    assert feature_at("boll_lower", session) == pytest.approx((mid - 2 * sd) / close[i] - 1, rel=1e-9)
    tp = [(high[j] + low[j] + close[j]) / 3 for j in range(i - 29, i + 1)]
    tp_mean = statistics.fmean(tp)
    mad = statistics.fmean(abs(x - tp_mean) for x in tp)
    assert feature_at("cci_30", session) == pytest.approx((tp[-1] - tp_mean) / (0.015 * mad), rel=1e-9)
    before = rets[-253:-1]
    z2 = (rets[-1] - statistics.fmean(before)) ** 2 / statistics.variance(before)
    assert feature_at("turbulence", session) == pytest.approx(z2, rel=1e-9)


def _ema_loop(values: list[float], alpha: float) -> list[float]:
    out = [values[0]]
    for x in values[1:]:
        out.append(out[-1] + alpha * (x - out[-1]))
    return out


def test_macd_matches_explicit_ema_loops():
    close = list(adjusted("close"))
    fast, slow = _ema_loop(close, 2 / 13), _ema_loop(close, 2 / 27)
    line = [a - b for a, b in zip(fast, slow, strict=True)]
    signal = _ema_loop(line, 2 / 10)
    rows = kept_positions()
    c = np.asarray(close)[rows]
    frame = full().frame
    np.testing.assert_allclose(frame["macd"], np.asarray(line)[rows] / c, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(frame["macd_signal"], np.asarray(signal)[rows] / c, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(frame["macd_hist"], frame["macd"] - frame["macd_signal"], atol=1e-15)


def _wilder_rsi(close: list[float], n: int, sma_seed: bool) -> list[float]:
    """RSI by Wilder's recursion; seeded with the first change, or (Wilder's book) the mean of the first n."""
    close = [float(c) for c in close]
    changes = [b - a for a, b in itertools.pairwise(close)]
    gains = [max(c, 0.0) for c in changes]
    losses = [max(-c, 0.0) for c in changes]
    start = n if sma_seed else 1
    g = sum(gains[:start]) / start
    lo = sum(losses[:start]) / start
    out = [math.nan] * start

    def value() -> float:
        return 100.0 if lo == 0 else 100.0 - 100.0 / (1.0 + g / lo)

    out.append(value())
    for gain, loss in zip(gains[start:], losses[start:], strict=True):
        g += (gain - g) / n
        lo += (loss - lo) / n
        out.append(value())
    return out


def test_rsi_matches_explicit_wilder_loop():
    ref = np.asarray(_wilder_rsi(list(adjusted("close")), 30, sma_seed=False))
    np.testing.assert_allclose(full().frame["rsi_30"], ref[kept_positions()], rtol=1e-9)


def test_rsi_on_a_short_slice_agrees_with_wilders_textbook_seed():
    """Warm-up is long enough that the seed convention no longer matters (live ticks see short histories)."""
    i = bar_index("2020-12-31")
    bars = spy().iloc[i - 599 : i + 1].reset_index(drop=True)
    f = build_features(bars, vix())
    ref = np.asarray(_wilder_rsi(list(bars["adj_close"]), 30, sma_seed=True))
    rows = np.searchsorted(bars["session"].to_numpy(), f.sessions)
    assert len(rows) == 600 - DEFAULT_SPEC.warmup_rows
    np.testing.assert_allclose(f.frame["rsi_30"], ref[rows], atol=1e-3)


def test_dx_matches_explicit_directional_movement_loop():
    high, low, close = adjusted("high"), adjusted("low"), adjusted("close")
    n = 30
    sp = sm = tr_s = None
    ref = [math.nan]
    for t in range(1, len(close)):
        up, down = high[t] - high[t - 1], low[t - 1] - low[t]
        plus = up if up > down and up > 0 else 0.0
        minus = down if down > up and down > 0 else 0.0
        tr = max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        if sp is None:
            sp, sm, tr_s = plus, minus, tr
        else:
            sp += (plus - sp) / n
            sm += (minus - sm) / n
            tr_s += (tr - tr_s) / n
        di_p, di_m = 100 * sp / tr_s, 100 * sm / tr_s
        ref.append(100 * abs(di_p - di_m) / (di_p + di_m) if di_p + di_m > 0 else 0.0)
    np.testing.assert_allclose(full().frame["dx_30"], np.asarray(ref)[kept_positions()], rtol=1e-8, atol=1e-9)


def test_oscillators_stay_in_range_on_twenty_years():
    frame = full().frame
    for name in ("rsi_30", "dx_30"):
        assert frame[name].between(0, 100).all()
    assert (frame["realized_vol_20"] >= 0).all()
    assert (frame["turbulence"] >= 0).all()


# --- VIX ------------------------------------------------------------------------------------------


def test_vix_level_and_change_come_from_the_same_session():
    v = vix().set_index("session")["close"]
    for session in CHECK_SESSIONS:
        ts = pd.Timestamp(session)
        prev = v.index[v.index.get_loc(ts) - 1]
        assert feature_at("vix", session) == pytest.approx(v[ts] / 100)
        assert feature_at("vix_change", session) == pytest.approx(math.log(v[ts] / v[prev]))


def _spy_window() -> pd.DataFrame:
    bars = spy()
    return bars.loc[bars["session"].between("2016-01-01", "2019-12-31")].reset_index(drop=True)


def _without_vix_sessions(sessions: list[pd.Timestamp]) -> pd.DataFrame:
    v = vix()
    return v.loc[~v["session"].isin(sessions)].reset_index(drop=True)


@pytest.mark.parametrize("gap", [1, 3])
def test_missing_vix_bars_reuse_the_previous_close_up_to_the_limit(gap):
    bars = _spy_window()
    a = 600
    hole = list(bars["session"][a : a + gap])
    f = build_features(bars, _without_vix_sessions(hole))
    frame = f.frame.set_index("session")
    before = vix().set_index("session")["close"][bars["session"][a - 1]] / 100
    for s in hole:
        assert frame.loc[s, "vix"] == pytest.approx(before)  # the PREVIOUS session's close, never a later one
    assert frame.loc[hole[0], "vix_change"] == pytest.approx(0.0)
    assert f.dropped["vix_missing"] == 0
    assert len(f) == len(bars) - DEFAULT_SPEC.warmup_rows


def test_vix_staler_than_the_limit_drops_the_rows():
    bars = _spy_window()
    a = 600
    hole = list(bars["session"][a : a + 5])
    f = build_features(bars, _without_vix_sessions(hole))
    kept = set(f.sessions)
    assert all(s in kept for s in hole[:3])
    # Sessions 4 and 5 are too stale; the next one has no VIX change (its predecessor has no level).
    assert not any(np.datetime64(s, "ns") in kept for s in [*hole[3:], bars["session"][a + 5]])
    assert f.dropped["vix_missing"] == 3
    assert len(f) == len(bars) - DEFAULT_SPEC.warmup_rows - 3


def test_vix_required_by_spec_but_missing_is_an_error():
    with pytest.raises(InputError, match="include_vix"):
        build_features(spy(), None)


def test_spec_without_vix_builds_from_bars_alone():
    f = build_features(spy(), None, DEFAULT_SPEC.replace(include_vix=False))
    assert "vix" not in f.frame.columns
    np.testing.assert_array_equal(f.frame["rsi_30"], full().frame["rsi_30"])


def test_sample_source_features_start_when_its_vix_history_does():
    src = SampleSource()
    bars = src.fetch("SPY", pd.Timestamp("1999-01-01"), pd.Timestamp("2018-12-31"))
    v = src.fetch("^VIX", pd.Timestamp("1999-01-01"), pd.Timestamp("2018-12-31"))
    f = build_features(bars, v)
    # The sample VIX begins 2014-01-03; the first VIX change needs two VIX closes.
    assert pd.Timestamp(f.sessions[0]) == pd.Timestamp("2014-01-06")
    assert f.dropped["warmup"] + f.dropped["vix_missing"] + len(f) == len(bars)


# --- invariances that make live ticks match research ------------------------------------------------


def test_features_barely_depend_on_where_the_history_starts():
    """A live tick with a shorter history computes what research computed (windows exactly, EMAs within tol)."""
    i = bar_index("2015-01-02")
    short = build_features(spy().iloc[i:].reset_index(drop=True), vix()).frame
    long = full().frame
    long = long.loc[long["session"].isin(short["session"])].reset_index(drop=True)
    assert len(short) == len(long)
    recursive = {"rsi_30": 1e-3, "dx_30": 1e-3, "macd": 1e-12, "macd_signal": 1e-12, "macd_hist": 1e-12}
    for name in SHARED_NAMES:
        np.testing.assert_allclose(short[name], long[name], rtol=0, atol=recursive.get(name, 1e-12), err_msg=name)


def test_features_unchanged_when_history_is_rescaled_by_a_new_dividend_adjustment():
    """Yahoo rescales all past adj_close when a dividend is paid; scale-free features must not notice."""
    bars = spy().copy()
    bars["adj_close"] *= 0.987
    rescaled = build_features(bars, vix()).frame
    for name in SHARED_NAMES:
        np.testing.assert_allclose(rescaled[name], full().frame[name], rtol=1e-9, atol=1e-9, err_msg=name)


# --- bad input ------------------------------------------------------------------------------------


def test_too_short_a_history_raises_with_the_warmup_needed():
    with pytest.raises(InputError, match=str(DEFAULT_SPEC.warmup_rows)):
        build_features(spy().iloc[: DEFAULT_SPEC.warmup_rows], vix())


def test_unsorted_or_duplicated_bars_are_rejected():
    bars = spy().iloc[:600]
    with pytest.raises(InputError, match="strictly increasing"):
        build_features(bars.iloc[::-1].reset_index(drop=True), vix())
    with pytest.raises(InputError, match="strictly increasing"):
        build_features(pd.concat([bars, bars.iloc[[-1]]], ignore_index=True), vix())


def test_ungated_prices_are_rejected_not_dropped():
    bars = spy().iloc[:600].copy()
    bars.loc[500, "close"] = np.nan
    with pytest.raises(InputError, match="missing or non-positive"):
        build_features(bars, vix())


def test_two_symbols_in_one_frame_are_rejected():
    bars = pd.concat([spy().iloc[:600], spy().iloc[600:1200].assign(symbol="QQQ")], ignore_index=True)
    with pytest.raises(InputError, match="per symbol"):
        build_features(bars, vix())


# --- live -----------------------------------------------------------------------------------------


def test_live_features_end_on_the_requested_session():
    bars = spy().iloc[-700:].reset_index(drop=True)
    f = features_for_live(bars, vix(), DEFAULT_SPEC, session="2024-01-24")
    assert pd.Timestamp(f.sessions[-1]) == pd.Timestamp("2024-01-24")
    after_close_utc = pd.Timestamp("2024-01-24 21:05", tz="UTC")
    assert features_for_live(bars, vix(), DEFAULT_SPEC, session=after_close_utc).sessions[-1] == f.sessions[-1]
    np.testing.assert_allclose(
        f.frame.iloc[-1, 1:].to_numpy(float), full().frame.iloc[-1, 1:].to_numpy(float), atol=1e-3
    )


def test_live_features_refuse_a_session_the_bars_do_not_reach():
    bars = spy().iloc[-700:-1].reset_index(drop=True)
    with pytest.raises(FeaturesStaleError, match="2024-01-23, not 2024-01-24"):
        features_for_live(bars, vix(), DEFAULT_SPEC, session="2024-01-24")


def test_live_features_refuse_today_when_vix_is_too_stale():
    bars = spy().iloc[-700:].reset_index(drop=True)
    stale = vix().iloc[:-4].reset_index(drop=True)
    with pytest.raises(FeaturesStaleError, match="vix_missing"):
        features_for_live(bars, stale, DEFAULT_SPEC, session="2024-01-24")


# --- Parquet --------------------------------------------------------------------------------------


def test_write_features_round_trips_with_the_spec_in_metadata(tmp_path):
    out = write_features(full(), tmp_path / "f" / "SPY.parquet")
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, full().frame)
    meta = json.loads(back.attrs[PARQUET_ATTR])
    assert meta["symbol"] == "SPY"
    assert meta["spec_digest"] == DEFAULT_SPEC.digest
    assert FeatureSpec.from_dict(meta["spec"]) == DEFAULT_SPEC
    validate_features(back)
    assert [p.name for p in out.parent.iterdir()] == ["SPY.parquet"]  # no temp file left behind


def test_write_features_refuses_an_invalid_frame(tmp_path):
    frame = full().frame.copy()
    frame.loc[3, "rsi_30"] = 150.0
    bad = dataclasses.replace(full(), frame=frame)
    with pytest.raises(FeatureSchemaError):
        write_features(bad, tmp_path / "SPY.parquet")
    assert not any(tmp_path.iterdir())


# --- schema ---------------------------------------------------------------------------------------


def _broken(**cells: tuple[int, float]) -> pd.DataFrame:
    frame = full().frame.iloc[:50].copy()
    for column, (row, value) in cells.items():
        frame.loc[row, column] = value
    return frame


def _session(row: int) -> str:
    return pd.Timestamp(full().sessions[row]).date().isoformat()


def test_valid_frame_passes_the_schema():
    assert validate_features(full().frame) is full().frame


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("macd", np.nan, "null"),
        ("turbulence", np.inf, "finite"),
        ("cci_30", -np.inf, "finite"),
        ("rsi_30", 100.5, "in_range"),
        ("dx_30", -0.1, "in_range"),
        ("realized_vol_20", -0.01, "greater_than_or_equal_to"),
        ("vix", 0.0, "greater_than"),
    ],
)
def test_schema_failure_names_column_session_and_check(column, value, check):
    with pytest.raises(FeatureSchemaError) as info:
        validate_features(_broken(**{column: (7, value)}))
    message = str(info.value)
    assert column in message
    assert _session(7) in message
    assert check in message
    assert len(info.value.failures) == 1


def test_schema_lists_every_failure_at_once():
    with pytest.raises(FeatureSchemaError) as info:
        validate_features(_broken(rsi_30=(3, 101.0), log_return=(9, np.nan), boll_lower=(12, 1.0)))
    found = {(f.column, f.session) for f in info.value.failures}
    assert found == {("rsi_30", _session(3)), ("log_return", _session(9)), ("boll_lower", _session(12))}


def test_schema_rejects_duplicate_or_decreasing_sessions():
    frame = full().frame.iloc[:50].copy()
    frame.loc[20, "session"] = frame.loc[19, "session"]
    with pytest.raises(FeatureSchemaError, match="session"):
        validate_features(frame)


def test_schema_rejects_missing_extra_or_reordered_columns():
    frame = full().frame.iloc[:50]
    with pytest.raises(FeatureSchemaError, match="vix_change"):
        validate_features(frame.drop(columns=["vix_change"]))
    with pytest.raises(FeatureSchemaError, match="extra"):
        validate_features(frame.assign(extra=1.0))
    with pytest.raises(FeatureSchemaError):
        validate_features(frame[["session", *reversed(SHARED_NAMES)]])


def test_schema_rejects_an_empty_frame():
    with pytest.raises(FeatureSchemaError, match="non_empty"):
        validate_features(full().frame.iloc[:0])
