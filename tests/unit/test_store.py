"""Snapshot store: content-addressed, immutable, atomic, with a manifest and lineage."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tradeflow.data.bars import frame_digest
from tradeflow.data.sources.files import read_bar_file
from tradeflow.data.store import SnapshotStore
from tradeflow.errors import StoreError


@pytest.fixture(scope="module")
def spy(real_data):
    frame = read_bar_file(real_data / "SPY.csv", "SPY")
    return frame[frame["session"] >= "2023-01-01"].reset_index(drop=True)


def test_snapshot_file_is_named_by_content_hash_and_round_trips(tmp_path, spy):
    store = SnapshotStore(tmp_path)
    info = store.write("SPY", spy, source="csv", created_at="2026-11-21T00:00:00+00:00")
    assert info.digest == frame_digest(spy)
    assert (tmp_path / info.file).name == f"{info.digest[:16]}.parquet"
    back = store.load("SPY")
    pd.testing.assert_frame_equal(back, spy)
    assert info.rows == len(spy)
    assert info.last_session == "2024-01-24"


def test_writing_identical_content_twice_adds_no_snapshot(tmp_path, spy):
    store = SnapshotStore(tmp_path)
    a = store.write("SPY", spy, source="csv", created_at="t1")
    b = store.write("SPY", spy.copy(), source="csv", created_at="t2")
    assert a == b
    assert len(store.history("SPY")) == 1


def test_new_content_becomes_current_and_records_its_parent(tmp_path, spy):
    store = SnapshotStore(tmp_path)
    old = store.write("SPY", spy.iloc[:-5], source="csv", created_at="t1")
    new = store.write("SPY", spy, source="csv", created_at="t2")
    assert store.current("SPY") == new
    assert new.parent == old.digest
    assert (tmp_path / old.file).exists(), "older snapshots are immutable and kept"
    assert [s.digest for s in store.history("SPY")] == [old.digest, new.digest]


def test_symbols_with_carets_get_filesystem_safe_directories(tmp_path, real_data):
    vix = read_bar_file(real_data / "VIX.csv", "^VIX").tail(50).reset_index(drop=True)
    info = SnapshotStore(tmp_path).write("^VIX", vix, source="csv", created_at="t")
    assert info.file.startswith("_VIX/")
    assert SnapshotStore(tmp_path).symbols() == ["^VIX"]


def test_a_tampered_snapshot_is_detected_on_read(tmp_path, spy):
    store = SnapshotStore(tmp_path)
    info = store.write("SPY", spy, source="csv", created_at="t")
    tampered = spy.copy()
    tampered.loc[3, "close"] *= 1.01
    tampered.to_parquet(tmp_path / info.file, index=False)
    with pytest.raises(StoreError, match="content hash"):
        store.load("SPY")


def test_a_failed_write_leaves_the_previous_state_untouched(tmp_path, spy, monkeypatch):
    store = SnapshotStore(tmp_path)
    store.write("SPY", spy.iloc[:-1], source="csv", created_at="t1")
    manifest_before = (tmp_path / "manifest.json").read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write("SPY", spy, source="csv", created_at="t2")
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_text() == manifest_before
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], "temporary files are cleaned up"
    assert len(store.load("SPY")) == len(spy) - 1


def test_store_refuses_empty_or_mixed_frames(tmp_path, spy):
    store = SnapshotStore(tmp_path)
    with pytest.raises(StoreError, match="empty"):
        store.write("SPY", spy.iloc[:0], source="csv", created_at="t")
    mixed = spy.copy()
    mixed.loc[0, "symbol"] = "QQQ"
    with pytest.raises(StoreError, match="other symbols"):
        store.write("SPY", mixed, source="csv", created_at="t")


def test_a_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable snapshot manifest"):
        SnapshotStore(tmp_path).current("SPY")
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 99, "symbols": {}}))
    with pytest.raises(StoreError, match="unsupported manifest version"):
        SnapshotStore(tmp_path).current("SPY")


def test_a_multi_symbol_commit_switches_every_symbol_in_one_manifest_write(tmp_path, spy, real_data, monkeypatch):
    vix = read_bar_file(real_data / "VIX.csv", "^VIX").tail(50).reset_index(drop=True)
    store = SnapshotStore(tmp_path)
    old = store.write_many({"SPY": spy.iloc[:-1], "^VIX": vix.iloc[:-1]}, source="csv", created_at="t1")
    writes = []
    real_write = __import__("tradeflow.data.store", fromlist=["atomic_write_text"]).atomic_write_text

    def counting(path, text):
        writes.append(path)
        real_write(path, text)

    monkeypatch.setattr("tradeflow.data.store.atomic_write_text", counting)
    new = store.write_many({"SPY": spy, "^VIX": vix}, source="csv", created_at="t2")
    assert writes == [tmp_path / "manifest.json"]
    assert {s: i.parent for s, i in new.items()} == {s: i.digest for s, i in old.items()}
