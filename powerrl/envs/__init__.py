"""Gymnasium environments over the simulator (and, in :mod:`powerrl.envs.real_node`, real nodes).

Ids are namespaced and versioned: ``powerrl/NodeDVFS-v0``, ``powerrl/ClusterBudget-v0``,
``powerrl/Datacenter-v0``. Each has a batched vector version reached with
``gymnasium.make_vec(id, num_envs, vectorization_mode="vector_entry_point")`` that steps every
copy in one C call. Any behaviour change bumps the version.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: tuple[str, ...] = ("powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0")

_ENTRY_POINTS = {
    "powerrl/NodeDVFS-v0": ("powerrl.envs.node_dvfs:NodeDVFSEnv", "powerrl.envs.node_dvfs:NodeDVFSVectorEnv"),
    "powerrl/ClusterBudget-v0": ("powerrl.envs.cluster_budget:ClusterBudgetEnv",
                                 "powerrl.envs.cluster_budget:ClusterBudgetVectorEnv"),
    "powerrl/Datacenter-v0": ("powerrl.envs.datacenter:DatacenterEnv", "powerrl.envs.datacenter:DatacenterVectorEnv"),
}


def register_envs() -> None:
    """Register every powerrl env with Gymnasium (idempotent; runs on ``import powerrl``).

    Gymnasium 1.x has no plugin discovery, so a fresh process either imports powerrl first or uses
    the module prefix: ``gym.make("powerrl:powerrl/NodeDVFS-v0")``.
    """
    for env_id, (entry, vector_entry) in _ENTRY_POINTS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry)
