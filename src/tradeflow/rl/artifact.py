"""A trained model as an immutable directory: model.zip + vecnormalize.pkl + meta.json.

VecNormalize's statistics are not inside SB3's model.zip, and without them the policy sees
differently scaled inputs than it was trained on, so both always travel together. meta.json says
where the model came from (data snapshot hash, feature spec, configs, seed, training sessions,
package versions, git SHA) so a run can be reproduced from it.

Loading unpickles vecnormalize.pkl (SB3's own format): load only artifacts this system wrote.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

from tradeflow.errors import InputError
from tradeflow.rl.config import EnvConfig, PPOConfig
from tradeflow.rl.train import TrainedModel
from tradeflow.sim import CostModel

FORMAT_VERSION = 1
MODEL_FILE, NORMALIZE_FILE, META_FILE = "model.zip", "vecnormalize.pkl", "meta.json"
_PACKAGES = ("numpy", "pandas", "torch", "stable-baselines3", "gymnasium")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def read_git_sha(repo_root: Path) -> str | None:
    """The commit checked out in `repo_root`, read from .git files (no subprocess; None if unknown).

    Follows a worktree's `.git` file, a symbolic HEAD to its loose ref or to packed-refs.
    """
    git = Path(repo_root) / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (git.parent / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = Path((git / "commondir").read_text().strip()) if (git / "commondir").exists() else None
        for base in (git, (git / common).resolve() if common else None):
            if base is None:
                continue
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    sha, _, name = line.partition(" ")
                    if name == ref:
                        return sha
    except (OSError, IndexError):
        return None
    return None


def save_artifact(
    path: Path,
    trained: TrainedModel,
    *,
    data_hash: str,
    feature_names: Sequence[str],
    feature_version: str,
    feature_hash: str | None = None,
    feature_params: Mapping[str, Any] | None = None,
    universe: Sequence[str] | None = None,
    git_sha: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the artifact directory at `path` atomically; an existing artifact is never overwritten."""
    path = Path(path)
    if path.exists():
        raise InputError(f"model artifact {path} already exists (artifacts are immutable)")
    if len(feature_names) != trained.n_features:
        raise InputError(f"{len(feature_names)} feature names for a model trained on {trained.n_features} features")
    meta = {
        "format": FORMAT_VERSION,
        "algorithm": "PPO",
        "seed": trained.seed,
        "timesteps": int(trained.model.num_timesteps),
        "train_range": list(trained.train_range),
        "train_sessions": list(trained.train_sessions),
        "data_hash": data_hash,
        # `params` is the whole FeatureSpec: a live tick rebuilds exactly these features (issue 10).
        "feature_spec": {
            "version": feature_version,
            "hash": feature_hash,
            "names": list(feature_names),
            "params": None if feature_params is None else dict(feature_params),
        },
        # The instruments the model decides for: a tick trading anything else is refused (issue 10).
        "universe": None if universe is None else list(universe),
        "observation_size": trained.observation_size,
        "env_config": trained.config.env.model_dump(mode="json"),
        "ppo_config": trained.config.model_dump(mode="json"),
        "cost_model": trained.cost.model_dump(mode="json"),
        "packages": package_versions(),
        "git_sha": git_sha,
        "extra": dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        trained.model.save(tmp / MODEL_FILE)
        trained.vec_normalize.save(str(tmp / NORMALIZE_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


@dataclass(frozen=True)
class LoadedModel:
    """A policy ready to decide: observation normalisation + the actor network, deterministic."""

    policy: ActorCriticPolicy
    obs_mean: np.ndarray | None  # None when the model was trained without observation normalisation
    obs_std: np.ndarray | None
    clip_obs: float
    env_config: EnvConfig
    ppo_config: PPOConfig
    cost: CostModel
    meta: dict[str, Any]

    @property
    def observation_size(self) -> int:
        return int(self.meta["observation_size"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.meta["feature_spec"]["names"])

    @property
    def feature_hash(self) -> str | None:
        value = self.meta["feature_spec"].get("hash")
        return str(value) if value else None

    @property
    def universe(self) -> tuple[str, ...] | None:
        """The symbols the model was trained to decide for (None for artifacts that predate it)."""
        value = self.meta.get("universe")
        return tuple(str(s) for s in value) if isinstance(value, list) else None

    @property
    def feature_params(self) -> dict[str, Any] | None:
        """The FeatureSpec the model was trained on, as FeatureSpec.to_dict() wrote it (None for
        artifacts written before specs were stored: only their names and digest are known)."""
        params = self.meta["feature_spec"].get("params")
        return dict(params) if isinstance(params, dict) else None

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        # VecNormalize.normalize_obs, operation for operation (float64 maths, float32 result).
        if self.obs_mean is None or self.obs_std is None:
            return np.asarray(obs, dtype=np.float32)
        return np.clip((obs - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs).astype(np.float32)

    def action_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action distribution for raw observations of shape (d,) or (m, d)."""
        raw = np.asarray(obs)
        x = torch.from_numpy(np.atleast_2d(self.normalize(raw)))
        with torch.no_grad():
            latent = self.policy.mlp_extractor.forward_actor(self.policy.pi_features_extractor(x))
            logits = self.policy.action_net(latent)
            # As SB3's Categorical(logits=...) computes probs, without building a distribution.
            probs = torch.softmax(logits - logits.logsumexp(-1, keepdim=True), dim=-1).numpy()
        return probs[0] if raw.ndim == 1 else probs

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (SB3's mode: the most probable) for raw observations (d,) or (m, d)."""
        return np.asarray(self.action_probabilities(obs).argmax(axis=-1))

    def act(self, obs: np.ndarray) -> int:
        """One decision for one observation (the live path)."""
        return int(self.predict(obs))


def _read_meta(file: Path) -> dict[str, Any]:
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"model artifact file {file} is damaged: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"model artifact file {file} is damaged: not JSON ({exc.msg}, line {exc.lineno})") from None
    except OSError as exc:
        raise InputError(f"model artifact file {file} is unreadable: {exc.strerror or exc}") from None
    if not isinstance(meta, dict):
        raise InputError(f"model artifact file {file} is damaged: not a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise InputError(f"model artifact file {file}: unsupported artifact format (expected {FORMAT_VERSION})")
    missing = [
        k for k in ("observation_size", "feature_spec", "env_config", "ppo_config", "cost_model") if k not in meta
    ]
    if missing:
        raise InputError(f"model artifact file {file} is damaged: missing field(s) {', '.join(missing)}")
    size, spec = meta["observation_size"], meta["feature_spec"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"model artifact file {file} is damaged: observation_size is not a positive integer")
    names = spec.get("names") if isinstance(spec, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"model artifact file {file} is damaged: feature_spec.names is not a list of names")
    return meta


def load_artifact(path: Path) -> LoadedModel:
    """The model of an artifact directory, or one InputError naming the damaged file and what is wrong
    (a truncated model.zip, a missing or corrupt vecnormalize.pkl or meta.json: RELIABILITY G8)."""
    path = Path(path)
    for name in (MODEL_FILE, NORMALIZE_FILE, META_FILE):
        if not (path / name).is_file():
            raise InputError(f"{path} is not a model artifact: {name} is missing")
    meta_file, model_file, norm_file = path / META_FILE, path / MODEL_FILE, path / NORMALIZE_FILE
    meta = _read_meta(meta_file)
    configs: dict[str, Any] = {}
    for key, schema in (("env_config", EnvConfig), ("ppo_config", PPOConfig), ("cost_model", CostModel)):
        try:
            configs[key] = schema.model_validate(meta[key])
        except ValidationError as exc:
            where = ".".join(map(str, (key, *exc.errors()[0]["loc"])))
            raise InputError(f"model artifact file {meta_file} is damaged: {where} is invalid") from None
    observation_size = meta["observation_size"]
    # SB3, torch and pickle raise whatever their parsers hit on a damaged file (BadZipFile, EOFError,
    # UnpicklingError, RuntimeError, AttributeError, ...): any failure here means the file is unusable.
    try:
        model = PPO.load(model_file, device="cpu")
    except Exception as exc:
        raise InputError(
            f"model artifact file {model_file} is damaged: it cannot be loaded ({type(exc).__name__})"
        ) from None
    try:
        with norm_file.open("rb") as fh:
            vec_normalize = pickle.load(fh)  # our own artifact in SB3's format (see the module docstring)
    except Exception as exc:
        raise InputError(
            f"model artifact file {norm_file} is damaged: it cannot be unpickled ({type(exc).__name__})"
        ) from None
    if not isinstance(vec_normalize, VecNormalize):
        raise InputError(f"model artifact file {norm_file} is damaged: it does not hold VecNormalize statistics")
    policy = model.policy
    if policy.observation_space.shape != (observation_size,):
        raise InputError(f"model artifact file {model_file} does not match {meta_file}: observation size differs")
    policy.set_training_mode(False)
    mean = std = None
    if vec_normalize.norm_obs:
        stats = vec_normalize.obs_rms
        if not isinstance(stats, RunningMeanStd):  # a dict is for dict observation spaces: not ours
            raise InputError(f"model artifact file {norm_file} is damaged: it holds no observation statistics")
        mean = np.asarray(stats.mean, dtype=np.float64)
        std = np.sqrt(stats.var + vec_normalize.epsilon)
        if mean.shape != (observation_size,) or not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise InputError(f"model artifact file {norm_file} is damaged: its statistics do not fit the model")
    return LoadedModel(
        policy=policy,
        obs_mean=mean,
        obs_std=std,
        clip_obs=float(vec_normalize.clip_obs),
        env_config=configs["env_config"],
        ppo_config=configs["ppo_config"],
        cost=configs["cost_model"],
        meta=meta,
    )
