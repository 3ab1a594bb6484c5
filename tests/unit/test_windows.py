"""Historical windows: --start/--end on features, backtest and train cut the stored, already-gated
snapshot; a window the store covers fetches and gates nothing, and an earlier --end never fails the
gate, quarantines or replaces what is stored (issue 10, item 9)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tradeflow.cli import EXIT_INPUT, EXIT_OK, main
from tradeflow.config import Settings, get_settings
from tradeflow.data.bars import cut_window
from tradeflow.data.ingest import IngestRequest, ingest_missing
from tradeflow.data.store import SnapshotStore
from tradeflow.research.config import TrainSpyConfig
from tradeflow.research.walkforward import load_dataset

NOW = "2026-11-21T12:00Z"
WINDOWS = [(None, "2015-12-31"), ("2010-01-04", "2015-12-31")]


@contextlib.contextmanager
def data_dir_at(path: Path) -> Iterator[Path]:
    """TRADEFLOW_DATA_DIR for module-scoped stores (the `data_dir` fixture is per test)."""
    old = os.environ.get("TRADEFLOW_DATA_DIR")
    os.environ["TRADEFLOW_DATA_DIR"] = str(path)
    get_settings.cache_clear()
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("TRADEFLOW_DATA_DIR", None)
        else:
            os.environ["TRADEFLOW_DATA_DIR"] = old
        get_settings.cache_clear()


def cli(capsys, data: Path, *args: str) -> tuple[int, str, str]:
    with data_dir_at(data):
        code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _ingest_to(root: Path, real_data: Path, end: str) -> Path:
    data = root / "data"
    with data_dir_at(data):
        args = ["ingest", "--source", "csv", "--path", str(real_data), "--symbols", "SPY,^VIX", "--end", end]
        assert main([*args, "--now", NOW]) == EXIT_OK
    return data


@pytest.fixture(scope="module")
def store_2019(tmp_path_factory, real_data) -> Path:
    """SPY and ^VIX ingested through the gate up to 2019-12-31 (copy it before changing it)."""
    return _ingest_to(tmp_path_factory.mktemp("to2019"), real_data, "2019-12-31")


@pytest.fixture(scope="module")
def store_2015(tmp_path_factory, real_data) -> Path:
    """A fresh store ingested only up to 2015-12-31: what a cut at 2015-12-31 must equal."""
    return _ingest_to(tmp_path_factory.mktemp("to2015"), real_data, "2015-12-31")


def copied(store: Path, tmp_path: Path) -> Path:
    shutil.copytree(store, tmp_path / "data")
    return tmp_path / "data"


def window_args(start: str | None, end: str) -> list[str]:
    return (["--start", start] if start else []) + ["--end", end]


def currents(data: Path) -> dict[str, str]:
    store = SnapshotStore(data / "snapshots")
    return {s: store.current(s).digest for s in store.symbols()}  # type: ignore[union-attr]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} if path.exists() else set()


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_backtest_with_an_earlier_end_equals_a_fresh_run_on_data_cut_there(
    capsys, real_data, store_2019, store_2015, tmp_path, start, end
):
    later = copied(store_2019, tmp_path)
    args = ["backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data), "--json"]
    code, out, err = cli(capsys, later, *args, *window_args(start, end))
    assert code == EXIT_OK, err
    fresh_code, fresh, _ = cli(capsys, copied(store_2015, tmp_path / "fresh"), *args, *window_args(start, end))
    assert fresh_code == EXIT_OK
    assert json.loads(out) == json.loads(fresh)


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_features_with_an_earlier_end_equal_a_fresh_run_on_data_cut_there(
    capsys, real_data, store_2019, store_2015, tmp_path, start, end
):
    base = ["features", "--source", "csv", "--path", str(real_data), "--json", *window_args(start, end)]
    code, out, err = cli(capsys, copied(store_2019, tmp_path), *base, "--out", str(tmp_path / "cut.parquet"))
    assert code == EXIT_OK, err
    fresh_dir = copied(store_2015, tmp_path / "fresh")
    fresh_code, _, _ = cli(capsys, fresh_dir, *base, "--out", str(tmp_path / "fresh.parquet"))
    assert fresh_code == EXIT_OK
    cut, fresh = pd.read_parquet(tmp_path / "cut.parquet"), pd.read_parquet(tmp_path / "fresh.parquet")
    pd.testing.assert_frame_equal(cut, fresh)
    assert str(cut["session"].iloc[-1].date()) == end
    assert json.loads(out)["first_session"] == (start or str(fresh["session"].iloc[0].date()))


def test_an_earlier_end_leaves_the_stored_snapshots_current_and_quarantines_nothing(
    capsys, real_data, store_2019, tmp_path
):
    data = copied(store_2019, tmp_path)
    before = currents(data)
    args = ["backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data), "--end", "2015-12-31"]
    code, _, err = cli(capsys, data, *args)
    assert code == EXIT_OK, err
    assert currents(data) == before
    assert files_under(data / "quarantine") == set()


def test_a_window_the_store_covers_fetches_and_gates_nothing(capsys, real_data, store_2019, tmp_path):
    """The source's files are gone: any fetch would fail, and no new quality report may appear."""
    data = copied(store_2019, tmp_path)
    empty_source = tmp_path / "no_files"
    empty_source.mkdir()
    reports = files_under(data / "reports")
    args = ["backtest", "--strategy", "sma", "--source", "csv", "--path", str(empty_source), "--json"]
    for end in ("2015-12-31", "2019-12-31"):
        code, _, err = cli(capsys, data, *args, "--end", end)
        assert code == EXIT_OK, err
    assert files_under(data / "reports") == reports


