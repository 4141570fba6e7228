"""Shielded envs: every action of any controller passes the safety shield before the simulator sees it.

:class:`ShieldedEnv` wraps a single powerrl env, :class:`ShieldedVectorEnv` a batched vector env
(one shield call for every copy). Each step:

1. the watchdog screens the action (NaN/inf or out-of-space -> the fallback's action, ``hold`` by
   default: the last applied action);
2. an adapter turns the env's action into a proposal for the shield (P-states per unit, caps per
   node) and reads the simulator's telemetry, exactly what a node agent reads on hardware (zone
   temperature, power, inlet, budget and grid-operator notices, cooling-failure alarms);
3. the shield's decision goes back into the env's action space (and, where the env's action cannot
   express it, into the P-state ceilings and offline switches the simulator exposes like sysfs).

``info["shield"]`` holds ``proposed``, ``applied`` (the env action actually stepped), ``events``
(``{reason: units}``), ``alerts`` (the events an operator must hear about), ``intervened``, and what
the env action cannot show: ``pstate`` (the P-state ceiling per unit), ``thermal_cap_w`` (W, inf =
none) and ``offline`` per unit; ``info["cost"]`` is 1.0 on a step the shield changed anything (for constrained RL)
and ``penalty`` (config) is subtracted from the reward on such steps. :attr:`counters` keeps
per-reason totals for TensorBoard. Discrete envs (NodeDVFS-v0) also offer ``action_masks()``
(sb3-contrib MaskablePPO); the filter still has the last word when a mask is ignored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper

from powerrl.envs import events as scenario_events
from powerrl.envs.cluster_budget import ENV_ID as CLUSTER_BUDGET_ID
from powerrl.envs.cluster_budget import ClusterBudgetCore
from powerrl.envs.datacenter import ENV_ID as DATACENTER_ID
from powerrl.envs.datacenter import RECIRC_BASE_C, RECIRC_LOAD_C, DatacenterCore
from powerrl.envs.node_dvfs import ENV_ID as NODE_DVFS_ID
from powerrl.envs.node_dvfs import NodeDVFSCore
from powerrl.model.profiles import get_profile
from powerrl.shield.budget import GroupLevel
from powerrl.shield.caps import CapShield
from powerrl.shield.config import ShieldConfig, resolve_shield_config
from powerrl.shield.events import ShieldCounters
from powerrl.shield.shield import Decision, Shield, Telemetry
from powerrl.shield.thermal import ThermalShield, UnitModel
from powerrl.shield.watchdog import Watchdog, valid_rows

#: The zones the simulator provides: one CPU package temperature per unit.
SIM_ZONES = ("package",)


class _Adapter(ABC):
    """Translates between one env kind's actions/telemetry and the shield's units and nodes."""

    units_per_copy: int

    def __init__(self, core: Any, cfg: ShieldConfig, space: spaces.Space) -> None:
        self.core = core
        self.space = space
        self.b = core.obs.shape[0]  # copies
        a = core.arrays
        self.n_pstates = a.n_pstates
        self.top = a.n_pstates - 1
        self.events = tuple(getattr(core.cfg, "events", ()))
        self.cooling_events = tuple(e for e in self.events if e.kind == "cooling_failure")
        profile = get_profile(core.cfg.profile)
        self.shield = Shield(cfg, ThermalShield(cfg, UnitModel.from_profile(profile, a.n_nodes,
                                                                            self.units_per_server())),
                             self.cap_shields(cfg))

    def units_per_server(self) -> int:
        return 1

    def cap_shields(self, cfg: ShieldConfig) -> list[CapShield] | None:
        return None

    def episode_time_s(self) -> np.ndarray:
        """Episode time of each copy's next step (s)."""
        return self.core.step_count * self.core.cfg.dt_s

    def cooling_failure(self) -> np.ndarray | bool:
        """Per unit: whether its cooling is down during the next step (a CRAC alarm)."""
        if not self.cooling_events:
            return False
        down = scenario_events.cooling_down(self.cooling_events, self.episode_time_s())
        return np.repeat(down, self.units_per_copy)

    def telemetry(self) -> Telemetry:
        a = self.core.arrays
        return Telemetry(temp_c=a.temp_die_c, unit_power_w=a.power_w, inlet_c=self.inlet_c(),
                         cooling_failure=self.cooling_failure())

    def inlet_c(self) -> np.ndarray:
        return self.core.arrays.inlet_c

    def apply_unit_caps(self, d: Decision) -> None:
        """Thermal power caps per unit, and critical trips: a cap under idle power stalls the unit's work."""
        a = self.core.arrays
        a.cap_w[:] = d.unit_cap_w

    def initial_action(self) -> np.ndarray:
        """What ``hold`` repeats before any action was applied: the env's own reset state."""
        return _top_action(self.space)

    @abstractmethod
    def filter(self, actions: np.ndarray) -> tuple[np.ndarray, Decision]:
        """Shield a batch of env actions (``[n_copies, ...]``); the safe batch and the decision."""

    def reset(self, which: np.ndarray) -> None:
        """Forget the shield state of the copies in mask ``which``."""
        units = np.flatnonzero(np.repeat(which, self.units_per_copy))
        self.shield.reset(units, which if self.shield.caps else None)


