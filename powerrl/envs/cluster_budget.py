"""``powerrl/ClusterBudget-v0``: split a time-varying facility power budget across nodes by priority."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.envs import events, sources
from powerrl.envs.arrivals import ArrivalChunks
from powerrl.envs.batched import BatchedVectorEnv, CoreClock, SingleCopyEnv
from powerrl.envs.config import ClusterBudgetConfig, make_config
from powerrl.envs.fleet import build_fleet, pstate_array
from powerrl.model.workload import NODE_LOAD_LOG_SD

ENV_ID = "powerrl/ClusterBudget-v0"

#: Work value per priority level (index = :class:`powerrl.model.classes.Priority`, 0 = Critical):
#: each level is worth twice the next, so serving a more important node always pays more than
#: serving a less important one of the same size (a design choice, not calibrated).
PRIORITY_WEIGHT = np.array([16.0, 8.0, 4.0, 2.0, 1.0])
#: Share of nodes at each priority (a production-heavy mix); assigned by node index, so a node's
#: observation slot keeps its priority across episodes.
PRIORITY_MIX = (0.10, 0.30, 0.25, 0.20, 0.15)
#: Workload classes cycled over nodes: latency-sensitive and throughput work side by side.
CLASS_CYCLE = ("interactive", "batch", "compute", "memory")
#: Penalty per unit of (power over budget / budget): large enough that overshooting never pays.
OVERSHOOT_PENALTY = 4.0
#: Power above the budget or a PDU limit by at most this share of the budget is float rounding, not
#: an overshoot (the shield fuzz and the comparison metrics count alike).
OVERSHOOT_RTOL = 1e-6
#: Budget events last 5 to 20 minutes (s): a design choice (not calibrated) so that a 30-minute
#: episode sees whole events; grid-operator demand-response calls can last longer.
EVENT_MIN_S, EVENT_MAX_S = 300.0, 1200.0

NODE_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("offered_load", "offered work last step / capacity at f_max", 0.0, 4.0),
    ("priority", "priority level / 4 (0 = Critical, 1 = Background)", 0.0, 1.0),
    ("power_frac", "power / busy power", 0.0, 1.5),
    ("temp_die_c", "die temperature, degC", 0.0, 150.0),
    ("cap_frac", "applied cap / busy power", 0.0, 1.5),
    ("util", "busy fraction at the applied frequency", 0.0, 1.0),
)
GLOBAL_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("budget_frac", "facility budget / sum of busy power", 0.0, 1.0),
    ("power_over_budget", "total power last step / budget", 0.0, 3.0),
    ("tod_sin", "sin(2 pi time of day)", -1.0, 1.0),
    ("tod_cos", "cos(2 pi time of day)", -1.0, 1.0),
)


def over_limits(budget_overshoot_w: Any, pdu_overshoot_w: Any, budget_w: Any) -> np.ndarray:
    """Per copy (and step): power was above the facility budget or a PDU limit (W telemetry of ``info``)."""
    tol = OVERSHOOT_RTOL * np.asarray(budget_w, dtype=np.float64)
    return (np.asarray(budget_overshoot_w) > tol) | (np.asarray(pdu_overshoot_w) > tol)


def assign_priorities(n_nodes: int) -> np.ndarray:
    """Priority level per node index following :data:`PRIORITY_MIX` (deterministic)."""
    edges = np.cumsum(PRIORITY_MIX) * n_nodes
    return np.searchsorted(edges, np.arange(n_nodes) + 0.5, side="right").clip(0, 4).astype(np.int64)


class ClusterBudgetCore(CoreClock):
    """``n_copies`` independent clusters of ``n_nodes`` nodes, stepped in one C call.

    Budget per copy, W: :attr:`budget_w` is in force for the next step; :attr:`announced_budget_w`
    is the budget once the announced grid cuts take effect (equal to ``budget_w`` when none is
    pending) and :attr:`budget_deadline_s` the trace time at which they do (+inf when none), like
    a grid operator's demand-response notice. Scenario events (``cfg.events``) act at each copy's
    episode time ``step_count * dt_s``; :attr:`inlet_c` views the inlet of every node in the last
    step (``arrays.inlet_c``). Without events no event code runs.
    """

    def __init__(self, cfg: ClusterBudgetConfig, n_copies: int, backend: str = "c",
                 shared_arrivals: bool = False) -> None:
        self.cfg = cfg
        self.b = n_copies
        self.shared_arrivals = shared_arrivals
        n = self.n = cfg.n_nodes
        self.classes = [CLASS_CYCLE[i % len(CLASS_CYCLE)] for i in range(n)]
        self.arrays, self.kernel, mem_base = build_fleet(cfg.profile, n * n_copies, 1, self.classes * n_copies,
                                                         cfg.dt_s, cfg.inlet_c, backend=backend)
        a = self.arrays
        self.mem_base = mem_base.reshape(n_copies, n)
        self.idle_w = a.idle_w[:n].copy()
        self.busy_w = a.busy_w[:n].copy()
        self.priority = assign_priorities(n)
        self.weight = PRIORITY_WEIGHT[self.priority]
        self.rack = np.arange(n) // cfg.nodes_per_rack
        self.pdu = self.rack // cfg.racks_per_pdu
        self.n_pdus = int(self.pdu.max()) + 1
        self.busy_total_w = float(self.busy_w.sum())
        self.pdu_onehot = np.eye(self.n_pdus)[self.pdu]  # [n, n_pdus]: node -> its PDU
        self.pdu_limit_w = cfg.pdu_limit_fraction * np.bincount(self.pdu, weights=self.busy_w, minlength=self.n_pdus)
        self.service_s = a.service_ms.reshape(n_copies, n) / 1000.0
        self.trace = sources.trace_arrays(cfg.trace)
        self.row_lo, self.row_hi = self.trace.split_rows(cfg.split)
        self.steps_per_episode = max(1, int(round(cfg.episode_s / cfg.dt_s)))
        self.start_s = np.zeros(n_copies)
        self.step_count = np.zeros(n_copies, dtype=np.int64)
        self.scale = np.ones((n_copies, n))
        self.event_until_s = np.full(n_copies, -1.0)
        self.budget_w = np.zeros(n_copies)
        self._events = cfg.events
        events.check_events(self._events, events.EVENT_KINDS, ENV_ID)
        # Without grid cuts nothing is ever announced: the announced budget is the budget itself.
        self._cuts = tuple(e for e in self._events if e.kind == "grid_cut")
        self.announced_budget_w = np.zeros(n_copies) if self._cuts else self.budget_w
        self.budget_deadline_s = np.full(n_copies, np.inf)
        self._inlet = a.inlet_c.reshape(n_copies, n)  # view: writes reach the kernel
        #: Standing P-state ceiling per node, integer ``[n_copies, n]``, applied by every step that is
        #: not given one (a wrapper around ``env.step``, e.g. the shield, sets it); None = f_max.
        self.pstate_ceiling: np.ndarray | None = None
        self.offered = np.zeros((n_copies, n))
        self.pdu_power_w = np.zeros((n_copies, self.n_pdus))  # last step, per copy and PDU
        self.chunks = ArrivalChunks(self.trace, self.service_s, self.mem_base, cfg.dt_s, self.steps_per_episode,
                                    shared=shared_arrivals, events=self._events)
        self.obs = np.zeros((n_copies, n * len(NODE_FIELDS) + len(GLOBAL_FIELDS)), dtype=np.float32)
        self._node_obs = self.obs[:, : n * len(NODE_FIELDS)].reshape(n_copies, n, len(NODE_FIELDS))
        self.node_obs_static = self.priority / 4.0
        self._interactive = np.array([c == "interactive" for c in self.classes])

    def cap_from_action(self, action: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] (``[n_copies, n]``) to caps in W from idle to busy power; NaN -> idle."""
        x = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=-1.0), -1.0, 1.0)
        return self.idle_w + (x.reshape(self.b, self.n) + 1.0) * 0.5 * (self.busy_w - self.idle_w)

    def reset_copies(self, which: np.ndarray, rng: np.random.Generator, start_s: float | None = None) -> None:
        """Start new episodes for the copies in mask ``which``, caps at busy power.

        The start is a random row of the split, or trace time ``start_s`` when given.
        """
        idx = np.flatnonzero(which)
        if idx.size == 0:
            return
        cfg, a, n = self.cfg, self.arrays, self.n
        episode_rows = int(np.ceil(self.steps_per_episode * cfg.dt_s / self.trace.interval_s))
        # Shared arrivals draw for one copy, so a copy's episode does not depend on how many run.
        m = 1 if self.shared_arrivals else idx.size
        rows = rng.integers(self.row_lo, max(self.row_lo, self.row_hi - episode_rows - 1) + 1, size=m)
        self.start_s[idx] = (rows * self.trace.interval_s if start_s is None
                             else self.trace.check_start_s(start_s, cfg.episode_s))
        self.step_count[idx] = 0
        self.scale[idx] = cfg.load_scale * rng.lognormal(0.0, NODE_LOAD_LOG_SD, (m, n))
        self.chunks.refill(idx, self.start_s, self.step_count, self.scale, rng)
        self.event_until_s[idx] = -1.0
        units = (idx[:, None] * n + np.arange(n)[None, :]).ravel()
        a.reset_units(units, cfg.inlet_c)
        if self._events:
            self._inlet[idx] = cfg.inlet_c
        a.cap_w[units] = a.busy_w[units]
        a.power_w[units] = a.idle_w[units]
        a.util[units] = 0.0
        self.offered[idx] = 0.0
        self._update_budget(idx, rng)
        self._fill_obs()

    def _update_budget(self, idx: np.ndarray, rng: np.random.Generator) -> None:
        cfg = self.cfg
        t = self.time_s[idx]
        idle = t >= self.event_until_s[idx]
        m = 1 if self.shared_arrivals else idx.size  # shared: every copy meets the same budget events
        starts = idle & (rng.random(m) < cfg.budget_event_rate_per_h * cfg.dt_s / 3600.0)
        dur = rng.uniform(EVENT_MIN_S, EVENT_MAX_S, m)
        self.event_until_s[idx] = np.where(starts, t + dur, self.event_until_s[idx])
        in_event = t < self.event_until_s[idx]
        base = cfg.budget_fraction * self.busy_total_w
        self.budget_w[idx] = np.where(in_event, base * (1.0 - cfg.budget_event_cut), base)
        if self._cuts:
            t_ep = self.step_count[idx] * cfg.dt_s
            budget = self.budget_w[idx]
            self.budget_w[idx] = budget * events.budget_factor(self._cuts, t_ep)
            self.announced_budget_w[idx] = budget * events.announced_budget_factor(self._cuts, t_ep)
            self.budget_deadline_s[idx] = self.start_s[idx] + events.budget_deadline_s(self._cuts, t_ep)

    def step_caps(self, caps_w: np.ndarray, rng: np.random.Generator, pstate_ceiling: np.ndarray | None = None
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Advance one step with caps in W (``[n_copies, n]``); returns rewards and batched telemetry.

        ``pstate_ceiling`` (optional, integer ``[n_copies, n]``): the highest P-state each node may
        run this step (clipped to the P-state table); by default the standing
        :attr:`pstate_ceiling`, and without one the top P-state. The cap then picks the highest
        P-state at or below it that fits.
        """
        cfg, a, b, n = self.cfg, self.arrays, self.b, self.n
        dt = cfg.dt_s
        budget = self.budget_w.copy()
        announced = self.announced_budget_w.copy()
        deadline = self.budget_deadline_s.copy()
        if self.chunks.steps_left <= 0:
            self.chunks.refill(self.chunks.due(), self.start_s, self.step_count, self.scale, rng)
        offered, m = self.chunks.take()
        a.mem_bound[:] = m.ravel()
        a.cap_w[:] = np.nan_to_num(np.asarray(caps_w, dtype=np.float64), nan=0.0, posinf=1e9).ravel()
        if pstate_ceiling is None:
            pstate_ceiling = self.pstate_ceiling
        if pstate_ceiling is None:
            a.pstate[:] = a.n_pstates - 1
        else:
            a.pstate[:] = pstate_array(pstate_ceiling, (b, n), a.n_pstates, "pstate_ceiling").ravel()
        a.demand[:] = offered.ravel()
        if self._events:
            self._inlet[:] = cfg.inlet_c + events.inlet_offset_c(self._events, self.step_count * dt)[:, None]
        self.kernel.step(dt)
        self.offered[:] = offered
        self.step_count += 1
        power = a.power_w.reshape(b, n)
        served = a.served.reshape(b, n)
        total_w = power.sum(axis=1)
        overshoot_w = np.maximum(0.0, total_w - budget)
        # Power groups: each PDU's load against its limit (sum over nodes of the PDU, per copy).
        self.pdu_power_w = power @ self.pdu_onehot
        pdu_over_w = np.maximum(0.0, self.pdu_power_w - self.pdu_limit_w).sum(axis=1)
        weighted_served = (self.weight * served).sum(axis=1)
        weighted_offered = (self.weight * offered * dt).sum(axis=1)
        work_term = np.where(weighted_offered > 0, weighted_served / np.maximum(weighted_offered, 1e-12), 1.0)
        viol_rate = a.sla_violation.reshape(b, n).mean(axis=1)
        reward = work_term - cfg.sla_penalty * viol_rate - OVERSHOOT_PENALTY * (overshoot_w + pdu_over_w) / budget
        tel = {"power_w": total_w, "budget_w": budget, "budget_overshoot_w": overshoot_w,
               "pdu_overshoot_w": pdu_over_w,
               "energy_j": total_w * dt, "work_done": served.sum(axis=1),
               "priority_weighted_work": weighted_served, "sla_violation_rate": viol_rate,
               "announced_budget_w": announced, "budget_deadline_s": deadline, "inlet_c": self._inlet[:, 0].copy(),
               "temp_die_max_c": a.temp_die_c.reshape(b, n).max(axis=1),
               "latency_ms": a.latency_ms.reshape(b, n)[:, self._interactive].max(axis=1, initial=0.0),
               "freq_ratio_mean": a.freq_ratio_applied.reshape(b, n).mean(axis=1)}
        self._update_budget(np.arange(b), rng)
        self._fill_obs()
        return reward, tel

    def truncated(self) -> np.ndarray:
        """Copies whose episode reached its length."""
        return self.step_count >= self.steps_per_episode

    def _fill_obs(self) -> None:
        a, b, n = self.arrays, self.b, self.n
        d = self._node_obs
        busy = a.busy_w.reshape(b, n)
        d[:, :, 0] = np.minimum(self.offered, 4.0)
        d[:, :, 1] = self.node_obs_static
        d[:, :, 2] = np.minimum(a.power_w.reshape(b, n) / busy, 1.5)
        d[:, :, 3] = np.clip(a.temp_die_c.reshape(b, n), 0.0, 150.0)
        d[:, :, 4] = np.minimum(np.minimum(a.cap_w.reshape(b, n), 1e9) / busy, 1.5)
        d[:, :, 5] = a.util.reshape(b, n)
        tod = 2.0 * np.pi * (self.time_s % 86400.0) / 86400.0
        self.obs[:, -4] = self.budget_w / self.busy_total_w
        self.obs[:, -3] = np.minimum(3.0, a.power_w.reshape(b, n).sum(axis=1) / np.maximum(self.budget_w, 1e-9))
        self.obs[:, -2] = np.sin(tod)
        self.obs[:, -1] = np.cos(tod)


def budget_spaces(n_nodes: int) -> tuple[spaces.Box, spaces.Box]:
    """ClusterBudget-v0's action and observation spaces for ``n_nodes`` nodes.

    The simulator and the cluster coordinator (:mod:`powerrl.runtime.allocator`) share them, so a
    policy trained here allocates a real cluster of the same size.
    """
    lo = [f[2] for f in NODE_FIELDS] * n_nodes + [f[2] for f in GLOBAL_FIELDS]
    hi = [f[3] for f in NODE_FIELDS] * n_nodes + [f[3] for f in GLOBAL_FIELDS]
    return (spaces.Box(-1.0, 1.0, (n_nodes,), dtype=np.float32),
            spaces.Box(np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32), dtype=np.float32))


def _spaces(cfg: ClusterBudgetConfig) -> tuple[spaces.Box, spaces.Box]:
    return budget_spaces(cfg.n_nodes)


class ClusterBudgetEnv(SingleCopyEnv):
    """Allocate power caps to ``n_nodes`` servers under a facility budget that moves over time.

    ## Description
    ``n_nodes`` servers (racks of ``nodes_per_rack``, PDUs of ``racks_per_pdu`` racks) serve
    the Google 2019 trace's load with per-node heterogeneity (lognormal, log-s.d. 0.25). Each node has
    a priority (Critical, Production, Development, Research, Background; fixed by node index) and a
    workload class (interactive, batch, compute, memory, cycled). The agent requests a power cap per
    node each step; the node runs at f_max under its cap like RAPL (lower P-states, then idle
    injection, never below idle power). The facility budget is ``budget_fraction * sum(busy
    power)`` and drops by ``budget_event_cut`` during budget events (Poisson,
    ``budget_event_rate_per_h``, 5-20 minutes each), like demand-response requests. Caps are
    applied as requested: keeping the sum within the budget is the agent's job (or the shield's,
    see ``powerrl.shield``); overshoot is penalised and reported. Scheduled grid cuts with advance
    notice come from ``events`` (below).

    ## Action Space
    ``Box(-1, 1, (n_nodes,), float32)``: requested cap per node, linear from -1 = the node's idle
    power to +1 = its busy power at f_max.

    ## Observation Space
    ``Box(float32)`` of ``6 * n_nodes + 4`` values: per node, in node order,

    | field | unit / meaning | min | max |
    |---|---|---|---|
    | offered_load | offered work last step / capacity at f_max | 0 | 4 |
    | priority | priority level / 4 (0 = Critical, 1 = Background) | 0 | 1 |
    | power_frac | power / busy power | 0 | 1.5 |
    | temp_die_c | die temperature, degC | 0 | 150 |
    | cap_frac | applied cap / busy power | 0 | 1.5 |
    | util | busy fraction at the applied frequency | 0 | 1 |

    then ``budget_frac`` (budget / sum of busy power, 0-1), ``power_over_budget`` (total power /
    budget, 0-3), ``tod_sin``, ``tod_cos`` (time of day, -1-1).

    ## Rewards
    ``sum(w * served) / sum(w * offered) - sla_penalty * (share of nodes violating their SLA)
    - 4 * (max(0, P_total - budget) + sum over PDUs of max(0, P_pdu - limit)) / budget``, priority
    weights ``w`` = 16, 8, 4, 2, 1; each PDU's limit is ``pdu_limit_fraction`` of its nodes' busy power.

    ## Starting State
    A random time in the split, caps at busy power, empty queues, inlet temperature everywhere.
    ``reset(options={"start_s": t})`` starts at trace time ``t`` instead (s since trace row 0, i.e.
    local midnight of day 1; day ``d`` starts at ``(d - 1) * 86400``), for evaluation on a chosen day.

    ## Episode End
    No termination; truncation after ``episode_s / dt_s`` steps.

    ## Info
    ``power_w``, ``budget_w`` (in force during the step), ``budget_overshoot_w``, ``pdu_overshoot_w``
    (summed over PDUs), ``energy_j``,
    ``work_done`` (node-seconds at f_max), ``priority_weighted_work``, ``sla_violation_rate``,
    ``temp_die_max_c`` (hottest die at the end of the step, degC), ``latency_ms`` (worst p99 of the
    interactive nodes, ms), ``freq_ratio_mean`` (mean applied f / f_max), ``caps_w``, ``pdu_power_w``,
    ``pdu_limit_w``, ``priority`` (arrays), ``time_s``,
    ``announced_budget_w`` (W) and ``budget_deadline_s`` (trace time, s; +inf when none): the grid-cut
    notice in force during the step, i.e. the budget once the announced cuts take effect (equal
    to ``budget_w`` when none is pending) and when they do; ``inlet_c`` (inlet air during the step,
    degC), ``events_active`` (kinds of the scenario events active during the step). The reset info
    holds ``budget_w``, ``announced_budget_w``, ``budget_deadline_s`` and ``time_s`` for the first step;
    the properties of the same names give them for the next step at any time.

    ## Events
    ``events`` (YAML list of :class:`powerrl.envs.events.EventSpec`, none by default) places
    scenario events in episode time: s after the episode start, so each copy of a vector env
    meets them at its own episode time. A step is affected when its start time falls in
    ``[start_s, start_s + duration_s)``; overlapping events add (temperatures) or multiply
    (factors). Keys of another kind are rejected.

    * ``grid_cut``: the facility budget drops by ``percent`` % (default 30, at most 90). The cut is
      announced at ``start_s`` (``announced_budget_w`` and ``budget_deadline_s`` show it from then
      on, like a grid operator's demand-response notice), takes effect at ``start_s + within_s``
      (default 5 s, below ``duration_s``) and ends at ``start_s + duration_s``. It multiplies the
      budget on top of the random budget events, which come without notice.
    * ``heat_wave``: every node's inlet is ``delta_c`` (default 10) degC warmer.
    * ``cooling_failure``: the inlet rises by ``rise_c * (1 - exp(-(t - start_s) / tau_s))``
      (``rise_c`` default 20 degC, ``tau_s`` default 120 s); after the event the excess decays
      back with the same time constant.
    * ``demand_surge``: the offered load (the work arriving in each step) is multiplied by
      ``factor`` (default 2, at most 10); the draws are those of the same seed without the surge.

    ## Arguments
    Fields of :class:`powerrl.envs.config.ClusterBudgetConfig` as keywords, or ``config=``.
    ``step_caps(caps_w, pstate_ceiling=None)`` steps with caps in W instead of actions, and an
    optional integer P-state ceiling per node (default: f_max), for baselines and the shield.

    ## Version History
    * v0: initial version. Later added the opt-in ``events``; the default (none) leaves every
      episode bitwise as before.
    """

    def __init__(self, config: ClusterBudgetConfig | None = None, **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        self.core = ClusterBudgetCore(self.cfg, 1)
        self.action_space, self.observation_space = _spaces(self.cfg)

    @property
    def budget_w(self) -> float:
        """Facility budget in force for the next step (W)."""
        return float(self.core.budget_w[0])

    @property
    def announced_budget_w(self) -> float:
        """Facility budget once the announced grid cuts take effect (W; :attr:`budget_w` when none is pending)."""
        return float(self.core.announced_budget_w[0])

    @property
    def budget_deadline_s(self) -> float:
        """Trace time at which :attr:`announced_budget_w` takes effect (s since trace row 0; +inf when none)."""
        return float(self.core.budget_deadline_s[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at a random time of the split with every node capped at its busy power."""
        obs = self._reset_core(seed, options)
        return obs, {"budget_w": self.budget_w, "announced_budget_w": self.announced_budget_w,
                     "budget_deadline_s": self.budget_deadline_s, "time_s": float(self.core.time_s[0])}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the requested caps and advance ``dt_s`` seconds."""
        return self.step_caps(self.core.cap_from_action(action))

    def step_caps(self, caps_w: np.ndarray, pstate_ceiling: np.ndarray | None = None
                  ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step with caps given in W (for baselines, the shield and the oracle).

        ``pstate_ceiling`` (optional, integer ``[n_nodes]``) limits each node's P-state this step;
        by default every node may run up to f_max.
        """
        core = self.core
        ceiling = None if pstate_ceiling is None else np.asarray(pstate_ceiling).reshape(1, -1)
        reward, tel = core.step_caps(np.asarray(caps_w, dtype=np.float64).reshape(1, core.n), self.np_random,
                                     ceiling)
        result = self._result(reward, tel)
        result[4].update(caps_w=core.arrays.cap_w.copy(), pdu_power_w=core.pdu_power_w[0].copy(),
                         pdu_limit_w=core.pdu_limit_w.copy(), priority=core.priority.copy(),
                         events_active=core.events_active(0))
        return result


class ClusterBudgetVectorEnv(BatchedVectorEnv):
    """``num_envs`` clusters stepped in one C call (same-step autoreset).

    ``shared_arrivals=True`` gives every copy the same load, arrivals and budget events (common
    random numbers), for comparing controllers copy against copy.
    """

    def __init__(self, num_envs: int = 1, config: ClusterBudgetConfig | None = None, shared_arrivals: bool = False,
                 **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        core = ClusterBudgetCore(self.cfg, num_envs, shared_arrivals=shared_arrivals)
        super().__init__(num_envs, core, *_spaces(self.cfg))

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        core = self.core
        return core.step_caps(core.cap_from_action(actions), self.np_random)
