"""Gymnasium environments over the simulator (and, in :mod:`powerrl.envs.real_node`, real nodes).

Ids are namespaced and versioned: ``powerrl/NodeDVFS-v0``, ``powerrl/ClusterBudget-v0``,
``powerrl/Datacenter-v0``. Each has a batched vector version reached with
``gymnasium.make_vec(id, num_envs, vectorization_mode="vector_entry_point")`` that steps every
copy in one C call. ``powerrl/RealNode-v0`` (:mod:`powerrl.envs.real_node`) runs NodeDVFS-v0's task
on a real node (no vector version). Any behaviour change bumps the version.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: tuple[str, ...] = ("powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0")
#: Envs over real hardware (not in ENV_IDS: they need a node, or a fake tree, to be made).
HW_ENV_IDS: tuple[str, ...] = ("powerrl/RealNode-v0",)

_ENTRY_POINTS = {
    "powerrl/NodeDVFS-v0": ("powerrl.envs.node_dvfs:NodeDVFSEnv", "powerrl.envs.node_dvfs:NodeDVFSVectorEnv"),
    "powerrl/ClusterBudget-v0": ("powerrl.envs.cluster_budget:ClusterBudgetEnv",
                                 "powerrl.envs.cluster_budget:ClusterBudgetVectorEnv"),
    "powerrl/Datacenter-v0": ("powerrl.envs.datacenter:DatacenterEnv", "powerrl.envs.datacenter:DatacenterVectorEnv"),
}
_HW_ENTRY_POINTS = {"powerrl/RealNode-v0": "powerrl.envs.real_node:RealNodeEnv"}


def register_envs() -> None:
    """Register every powerrl env with Gymnasium (idempotent; runs on ``import powerrl``).

    Gymnasium 1.x has no plugin discovery, so a fresh process either imports powerrl first or uses
    the module prefix: ``gym.make("powerrl:powerrl/NodeDVFS-v0")``.
    """
    for env_id, (entry, vector_entry) in _ENTRY_POINTS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry)
    for env_id, entry in _HW_ENTRY_POINTS.items():
        if env_id not in gym.registry:
            # Measured, wall-clock episodes: a seed cannot make them repeat (gymnasium's checker then
            # skips its determinism checks).
            gym.register(id=env_id, entry_point=entry, nondeterministic=True)