class _NodeDVFSAdapter(_Adapter):
    """NodeDVFS-v0: units are the copies' frequency domains; the action is their P-states."""

    def __init__(self, core: NodeDVFSCore, cfg: ShieldConfig, space: spaces.Space) -> None:
        self.units_per_copy = core.k
        super().__init__(core, cfg, space)

    def units_per_server(self) -> int:
        return int(self.core.k)

    def filter(self, actions: np.ndarray) -> tuple[np.ndarray, Decision]:
        d = self.shield.filter(self.telemetry(), np.asarray(actions).reshape(-1))
        self.apply_unit_caps(d)
        return d.pstate.reshape(self.b, self.core.k).astype(np.int64), d

    def masks(self) -> np.ndarray:
        lo, hi = self.shield.bounds(self.telemetry())
        q = np.arange(self.n_pstates)
        m = (q[None, :] >= lo[:, None]) & (q[None, :] <= hi[:, None])
        return m.reshape(self.b, -1)


class _ClusterBudgetAdapter(_Adapter):
    """ClusterBudget-v0: units are the nodes (P-state ceilings); facilities are the copies (caps)."""

    def __init__(self, core: ClusterBudgetCore, cfg: ShieldConfig, space: spaces.Space) -> None:
        self.units_per_copy = core.n
        super().__init__(core, cfg, space)
        self.dyn_w = core.busy_w - core.idle_w

    def cap_shields(self, cfg: ShieldConfig) -> list[CapShield]:
        core = self.core
        pdu = GroupLevel("pdu", core.pdu.astype(np.int64), core.pdu_limit_w.astype(np.float64))
        return [CapShield(cfg, core.idle_w, core.busy_w, core.priority, (pdu,)) for _ in range(core.b)]

    def telemetry(self) -> Telemetry:
        core, a = self.core, self.core.arrays
        return Telemetry(temp_c=a.temp_die_c, unit_power_w=a.power_w, inlet_c=a.inlet_c,
                         cooling_failure=self.cooling_failure(), time_s=core.time_s.copy(),
                         node_power_w=a.power_w.reshape(core.b, core.n), budget_w=core.budget_w.copy(),
                         announced_budget_w=core.announced_budget_w.copy(),
                         budget_deadline_s=core.budget_deadline_s.copy())

    def filter(self, actions: np.ndarray) -> tuple[np.ndarray, Decision]:
        core = self.core
        caps = core.cap_from_action(actions)
        d = self.shield.filter(self.telemetry(), np.full(core.b * core.n, self.top, dtype=np.int32), caps)
        core.pstate_ceiling = d.pstate.reshape(core.b, core.n)
        if d.cap_w is None:
            raise RuntimeError("the cluster shield returned no caps")  # caps were proposed: cannot happen
        safe = 2.0 * (d.cap_w - core.idle_w) / self.dyn_w - 1.0
        # Critical trip: cap at idle power, which serves nothing (the node's work is offline).
        safe = np.where(d.offline.reshape(core.b, core.n), -1.0, safe)
        return np.clip(safe, -1.0, 1.0), d


