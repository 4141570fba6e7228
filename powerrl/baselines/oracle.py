"""The clairvoyant oracle: one registered name, the env's own bound behind it.

``oracle`` knows what no deployable controller can: future arrivals and the recorded carbon
intensity. It is the bound every comparison quotes results against:

* NodeDVFS-v0: the lowest-energy P-state per domain meeting the SLA over a lookahead of the known
  arrivals (:class:`powerrl.baselines.oracle_dvfs.DVFSOracle`);
* ClusterBudget-v0: the LP maximising priority-weighted work under the budget and PDU limits for
  the known next-step demand, solved with HiGHS (:class:`powerrl.baselines.oracle_allocation.AllocationOracle`);
* Datacenter-v0: the least-carbon deferral schedule of a clairvoyant search over rules fed the
  recorded intensity and the tuned baselines, simulated on the episode's own arrivals
  (:class:`powerrl.baselines.oracle_search.SearchCarbonOracle`).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.control import Controller, ControlTarget, register
from powerrl.errors import ConfigError


def _impl(env_id: str) -> type[Controller]:
    if env_id == "powerrl/NodeDVFS-v0":
        from powerrl.baselines.oracle_dvfs import DVFSOracle

        return DVFSOracle
    if env_id == "powerrl/ClusterBudget-v0":
        from powerrl.baselines.oracle_allocation import AllocationOracle

        return AllocationOracle
    if env_id == "powerrl/Datacenter-v0":
        from powerrl.baselines.oracle_search import SearchCarbonOracle

        return SearchCarbonOracle
    raise ConfigError("controller.oracle", env_id,
                      "an env with an oracle: NodeDVFS-v0, ClusterBudget-v0, Datacenter-v0")


def searches_baselines(env_id: str) -> bool:
    """Whether the env's oracle takes the compared baselines as candidates (a ``tuned`` parameter)."""
    return "tuned" in inspect.signature(_impl(env_id).__init__).parameters


@register("oracle")
class Oracle(Controller):
    """Dispatches to the env's clairvoyant bound (module docstring); parameters pass through."""

    env_ids = ("powerrl/NodeDVFS-v0", "powerrl/ClusterBudget-v0", "powerrl/Datacenter-v0")
    needs_target = True
    clairvoyant = True

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, **params: Any) -> None:
        super().__init__(action_space, observation_space, target)
        assert target is not None  # needs_target: checked by the base class
        self.impl = _impl(target.env_id)(action_space, observation_space, target=target, **params)

    def reset(self, seed: int | None = None, batch: int = 1) -> None:
        """Reset the env's oracle."""
        self.impl.reset(seed, batch)

    def bind(self, env: Any, copies: np.ndarray) -> None:
        """Give the env's oracle the env to read the future from."""
        self.impl.bind(env, copies)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """The env's oracle's actions."""
        return self.impl.act_batch(observations, time_s)
