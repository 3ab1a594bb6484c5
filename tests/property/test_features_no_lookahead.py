"""THE no-lookahead proof for features, on real SPY + VIX (1993-2024), and for the panel of SPY, AAPL
and MSFT on their common sessions.

For any cut point, the features of every session are the same whether the data ends at the cut or
goes on: later real rows, appended garbage or a perturbed later bar never change an earlier row; in
a panel, neither does a later bar of any symbol, whatever the cut of each symbol.
Equality is exact: each row is computed from the same earlier inputs by the same operations.
Two specs are exercised: the default and a short-window one whose warm-up is only a few dozen rows.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.domain.instruments import Universe
from tradeflow.features import DEFAULT_SPEC, Features, FeatureSpec, PanelFeatures, build_features, build_panel

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
SHORT_SPEC = FeatureSpec(
    vol_window=5,
    macd_fast=3,
    macd_slow=6,
    macd_signal=3,
    boll_window=5,
    rsi_window=5,
    cci_window=5,
    dx_window=5,
    sma_short=5,
    sma_long=10,
    turbulence_window=20,
    seed_weight_tol=1e-2,
)
SPECS = st.sampled_from([DEFAULT_SPEC, SHORT_SPEC])
FAST = settings(max_examples=30, deadline=None)
PRICE_FIELDS = ("open", "high", "low", "close", "adj_close", "volume")


@lru_cache(maxsize=1)
def spy() -> pd.DataFrame:
    return read_bar_file(REAL / "SPY.csv", "SPY")


@lru_cache(maxsize=1)
def vix() -> pd.DataFrame:
    return read_bar_file(REAL / "VIX.csv", "^VIX")


@lru_cache(maxsize=2)
def baseline(spec: FeatureSpec) -> Features:
    return build_features(spy(), vix(), spec)


def vix_until(session: np.datetime64) -> pd.DataFrame:
    """The VIX history as it stood after the close of `session`."""
    v = vix()
    return v.loc[v["session"].to_numpy() <= session].reset_index(drop=True)


def assert_rows_equal_before(early: Features, late: Features, before: np.datetime64 | None = None) -> int:
    """Every row of `early` (with session < before, if given) appears unchanged in `late`; returns the count."""
    frame = early.frame
    if before is not None:
        frame = frame.loc[frame["session"].to_numpy() < before]
    n = len(frame)
    assert n > 0, "the comparison must cover rows"
    np.testing.assert_array_equal(late.sessions[:n], frame["session"].to_numpy())
    names = list(early.spec.names)
    np.testing.assert_array_equal(late.frame[names].to_numpy()[:n], frame[names].to_numpy())
    return n


def cut_points(spec: FeatureSpec, extra: int = 0) -> st.SearchStrategy[int]:
    # The first feature row of a prefix needs warmup_rows + 1 bars (+1 for the VIX change, + rows
    # the test leaves without VIX).
    return st.integers(min_value=spec.warmup_rows + 2 + extra, max_value=len(spy()) - 1)


@FAST
@given(data=st.data(), spec=SPECS)
def test_features_at_t_unchanged_when_future_rows_appended(data, spec):
    # The VIX feed may lack the last few sessions before the cut for good (a late or broken feed):
    # those rows must be forward-filled or dropped the same way whatever comes later.
    gap = data.draw(st.integers(min_value=0, max_value=spec.vix_max_ffill + 2), label="vix gap")
    c = data.draw(cut_points(spec, extra=gap), label="cut")
    k = data.draw(st.integers(min_value=1, max_value=len(spy()) - c), label="appended")
    sessions = spy()["session"].to_numpy()
    hole = sessions[c - gap : c]

    def vix_as_of(i: int) -> pd.DataFrame:
        v = vix_until(sessions[i])
        return v.loc[~v["session"].isin(hole)].reset_index(drop=True)

    early = build_features(spy().iloc[:c], vix_as_of(c - 1), spec)
    late = build_features(spy().iloc[: c + k], vix_as_of(c + k - 1), spec)
    assert assert_rows_equal_before(early, late) == len(early)
    assert len(late) == len(early) + k - (late.dropped["vix_missing"] - early.dropped["vix_missing"])


def _garbage(bars: pd.DataFrame, draws: list[tuple[float, float, float, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Future rows with absurd but positive prices, dividend ratios, volumes and VIX levels."""
    last = pd.Timestamp(bars["session"].iloc[-1])
    sessions = pd.bdate_range(last + pd.Timedelta(days=1), periods=len(draws)).as_unit("ns")
    close0 = float(bars["close"].iloc[-1])
    rows, vix_rows = [], []
    for s, (jump, spread, ratio, vix_level) in zip(sessions, draws, strict=True):
        close = close0 * jump
        rows.append(
            {
                "session": s,
                "symbol": "SPY",
                "open": close / spread,
                "high": close * spread,
                "low": close / spread,
                "close": close,
                "adj_close": close * ratio,
                "volume": 1e12 * spread,
            }
        )
        vix_rows.append(
            {
                "session": s,
                "symbol": "^VIX",
                **dict.fromkeys(("open", "high", "low", "close", "adj_close"), vix_level),
                "volume": 0.0,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(vix_rows)


GARBAGE_ROW = st.tuples(
    st.floats(min_value=1e-4, max_value=1e4),  # price jump from the last real close
    st.floats(min_value=1.0, max_value=50.0),  # high/low spread
    st.floats(min_value=1e-3, max_value=1.0),  # adj_close / close
    st.floats(min_value=1e-2, max_value=1e4),  # VIX level
)


@FAST
@given(data=st.data(), spec=SPECS)
def test_appending_garbage_future_rows_never_changes_a_past_row(data, spec):
    c = data.draw(cut_points(spec), label="cut")
    draws = data.draw(st.lists(GARBAGE_ROW, min_size=1, max_size=40), label="garbage")
    bars = spy().iloc[:c].reset_index(drop=True)
    v = vix_until(bars["session"].to_numpy()[-1])
    junk_bars, junk_vix = _garbage(bars, draws)
    early = build_features(bars, v, spec)
    late = build_features(
        pd.concat([bars, junk_bars], ignore_index=True), pd.concat([v, junk_vix], ignore_index=True), spec
    )
    assert assert_rows_equal_before(early, late) == len(early)


@FAST
@given(data=st.data(), spec=SPECS)
def test_perturbing_one_future_bar_never_changes_earlier_rows(data, spec):
    base = baseline(spec)
    first = int(np.searchsorted(spy()["session"].to_numpy(), base.sessions[0]))
    p = data.draw(st.integers(min_value=first + 1, max_value=len(spy()) - 1), label="bar")
    field = data.draw(st.sampled_from(PRICE_FIELDS), label="field")
    factor = data.draw(st.sampled_from([0.5, 0.9, 1.1, 2.0, 10.0]), label="factor")
    bars = spy().copy()
    bars.loc[p, field] *= factor
    session = bars["session"].to_numpy()[p]
    perturbed = build_features(bars, vix(), spec)
    assert_rows_equal_before(base, perturbed, before=session)
    if field == "adj_close":
        # Witness that the perturbation is seen from its own session on: the dividend-adjusted return moves.
        row = int(np.searchsorted(perturbed.sessions, session))
        assert perturbed.frame["log_return"].iloc[row] != base.frame["log_return"].iloc[row]


@FAST
@given(data=st.data(), spec=SPECS)
def test_perturbing_one_future_vix_bar_never_changes_earlier_rows(data, spec):
    base = baseline(spec)
    v_sessions = vix()["session"].to_numpy()
    first = int(np.searchsorted(v_sessions, base.sessions[0]))
    p = data.draw(st.integers(min_value=first + 1, max_value=len(vix()) - 1), label="vix bar")
    v = vix().copy()
    v.loc[p, "close"] *= data.draw(st.sampled_from([0.5, 2.0, 5.0]), label="factor")
    perturbed = build_features(spy(), v, spec)
    session = v_sessions[p]
    assert_rows_equal_before(base, perturbed, before=session)
    row = int(np.searchsorted(perturbed.sessions, session))
    assert perturbed.frame["vix"].iloc[row] != base.frame["vix"].iloc[row]


# --- the panel -------------------------------------------------------------------------------------

PANEL_SYMBOLS = ("SPY", "AAPL", "MSFT")
UNIVERSE = Universe.of(*PANEL_SYMBOLS)


@lru_cache(maxsize=3)
def real(symbol: str) -> pd.DataFrame:
    return spy() if symbol == "SPY" else read_bar_file(REAL / f"{symbol}.csv", symbol)


def panel_of(bars: dict[str, pd.DataFrame], spec: FeatureSpec, v: pd.DataFrame | None = None) -> PanelFeatures:
    # validate=False: the schema check does not change a value, and skipping it halves the runtime.
    return build_panel(bars, vix() if v is None else v, UNIVERSE, spec, validate=False)


@lru_cache(maxsize=2)
def panel_baseline(spec: FeatureSpec) -> PanelFeatures:
    return panel_of({s: real(s) for s in PANEL_SYMBOLS}, spec)


def assert_panel_rows_equal_before(
    early: PanelFeatures, late: PanelFeatures, before: np.datetime64 | None = None
) -> int:
    """Every (session, symbol) row of `early` (session < before, if given) is in `late`, unchanged,
    and its sessions are the first sessions of `late`; returns the count of sessions compared."""
    sessions = early.sessions if before is None else early.sessions[early.sessions < before]
    n = len(sessions)
    assert n > 0, "the comparison must cover rows"
    np.testing.assert_array_equal(late.sessions[:n], sessions)
    rows = n * len(early.symbols)
    pd.testing.assert_frame_equal(late.frame.iloc[:rows], early.frame.iloc[:rows])
    return n


@FAST
@given(data=st.data(), spec=SPECS)
def test_panel_rows_unchanged_when_any_symbol_gets_future_sessions(data, spec):
    # Each symbol is cut at its own session (a feed can lag another), then each goes on by its own
    # count: every (session, symbol) row of the early panel must be in the later one, unchanged.
    base = panel_baseline(spec)
    spy_sessions = spy()["session"].to_numpy()
    lo = int(np.searchsorted(spy_sessions, base.sessions[0]))
    early_bars, late_bars = {}, {}
    cuts = []
    for symbol in PANEL_SYMBOLS:
        cut = data.draw(st.integers(min_value=lo, max_value=len(spy_sessions) - 1), label=f"{symbol} cut")
        more = data.draw(st.integers(min_value=0, max_value=len(spy_sessions) - 1 - cut), label=f"{symbol} later")
        bars = real(symbol)
        early_bars[symbol] = bars.loc[bars["session"].to_numpy() <= spy_sessions[cut]].reset_index(drop=True)
        late_bars[symbol] = bars.loc[bars["session"].to_numpy() <= spy_sessions[cut + more]].reset_index(drop=True)
        cuts.append(cut + more)
    early = panel_of(early_bars, spec, vix_until(max(b["session"].to_numpy()[-1] for b in early_bars.values())))
    late = panel_of(late_bars, spec, vix_until(spy_sessions[max(cuts)]))
    assert assert_panel_rows_equal_before(early, late) == len(early)


@FAST
@given(data=st.data(), spec=SPECS)
def test_perturbing_one_future_bar_of_any_symbol_never_changes_earlier_panel_rows(data, spec):
    base = panel_baseline(spec)
    symbol = data.draw(st.sampled_from(PANEL_SYMBOLS), label="symbol")
    bars = real(symbol).copy()
    first = int(np.searchsorted(bars["session"].to_numpy(), base.sessions[0]))
    p = data.draw(st.integers(min_value=first + 1, max_value=len(bars) - 1), label="bar")
    field = data.draw(st.sampled_from(PRICE_FIELDS), label="field")
    bars.loc[p, field] *= data.draw(st.sampled_from([0.5, 0.9, 1.1, 2.0, 10.0]), label="factor")
    session = bars["session"].to_numpy()[p]
    perturbed = panel_of({s: bars if s == symbol else real(s) for s in PANEL_SYMBOLS}, spec)
    assert_panel_rows_equal_before(base, perturbed, before=session)
    row = (pd.Timestamp(session), symbol)
    if field == "adj_close" and row in base.frame.index:
        # Witness that the perturbation is seen from its own session on.
        assert perturbed.frame.loc[row, "log_return"] != base.frame.loc[row, "log_return"]
