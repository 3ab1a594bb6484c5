"""Layer 2 (Great Expectations): the statistics frame, the suites in expectations/, severities,
suite parameters, never-vacuous row counts, Data Docs, and the cached context."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.data.bars import empty_bars
from tradeflow.data.quality import gx_layer
from tradeflow.data.quality.known_events import find_expectations_dir
from tradeflow.data.quality.report import LayerOutcome

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
EXPECTATIONS = find_expectations_dir()


@lru_cache(maxsize=2)
def _real(name: str, symbol: str) -> pd.DataFrame:
    return read_bar_file(REAL / name, symbol)


@pytest.fixture(scope="session")
def warm_gx() -> None:
    gx_layer.warm_up(EXPECTATIONS)


@pytest.fixture
def spy(real_data: Path, warm_gx: None) -> pd.DataFrame:
    return _real("SPY.csv", "SPY").iloc[-120:].reset_index(drop=True)


@pytest.fixture
def vix(real_data: Path, warm_gx: None) -> pd.DataFrame:
    return _real("VIX.csv", "^VIX").iloc[-120:].reset_index(drop=True)


def validate(
    frame: pd.DataFrame,
    min_rows: int = 1,
    symbols: tuple[str, ...] = (),
    expectations_dir: Path = EXPECTATIONS,
    docs_dir: Path | None = None,
) -> LayerOutcome:
    return gx_layer.validate_statistics(
        frame, expectations_dir=expectations_dir, min_rows=min_rows, symbols=symbols, docs_dir=docs_dir
    )


def where(outcome: LayerOutcome, check: str) -> set[tuple[str | None, str | None]]:
    return {(f.symbol, f.session) for f in outcome.failures if f.check == check}


# --- the suites as files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(gx_layer.SUITE_FILES.values()))
def test_suite_json_loads_as_a_gx_expectation_suite_with_a_check_name_per_expectation(name, warm_gx):
    import great_expectations as gx

    spec = json.loads((EXPECTATIONS / name).read_text())
    suite = gx.ExpectationSuite(**spec)
    assert suite.name == name.removesuffix(".json")
    assert all(e.meta.get("check") and e.meta.get("why") for e in suite.expectations)
    severities = {str(e.severity.value) for e in suite.expectations}
    assert severities == {"critical", "warning"}


def test_row_count_minimum_is_a_suite_parameter_supplied_at_run_time():
    for name in gx_layer.SUITE_FILES.values():
        spec = json.loads((EXPECTATIONS / name).read_text())
        counts = [e for e in spec["expectations"] if e["type"] == "expect_table_row_count_to_be_between"]
        assert [c["kwargs"]["min_value"] for c in counts] == [{"$PARAMETER": "min_rows"}]


# --- the statistics frame -----------------------------------------------------------------------------


def test_statistics_frame_computes_returns_and_runs_within_each_symbol():
    frame = pd.DataFrame(
        {
            "session": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-02", "2024-01-03"]),
            "symbol": ["B", "B", "B", "A", "A"],
            "close": [10.0, 10.0, 20.0, 5.0, 5.0],
            "volume": [0.0, 0.0, 100.0, 7.0, 9.0],
        }
    )
    stats = gx_layer.statistics_frame(frame)
    assert stats["symbol"].tolist() == ["A", "A", "B", "B", "B"]
    np.testing.assert_allclose(stats["log_return"], [np.nan, 0.0, np.nan, 0.0, np.log(2)])
    assert stats["close_repeat_run"].tolist() == [1, 2, 1, 2, 1]
    assert stats["zero_volume_run"].tolist() == [0, 0, 1, 2, 0]
    # B's median volume is 0: no meaningful ratio, and the zero-volume checks own that case.
    np.testing.assert_allclose(stats["volume_to_median"], [7 / 8, 9 / 8, np.nan, np.nan, np.nan])


# --- expectations -------------------------------------------------------------------------------------


def test_real_bars_pass_with_no_failures(spy, vix):
    assert validate(pd.concat([spy, vix], ignore_index=True)).failures == []


def test_return_outlier_names_symbol_and_session(spy):
    spy.loc[50:, ["open", "high", "low", "close"]] *= 2.5  # log 0.92 > 0.75
    day = spy["session"][50].date().isoformat()
    outcome = validate(spy)
    assert where(outcome, "return_outlier") == {("SPY", day)}
    [f] = [f for f in outcome.failures if f.check == "return_outlier"]
    assert f.layer == "statistics"
    assert f.value == pytest.approx(np.log(2.5), rel=0.05)


def test_index_suite_allows_a_vix_size_spike_but_not_a_scaling_error(vix):
    spiked = vix.copy()
    spiked.loc[60:, ["open", "high", "low", "close", "adj_close"]] *= 2.15  # ^VIX 2018-02-05: +115%
    assert where(validate(spiked), "return_outlier") == set()
    scaled = vix.copy()
    scaled.loc[60:, ["open", "high", "low", "close", "adj_close"]] *= 10
    assert where(validate(scaled), "return_outlier") == {("^VIX", vix["session"][60].date().isoformat())}


@pytest.mark.parametrize(("run", "fails"), [(4, False), (5, True), (12, True)])
def test_repeated_identical_closes_fail_from_a_run_of_five(spy, run, fails):
    # Row 39 keeps its real close; rows 40.. repeat it, so the run is `run` bars long.
    spy.loc[40 : 40 + run - 2, ["open", "high", "low", "close"]] = spy.loc[39, "close"]
    flagged = where(validate(spy), "stale_close_run")
    assert bool(flagged) is fails
    if fails:
        fifth = spy["session"][39 + 4].date().isoformat()
        assert ("SPY", fifth) in flagged
        assert len(flagged) == run - 4


def test_one_zero_volume_day_in_a_long_history_is_tolerated_and_noted(spy, warm_gx):
    long = _real("SPY.csv", "SPY").copy()
    long.loc[100, "volume"] = 0.0
    outcome = validate(long)
    assert outcome.failures == []
    assert any("zero_volume tolerated" in n for n in outcome.notes)


def test_a_dead_volume_feed_fails_even_when_the_share_is_small(spy, warm_gx):
    long = _real("SPY.csv", "SPY").copy()
    long.loc[7000:7009, "volume"] = 0.0  # 10 of 7802 rows: 0.13%, within mostly=0.99
    outcome = validate(long)
    assert "zero_volume" not in {f.check for f in outcome.failures}
    assert len(where(outcome, "zero_volume_run")) == 6  # runs of length 5..10


def test_volume_in_the_wrong_unit_fails(spy):
    spy.loc[30, "volume"] *= 10_000
    assert where(validate(spy), "volume_outlier") == {("SPY", spy["session"][30].date().isoformat())}


def test_warnings_become_notes_not_failures(spy):
    spy.loc[50:, ["open", "high", "low", "close"]] *= 1.4  # log 0.34: a large move, not an outlier
    outcome = validate(spy)
    assert outcome.failures == []
    assert any(n.startswith("warning large_move") and "SPY" in n for n in outcome.notes)


# --- row counts: never vacuous ------------------------------------------------------------------------


def test_min_rows_parameter_is_applied_per_symbol(spy):
    assert where(validate(spy, min_rows=120), "min_row_count") == set()
    assert where(validate(spy, min_rows=121), "min_row_count") == {(None, None)}
    # Two expected symbols need twice the rows.
    assert where(validate(spy, min_rows=100, symbols=("SPY", "QQQ")), "min_row_count") == {(None, None)}


def test_empty_frame_fails_the_row_count(warm_gx):
    outcome = validate(empty_bars())
    assert [f.check for f in outcome.failures] == ["min_row_count"]


def test_empty_frame_fails_even_with_a_suite_that_lost_its_row_count(tmp_path, warm_gx):
    for name in gx_layer.SUITE_FILES.values():
        spec = json.loads((EXPECTATIONS / name).read_text())
        spec["expectations"] = [e for e in spec["expectations"] if e["meta"]["check"] != "min_row_count"]
        (tmp_path / name).write_text(json.dumps(spec))
    outcome = validate(empty_bars(), expectations_dir=tmp_path)
    assert [(f.check, f.detail) for f in outcome.failures] == [("min_row_count", "no equity rows to validate")]


def test_expected_index_without_rows_fails_its_own_suite(spy):
    outcome = validate(spy, symbols=("SPY", "^VIX"))
    [f] = outcome.failures
    assert f.check == "min_row_count"
    assert "index rows" in f.detail


def test_frame_missing_columns_does_not_crash_gx(spy):
    outcome = validate(spy.drop(columns=["close", "volume"]))
    assert not [f for f in outcome.failures if f.check == "gx_error"]


# --- runtime ------------------------------------------------------------------------------------------


def test_context_and_suites_are_built_once_per_process(spy):
    validate(spy)
    runtime = gx_layer._RUNTIME
    suites = dict(runtime.suites) if runtime else {}
    validate(spy)
    assert gx_layer._RUNTIME is runtime
    assert runtime is not None
    assert {p: s.suite for p, s in runtime.suites.items()} == {p: s.suite for p, s in suites.items()}


def test_an_edited_suite_file_is_reloaded_and_other_dirs_are_unaffected(tmp_path, spy):
    for name in gx_layer.SUITE_FILES.values():
        (tmp_path / name).write_text((EXPECTATIONS / name).read_text())
    assert validate(spy, expectations_dir=tmp_path).failures == []
    spec = json.loads((tmp_path / "daily_bars_equity.json").read_text())
    [bound] = [e for e in spec["expectations"] if e["meta"]["check"] == "return_outlier"]
    bound["kwargs"].update(min_value=-0.001, max_value=0.001)
    (tmp_path / "daily_bars_equity.json").write_text(json.dumps(spec))
    assert len(where(validate(spy, expectations_dir=tmp_path), "return_outlier")) > 50
    assert validate(spy).failures == []  # the repository's suite of the same name is intact


def test_data_docs_are_written_and_the_result_store_is_emptied(spy, tmp_path):
    outcome = validate(spy, docs_dir=tmp_path / "docs")
    assert outcome.docs_path is not None
    assert (tmp_path / "docs" / "index.html").is_file()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert gx_layer._RUNTIME is not None
    assert gx_layer._RUNTIME.context.validation_results_store.list_keys() == []
