"""Export a trained Stable-Baselines3 policy to ONNX for :class:`powerrl.eval.policy_file.PolicyFileController`.

The file contract (``powerrl/eval/policy_file.py``): ``NAME.onnx`` maps a float32 batch of RAW observations
``[B, obs_dim]`` (dynamic batch axis) to the deterministic actions ``[B, action_dim]`` as float32, and
``NAME.json`` beside it holds the metadata. Everything between the raw observation and the action is baked
into the graph, so a node agent runs it with onnxruntime alone (no torch, no SB3, no VecNormalize):

* observation normalisation, as VecNormalize does it: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs,
  clip_obs)`` with the statistics frozen at export time, computed in float64 like VecNormalize (the
  normalised input is bit-identical to the one SB3 sees);
* the deterministic action head of each algorithm:

  - PPO / MaskablePPO, MultiDiscrete: argmax of each dimension's logits. No action mask is applied in the
    graph: the shield filters the action afterwards, as it does for any controller;
  - PPO, Box: the Gaussian mean clipped to ``[low, high]`` (SB3's ``predict`` with ``squash_output=False``;
    with gSDE's ``squash_output=True``, ``tanh`` then rescaled like SAC);
  - SAC: ``tanh(mean)`` rescaled from ``[-1, 1]`` to ``[low, high]`` (SB3's ``unscale_action``);
  - DQN: argmax of the Q-values. A DQN for a MultiDiscrete env is trained on the JOINT action
    ``Discrete(prod(nvec))`` (index ``np.ravel_multi_index(a, nvec)``, C order); the graph decodes the
    index back to per-dimension values with ``(index // stride_j) % nvec_j``;

* a structured action head (:mod:`powerrl.agents.heads`, e.g. ``budget_allocation``) when the run
  trained with one: the policy's Box output is the head's scores and the head maps (RAW observation,
  scores) to the env action, with its parameters baked in (and stored in the metadata).

Discrete actions come out as float32 integers; the consumer rounds them. Parity with SB3's ``predict`` is
checked by :func:`check_parity` (``powerrl export`` runs it on every export and refuses a mismatch). Pitfall:
where two logits tie within float rounding (early checkpoints, whose logits all lie within ~0.01), SB3 takes
the argmax of the softmax probabilities (equal after rounding: the first index) while the graph takes the
argmax of the logits; both are argmaxes, so the parity check leaves such ties out (and counts them).

Pitfall: the statistics are those of the VecNormalize saved WITH the model (``vecnormalize.pkl`` beside
``model.zip``); a policy exported with another run's (or no) statistics runs but acts on wrongly scaled
inputs. This module imports torch and SB3 (the ``train`` extra); the exported files do not need them.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from gymnasium import spaces
from torch import nn

from powerrl.agents.config import ALGOS, algo_classes
from powerrl.agents.vec_env import decode_joint
from powerrl.errors import ConfigError, PowerrlError

#: Graph input and output names (written to the metadata too).
INPUT_NAME = "obs"
OUTPUT_NAME = "action"

#: Two logits / Q-values closer than this (relative to the larger, at least 1) tie: either argmax is right.
TIE_TOL = 1e-6

#: ONNX opsets the TorchScript exporter writes correctly (it warns above 20; below 9 weights become graph inputs).
OPSETS = range(9, 21)

#: Largest accepted |ONNX - SB3| on a continuous action; discrete actions must match exactly.
PARITY_TOL = 1e-5


class ParityError(PowerrlError):
    """The exported graph disagrees with the SB3 model it came from (an exporter or model-structure bug)."""


def algo_name(model: Any) -> str:
    """The ALGOS name of a loaded SB3 model (exact class, so a subclass is not silently mis-exported)."""
    for name, cls in algo_classes().items():
        if type(model) is cls:
            return name
    for name, cls in algo_classes().items():  # a user subclass of a supported algorithm
        if isinstance(model, cls):
            return name
    raise ConfigError("model", type(model).__name__, f"a Stable-Baselines3 model of one of {', '.join(ALGOS)}")


# ---------------------------------------------------------------------------------------------- the graph


class _Normalise(nn.Module):
    """VecNormalize's observation transform with frozen statistics, float32 in and out.

    The arithmetic is float64 like VecNormalize's (float32 observations minus its float64 statistics), so
    the normalised input is bit-identical to what the policy saw in training. In float32 it differs in the
    last bit now and then, enough to flip an argmax between two logits that tie within ~1e-7 (seen on an
    early checkpoint, whose logits are all within 0.01 of each other).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, var: np.ndarray, clip_obs: float, epsilon: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float64).reshape(-1)))
        self.register_buffer("std", torch.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64).reshape(-1) + epsilon)))
        self.clip_obs = float(clip_obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs.to(torch.float64) - self.mean) / self.std
        return torch.clamp(x, -self.clip_obs, self.clip_obs).to(torch.float32)