def test_a_later_end_fetches_and_gates_only_the_symbols_whose_snapshot_ends_earlier(
    capsys, real_data, store_2015, store_2019, tmp_path
):
    data = copied(store_2015, tmp_path)
    before = currents(data)
    settings = Settings(data_dir=data)
    request = IngestRequest(source="csv", symbols=("SPY", "^VIX"), end="2015-12-31", path=str(real_data))
    assert ingest_missing(request, settings, NOW) is None
    later = IngestRequest(source="csv", symbols=("SPY", "^VIX"), end="2019-12-31", path=str(real_data))
    result = ingest_missing(later, settings, NOW)
    assert result is not None
    assert result.report.passed
    for symbol in ("SPY", "^VIX"):
        info = result.snapshots[symbol]
        assert (info.parent, info.last_session) == (before[symbol], "2019-12-31")
        assert 0 < result.new_rows[symbol] < 1100  # four years of new sessions, not twenty
    assert currents(data) == currents(store_2019)
    assert ingest_missing(later, settings, NOW) is None


def test_the_dataset_of_a_cut_window_has_the_hash_and_features_of_a_fresh_store(store_2019, store_2015):
    config = TrainSpyConfig.from_dict({"data": {"source": "csv", "start": "2010-01-04", "end": "2015-12-31"}})
    cut = load_dataset(config, Settings(data_dir=store_2019))
    fresh = load_dataset(config, Settings(data_dir=store_2015))
    assert cut.data_hash == fresh.data_hash
    pd.testing.assert_frame_equal(cut.features.frame, fresh.features.frame)
    assert (
        cut.window
        == fresh.window
        == {
            "start": "2010-01-04",
            "end": "2015-12-31",
            "first_session": "2010-01-04",
            "last_session": "2015-12-31",
        }
    )
    whole = load_dataset(TrainSpyConfig.from_dict({"data": {"source": "csv"}}), Settings(data_dir=store_2019))
    assert whole.data_hash != cut.data_hash


