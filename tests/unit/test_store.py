"""Snapshot store: content-addressed, immutable, atomic, with a manifest and lineage."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tradeflow.adapters.files.data import read_bar_file
from tradeflow.data.bars import frame_digest
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


# --- G8: a damaged manifest is one clear StoreError naming the file, never an AttributeError -------


def _stored_manifest(tmp_path, spy) -> dict:
    SnapshotStore(tmp_path).write("SPY", spy, source="csv", created_at="t")
    return json.loads((tmp_path / "manifest.json").read_text())


def _damage(manifest: dict, how: str) -> str:
    snap = manifest["symbols"]["SPY"]["snapshots"][0]
    if how == "rows_as_text":
        snap["rows"] = str(snap["rows"])
    elif how == "unknown_snapshot_field":
        snap["owner"] = "x"
    elif how == "missing_snapshot_field":
        del snap["last_session"]
    elif how == "unknown_top_field":
        manifest["extra"] = 1
    elif how == "symbols_is_a_list":
        manifest["symbols"] = []
    elif how == "entry_is_null":
        manifest["symbols"]["SPY"] = None
    elif how == "snapshots_is_a_string":
        manifest["symbols"]["SPY"]["snapshots"] = "x"
    elif how == "current_is_a_number":
        manifest["symbols"]["SPY"]["current"] = 7
    elif how == "current_names_a_missing_snapshot":
        manifest["symbols"]["SPY"]["current"] = "0" * 64
    elif how == "file_elsewhere":
        snap["file"] = "../../etc/passwd"
    return json.dumps(manifest)


@pytest.mark.parametrize(
    "how",
    [
        "null",
        "list",
        "number",
        "truncated",
        "rows_as_text",
        "unknown_snapshot_field",
        "missing_snapshot_field",
        "unknown_top_field",
        "symbols_is_a_list",
        "entry_is_null",
        "snapshots_is_a_string",
        "current_is_a_number",
        "current_names_a_missing_snapshot",
        "file_elsewhere",
    ],
)
def test_g8_a_damaged_manifest_is_a_store_error_naming_the_file(tmp_path, spy, how):
    manifest = _stored_manifest(tmp_path, spy)
    text = {"null": "null", "list": "[]", "number": "3"}.get(how)
    if how == "truncated":
        text = (tmp_path / "manifest.json").read_text()[:100]
    (tmp_path / "manifest.json").write_text(text if text is not None else _damage(manifest, how))
    store = SnapshotStore(tmp_path)
    for call in (lambda: store.current("SPY"), store.symbols, lambda: store.history("SPY")):
        with pytest.raises(StoreError) as info:
            call()
        assert str(tmp_path / "manifest.json") in str(info.value)


@pytest.mark.parametrize("how", ["null", "rows_as_text", "unknown_snapshot_field"])
def test_g8_ingest_on_a_damaged_manifest_exits_2_with_one_line(capsys, data_dir, real_data, spy, how):
    from tradeflow.cli import EXIT_INPUT, main

    store_dir = data_dir / "snapshots"
    manifest = _stored_manifest(store_dir, spy)
    (store_dir / "manifest.json").write_text("null" if how == "null" else _damage(manifest, how))
    args = ["ingest", "--source", "csv", "--path", str(real_data), "--symbols", "SPY", "--end", "2024-01-24"]
    code = main([*args, "--now", "2026-11-21T12:00Z"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    assert err.startswith(f"error: damaged snapshot manifest {store_dir / 'manifest.json'}: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("field", "value"), [("rows", 12), ("first_session", "1999-01-04"), ("last_session", "2030-01-02")]
)
def test_g8_manifest_metadata_that_disagrees_with_the_parquet_file_is_noticed_on_load(tmp_path, spy, field, value):
    manifest = _stored_manifest(tmp_path, spy)
    manifest["symbols"]["SPY"]["snapshots"][0][field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="disagrees with its manifest entry") as info:
        SnapshotStore(tmp_path).load("SPY")
    assert "of SPY" in str(info.value)
    assert manifest["symbols"]["SPY"]["snapshots"][0]["file"] in str(info.value)


def test_g8_a_snapshot_whose_content_does_not_hash_to_its_name_is_noticed_on_load(tmp_path, spy):
    manifest = _stored_manifest(tmp_path, spy)
    snap = manifest["symbols"]["SPY"]["snapshots"][0]
    # Renamed consistently in the manifest and on disk: only the content betrays it.
    fake = "ab" * 32
    (tmp_path / snap["file"]).rename(tmp_path / "SPY" / f"{fake[:16]}.parquet")
    snap["digest"], snap["file"] = fake, f"SPY/{fake[:16]}.parquet"
    manifest["symbols"]["SPY"]["current"] = fake
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="does not match its content hash") as info:
        SnapshotStore(tmp_path).load("SPY")
    assert "of SPY" in str(info.value)