class _PolicyGraph(nn.Module):
    """Raw observation -> deterministic env action, for one SB3 model (see the module docstring)."""

    nvec: torch.Tensor
    strides: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, model: Any, action_space: spaces.Space, obs_rms: Any, clip_obs: float,
                 epsilon: float, action_head: Any = None) -> None:
        super().__init__()
        self.algo = algo_name(model)
        policy = model.policy
        self.policy = policy
        self.observation_space = model.observation_space
        self.normalize_images = bool(getattr(policy, "normalize_images", False))
        self.norm = _Normalise(obs_rms.mean, obs_rms.var, clip_obs, epsilon) if obs_rms is not None else None
        model_space = model.action_space
        self.kind = _head_kind(model_space, action_space)
        if self.kind in ("multidiscrete", "joint"):
            if isinstance(model_space, spaces.MultiDiscrete):
                nvec = np.asarray(model_space.nvec, dtype=np.int64).reshape(-1)
            elif isinstance(action_space, spaces.MultiDiscrete):
                nvec = np.asarray(action_space.nvec, dtype=np.int64).reshape(-1)
            else:
                nvec = np.array([int(model_space.n)], dtype=np.int64)
            self.splits = [int(n) for n in nvec]
            strides = np.ones_like(nvec)
            for j in range(len(nvec) - 2, -1, -1):  # C order: the last dimension varies fastest
                strides[j] = strides[j + 1] * nvec[j + 1]
            self.register_buffer("nvec", torch.as_tensor(nvec))
            self.register_buffer("strides", torch.as_tensor(strides))
        if self.kind == "box":
            assert isinstance(model_space, spaces.Box)
            self.register_buffer("low", torch.as_tensor(model_space.low.astype(np.float32).reshape(-1)))
            self.register_buffer("high", torch.as_tensor(model_space.high.astype(np.float32).reshape(-1)))
            self.squash = bool(self.algo == "sac" or getattr(policy, "squash_output", False))
        elif action_head is not None:
            raise ConfigError("action_head", getattr(action_head, "name", action_head), "no head: structured "
                              f"heads take a Box policy output, this model's is {model_space}")
        self.head = action_head.torch_module() if action_head is not None else None

    def _features(self, obs: torch.Tensor, extractor: nn.Module) -> torch.Tensor:
        from stable_baselines3.common.preprocessing import preprocess_obs

        x = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        assert isinstance(x, torch.Tensor)
        return extractor(x)

    def _raw(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits, Q-values or the pre-squash Gaussian mean."""
        p = self.policy
        if self.algo in ("ppo", "maskable_ppo"):
            return p.action_net(p.mlp_extractor.forward_actor(self._features(obs, p.pi_features_extractor)))
        if self.algo == "sac":
            actor = p.actor
            return actor.mu(actor.latent_pi(self._features(obs, actor.features_extractor)))
        q_net = p.q_net
        return q_net.q_net(self._features(obs, q_net.features_extractor))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs if self.norm is None else self.norm(obs)
        out = self._raw(x)
        if self.kind == "multidiscrete":
            return torch.stack([c.argmax(dim=1) for c in torch.split(out, self.splits, dim=1)], dim=1).float()
        if self.kind == "joint":
            idx = out.argmax(dim=1, keepdim=True)
            return torch.remainder(torch.div(idx, self.strides, rounding_mode="floor"), self.nvec).float()
        if self.squash:
            act = self.low + 0.5 * (torch.tanh(out) + 1.0) * (self.high - self.low)
        else:
            act = torch.minimum(torch.maximum(out, self.low), self.high)
        return act if self.head is None else self.head(obs, act)  # the head reads RAW observations


def _head_kind(model_space: spaces.Space, env_space: spaces.Space) -> str:
    if isinstance(model_space, spaces.MultiDiscrete):
        if isinstance(env_space, spaces.MultiDiscrete) and not np.array_equal(env_space.nvec, model_space.nvec):
            raise ConfigError("action_space", str(env_space), f"the model's {model_space} (trained on another env "
                              "configuration?)")
        return "multidiscrete"
    if isinstance(model_space, spaces.Discrete):
        n = int(np.prod(env_space.nvec)) if isinstance(env_space, spaces.MultiDiscrete) else int(model_space.n)
        if n != int(model_space.n):
            raise ConfigError("action_space", str(env_space), f"a MultiDiscrete whose nvec product is the model's "
                              f"{model_space.n} joint actions")
        return "joint"  # Discrete(n) alone is decoded as MultiDiscrete([n])
    if isinstance(model_space, spaces.Box):
        return "box"
    raise ConfigError("action_space", str(model_space), "a Box, Discrete or MultiDiscrete action space")


def _action_meta(env_space: spaces.Space) -> dict[str, Any]:
    if isinstance(env_space, spaces.MultiDiscrete):
        return {"type": "multidiscrete", "nvec": [int(n) for n in env_space.nvec.reshape(-1)]}
    if isinstance(env_space, spaces.Discrete):
        return {"type": "multidiscrete", "nvec": [int(env_space.n)]}
    if isinstance(env_space, spaces.Box):
        return {"type": "box", "low": env_space.low.reshape(-1).tolist(), "high": env_space.high.reshape(-1).tolist()}
    raise ConfigError("action_space", str(env_space), "a Box or MultiDiscrete action space")


def _env_version(env_id: str) -> int | None:
    m = re.search(r"-v(\d+)$", env_id)
    return int(m.group(1)) if m else None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_policy(model: Any, out_path: Path, *, env_id: str, observation_space: gym.spaces.Box,
                  action_space: gym.spaces.Space, obs_rms: Any = None, clip_obs: float = 10.0,
                  epsilon: float = 1e-8, metadata: dict[str, Any] | None = None, opset: int = 17,
                  action_head: Any = None) -> Path:
    """Write ``out_path`` (ONNX) and its metadata JSON (same stem, ``.json``) for a loaded SB3 model.

    Args:
        model: a loaded ``PPO``, ``MaskablePPO``, ``SAC`` or ``DQN`` (any device; it is not modified, but its
            policy is put in evaluation mode).
        out_path: the ``.onnx`` file to write; parent folders are created, both files are replaced atomically.
        env_id: the Gymnasium id the policy was trained on (e.g. ``powerrl/NodeDVFS-v0``).
        observation_space: the env's (raw) observation space; its flattened size is the graph's input width.
        action_space: the ENV's action space. For a DQN trained on the joint ``Discrete(prod(nvec))`` action
            this is the env's ``MultiDiscrete(nvec)`` and the graph decodes the joint index.
        obs_rms: the VecNormalize's ``obs_rms`` (``mean``, ``var``), or None when observations were not
            normalised (pass None too when the VecNormalize had ``norm_obs=False``).
        clip_obs: the VecNormalize's ``clip_obs`` (normalised units).
        epsilon: the VecNormalize's ``epsilon`` (added to the variance).
        metadata: extra JSON-serialisable keys for the metadata file (the trainer's command, run, config...);
            they override the computed keys of the same name.
        opset: ONNX opset of the graph, in :data:`OPSETS` (17 runs on onnxruntime >= 1.13).
        action_head: the run's structured action head (:mod:`powerrl.agents.heads`: ``name``, ``params``,
            ``torch_module()``), or None. Its name and parameters go to the metadata (``action_head``),
            where :func:`check_parity` rebuilds it from.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: unsupported algorithm, action space or opset, or statistics of the wrong size.
    """
    out_path = Path(out_path)
    if int(opset) not in OPSETS:
        raise ConfigError("opset", opset, f"an ONNX opset from {OPSETS.start} to {OPSETS.stop - 1} (the TorchScript "
                          "exporter's range; 17 by default)")
    obs_dim = int(np.prod(observation_space.shape))
    if obs_rms is not None and np.asarray(obs_rms.mean).size != obs_dim:
        raise ConfigError("obs_rms", np.asarray(obs_rms.mean).shape, f"statistics of {obs_dim} observations "
                          "(the VecNormalize saved with this model)")
    device = next(model.policy.parameters()).device
    graph = _PolicyGraph(model, action_space, obs_rms, clip_obs, epsilon, action_head).to(device)
    graph.eval()
    model.policy.set_training_mode(False)
    dummy = torch.zeros((1, obs_dim), dtype=torch.float32, device=device)
    import onnx

    # The TorchScript exporter (dynamo=False): the torch.export-based default needs onnxscript, not a dependency.
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="powerrl-export-") as tmp:
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # it is "legacy" since torch 2.9
        f = Path(tmp) / "policy.onnx"
        torch.onnx.export(graph, (dummy,), str(f), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(f))
    onnx.checker.check_model(proto)

    import powerrl

    meta: dict[str, Any] = {
        "env_id": env_id,
        "env_version": _env_version(env_id),
        "observation_dim": obs_dim,
        "observation_space": {"low": np.asarray(observation_space.low).reshape(-1).tolist(),
                              "high": np.asarray(observation_space.high).reshape(-1).tolist(),
                              "shape": list(observation_space.shape)},
        "action": _action_meta(action_space),
        "algo": graph.algo,
        "normalisation": None if obs_rms is None else {
            "mean": np.asarray(obs_rms.mean, dtype=np.float64).reshape(-1).tolist(),
            "var": np.asarray(obs_rms.var, dtype=np.float64).reshape(-1).tolist(),
            "clip_obs": float(clip_obs), "epsilon": float(epsilon)},
        "action_head": None if action_head is None else {"name": action_head.name, "params": action_head.params},
        "onnx_opset": int(opset),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "powerrl_version": powerrl.__version__,
    }
    meta.update(metadata or {})
    meta_bytes = (json.dumps(meta, indent=2, default=_json_default) + "\n").encode("utf-8")  # fails before writing
    _write_atomic(out_path, proto.SerializeToString())
    _write_atomic(out_path.with_suffix(".json"), meta_bytes)
    return out_path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------- parity


def sample_observations(space: spaces.Box, n: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 observations ``[n, obs_dim]`` uniform within the space's bounds.

    Unbounded coordinates are drawn from a standard normal around the finite bound (or 0).
    """
    rng = np.random.default_rng(seed)
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    finite = np.isfinite(low) & np.isfinite(high)
    out = rng.standard_normal((n, low.size))
    out += np.where(np.isfinite(low), low + 1.0, np.where(np.isfinite(high), high - 1.0, 0.0))
    out[:, finite] = rng.uniform(low[finite], high[finite], (n, int(finite.sum())))
    return out.astype(np.float32)


def normalise_like_vecnormalize(obs: np.ndarray, obs_rms: Any, clip_obs: float, epsilon: float) -> np.ndarray:
    """VecNormalize's transform in NumPy (float64 arithmetic on its float64 statistics, float32 result)."""
    if obs_rms is None:
        return np.asarray(obs, dtype=np.float32)
    return np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + epsilon), -clip_obs, clip_obs).astype(np.float32)


