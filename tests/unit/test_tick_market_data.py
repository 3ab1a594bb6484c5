"""The tick reads, ingest writes (issue 10, item 8): a tick reads the latest gated snapshots and the
features cached for them; it fetches and gates only when the store lacks the session's bars. It
used to re-ingest and re-gate twenty years and rebuild every feature on every tick."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.conftest import LAST_SESSION, OPEN_NOW
from tradeflow.adapters.files.data import FileSource
from tradeflow.bootstrap import build_tick_runtime, gated_market_data
from tradeflow.config import Settings, TradingSettings
from tradeflow.core.tick import run_tick
from tradeflow.data.ingest import IngestRequest, ingest
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import DataStaleError
from tradeflow.features import DEFAULT_SPEC, Features, FeaturesStaleError, features_for_live
from tradeflow.features.cache import FeatureCache, cache_key

SYMBOLS = ("SPY", "^VIX")


def _ingest_to(root: Path, real_data: Path, end: str) -> Path:
    data = root / "data"
    request = IngestRequest(source="csv", symbols=SYMBOLS, path=str(real_data), end=end)
    ingest(request, Settings(data_dir=data), OPEN_NOW)
    return data


@pytest.fixture(scope="module")
def store_to_last(tmp_path_factory, real_data) -> Path:
    """SPY and ^VIX gated up to LAST_SESSION, the session a tick at OPEN_NOW decides on (copy it)."""
    return _ingest_to(tmp_path_factory.mktemp("to-last"), real_data, LAST_SESSION)


@pytest.fixture(scope="module")
def store_day_before(tmp_path_factory, real_data) -> Path:
    """The store when the after-close ingest of LAST_SESSION has not run (copy it)."""
    return _ingest_to(tmp_path_factory.mktemp("day-before"), real_data, "2024-01-23")


@pytest.fixture
def source(tmp_path, real_data) -> Path:
    """The csv source, copied so a test can cut it."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in ("SPY.csv", "VIX.csv"):
        shutil.copy(real_data / name, folder / name)
    return folder


@pytest.fixture
def fetches(monkeypatch) -> list[str]:
    """The symbols the csv source is asked for, in order (the real source still answers)."""
    calls: list[str] = []
    fetch = FileSource.fetch

    def recording(self, symbol, start, end):
        calls.append(symbol)
        return fetch(self, symbol, start, end)

    monkeypatch.setattr(FileSource, "fetch", recording)
    return calls


def _settings(store: Path, tmp_path: Path, source: Path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(store, data)
    return Settings(data_dir=data, trading=TradingSettings(source="csv", path=str(source), strategy="buy_and_hold"))


def _fresh(settings: Settings) -> Features:
    store = SnapshotStore(settings.snapshots_dir)
    return features_for_live(store.load("SPY"), store.load("^VIX"), DEFAULT_SPEC, session=LAST_SESSION)


def _assert_same(got: Features, want: Features) -> None:
    pd.testing.assert_frame_equal(got.frame, want.frame)
    pd.testing.assert_frame_equal(got.bars, want.bars)
    assert got.spec == want.spec
    assert dict(got.dropped) == dict(want.dropped)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _entries(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "features" / "cache").glob("*.parquet"))


def _key(settings: Settings) -> str:
    store = SnapshotStore(settings.snapshots_dir)
    digests = {s: store.current(s).digest for s in SYMBOLS}  # type: ignore[union-attr]
    return cache_key(digests, DEFAULT_SPEC, LAST_SESSION)


def test_a_second_tick_in_the_session_fetches_and_gates_nothing_and_decides_on_equal_features(
    store_to_last, tmp_path, source, fetches
):
    settings = _settings(store_to_last, tmp_path, source)
    reports = settings.reports_dir
    before = _mtimes(reports)
    seen = []
    for minute in (0, 1):
        now = OPEN_NOW + pd.Timedelta(minutes=minute)
        with build_tick_runtime(settings, mode="paper", broker="sim", strategy=None, now=now) as runtime:
            # Keep what the tick's market data returned, to compare the two ticks' features.
            runtime.market_data = lambda when, read=runtime.market_data: seen.append(read(when)) or seen[-1]
            report = run_tick(runtime, now)
        assert report.status == ("TRADED" if minute == 0 else "NO_ACTION"), report.to_dict()
    assert fetches == []
    assert _mtimes(reports) == before  # no quality report rewritten: nothing was gated
    _assert_same(seen[1], seen[0])
    _assert_same(seen[1], _fresh(settings))


def test_cached_features_equal_a_fresh_features_for_live_build(store_to_last, tmp_path, source, fetches):
    settings = _settings(store_to_last, tmp_path, source)
    load = gated_market_data(settings)
    built, cached = load(OPEN_NOW), load(OPEN_NOW + pd.Timedelta(minutes=5))
    fresh = _fresh(settings)
    _assert_same(built, fresh)
    _assert_same(cached, fresh)
    hit = FeatureCache(settings.data_dir / "features" / "cache").load(_key(settings), DEFAULT_SPEC, LAST_SESSION)
    assert hit is not None
    _assert_same(hit, fresh)
    assert fetches == []


