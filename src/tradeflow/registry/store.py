"""The model registry: immutable model versions with lineage, an atomic champion pointer, and
an append-only log of promotion decisions.

Layout under the root (data/models/ by default):
  versions/v0007-1a2b3c4d/     the artifact's files (model.zip, vecnormalize.pkl, ...) + version.json
  champion.json                {"format": 1, "current": id | null, "stack": [ids], "history": [events]}
  decisions.jsonl              one JSON line per promotion decision, accepted or rejected
  .lock                        flock taken by every writer

A version id is `v<seq:04d>-<first 8 hex of the artifact's content hash>`: it sorts by
registration order and names its content. A version directory is assembled under a temporary name
and renamed into place, so it is either complete or absent. The champion pointer is rewritten with
a temp file + os.replace under the lock: a reader sees the old champion or the new one, never a
torn file. `stack` holds the champion tenures that rollback walks back through; `history` records
every change with its reason. Timestamps are passed in (the library never reads the clock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeflow.backtest.metrics import to_jsonable
from tradeflow.errors import StoreError
from tradeflow.infra.files import atomic_write_text, exclusive_lock
from tradeflow.registry.promotion import PromotionDecision

FORMAT = 1
MODELS_SUBDIR = "models"
# What a version must say about where it came from; "parent" (the version it was retrained from)
# and "walk_forward_report" (path of its report) are recommended but may be absent or None.
REQUIRED_LINEAGE = ("data_hash", "feature_spec", "config", "seed")
_VERSION_ID = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")


class RegistryError(StoreError):
    """The model registry is unreadable, inconsistent, or was asked for something it lacks."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    seq: int
    content_hash: str  # sha256 over the artifact's files (relative path + bytes)
    created_at: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    files: tuple[str, ...]  # relative to `path`, version.json excluded
    path: Path  # the version's directory

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "seq": self.seq,
            "content_hash": self.content_hash,
            "created_at": self.created_at,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class DecisionRecord:
    decided_at: str
    challenger: str | None
    champion: str | None
    decision: PromotionDecision

    def to_dict(self) -> dict[str, Any]:
        return {
            "decided_at": self.decided_at,
            "challenger": self.challenger,
            "champion": self.champion,
        } | self.decision.to_dict()


def _dumps(data: Any, **kw: Any) -> str:
    """Strict JSON (NaN -> null via to_jsonable); anything else unknown, e.g. a Path, as its str."""
    try:
        return json.dumps(to_jsonable(data), sort_keys=True, allow_nan=False, default=str, **kw)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"not JSON-serialisable: {exc}") from None


def _check_timestamp(value: str, name: str) -> str:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise RegistryError(f"{name} must be an ISO-8601 timestamp, got {value!r}") from None
    return value