def reference_actions(model: Any, obs: np.ndarray, obs_rms: Any, clip_obs: float, epsilon: float,
                      action_space: spaces.Space | None = None, action_head: Any = None) -> np.ndarray:
    """SB3's deterministic actions ``[B, action_dim]`` (float64) for raw observations, as the env sees them.

    A joint Discrete model's index is decoded with ``np.unravel_index`` over ``action_space.nvec`` (the env's);
    an action head maps (raw observations, SB3 action) to the env action, as the training env does.
    """
    act, _ = model.predict(normalise_like_vecnormalize(obs, obs_rms, clip_obs, epsilon), deterministic=True)
    act = np.asarray(act)
    if action_head is not None:
        act = np.asarray(action_head(obs, act))
    if isinstance(model.action_space, spaces.Discrete):
        nvec = action_space.nvec.reshape(-1) if isinstance(action_space, spaces.MultiDiscrete) \
            else [int(model.action_space.n)]
        act = decode_joint(act, nvec)
    return act.reshape(obs.shape[0], -1).astype(np.float64)


def onnx_actions(onnx_path: Path, obs: np.ndarray) -> np.ndarray:
    """The exported graph's output for raw observations (onnxruntime, one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(obs, dtype=np.float32)})[0])


def _tied(model: Any, norm_obs: np.ndarray, action_dim: int) -> np.ndarray:
    """``[n, action_dim]`` mask: where SB3's own top two logits / Q-values tie within :data:`TIE_TOL`.

    There either action is an argmax up to float rounding (ONNX Runtime's and torch's matrix products
    round differently), so a disagreement there is not an export error. A joint index ties whole rows.
    """
    space = model.action_space
    if not isinstance(space, spaces.MultiDiscrete | spaces.Discrete):
        return np.zeros((len(norm_obs), action_dim), dtype=bool)
    graph = _PolicyGraph(model, space, None, 10.0, 1e-8)
    device = next(model.policy.parameters()).device
    with torch.no_grad():
        raw = graph._raw(torch.as_tensor(norm_obs, device=device)).double().cpu().numpy()
    sizes = [int(k) for k in space.nvec.reshape(-1)] if isinstance(space, spaces.MultiDiscrete) else [int(space.n)]
    cols = []
    for seg in np.split(raw, np.cumsum(sizes)[:-1], axis=1):
        top2 = -np.sort(-seg, axis=1)[:, :2] if seg.shape[1] > 1 else np.hstack([seg, seg - np.inf])
        cols.append(top2[:, 0] - top2[:, 1] <= TIE_TOL * np.maximum(1.0, np.abs(top2[:, 0])))
    tied = np.stack(cols, axis=1)
    return tied if tied.shape[1] == action_dim else np.repeat(tied.any(axis=1, keepdims=True), action_dim, axis=1)


def parity_report(model: Any, onnx_path: Path, obs_rms: Any, clip_obs: float, epsilon: float, n: int = 1000,
                  seed: int = 0) -> tuple[float, int]:
    """``(max |ONNX - SB3|, number of tied discrete entries left out)``; see :func:`check_parity`."""
    onnx_path = Path(onnx_path)
    meta = json.loads(onnx_path.with_suffix(".json").read_text(encoding="utf-8"))
    env_space: spaces.Space | None = None
    if meta.get("action", {}).get("type") == "multidiscrete":
        env_space = spaces.MultiDiscrete(np.asarray(meta["action"]["nvec"], dtype=np.int64))
    head = None
    if meta.get("action_head"):
        from powerrl.agents.heads import head_from_params

        head = head_from_params(meta["action_head"]["name"], meta["action_head"]["params"])
    obs = sample_observations(model.observation_space, n, seed)
    ref = reference_actions(model, obs, obs_rms, clip_obs, epsilon, env_space, head)
    got = onnx_actions(onnx_path, obs).astype(np.float64)
    if got.shape != ref.shape:
        raise ParityError(f"{onnx_path}: the graph outputs {got.shape[1:]} actions per observation, SB3 "
                          f"{ref.shape[1:]}")
    diff = np.abs(got - ref)
    tied = _tied(model, normalise_like_vecnormalize(obs, obs_rms, clip_obs, epsilon), ref.shape[1])
    skipped = int(np.count_nonzero(tied & (diff > 0)))
    diff[tied] = 0.0
    return (float(diff.max()) if diff.size else 0.0), skipped


def check_parity(model: Any, onnx_path: Path, obs_rms: Any, clip_obs: float, epsilon: float, n: int = 1000,
                 seed: int = 0) -> float:
    """Max |ONNX - SB3 predict| over ``n`` observations uniform in the model's observation space.

    The SB3 side normalises with VecNormalize's formula and calls ``model.predict(deterministic=True)``;
    the ONNX side gets the raw observations. For discrete actions any non-zero figure is a mismatch
    (0 or >= 1), except where SB3's own two best logits / Q-values tie within :data:`TIE_TOL` (relative;
    either action is right there and float rounding picks one; :func:`parity_report` counts them); for
    continuous ones compare with :data:`PARITY_TOL`. The env's action space (needed to decode a joint DQN
    index) and any action head are read from the metadata JSON beside ``onnx_path``.
    """
    return parity_report(model, onnx_path, obs_rms, clip_obs, epsilon, n, seed)[0]


def parity_ok(diff: float, discrete: bool) -> bool:
    """Whether a :func:`check_parity` figure passes (exact for discrete actions, else <= PARITY_TOL)."""
    return diff == 0.0 if discrete else diff <= PARITY_TOL


# ---------------------------------------------------------------------------------------------- run folders


@dataclass
class LoadedRun:
    """A ``powerrl train`` run's model, normaliser and config, ready to export.

    Attributes:
        run_dir: the run folder.
        config: run.yaml's mapping.
        model_path: the ``.zip`` loaded.
        model: the SB3 model (CPU).
        obs_rms: VecNormalize statistics, or None (no ``vecnormalize*.pkl`` or ``norm_obs=False``).
        clip_obs: VecNormalize's ``clip_obs`` (10.0 when there is none).
        epsilon: VecNormalize's ``epsilon`` (1e-8 when there is none).
        observation_space: the model's observation space.
        action_space: the ENV's action space (MultiDiscrete from ``action_nvec`` for a joint DQN).
        action_head: the structured action head (run.yaml ``action_head`` + ``action_head_params``), or None.
    """

    run_dir: Path
    config: dict[str, Any]
    model_path: Path
    model: Any
    obs_rms: Any
    clip_obs: float
    epsilon: float
    observation_space: spaces.Box
    action_space: spaces.Space
    action_head: Any = None

    @property
    def env_id(self) -> str:
        """The Gymnasium id the run trained on."""
        return str(self.config["env_id"])

    def metadata(self) -> dict[str, Any]:
        """The trainer's record for the policy metadata."""
        c = self.config
        try:
            checkpoint = str(self.model_path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            checkpoint = str(self.model_path)
        return {"training_command": c.get("command"), "run": str(self.run_dir), "checkpoint": checkpoint,
                "env_config": c.get("env_config"), "shield": c.get("shield"), "git_revision": c.get("git_revision"),
                "total_timesteps": c.get("total_timesteps"), "seed": c.get("seed")}


def _vecnormalize_beside(model_path: Path) -> Path:
    """``model.zip`` -> ``vecnormalize.pkl``; ``model_<N>_steps.zip`` -> ``vecnormalize_<N>_steps.pkl``."""
    stem = model_path.stem
    name = ("vecnormalize" + stem[len("model"):]) if stem.startswith("model") else f"vecnormalize_{stem}"
    return model_path.with_name(name + ".pkl")


def _resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint == "final":
        path = run_dir / "model.zip"
    elif checkpoint == "best":
        path = run_dir / "best" / "model.zip"
        if not path.is_file():
            print(f"powerrl export: no best model in {run_dir} (no best/model.zip: evaluation never ran or never "
                  "improved); exporting the final model.zip", file=sys.stderr)
            path = run_dir / "model.zip"
    else:
        path = Path(checkpoint)
        if path.suffix != ".zip":
            raise ConfigError("--checkpoint", checkpoint, "best, final, or the path of a model .zip (e.g. "
                              f"{run_dir / 'checkpoints' / 'model_100000_steps.zip'})")
        if not path.is_file() and not path.is_absolute() and (run_dir / path).is_file():
            path = run_dir / path  # relative to the run folder
    if not path.is_file():
        raise ConfigError("--checkpoint", checkpoint, f"an existing model file ({path} is missing: is the run "
                          "finished? see its checkpoints/ folder)", str(run_dir))
    return path


def _read_run_yaml(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise ConfigError("run", str(run_dir), "a run folder written by powerrl train (it does not exist)")
    path = run_dir / "run.yaml"
    if not path.is_file():
        raise ConfigError("run", str(run_dir), "a run folder written by powerrl train (it has no run.yaml)")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError("run.yaml", str(path), f"valid YAML ({str(exc).splitlines()[0]})", str(path)) from None
    config: dict[str, Any] = {}
    for doc in docs:  # the trainer may append a document when the run ends or resumes: later keys win
        if not isinstance(doc, dict):
            raise ConfigError("<root>", type(doc).__name__, "a mapping with env_id, algo, ...", str(path))
        config.update(doc)
    for key in ("env_id", "algo"):
        if key not in config:
            raise ConfigError(key, None, "present (powerrl train writes it)", str(path))
    if config["algo"] not in ALGOS:
        raise ConfigError("algo", config["algo"], f"one of {', '.join(ALGOS)}", str(path))
    if not isinstance(config["env_id"], str):
        raise ConfigError("env_id", config["env_id"], "a Gymnasium id such as powerrl/NodeDVFS-v0", str(path))
    return config


def _load_vecnormalize(path: Path) -> tuple[Any, float, float]:
    """``(obs_rms or None, clip_obs, epsilon)`` from a pickled VecNormalize (no venv needed)."""
    try:
        with path.open("rb") as f:
            vn = pickle.load(f)  # noqa: S301 - the user's own run folder
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt/foreign file
        raise ConfigError("vecnormalize", str(path), f"a VecNormalize saved by powerrl train ({type(exc).__name__}: "
                          f"{exc}); delete it to export without normalisation") from None
    rms = getattr(vn, "obs_rms", None)
    if rms is None or not hasattr(rms, "mean") or not hasattr(rms, "var"):
        raise ConfigError("vecnormalize", str(path), "a VecNormalize with Box observation statistics (obs_rms)")
    clip_obs = float(getattr(vn, "clip_obs", 10.0))
    epsilon = float(getattr(vn, "epsilon", 1e-8))
    return (rms if getattr(vn, "norm_obs", True) else None), clip_obs, epsilon


def load_run(run_dir: Path, checkpoint: str = "best") -> LoadedRun:
    """Load a run folder's model (``best``, ``final`` or a ``.zip`` path) and its VecNormalize.

    ``best`` falls back to the final model (with a note on stderr) when there is no ``best/`` model.

    Raises:
        ConfigError: missing folder, run.yaml, model or field; unknown algo; unreadable files.
    """
    run_dir = Path(run_dir)
    config = _read_run_yaml(run_dir)
    model_path = _resolve_checkpoint(run_dir, str(checkpoint))
    cls = algo_classes()[config["algo"]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3's notes about the saving/loading Python or package versions
            model = cls.load(str(model_path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SB3 raises many kinds on a corrupt or foreign zip
        raise ConfigError("model", str(model_path), f"a {cls.__name__} model saved by powerrl train (loading "
                          f"failed: {type(exc).__name__}: {exc}; is run.yaml's algo {config['algo']!r} "
                          "right?)") from None
    vn_path = _vecnormalize_beside(model_path)
    if vn_path.is_file():
        obs_rms, clip_obs, epsilon = _load_vecnormalize(vn_path)
    else:
        if config.get("normalize", True):  # run.yaml says whether the run normalised at all
            print(f"powerrl export: no {vn_path.name} beside {model_path}: exporting without observation "
                  "normalisation", file=sys.stderr)
        obs_rms, clip_obs, epsilon = None, 10.0, 1e-8
    obs_space = model.observation_space
    if not isinstance(obs_space, spaces.Box):
        raise ConfigError("observation_space", str(obs_space), "a Box observation space", str(model_path))
    action_space: spaces.Space = model.action_space
    if isinstance(action_space, spaces.Discrete):
        nvec = config.get("action_nvec")
        if nvec is not None:
            try:
                action_space = spaces.MultiDiscrete(np.asarray(nvec, dtype=np.int64).reshape(-1))
            except (TypeError, ValueError):
                raise ConfigError("action_nvec", nvec, "a list of positive integers", str(run_dir / "run.yaml")) \
                    from None
            if int(np.prod(action_space.nvec)) != int(model.action_space.n):
                raise ConfigError("action_nvec", nvec, f"sizes whose product is the model's {model.action_space.n} "
                                  "joint actions", str(run_dir / "run.yaml"))
    head = _load_head(config, run_dir / "run.yaml")
    if head is not None and hasattr(head, "env_action_space"):
        action_space = head.env_action_space  # the head widens the model's action to the env's
    return LoadedRun(run_dir, config, model_path, model, obs_rms, clip_obs, epsilon, obs_space, action_space, head)


def _load_head(config: dict[str, Any], source: Path) -> Any:
    name = config.get("action_head")
    if not name:
        return None
    params = config.get("action_head_params")
    if not isinstance(params, dict):
        raise ConfigError("action_head_params", params, f"the parameters of the {name} head (powerrl train writes "
                          "them with the head)", str(source))
    from powerrl.agents.heads import head_from_params

    try:
        return head_from_params(str(name), params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("action_head", name, f"a head this powerrl can rebuild ({type(exc).__name__}: {exc})",
                          str(source)) from None


def export_loaded(run: LoadedRun, out_path: Path, opset: int = 17) -> Path:
    """Export a :class:`LoadedRun` (see :func:`export_policy`)."""
    return export_policy(run.model, out_path, env_id=run.env_id, observation_space=run.observation_space,
                         action_space=run.action_space, obs_rms=run.obs_rms, clip_obs=run.clip_obs,
                         epsilon=run.epsilon, metadata=run.metadata(), opset=opset, action_head=run.action_head)


def export_run(run_dir: Path, out_path: Path, checkpoint: str = "best") -> Path:
    """Export a ``powerrl train`` run folder's policy to ``out_path`` (+ ``.json``); returns ``out_path``.

    Args:
        run_dir: the run folder (``run.yaml``, ``model.zip``, ``vecnormalize.pkl``, ``best/``, ``checkpoints/``).
        out_path: the ``.onnx`` to write.
        checkpoint: ``best`` (falls back to final), ``final``, or the path of a ``.zip`` (absolute, relative
            to the working folder, or relative to the run folder); its statistics are the same-named
            ``vecnormalize*.pkl`` beside it, or none.

    Raises:
        ConfigError: see :func:`load_run`.
    """
    return export_loaded(load_run(run_dir, checkpoint), out_path)


# ---------------------------------------------------------------------------------------------- command line


def _export_cmd(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    if args.opset not in OPSETS:
        raise ConfigError("--opset", args.opset, f"an ONNX opset from {OPSETS.start} to {OPSETS.stop - 1} (17 by "
                          "default)")
    out = Path(args.out) if args.out else Path(args.run) / "policy.onnx"
    if out.suffix != ".onnx":
        raise ConfigError("--out", str(out), "a path ending in .onnx (the metadata goes beside it as .json)")
    run = load_run(Path(args.run), args.checkpoint)
    # Export beside the target under a temporary name and check parity there: a policy that fails the
    # check never replaces (or appears as) the requested file.
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.stem}.staged.onnx")
    try:
        export_loaded(run, staged, opset=args.opset)
        diff, ties = parity_report(run.model, staged, run.obs_rms, run.clip_obs, run.epsilon)
        discrete = not isinstance(run.action_space, spaces.Box)
        if parity_ok(diff, discrete):
            os.replace(staged.with_suffix(".json"), out.with_suffix(".json"))
            os.replace(staged, out)
    finally:
        for leftover in (staged, staged.with_suffix(".json")):
            leftover.unlink(missing_ok=True)
    print(f"exported {run.model_path} ({run.config['algo']}, {run.env_id})")
    print(f"  policy:   {out}")
    print(f"  metadata: {out.with_suffix('.json')}")
    limit = "exact (discrete actions)" if discrete else f"<= {PARITY_TOL:g}"
    tie_note = f"; {ties} numerical ties of SB3's own logits left out" if ties else ""
    print(f"  parity with SB3 predict on 1000 sampled observations: max |diff| = {diff:.3g} ({limit}{tie_note})")
    if not parity_ok(diff, discrete):
        raise ParityError(f"{out}: the exported policy differs from the SB3 model (max |diff| {diff:.3g}, expected "
                          f"{limit}); please report it with the run's model.zip")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``powerrl export``."""
    p = subparsers.add_parser(
        "export", help="export a trained run's policy to ONNX (+ JSON metadata) for powerrl compare and node agents",
        description="Export the policy of a powerrl train run folder to ONNX: raw observations in, deterministic "
                    "env actions out (observation normalisation, argmax/squashing inside the graph), metadata "
                    "JSON beside it. Parity with the SB3 model is checked on 1,000 sampled observations.")
    p.add_argument("run", help="run folder written by powerrl train")
    p.add_argument("--out", default=None, help="ONNX file to write (default: RUN/policy.onnx); the metadata goes "
                   "beside it with a .json suffix")
    p.add_argument("--checkpoint", default="best", help="best (default; falls back to final), final, or a model "
                   ".zip path such as RUN/checkpoints/model_100000_steps.zip")
    p.add_argument("--opset", type=int, default=17, help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} (default 17)")
    p.set_defaults(func=_export_cmd)