def test_a_new_snapshot_misses_the_cache_and_the_tick_reads_its_bars(store_to_last, tmp_path, source, fetches):
    settings = _settings(store_to_last, tmp_path, source)
    load = gated_market_data(settings)
    first = load(OPEN_NOW)
    store = SnapshotStore(settings.snapshots_dir)
    revised = store.load("SPY")
    assert revised is not None
    for column in ("open", "high", "low", "close", "adj_close"):  # a revised last bar, 2% higher
        revised.loc[revised.index[-1], column] *= 1.02
    store.write("SPY", revised, source="csv", created_at="2024-01-25T14:00:00+00:00")
    gated = _mtimes(settings.reports_dir)
    second = load(OPEN_NOW + pd.Timedelta(minutes=1))
    assert _mtimes(settings.reports_dir) == gated
    _assert_same(second, _fresh(settings))
    assert second.bars["close"].iloc[-1] == pytest.approx(first.bars["close"].iloc[-1] * 1.02)
    assert not second.frame.iloc[-1].equals(first.frame.iloc[-1])
    assert fetches == []
    assert len(_entries(settings)) == 2  # the old key's entry is left, never read again


def test_a_missing_session_is_ingested_once_then_read_and_a_stale_source_never_trades(
    store_day_before, tmp_path, source, fetches
):
    settings = _settings(store_day_before, tmp_path, source)
    store = SnapshotStore(settings.snapshots_dir)
    history = len(store.history("SPY"))
    full = (source / "SPY.csv").read_text()
    # D3: the provider has not published LAST_SESSION yet: each tick asks again and trades nothing.
    (source / "SPY.csv").write_text("".join(line for line in full.splitlines(True) if LAST_SESSION not in line))
    load = gated_market_data(settings)
    for minute in (0, 1):
        with pytest.raises(DataStaleError):
            load(OPEN_NOW + pd.Timedelta(minutes=minute))
    assert fetches.count("SPY") == 2
    assert _entries(settings) == []
    (source / "SPY.csv").write_text(full)
    fetches.clear()
    features = load(OPEN_NOW + pd.Timedelta(minutes=2))
    assert sorted(fetches) == sorted(SYMBOLS)  # one ingest of both lagging symbols
    assert len(store.history("SPY")) == history + 1
    assert store.current("SPY").last_session == LAST_SESSION  # type: ignore[union-attr]
    fetches.clear()
    gated = _mtimes(settings.reports_dir)
    again = load(OPEN_NOW + pd.Timedelta(minutes=3))
    assert fetches == []
    assert _mtimes(settings.reports_dir) == gated  # read, not gated again
    assert len(store.history("SPY")) == history + 1
    _assert_same(again, features)
    _assert_same(again, _fresh(settings))


def _garbage(path: Path, other: Path) -> None:
    path.write_bytes(b"not a parquet file")


def _truncated(path: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _flipped(path: Path, other: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the column data: the file may still parse
    path.write_bytes(bytes(data))


def _another_keys_entry(path: Path, other: Path) -> None:
    """A well-formed entry of another key (another spec), renamed to this key with a true digest."""
    key = path.name.split("-")[0]
    path.unlink()
    shutil.copy(other, path.with_name(f"{key}-{other.name.split('-')[1]}"))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _flipped, _another_keys_entry])
def test_a_damaged_cache_entry_is_a_miss_rebuilt_and_overwritten(store_to_last, tmp_path, source, fetches, damage):
    settings = _settings(store_to_last, tmp_path, source)
    other_spec = DEFAULT_SPEC.replace(rsi_window=14)
    gated_market_data(settings, spec=lambda: other_spec)(OPEN_NOW)
    [other] = _entries(settings)
    load = gated_market_data(settings)
    load(OPEN_NOW)
    [entry] = [p for p in _entries(settings) if p != other]
    damage(entry, other)
    features = load(OPEN_NOW + pd.Timedelta(minutes=1))
    _assert_same(features, _fresh(settings))
    cache = FeatureCache(settings.data_dir / "features" / "cache")
    assert [p.name for p in cache.entries(_key(settings))] == [entry.name]  # rewritten, the damage gone
    hit = cache.load(_key(settings), DEFAULT_SPEC, LAST_SESSION)
    assert hit is not None
    _assert_same(hit, features)
    assert fetches == []


def test_features_ending_after_the_session_asked_for_are_stale_cached_or_not(store_to_last, tmp_path, source):
    """The last feature row must be the tick's last completed session: a store that reaches further
    (here a tick the day before) is never read as that session, and never quarantined by it."""
    settings = _settings(store_to_last, tmp_path, source)
    load = gated_market_data(settings)
    load(OPEN_NOW)
    day_before = OPEN_NOW - pd.Timedelta(days=1)  # last completed session 2024-01-23
    for _ in range(2):
        with pytest.raises(FeaturesStaleError, match="not 2024-01-23"):
            load(day_before)
    assert len(_entries(settings)) == 1
    assert not (settings.quarantine_dir).exists() or not any(settings.quarantine_dir.iterdir())
