"""A Stable-Baselines3 ``VecEnv`` over powerrl's native vector envs, always behind the shield.

SB3's own ``DummyVecEnv`` steps ``n`` Python envs one by one and ``SubprocVecEnv`` pays a process and
a pipe per env. powerrl's cores step every copy in one C call and the shield filters every copy in
one call, so :class:`PowerrlVecEnv` hands SB3 the whole batch at once: no process per env, no
per-copy Python step. It also keeps what SB3's ``Monitor`` would (episode return, length, time) and
running sums of the env's telemetry and of the shield's interventions by reason, which the trainer
logs to TensorBoard (:meth:`PowerrlVecEnv.pop_stats`).

Pitfalls:

* Copies auto-reset in the same step (Gymnasium's same-step mode); the finished episode's last
  observation is in ``infos[i]["terminal_observation"]`` with ``TimeLimit.truncated`` set, so SB3
  bootstraps the value of truncated episodes instead of treating the time limit as a terminal state.
* DQN needs a ``Discrete`` action space: with ``joint_discrete=True`` a ``MultiDiscrete(nvec)`` env
  is offered as ``Discrete(prod(nvec))`` with joint index ``np.ravel_multi_index(a, nvec)`` (C order);
  :mod:`powerrl.agents.export` decodes it the same way inside the exported graph.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.shield.config import ShieldConfig

#: Scalar telemetry logged to TensorBoard per env (``infos`` keys of the vector envs); means over
#: copies and steps. Energy and carbon are per step, so their means are per-step figures.
TELEMETRY_KEYS: dict[str, tuple[str, ...]] = {
    "powerrl/NodeDVFS-v0": ("energy_j", "power_w", "sla_violation_rate", "latency_ms", "temp_die_c"),
    "powerrl/ClusterBudget-v0": ("energy_j", "power_w", "budget_overshoot_w", "pdu_overshoot_w",
                                 "priority_weighted_work", "sla_violation_rate", "temp_die_max_c"),
    "powerrl/Datacenter-v0": ("energy_kwh", "carbon_kg", "pue", "sla_violation_rate", "temp_die_max_c",
                              "deferred_work", "supply_c"),
}


def decode_joint(index: Any, nvec: Any) -> np.ndarray:
    """Per-dimension actions ``[B, len(nvec)]`` of joint indices ``np.ravel_multi_index(a, nvec)`` (C order)."""
    joint = np.asarray(index, dtype=np.int64).reshape(-1)
    return np.stack(np.unravel_index(joint, tuple(int(n) for n in np.asarray(nvec).reshape(-1))), axis=1)


def vector_env_class(env_id: str) -> Any:
    """The native vector env class of ``env_id``."""
    from powerrl.eval.runner import VECTOR_ENVS

    return VECTOR_ENVS[env_id]


class PowerrlVecEnv(VecEnv):
    """``n_envs`` copies of a powerrl simulator env behind the safety shield, as one SB3 ``VecEnv``.

    Args:
        env_id: ``powerrl/NodeDVFS-v0``, ``powerrl/ClusterBudget-v0`` or ``powerrl/Datacenter-v0``.
        n_envs: number of copies (each with its own episode start and arrivals).
        config: the env's validated config object (:mod:`powerrl.envs.config`).
        shield: shield config, shipped name or YAML path (``default`` when None).
        seed: seed of the first reset; later resets continue the same generator.
        joint_discrete: offer a ``MultiDiscrete`` action space as one ``Discrete`` (for DQN).
        action_head: a structured head (:mod:`powerrl.agents.heads`) between the agent's output
            and the env action, e.g. ``budget_allocation`` for ClusterBudget-v0.
    """

    def __init__(self, env_id: str, n_envs: int, config: Any, shield: ShieldConfig | str | dict[str, Any] | None,
                 seed: int | None = None, joint_discrete: bool = False, action_head: str | None = None) -> None:
        from powerrl.agents.heads import make_head

        self.env_id = env_id
        venv = vector_env_class(env_id)(n_envs, config=config)
        self.senv = ShieldedVectorEnv(venv, shield)
        self.core = venv.core
        self.env_action_space = venv.single_action_space
        self.nvec: np.ndarray | None = None
        action_space: spaces.Space = self.env_action_space
        if joint_discrete:
            if not isinstance(action_space, spaces.MultiDiscrete):
                raise ValueError(f"joint_discrete needs a MultiDiscrete action space, not {action_space}")
            self.nvec = np.asarray(action_space.nvec, dtype=np.int64)
            action_space = spaces.Discrete(int(np.prod(self.nvec)))
        self.head = make_head(action_head, self.core, self.senv.shield_config)
        if self.head is not None and hasattr(self.head, "input_space"):
            action_space = self.head.input_space  # the agent acts in the head's own, smaller space
        self._obs: np.ndarray | None = None
        self._seed = seed
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(n_envs)
        self._ep_len = np.zeros(n_envs, dtype=np.int64)
        self._t0 = time.time()
        self._keys = TELEMETRY_KEYS.get(env_id, ())
        self._sums = np.zeros(len(self._keys))
        self._events: dict[str, int] = {}
        self._intervened = 0
        self._steps = 0
        super().__init__(n_envs, venv.single_observation_space, action_space)

    # -- the VecEnv protocol ----------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every copy; uses the seed given to :meth:`seed` (or the constructor) once."""
        seed = self._seeds[0] if self._seeds[0] is not None else self._seed
        self._seed = None
        obs, _ = self.senv.reset(seed=seed)
        self._obs = obs
        self._reset_seeds()
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the batch of actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Shield and step every copy; per-copy infos only where an episode ended."""
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        actions = self.decode(self._actions)
        self._actions = None
        if self.head is not None:
            if self._obs is None:
                raise RuntimeError("step before reset")
            actions = self.head(self._obs, actions)
        obs, reward, terminated, truncated, infos = self.senv.step(actions)
        self._obs = obs
        dones = terminated | truncated
        self._ep_return += reward
        self._ep_len += 1
        self._record(infos)
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = infos["final_obs"]
            elapsed = round(time.time() - self._t0, 6)
            for i in np.flatnonzero(dones):
                out[i] = {"terminal_observation": final[i],
                          "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                          "episode": {"r": float(self._ep_return[i]), "l": int(self._ep_len[i]), "t": elapsed}}
            self._ep_return[dones] = 0.0
            self._ep_len[dones] = 0
        return obs, reward.astype(np.float32), dones, out

    def close(self) -> None:
        """Close the wrapped env."""
        self.senv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the shielded env, repeated per copy (``render_mode`` is None)."""
        n = len(self._indices(indices))
        if attr_name == "render_mode":
            return [None] * n
        if attr_name == "action_masks" and not isinstance(self.env_action_space, spaces.MultiDiscrete):
            raise AttributeError("action masks exist for discrete action spaces only")
        return [getattr(self.senv, attr_name)] * n

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the shielded env (shared by every copy)."""
        setattr(self.senv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """``action_masks`` per copy (MaskablePPO); other methods are called once and repeated."""
        idx = self._indices(indices)
        if method_name == "action_masks":
            masks = self.senv.action_masks()
            return [masks[i] for i in idx]
        result = getattr(self.senv, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """No copy is wrapped in a Gymnasium wrapper (the shield is a vector wrapper)."""
        return [False] * len(self._indices(indices))

    def action_masks(self) -> np.ndarray:
        """``[n_envs, sum(nvec)]`` shield masks (NodeDVFS-v0)."""
        return self.senv.action_masks()

    # -- helpers ----------------------------------------------------------------------------------
    def decode(self, actions: np.ndarray) -> np.ndarray:
        """Env actions of a batch of agent actions (joint indices decoded for DQN)."""
        return actions if self.nvec is None else decode_joint(actions, self.nvec)

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def _record(self, infos: dict[str, Any]) -> None:
        for j, key in enumerate(self._keys):
            v = infos.get(key)
            if v is not None:
                self._sums[j] += float(np.sum(v))
        self._intervened += int(np.count_nonzero(infos["shield_intervened"]))
        for reason, n in infos["shield_events"].items():
            self._events[reason] = self._events.get(reason, 0) + int(n)
        self._steps += self.num_envs

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call: telemetry per copy-step, shield intervention rate and event rates.

        Keys: ``env/<telemetry key>``, ``shield/intervention_rate`` (share of copy-steps the shield
        changed) and ``shield/<reason>`` (events per copy-step). Empty when no step was taken.
        """
        if self._steps == 0:
            return {}
        n = float(self._steps)
        stats = {f"env/{k}": float(s / n) for k, s in zip(self._keys, self._sums, strict=True)}
        stats["shield/intervention_rate"] = self._intervened / n
        for reason, count in sorted(self._events.items()):
            stats[f"shield/{reason}"] = count / n
        self._sums[:] = 0.0
        self._events = {}
        self._intervened = 0
        self._steps = 0
        return stats
