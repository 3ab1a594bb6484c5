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
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

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
        "feature_spec": {"version": feature_version, "hash": feature_hash, "names": list(feature_names)},
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


def load_artifact(path: Path) -> LoadedModel:
    path = Path(path)
    for name in (MODEL_FILE, NORMALIZE_FILE, META_FILE):
        if not (path / name).is_file():
            raise InputError(f"{path} is not a model artifact: {name} is missing")
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: unsupported artifact format {meta.get('format')!r}")
    model = PPO.load(path / MODEL_FILE, device="cpu")
    policy = model.policy
    policy.set_training_mode(False)
    with (path / NORMALIZE_FILE).open("rb") as fh:
        vec_normalize = pickle.load(fh)  # our own artifact in SB3's format (see the module docstring)
    mean = std = None
    if vec_normalize.norm_obs:
        mean = np.asarray(vec_normalize.obs_rms.mean, dtype=np.float64)
        std = np.sqrt(vec_normalize.obs_rms.var + vec_normalize.epsilon)
    return LoadedModel(
        policy=policy,
        obs_mean=mean,
        obs_std=std,
        clip_obs=float(vec_normalize.clip_obs),
        env_config=EnvConfig.model_validate(meta["env_config"]),
        ppo_config=PPOConfig.model_validate(meta["ppo_config"]),
        cost=CostModel.model_validate(meta["cost_model"]),
        meta=meta,
    )