def artifact_hash(artifact_dir: Path) -> tuple[str, tuple[str, ...]]:
    """(sha256 hex, sorted relative file names) of every regular file under `artifact_dir`."""
    files = sorted(p for p in artifact_dir.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    names = []
    for p in files:
        rel = p.relative_to(artifact_dir).as_posix()
        if rel == "version.json":  # the registry's own metadata, written after hashing
            continue
        names.append(rel)
        digest.update(rel.encode() + b"\0")
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest(), tuple(names)


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> ModelRegistry:
        return cls(Path(data_dir) / MODELS_SUBDIR)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def champion_path(self) -> Path:
        return self.root / "champion.json"

    @property
    def decisions_path(self) -> Path:
        return self.root / "decisions.jsonl"

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.root)

    # -- versions --------------------------------------------------------------------------------
    def _load_version(self, directory: Path) -> ModelVersion:
        meta = directory / "version.json"
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            # Checked field by field, and worded without the values: a damaged file's content is
            # never echoed into an error (G7), and a null or a list is not an AttributeError (G8).
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in ("format", "version", "seq", "content_hash", "created_at", "metrics",
                                   "lineage", "files") if k not in data]  # fmt: skip
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}")
            if data["format"] != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            if data["version"] != directory.name:
                raise ValueError("it names another version than its directory")
            if not isinstance(data["metrics"], dict) or not isinstance(data["lineage"], dict):
                raise ValueError("metrics and lineage must be JSON objects")
            if not isinstance(data["files"], list) or not all(isinstance(f, str) for f in data["files"]):
                raise ValueError("files must be a list of names")
            if not isinstance(data["content_hash"], str) or not isinstance(data["created_at"], str):
                raise ValueError("content_hash and created_at must be strings")
            if isinstance(data["seq"], bool) or not isinstance(data["seq"], int):
                raise ValueError("seq is not an integer")
            return ModelVersion(
                version=data["version"],
                seq=data["seq"],
                content_hash=data["content_hash"],
                created_at=data["created_at"],
                metrics=data["metrics"],
                lineage=data["lineage"],
                files=tuple(data["files"]),
                path=directory,
            )
        except FileNotFoundError:
            raise RegistryError(f"model version {directory.name} has no version.json ({meta})") from None
        except UnicodeDecodeError:
            raise RegistryError(f"corrupt {meta}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"corrupt {meta}: not JSON ({exc.msg}, line {exc.lineno})") from None
        except OSError as exc:
            raise RegistryError(f"unreadable {meta}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise RegistryError(f"corrupt {meta}: {exc}") from None

    def list_versions(self) -> list[ModelVersion]:
        """All versions, oldest first; directories that are not version ids (temp dirs) are skipped."""
        if not self.versions_dir.exists():
            return []
        dirs = [d for d in self.versions_dir.iterdir() if d.is_dir() and _VERSION_ID.match(d.name)]
        return sorted((self._load_version(d) for d in dirs), key=lambda v: v.seq)

    def _find(self, version: str) -> Path | None:
        """The directory of a version id or of its unique `vNNNN` prefix; None when there is none."""
        if _VERSION_ID.match(version):
            directory = self.versions_dir / version
            return directory if directory.is_dir() else None
        if re.fullmatch(r"v\d{4,}", version):
            matches = sorted(self.versions_dir.glob(f"{version}-*")) if self.versions_dir.exists() else []
            return matches[0] if len(matches) == 1 else None
        return None

    def get(self, version: str) -> ModelVersion:
        """A version by its id, or by its `vNNNN` prefix (a damaged version.json is its own error)."""
        directory = self._find(version)
        if directory is None:
            raise RegistryError(f"no model version {version!r} in {self.root}")
        return self._load_version(directory)

    def verify(self, version: str) -> ModelVersion:
        """The version, after checking its files still hash to its content hash."""
        mv = self.get(version)
        digest, files = artifact_hash(mv.path)
        if digest != mv.content_hash or files != mv.files:
            raise RegistryError(f"model version {mv.version} was modified after registration (content hash mismatch)")
        return mv

    def register(
        self,
        artifact_dir: str | Path,
        *,
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        created_at: str,
        move: bool = False,
    ) -> ModelVersion:
        """Store the artifact as a new immutable version (copied, or moved with move=True).

        Idempotent per content: registering files identical to an existing version's returns that
        version unchanged, so a retried task never creates a duplicate.
        """
        src = Path(artifact_dir)
        if not src.is_dir():
            raise RegistryError(f"artifact directory {src} does not exist")
        _check_timestamp(created_at, "created_at")
        missing = [k for k in REQUIRED_LINEAGE if k not in lineage]
        if missing:
            raise RegistryError(f"lineage lacks {missing} (required: {list(REQUIRED_LINEAGE)})")
        if (src / "version.json").exists():
            raise RegistryError(f"{src / 'version.json'}: the name is reserved for the registry's metadata")
        digest, files = artifact_hash(src)
        if not files:
            raise RegistryError(f"artifact directory {src} holds no files")
        metrics_json, lineage_json = _dumps(metrics), _dumps(lineage)
        with self._locked():
            existing = self.list_versions()
            for mv in existing:
                if mv.content_hash == digest:
                    return mv
            parent = lineage.get("parent")
            if parent is not None and parent not in {mv.version for mv in existing}:
                raise RegistryError(f"lineage names parent {parent!r}, which is not a registered version")
            seq = 1 + max((mv.seq for mv in existing), default=0)
            version = f"v{seq:04d}-{digest[:8]}"
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".tmp-"))
            staged = tmp / version
            try:
                if move:
                    shutil.move(str(src), staged)
                else:
                    shutil.copytree(src, staged)
                mv = ModelVersion(
                    version=version,
                    seq=seq,
                    content_hash=digest,
                    created_at=created_at,
                    metrics=json.loads(metrics_json),
                    lineage=json.loads(lineage_json),
                    files=files,
                    path=self.versions_dir / version,
                )
                (staged / "version.json").write_text(_dumps(mv.to_dict(), indent=2))
                os.rename(staged, mv.path)  # the commit point: the version appears complete
            except BaseException:
                if move and staged.exists() and not src.exists():
                    (staged / "version.json").unlink(missing_ok=True)
                    shutil.move(str(staged), src)  # a failed move must not lose the caller's artifact
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return mv

    # -- champion --------------------------------------------------------------------------------
    def _read_pointer(self) -> dict[str, Any]:
        if not self.champion_path.exists():
            return {"format": FORMAT, "current": None, "stack": [], "history": []}
        where = f"corrupt champion pointer {self.champion_path}"
        try:
            data = json.loads(self.champion_path.read_text(encoding="utf-8"))
            # Each check worded without the file's values (G7); null or a list is damage, not a crash.
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            stack, history = data.get("stack"), data.get("history", [])
            if not isinstance(stack, list) or not all(isinstance(v, str) and _VERSION_ID.match(v) for v in stack):
                raise ValueError("stack is not a list of version ids")
            if not isinstance(history, list):
                raise ValueError("history is not a list")
            if "current" not in data or data["current"] != (stack[-1] if stack else None):
                raise ValueError("current is not the top of the champion stack")
        except UnicodeDecodeError:
            raise RegistryError(f"{where}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
        except OSError as exc:
            raise RegistryError(f"unreadable champion pointer {self.champion_path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise RegistryError(f"{where}: {exc}") from None
        data.setdefault("history", [])
        return data

    def champion(self) -> ModelVersion | None:
        current = self._read_pointer()["current"]
        if current is None:
            return None
        directory = self._find(current)
        if directory is None:
            raise RegistryError(
                f"champion pointer {self.champion_path} names {current}, which is not a registered version"
            )
        return self._load_version(directory)  # a damaged version.json says so, naming the file

    def champion_history(self) -> list[dict[str, Any]]:
        """Every champion change, oldest first: action, version, previous, reason, decided_at."""
        return list(self._read_pointer()["history"])

    def _swap(self, pointer: dict[str, Any], event: dict[str, Any]) -> None:
        pointer["current"] = pointer["stack"][-1] if pointer["stack"] else None
        pointer["history"].append(event)
        atomic_write_text(self.champion_path, _dumps(pointer, indent=2))

    def set_champion(self, version: str, *, reason: str, decided_at: str) -> ModelVersion:
        _check_timestamp(decided_at, "decided_at")
        if not reason.strip():
            raise RegistryError("a champion change needs a reason")
        mv = self.get(version)
        with self._locked():
            pointer = self._read_pointer()
            previous = pointer["current"]
            if previous == mv.version:
                return mv
            pointer["stack"].append(mv.version)
            event = {"action": "promote", "version": mv.version, "previous": previous}
            self._swap(pointer, event | {"reason": reason, "decided_at": decided_at})
        return mv

    def rollback(self, *, reason: str, decided_at: str) -> ModelVersion | None:
        """Return to the champion before the current one (None if the first champion is retired)."""
        _check_timestamp(decided_at, "decided_at")
        if not reason.strip():
            raise RegistryError("a rollback needs a reason")
        with self._locked():
            pointer = self._read_pointer()
            if not pointer["stack"]:
                raise RegistryError("there is no champion to roll back")
            retired = pointer["stack"].pop()
            if pointer["stack"]:
                self.get(pointer["stack"][-1])  # fail before the swap if the target is gone
            event = {"action": "rollback", "version": pointer["stack"][-1] if pointer["stack"] else None}
            self._swap(pointer, event | {"previous": retired, "reason": reason, "decided_at": decided_at})
        return self.champion()

    # -- decisions -------------------------------------------------------------------------------
    def record_decision(
        self, decision: PromotionDecision, *, challenger: str | None, champion: str | None, decided_at: str
    ) -> DecisionRecord:
        """Append the decision (accepted or rejected) with its reasons and evidence to decisions.jsonl."""
        _check_timestamp(decided_at, "decided_at")
        record = DecisionRecord(decided_at, challenger, champion, decision)
        line = _dumps(record.to_dict()) + "\n"
        with self._locked(), open(self.decisions_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def decisions(self) -> list[DecisionRecord]:
        if not self.decisions_path.exists():
            return []
        out = []
        with open(self.decisions_path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                try:
                    data = json.loads(line)
                    out.append(
                        DecisionRecord(
                            decided_at=data["decided_at"],
                            challenger=data["challenger"],
                            champion=data["champion"],
                            decision=PromotionDecision.from_dict(data),
                        )
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise RegistryError(f"corrupt line {n} of {self.decisions_path}: {exc}") from None
        return out

    def apply_decision(
        self, decision: PromotionDecision, *, challenger: str, decided_at: str
    ) -> tuple[DecisionRecord, ModelVersion | None]:
        """Record the decision against the current champion, then, if it promotes, swap the pointer.

        The log is written first: a crash between the two leaves an accepted decision whose swap is
        missing (visible, and redone by running again), never a champion without its reasons.
        """
        if decision.promote:
            self.get(challenger)  # an unregistered challenger cannot become champion: fail before logging
        current = self.champion()
        record = self.record_decision(
            decision, challenger=challenger, champion=current.version if current else None, decided_at=decided_at
        )
        if not decision.promote:
            return record, None
        reason = "; ".join(decision.reasons) or "promotion gate passed"
        return record, self.set_champion(challenger, reason=reason, decided_at=decided_at)
