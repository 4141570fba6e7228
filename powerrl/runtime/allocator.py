"""The coordinator's allocator: a ClusterBudget-v0 controller fed from node reports instead of the simulator.

The coordinator speaks ClusterBudget-v0's language, so anything that drives that env drives a real
cluster: the registered allocation baselines (``equal_share``, ``proportional``,
``priority_proportional``, ``efficiency``, ``dynamo``) and exported ClusterBudget-v0 policies
(``*.onnx``, or the shipped ``clusterbudget-v0``). Each round :meth:`Allocator.request_w` builds the
env's observation (fields and order of :data:`powerrl.envs.cluster_budget.NODE_FIELDS` and
``GLOBAL_FIELDS``) from the latest reports, asks the controller, and maps its actions to caps the
way the env does (``idle + (a + 1) / 2 * (busy - idle)``). The caps are only a *request*: the
coordinator's budget shield has the last word.

Pitfalls:

* A trained policy has a fixed number of nodes (the shipped one: 64). A cluster of another size
  gets a clear error; use a baseline, train with that ``n_nodes``, or split the cluster into rack
  coordinators of the policy's size under a parent.
* The env knows one level of power groups (its PDUs); the allocator passes the cluster's
  outermost level with a finite limit. Every other level is still enforced by the shield.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import powerrl.baselines  # noqa: F401 - registers the allocation baselines by name
from powerrl.control import Controller, ControlTarget, make_controller
from powerrl.envs import cluster_budget as cb
from powerrl.envs.target import budget_target
from powerrl.errors import ConfigError
from powerrl.eval.policy_file import shipped_policy
from powerrl.runtime.cluster import ClusterSpec
from powerrl.shield.config import ShieldConfig


def cluster_target(spec: ClusterSpec, shield: ShieldConfig) -> ControlTarget:
    """The ClusterBudget-v0 :class:`ControlTarget` of a real cluster (static facts for the controller)."""
    group = limit = None
    for level in reversed(spec.levels):
        if np.isfinite(level.limit_w).any():
            group, limit = level.group_of_node, np.where(np.isfinite(level.limit_w), level.limit_w, 1e9)
            break
    return budget_target(spec.config.round_s, spec.idle_w, spec.busy_w, spec.priority, group, limit, shield)


def _policy_path(name: str) -> Path | None:
    if name.endswith(".onnx"):
        return Path(name)
    return shipped_policy(name) if name.startswith("clusterbudget") else None


class Allocator:
    """A ClusterBudget-v0 controller run on the coordinator's view of the cluster.

    Args:
        spec: the cluster.
        shield: the coordinator's shield config (guaranteed bases and max caps).
        name: ``allocator`` of the cluster file (registered baseline, policy path or shipped name).
    """

    def __init__(self, spec: ClusterSpec, shield: ShieldConfig, name: str) -> None:
        self.spec = spec
        self.name = name
        self.target = cluster_target(spec, shield)
        self.action_space, self.observation_space = cb.budget_spaces(spec.n)
        path = _policy_path(name)
        controller: Controller
        if path is not None:
            from powerrl.eval.policy_file import PolicyFileController, read_metadata

            if not path.is_file():
                raise ConfigError("allocator", name, "an exported ClusterBudget-v0 policy file (powerrl export RUN)")
            dim = int(read_metadata(str(path))["observation_dim"])
            if dim != self.observation_space.shape[0]:
                n_policy = (dim - len(cb.GLOBAL_FIELDS)) // len(cb.NODE_FIELDS)
                raise ConfigError("allocator", name, f"a policy for {spec.n} nodes (it was trained for {n_policy}): "
                                  "use a baseline such as priority_proportional, train with env n_nodes: "
                                  f"{spec.n}, or split the cluster into rack coordinators of {n_policy} nodes")
            controller = PolicyFileController(path, self.action_space, self.observation_space, self.target)
        else:
            controller = make_controller(name, self.action_space, self.observation_space, self.target)
        controller.reset(seed=0)
        self.controller = controller
        self.obs = np.zeros((1, self.observation_space.shape[0]), dtype=np.float32)
        n_f = len(cb.NODE_FIELDS)
        self._node = self.obs[0, : spec.n * n_f].reshape(spec.n, n_f)
        self._glob = self.obs[0, spec.n * n_f:]
        self._lo, self._hi = self.observation_space.low, self.observation_space.high

    def observe(self, load: np.ndarray, power_w: np.ndarray, temp_c: np.ndarray, cap_w: np.ndarray,
                util: np.ndarray, budget_w: float, time_of_day_s: float) -> np.ndarray:
        """The ClusterBudget-v0 observation (float32 ``[1, dim]``, clipped into the space) of this state."""
        busy = self.spec.busy_w
        node = self._node
        node[:, 0] = load
        node[:, 1] = self.spec.priority / 4.0
        node[:, 2] = power_w / busy
        node[:, 3] = np.nan_to_num(temp_c, nan=0.0)
        node[:, 4] = np.minimum(cap_w, busy * 1.5) / busy
        node[:, 5] = util
        total = float(busy.sum())
        phase = 2.0 * math.pi * (time_of_day_s % 86400.0) / 86400.0
        self._glob[:] = (budget_w / total if math.isfinite(budget_w) else 1.0,
                         float(power_w.sum()) / budget_w if budget_w > 0 else 3.0, math.sin(phase), math.cos(phase))
        np.clip(self.obs, self._lo, self._hi, out=self.obs)
        return self.obs

    def request_w(self, obs: np.ndarray) -> np.ndarray:
        """Requested caps (W, ``[n]``) for an observation; NaN for every node when the controller fails.

        NaN requests become each node's base in the shield (:func:`powerrl.shield.budget.project_caps`),
        which is the safe reading of "the allocator had no answer".
        """
        try:
            act = np.asarray(self.controller.act_batch(obs), dtype=np.float64).reshape(self.spec.n)
        except Exception:  # noqa: BLE001 - any allocator failure must leave the round to the shield
            return np.full(self.spec.n, np.nan)
        x = np.clip(act, -1.0, 1.0)
        x[~np.isfinite(act)] = np.nan
        return self.spec.idle_w + (x + 1.0) * 0.5 * (self.spec.busy_w - self.spec.idle_w)
