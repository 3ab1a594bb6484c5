"""Model registry: immutable versions with lineage, an atomic champion pointer, rollback, decisions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tradeflow.registry import ModelRegistry, PromotionDecision, RegistryError
from tradeflow.registry.store import artifact_hash

T0 = "2026-03-02T21:30:00+00:00"
T1 = "2026-03-03T21:30:00+00:00"
T2 = "2026-03-04T21:30:00+00:00"


def _artifact(tmp_path: Path, name: str, payload: bytes) -> Path:
    d = tmp_path / "build" / name
    (d / "ckpt").mkdir(parents=True)
    (d / "model.zip").write_bytes(payload)
    (d / "vecnormalize.pkl").write_bytes(b"stats-" + payload)
    (d / "ckpt" / "step_100.zip").write_bytes(b"ckpt")
    return d


def _lineage(**extra):
    return {"data_hash": "ab" * 32, "feature_spec": "v1", "config": {"lr": 3e-4}, "seed": 7} | extra


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.fixture
def three(registry, tmp_path):
    return [
        registry.register(_artifact(tmp_path, f"m{i}", f"w{i}".encode()), metrics={}, lineage=_lineage(), created_at=T0)
        for i in range(3)
    ]


def test_register_copies_the_artifact_and_lineage_is_retrievable(registry, tmp_path):
    src = _artifact(tmp_path, "m", b"weights")
    lineage = _lineage(walk_forward_report="data/reports/wf.md", parent=None, seed=np.int64(7))
    mv = registry.register(src, metrics={"sharpe": np.float64(0.9)}, lineage=lineage, created_at=T0)
    assert mv.version == f"v0001-{artifact_hash(src)[0][:8]}"
    assert (mv.path / "model.zip").read_bytes() == b"weights"
    assert (mv.path / "ckpt" / "step_100.zip").exists()
    assert src.exists(), "copy is the default"
    back = ModelRegistry(registry.root).get(mv.version)
    assert back == mv
    assert back.lineage["seed"] == 7
    assert back.lineage["walk_forward_report"] == "data/reports/wf.md"
    assert back.metrics == {"sharpe": 0.9}
    assert back.files == ("ckpt/step_100.zip", "model.zip", "vecnormalize.pkl")


def test_version_ids_sort_in_registration_order_and_resolve_by_prefix(registry, three):
    assert [v.version for v in registry.list_versions()] == [v.version for v in three]
    assert [v.version[:5] for v in three] == ["v0001", "v0002", "v0003"]
    assert registry.get("v0002") == three[1]


def test_registering_identical_content_again_returns_the_existing_version(registry, tmp_path):
    a = registry.register(_artifact(tmp_path, "a", b"same"), metrics={}, lineage=_lineage(), created_at=T0)
    b = registry.register(_artifact(tmp_path, "b", b"same"), metrics={}, lineage=_lineage(), created_at=T1)
    assert a == b
    assert len(registry.list_versions()) == 1


def test_move_registers_without_leaving_the_source(registry, tmp_path):
    src = _artifact(tmp_path, "m", b"w")
    mv = registry.register(src, metrics={}, lineage=_lineage(), created_at=T0, move=True)
    assert not src.exists()
    assert registry.verify(mv.version) == mv


def test_lineage_must_name_data_features_config_and_seed_and_a_known_parent(registry, tmp_path):
    with pytest.raises(RegistryError, match="lacks \\['seed'\\]"):
        registry.register(
            _artifact(tmp_path, "a", b"x"),
            metrics={},
            lineage={"data_hash": "h", "feature_spec": "v1", "config": {}},
            created_at=T0,
        )
    with pytest.raises(RegistryError, match="parent 'v0042-deadbeef'"):
        registry.register(
            _artifact(tmp_path, "b", b"x"), metrics={}, lineage=_lineage(parent="v0042-deadbeef"), created_at=T0
        )
    with pytest.raises(RegistryError, match="ISO-8601"):
        registry.register(_artifact(tmp_path, "c", b"x"), metrics={}, lineage=_lineage(), created_at="yesterday")
    assert registry.list_versions() == []


def test_champion_is_none_until_set_and_history_records_reasons(registry, three):
    assert registry.champion() is None
    registry.set_champion(three[0].version, reason="first model", decided_at=T0)
    registry.set_champion(three[1].version, reason="beat v0001", decided_at=T1)
    assert registry.champion() == three[1]
    history = registry.champion_history()
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("promote", three[0].version, None),
        ("promote", three[1].version, three[0].version),
    ]
    assert history[1]["reason"] == "beat v0001"
    assert history[1]["decided_at"] == T1


def test_rollback_returns_to_the_previous_champion_and_walks_further_back(registry, three):
    for i, v in enumerate(three):
        registry.set_champion(v.version, reason=f"r{i}", decided_at=T0)
    assert registry.rollback(reason="live drawdown", decided_at=T1) == three[1]
    assert registry.champion() == three[1]
    assert registry.rollback(reason="still bad", decided_at=T2) == three[0]
    assert registry.rollback(reason="retire all", decided_at=T2) is None
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback(reason="again", decided_at=T2)
    assert registry.champion_history()[-3]["previous"] == three[2].version


def test_a_failing_pointer_replace_leaves_the_old_champion_and_no_temp_files(registry, three, monkeypatch):
    registry.set_champion(three[0].version, reason="first", decided_at=T0)
    before = registry.champion_path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        registry.set_champion(three[1].version, reason="second", decided_at=T1)
    monkeypatch.undo()
    assert registry.champion_path.read_bytes() == before
    assert registry.champion() == three[0]
    assert [p.name for p in registry.root.iterdir() if p.name.endswith(".tmp")] == []


def test_set_champion_refuses_unknown_versions_and_empty_reasons(registry, three):
    with pytest.raises(RegistryError, match="no model version"):
        registry.set_champion("v0009-00000000", reason="x", decided_at=T0)
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.set_champion(three[0].version, reason=" ", decided_at=T0)
    assert registry.champion() is None


def _decision(promote: bool) -> PromotionDecision:
    reasons = ("PROMOTE: 3/3 checks passed",) if promote else ("REJECT: 2/3 checks passed", "FAIL: drawdown")
    return PromotionDecision(promote, reasons, {"p_value": np.float64(0.01), "folds": [0, 1, 2]})


def test_decisions_are_appended_either_way_and_earlier_lines_stay_untouched(registry, three):
    registry.record_decision(_decision(False), challenger=three[0].version, champion=None, decided_at=T0)
    first = registry.decisions_path.read_bytes()
    registry.record_decision(_decision(True), challenger=three[1].version, champion=None, decided_at=T1)
    assert registry.decisions_path.read_bytes().startswith(first)
    records = registry.decisions()
    assert [r.decision.promote for r in records] == [False, True]
    assert records[0].decision.reasons == ("REJECT: 2/3 checks passed", "FAIL: drawdown")
    assert records[1].decision.evidence == {"p_value": 0.01, "folds": [0, 1, 2]}


def test_apply_decision_swaps_the_champion_only_when_the_gate_promotes(registry, three):
    record, new = registry.apply_decision(_decision(True), challenger=three[0].version, decided_at=T0)
    assert new == three[0]
    assert registry.champion() == three[0]
    record, new = registry.apply_decision(_decision(False), challenger=three[1].version, decided_at=T1)
    assert new is None
    assert registry.champion() == three[0]
    assert record.champion == three[0].version
    assert registry.champion_history()[-1]["reason"].startswith("PROMOTE: 3/3 checks passed")
    assert len(registry.decisions()) == 2


def test_a_modified_version_fails_verification(registry, three):
    (three[0].path / "model.zip").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="modified after registration"):
        registry.verify(three[0].version)


def test_corrupt_files_raise_clear_registry_errors(registry, three):
    registry.set_champion(three[0].version, reason="r", decided_at=T0)
    registry.record_decision(_decision(False), challenger=None, champion=None, decided_at=T0)

    (three[1].path / "version.json").write_text("{not json")
    with pytest.raises(RegistryError, match=f"corrupt .*{three[1].version}.*version.json"):
        registry.list_versions()

    with registry.decisions_path.open("a") as fh:
        fh.write('{"decided_at": "x"\n')
    with pytest.raises(RegistryError, match=r"corrupt line 2 of .*decisions\.jsonl"):
        registry.decisions()

    registry.champion_path.write_text(json.dumps({"format": 1, "current": "v0002-x", "stack": ["v0001-y"]}))
    with pytest.raises(RegistryError, match="corrupt champion pointer"):
        registry.champion()

    registry.champion_path.write_text("")
    with pytest.raises(RegistryError, match="corrupt champion pointer"):
        registry.champion()


def test_g8_a_pointer_to_a_deleted_version_is_an_error_naming_the_pointer_not_no_champion(registry, three):
    registry.set_champion(three[2].version, reason="r", decided_at=T0)
    import shutil

    shutil.rmtree(three[2].path)
    with pytest.raises(RegistryError) as caught:
        registry.champion()
    assert f"champion pointer {registry.champion_path} names {three[2].version}" in str(caught.value)


# --- G8: damaged registry files are named, never read as "not registered" or an AttributeError ----


@pytest.mark.parametrize("content", ["{not json", "null", "[1, 2]", '{"format": 1}', '{"format": 1, "version": 3}'])
def test_g8_a_corrupt_version_json_of_the_champion_says_corrupt_not_unregistered(registry, three, content):
    registry.set_champion(three[0].version, reason="r", decided_at=T0)
    meta = three[0].path / "version.json"
    meta.write_text(content)
    with pytest.raises(RegistryError) as caught:
        registry.champion()
    message = str(caught.value)
    assert f"corrupt {meta}" in message
    assert "not a registered version" not in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("null", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('{"format": 1, "current": "v0001-0', "not JSON"),
        ('{"format": 1, "current": null, "stack": {"a": 1}, "history": []}', "stack is not a list"),
        ('{"format": 1, "current": null, "stack": [], "history": 5}', "history is not a list"),
    ],
)
def test_g8_a_damaged_champion_pointer_is_a_registry_error_naming_the_file(registry, three, content, problem):
    registry.champion_path.write_text(content)
    for read in (registry.champion, registry.champion_history):
        with pytest.raises(RegistryError, match=f"corrupt champion pointer {registry.champion_path}: {problem}"):
            read()


def test_g8_registry_errors_do_not_echo_the_damaged_files_content(registry, three):
    (three[0].path / "version.json").write_text(json.dumps({"format": "SECRET-CANARY", "version": "SECRET-CANARY"}))
    registry.champion_path.write_text(json.dumps({"format": "SECRET-CANARY", "stack": []}))
    for read in (registry.list_versions, registry.champion):
        with pytest.raises(RegistryError) as caught:
            read()
        assert "SECRET-CANARY" not in str(caught.value)
