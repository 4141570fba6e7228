"""Trained policies as controllers: an ONNX file and its JSON metadata, run with onnxruntime.

The contract (what ``powerrl export`` writes): ``NAME.onnx`` maps a float32 batch of raw
observations ``[B, obs_dim]`` to deterministic actions ``[B, action_dim]`` (observation
normalisation, argmax or squashing are inside the graph), and ``NAME.json`` beside it holds at least
``{"env_id": ..., "observation_dim": N, "action": {"type": "multidiscrete" | "box", ...}}``.
torch is never imported here, so the node agent and ``powerrl compare`` run policies without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.control import Controller, ControlTarget
from powerrl.errors import ConfigError

#: Trained policies shipped with the package (``powerrl/data/policies/<env>.onnx`` + ``.json``).
SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "data" / "policies"


def shipped_policy(name: str) -> Path | None:
    """The shipped policy ``name`` (e.g. ``nodedvfs-v0``), or None when there is none by that name."""
    path = SHIPPED_POLICIES / f"{name}.onnx"
    return path if path.is_file() else None


def metadata_path(policy: Path) -> Path:
    """The metadata JSON beside a policy file (same stem)."""
    return policy.with_suffix(".json")


def read_metadata(policy: str) -> dict[str, Any]:
    """The policy's metadata, checked for the keys the harness needs."""
    p = metadata_path(Path(policy))
    if not p.is_file():
        raise ConfigError("policy", policy, f"a policy file with its metadata {p.name} beside it (powerrl export)")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("policy metadata", str(p), f"valid JSON ({exc})") from None
    for key in ("env_id", "observation_dim"):
        if not isinstance(meta, dict) or key not in meta:
            raise ConfigError(f"{p.name}: {key}", None, "metadata with env_id and observation_dim (powerrl export)")
    return meta


def policy_env_id(policy: str | Path) -> str:
    """The env a policy file was trained on."""
    return str(read_metadata(str(policy))["env_id"])


class PolicyFileController(Controller):
    """Runs an exported policy (ONNX) with onnxruntime on one CPU thread."""

    def __init__(self, path: Path, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None) -> None:
        super().__init__(action_space, observation_space, target)
        meta = read_metadata(str(path))
        if target is not None and meta["env_id"] != target.env_id:
            raise ConfigError("policy", str(path), f"a policy for {target.env_id} (this one is for {meta['env_id']})")
        shape = observation_space.shape if observation_space is not None else None
        dim = int(np.prod(shape)) if shape is not None else None
        if dim is not None and int(meta["observation_dim"]) != dim:
            raise ConfigError("policy", str(path), f"a policy for {dim} observations (it takes "
                              f"{meta['observation_dim']}: trained on another env configuration)")
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise ConfigError("policy", str(path), "onnxruntime installed (pip install 'powerrl[agent]')") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.meta = meta
        self.name = path.stem

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """The policy's deterministic actions, cast to the action space's dtype and clipped into it.

        A discrete output that is not finite is returned as it is (float NaN/inf), never cast and
        clipped into a valid-looking index: the shield's watchdog must see a broken policy and hand
        the decision to the fallback.
        """
        x = np.ascontiguousarray(observations, dtype=np.float32)
        y = np.asarray(self.session.run(None, {self.input_name: x})[0])
        space = self.action_space
        if isinstance(space, spaces.MultiDiscrete):
            shape = (x.shape[0], *space.shape)
            if not np.isfinite(y).all():
                return y.astype(np.float64).reshape(shape)
            return np.clip(np.rint(y).astype(np.int64), 0, space.nvec - 1).reshape(shape)
        if isinstance(space, spaces.Box):
            return np.clip(y, space.low, space.high).astype(space.dtype).reshape(x.shape[0], *space.shape)
        raise ConfigError("policy", self.name, f"an env with a Box or MultiDiscrete action space, not {space}")