def test_cut_window_keeps_the_sessions_between_start_and_end_inclusive():
    frame = pd.DataFrame({"session": pd.to_datetime(["2015-12-30", "2015-12-31", "2016-01-04"]), "x": [1, 2, 3]})
    assert cut_window(frame, None, pd.Timestamp("2015-12-31"))["x"].tolist() == [1, 2]
    assert cut_window(frame, pd.Timestamp("2015-12-31"), None)["x"].tolist() == [2, 3]
    assert cut_window(frame, None, None)["x"].tolist() == [1, 2, 3]
    assert cut_window(frame, pd.Timestamp("2015-12-31"), pd.Timestamp("2015-12-31")).index.tolist() == [0]


def assert_one_line_input_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == EXIT_INPUT, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    "command",
    [
        ("backtest", "--strategy", "sma"),
        ("features", "--out", "{tmp}/f.parquet"),
        ("train",),
    ],
)
def test_a_start_after_the_end_is_one_line_exit_2_before_anything_is_ingested(capsys, data_dir, tmp_path, command):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    code, out, err = cli(capsys, data_dir, *args, "--start", "2016-01-04", "--end", "2015-12-31")
    assert_one_line_input_error(code, out, err, "2016-01-04", "2015-12-31")
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("window", "needle"),
    [
        (("--end", "1995-01-03"), "1995-01-03"),  # before the first stored (and first fetched) session
        (("--start", "2016-12-24", "--end", "2016-12-26"), "2016-12-24"),  # a weekend and a holiday
        (("--start", "2030-01-02"), "2030-01-02"),  # after every stored session
    ],
)
def test_a_window_without_stored_sessions_is_one_line_exit_2_and_changes_nothing(
    capsys, real_data, store_2019, tmp_path, window, needle
):
    data = copied(store_2019, tmp_path)
    before = currents(data)
    for command in (("backtest", "--strategy", "sma"), ("features", "--out", str(tmp_path / "f.parquet"))):
        args = [*command, "--source", "csv", "--path", str(real_data), *window]
        code, out, err = cli(capsys, data, *args)
        assert_one_line_input_error(code, out, err, needle)
    assert currents(data) == before
    assert files_under(data / "quarantine") == set()


def test_a_fresh_store_asked_for_a_window_before_any_fetchable_session_is_exit_2(capsys, real_data, data_dir):
    args = ["backtest", "--strategy", "sma", "--source", "csv", "--path", str(real_data), "--end", "1995-01-03"]
    code, out, err = cli(capsys, data_dir, *args)
    assert_one_line_input_error(code, out, err, "1995-01-03")
    assert files_under(data_dir / "quarantine") == set()


def test_train_with_a_window_records_the_cut_window_and_its_hash_in_the_manifest(
    capsys, real_data, store_2019, store_2015, tmp_path
):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data: {{source: csv, path: '{real_data}'}}\n"
        "ppo: {total_timesteps: 512, n_envs: 8, n_steps: 64, batch_size: 256, n_epochs: 1}\n"
        "seeds: [0]\nfolds: {train_size: 378, test_size: 63, max_folds: 2}\nbaselines: [buy_and_hold]\n"
    )
    data = copied(store_2019, tmp_path)
    before = currents(data)
    args = ["train", "--config", str(config), "--start", "2010-01-04", "--end", "2015-12-31", "--now", NOW, "--json"]
    code, out, err = cli(capsys, data, *args)
    assert code == EXIT_OK, err
    manifest = json.loads((Path(json.loads(out)["run_dir"]) / "manifest.json").read_text())
    fresh_config = TrainSpyConfig.from_dict(manifest["config"])
    assert (fresh_config.data.start, fresh_config.data.end) == ("2010-01-04", "2015-12-31")
    assert manifest["data_hash"] == load_dataset(fresh_config, Settings(data_dir=store_2015)).data_hash
    assert manifest["data_window"]["last_session"] == "2015-12-31"
    assert currents(data) == before
