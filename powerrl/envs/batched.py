"""The shared shape of powerrl's envs: a core holding ``n_copies`` copies, stepped in one C call.

A core provides ``reset_copies(which, rng, start_s)``, ``truncated()``, ``time_s`` and an ``obs``
buffer ``[n_copies, obs_dim]``. :class:`BatchedVectorEnv` exposes every copy as a Gymnasium vector
env; :class:`SingleCopyEnv` exposes a one-copy core as a plain Gymnasium env. Subclasses only say
how actions advance the core.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from powerrl.envs import events


class CoreClock:
    """Clock and scenario-event views shared by the env cores.

    A core using it sets ``cfg`` (with ``dt_s``), ``start_s`` and ``step_count`` (per copy),
    ``_events`` (the config's scenario events) and ``_inlet`` (a ``[n_copies, units]`` view of its
    kernel's ``arrays.inlet_c``).
    """

    cfg: Any
    chunks: Any
    scale: np.ndarray
    start_s: np.ndarray
    step_count: np.ndarray
    _events: tuple[Any, ...]
    _inlet: np.ndarray

    @property
    def time_s(self) -> np.ndarray:
        """Trace time per copy (s since trace row 0)."""
        return self.start_s + self.step_count * self.cfg.dt_s

    @property
    def inlet_c(self) -> np.ndarray:
        """Inlet temperature of every unit in the last step, degC: ``[n_copies, units]`` view of ``arrays.inlet_c``."""
        return self._inlet

    def prefetch_arrivals(self, rng: np.random.Generator) -> None:
        """Draw the next chunk of arrivals now if the current one is used up.

        The next step would draw it first thing, with the same generator and nothing drawn in
        between, so prefetching changes no draw; afterwards ``chunks.peek()`` shows the next step's
        demand (what the clairvoyant oracle reads).
        """
        chunks = self.chunks
        if chunks.steps_left <= 0:
            chunks.refill(chunks.due(), self.start_s, self.step_count, self.arrival_scale, rng)

    @property
    def arrival_scale(self) -> np.ndarray:
        """Per-copy, per-unit load multiplier of the arrivals (``[n_copies, units]``)."""
        return self.scale

    def events_active(self, i: int) -> tuple[str, ...]:
        """Kinds of the events active during copy ``i``'s last step (none before its first)."""
        n = self.step_count.item(i)
        return events.active_kinds(self._events, (n - 1) * self.cfg.dt_s) if self._events and n > 0 else ()


class BatchedVectorEnv(VectorEnv):
    """``num_envs`` copies stepped together, with Gymnasium's same-step autoreset.

    When a copy's episode ends it is reset within the same ``step``: the returned observation is
    the new episode's first, and ``infos["final_obs"]`` (``[num_envs, obs_dim]``, zeros where not
    final) with the mask ``infos["_final_obs"]`` hold the finished episode's last observation.
    ``reset(options={"start_s": t})`` starts every copy at trace time ``t`` (s since row 0).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, core: Any, single_action_space: spaces.Space,
                 single_observation_space: spaces.Space) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.core = core
        self.single_action_space = single_action_space
        self.single_observation_space = single_observation_space
        self.action_space = gym.vector.utils.batch_space(single_action_space, num_envs)
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, num_envs)
        self._all = np.ones(num_envs, dtype=bool)
        self._never = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy (one generator for the batch; a list of seeds uses its first)."""
        if isinstance(seed, list):
            seed = seed[0]
        self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self.core.reset_copies(self._all, self.np_random, (options or {}).get("start_s"))
        return self.core.obs.copy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every copy; copies whose episode ended are reset in the same call."""
        core = self.core
        reward, infos = self._advance(actions)
        truncated = core.truncated()
        if truncated.any():
            infos["final_obs"] = np.where(truncated[:, None], core.obs, 0.0).astype(np.float32)
            infos["_final_obs"] = truncated.copy()
            core.reset_copies(truncated, self.np_random)
        return core.obs.copy(), reward, self._never.copy(), truncated, infos

    @abstractmethod
    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Apply a batch of actions and advance the core; returns rewards and batched telemetry."""


class SingleCopyEnv(gym.Env[np.ndarray, np.ndarray]):
    """A Gymnasium env over copy 0 of a one-copy core (``self.core``, set by the subclass)."""

    metadata = {"render_modes": []}
    core: Any

    def _reset_core(self, seed: int | None, options: dict[str, Any] | None) -> np.ndarray:
        """Seed, start a new episode (at ``options["start_s"]`` when given); the first observation."""
        super().reset(seed=seed)
        self.core.reset_copies(np.ones(1, dtype=bool), self.np_random, (options or {}).get("start_s"))
        return self.core.obs[0].copy()

    def _result(self, reward: np.ndarray, tel: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The step tuple of copy 0 from batched rewards and telemetry (scalars in ``info``)."""
        core = self.core
        info: dict[str, Any] = {k: float(v[0]) for k, v in tel.items()}
        info["time_s"] = float(core.time_s[0])
        return core.obs[0].copy(), float(reward[0]), False, bool(core.truncated()[0]), info