class _DatacenterAdapter(_Adapter):
    """Datacenter-v0: units are the nodes (per-node P-state ceilings under the rack ceilings).

    An active trip anywhere in a copy lowers its CRAC supply setpoint by ``active_supply_step_c``
    per period below both the proposed and the current setpoint (more cooling, step by step, like
    a fan cooling device stepping up), down to ``supply_min_c``.
    """

    def __init__(self, core: DatacenterCore, cfg: ShieldConfig, space: spaces.Space) -> None:
        self.units_per_copy = core.n
        self._supply_c = np.full(core.b, core.cfg.supply_max_c)
        self.supply_step_c = cfg.active_supply_step_c
        super().__init__(core, cfg, space)

    def inlet_c(self) -> np.ndarray:
        # The next step's inlet is not known yet (supply setpoint and recirculation change with the
        # action); predict with the warmest it can be: the warmest supply, full recirculation, events.
        core = self.core
        # Rack power never exceeds rack busy power (full load at f_max), so recirculation adds at
        # most RECIRC_BASE_C + RECIRC_LOAD_C above the supply the action asks for.
        worst = self._supply_c + RECIRC_BASE_C + RECIRC_LOAD_C
        if self.events:
            worst = worst + scenario_events.inlet_offset_c(self.events, self.episode_time_s())
        return np.repeat(worst, core.n)

    def initial_action(self) -> np.ndarray:
        # The env's most conservative action: full frequency, coldest supply, no deferral.
        return self.core.conservative_action.copy()

    def filter(self, actions: np.ndarray) -> tuple[np.ndarray, Decision]:
        core = self.core
        x = np.array(actions, dtype=np.float64).reshape(core.b, core.n_racks + 3)
        ceilings, supply_c, _, _ = core.decode(x)
        self._supply_c = supply_c
        proposed = ceilings[:, core.rack].reshape(-1)
        d = self.shield.filter(self.telemetry(), proposed)
        core.node_ceiling = d.pstate.reshape(core.b, core.n)
        self.apply_unit_caps(d)
        wants_cooling = d.cooling_request.reshape(core.b, core.n).any(axis=1)
        if wants_cooling.any():
            cfg = core.cfg
            colder = np.maximum(np.minimum(supply_c, core.supply_c) - self.supply_step_c, cfg.supply_min_c)
            supply = np.where(wants_cooling, np.minimum(supply_c, colder), supply_c)
            x[:, -3] = 2.0 * (supply - cfg.supply_min_c) / (cfg.supply_max_c - cfg.supply_min_c) - 1.0
            changed = wants_cooling & (supply < supply_c)
            if changed.any():
                d.events["active_cooling"] = int(changed.sum())
                d.pstate_changed = d.pstate_changed | np.repeat(changed, core.n)
        return x, d


def _adapter(core: Any, cfg: ShieldConfig, space: spaces.Space) -> _Adapter:
    if isinstance(core, NodeDVFSCore):
        return _NodeDVFSAdapter(core, cfg, space)
    if isinstance(core, ClusterBudgetCore):
        return _ClusterBudgetAdapter(core, cfg, space)
    if isinstance(core, DatacenterCore):
        return _DatacenterAdapter(core, cfg, space)
    raise TypeError(f"no shield adapter for {type(core).__name__}: wrap a powerrl simulator env")


def _env_id(core: Any) -> str:
    """The env id of a core (for messages)."""
    for core_cls, env_id in ((NodeDVFSCore, NODE_DVFS_ID), (ClusterBudgetCore, CLUSTER_BUDGET_ID),
                             (DatacenterCore, DATACENTER_ID)):
        if isinstance(core, core_cls):
            return env_id
    return type(core).__name__


def _bind_config(shield: ShieldConfig | str | dict[str, Any] | None, dt_s: float, n_pstates: int, target: str
                 ) -> ShieldConfig:
    cfg = resolve_shield_config(shield)
    source = str(shield) if isinstance(shield, str) and shield.endswith((".yaml", ".yml")) else None
    cfg.check_zones(SIM_ZONES, target, source)
    cfg.check_pstates(n_pstates, target, source)
    return cfg.for_period(dt_s)  # one decision per env step: the env's step is the control period


class ShieldedEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A powerrl simulator env behind the safety shield.

    Args:
        env: a ``powerrl/NodeDVFS-v0``, ``ClusterBudget-v0`` or ``Datacenter-v0`` env.
        shield: a :class:`ShieldConfig`, a shipped config name (``default``, ``strict``), a YAML path
            or a mapping of overrides; the env's ``dt_s`` becomes the control period.
    """

    def __init__(self, env: gym.Env, shield: ShieldConfig | str | dict[str, Any] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, shield=shield)
        gym.Wrapper.__init__(self, env)
        core = env.unwrapped.core  # type: ignore[attr-defined]
        self.shield_config = _bind_config(shield, core.cfg.dt_s, core.arrays.n_pstates, _env_id(core))
        self.adapter = _adapter(core, self.shield_config, env.action_space)
        self.shield = self.adapter.shield
        self.watchdog = Watchdog(self.shield_config.watchdog, env.action_space, env.observation_space)
        self.counters = ShieldCounters()
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env, the shield's state and the fallback (which starts by holding the top action)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.adapter.reset(np.ones(1, dtype=bool))
        self.watchdog.reset(seed, self.adapter.initial_action())
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Screen, shield and apply ``action``; the reward carries the intervention penalty."""
        screened, wd_events = self.watchdog.screen(action, self._obs)
        safe, decision = self.adapter.filter(np.asarray(screened)[None, ...])
        applied = safe[0].astype(self.action_space.dtype) if isinstance(self.action_space, spaces.MultiDiscrete) \
            else safe[0]
        obs, reward, terminated, truncated, info = self.env.step(applied)
        events = {**wd_events, **decision.events}
        intervened = bool(wd_events) or decision.intervened
        self.counters.add(events, intervened)
        self.watchdog.record_applied(applied)
        self._obs = obs
        info["shield"] = {"proposed": action, "applied": applied, "events": events, "intervened": intervened,
                          "alerts": decision.alerts, "pstate": decision.pstate, "thermal_cap_w": decision.thermal_cap_w,
                          "offline": decision.offline}
        info["cost"] = float(intervened)
        return obs, float(reward) - self.shield_config.penalty * intervened, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over ``MultiDiscrete`` choices (sb3-contrib layout); never all-False per domain."""
        if not isinstance(self.adapter, _NodeDVFSAdapter):
            raise TypeError(f"action masks exist for discrete action spaces only, not {self.action_space}")
        return self.adapter.masks()[0]


class ShieldedVectorEnv(VectorWrapper):
    """A batched powerrl vector env behind the safety shield: one shield call for all copies.

    ``infos["shield_intervened"]`` (``[num_envs]`` bool), ``infos["cost"]``, ``infos["shield_applied"]``
    (the actions stepped) and ``infos["shield_events"]`` (totals over copies) report what the shield did.
    """

    def __init__(self, env: VectorEnv, shield: ShieldConfig | str | dict[str, Any] | None = None) -> None:
        super().__init__(env)
        core = env.unwrapped.core  # type: ignore[attr-defined]
        self.shield_config = _bind_config(shield, core.cfg.dt_s, core.arrays.n_pstates, _env_id(core))
        self.single_space = env.single_action_space
        self.adapter = _adapter(core, self.shield_config, self.single_space)
        self.shield = self.adapter.shield
        self.watchdog = Watchdog(self.shield_config.watchdog, self.single_space, env.single_observation_space)
        self.counters = ShieldCounters()
        #: Put ``infos["priority_inversions"]`` (per copy, ClusterBudget-v0) in every step's infos,
        #: counted before the same-step autoreset clears the shield's last projection (costs O(N) a step).
        self.record_inversions = False
        self._obs: np.ndarray | None = None
        self._last = np.repeat(self.adapter.initial_action()[None], self.num_envs, axis=0)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy and the shield."""
        obs, info = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        self.adapter.reset(np.ones(self.num_envs, dtype=bool))
        first_seed = seed[0] if isinstance(seed, list) else seed
        self.watchdog.reset(first_seed, self.adapter.initial_action())
        self._last = np.repeat(self.adapter.initial_action()[None], self.num_envs, axis=0)
        self._obs = obs
        return obs, info

    def _screen(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows that are not valid actions (NaN/inf, out of space) get the fallback's action."""
        acts, ok = valid_rows(actions, self.single_space, self.num_envs)
        bad = np.flatnonzero(~ok)
        for i in bad:
            if self.watchdog.fallback is None or self._obs is None:
                acts[i] = self._last[i]
            else:
                self.watchdog.last_safe = self._last[i]
                acts[i] = self.watchdog.fallback_action(self._obs[i])
        return acts, ~ok

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Screen, shield and apply a batch of actions."""
        screened, invalid = self._screen(actions)
        n_invalid = int(invalid.sum())
        safe, decision = self.adapter.filter(screened)
        if isinstance(self.single_space, spaces.MultiDiscrete):
            safe = safe.astype(self.single_space.dtype)
        changed = decision.pstate_changed.reshape(self.num_envs, -1).any(axis=1)
        if decision.cap_changed is not None:
            changed |= decision.cap_changed.reshape(self.num_envs, -1).any(axis=1)
        changed |= invalid
        obs, reward, terminated, truncated, infos = self.env.step(safe)
        events = dict(decision.events)
        if n_invalid:
            events["invalid_action"] = n_invalid
        self.counters.add(events, int(changed.sum()), decisions=self.num_envs)
        done = terminated | truncated
        if self.record_inversions and self.shield.caps:
            infos["priority_inversions"] = np.array([c.priority_inversions() for c in self.shield.caps], dtype=float)
        self._last = np.array(safe)
        if done.any():
            self._last[done] = self.adapter.initial_action()
            self.adapter.reset(done)
        self._obs = obs
        infos["shield_intervened"] = changed
        infos["cost"] = changed.astype(np.float64)
        infos["shield_events"] = events
        infos["shield_applied"] = safe
        return obs, reward - self.shield_config.penalty * changed, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """``[num_envs, sum(nvec)]`` masks for NodeDVFS-v0 (MaskablePPO layout)."""
        if not isinstance(self.adapter, _NodeDVFSAdapter):
            raise TypeError(f"action masks exist for discrete action spaces only, not {self.single_space}")
        return self.adapter.masks()


def _top_action(space: spaces.Space) -> np.ndarray:
    """The action a fresh episode starts from: every P-state at the top, caps and ceilings at +1."""
    if isinstance(space, spaces.MultiDiscrete):
        return (space.nvec - 1).astype(space.dtype)
    if isinstance(space, spaces.Box):
        return np.asarray(space.high, dtype=np.float64).copy()
    raise TypeError(f"unsupported action space {space}")

