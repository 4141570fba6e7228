"""``powerrl/NodeDVFS-v0``: DVFS of one server's frequency domains against a real utilisation trace."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl._core._reference import ReferenceDVFSStepper
from powerrl._core.sim import DVFS_FIELDS, DVFS_INFO, DVFSStepper
from powerrl.envs import events, sources
from powerrl.envs.arrivals import ArrivalChunks
from powerrl.envs.batched import BatchedVectorEnv, CoreClock, SingleCopyEnv
from powerrl.envs.config import NodeDVFSConfig, make_config
from powerrl.envs.fleet import build_fleet
from powerrl.model.workload import NODE_LOAD_LOG_SD

ENV_ID = "powerrl/NodeDVFS-v0"

#: Per-domain observation fields, their units and bounds (the spec table of the docstring).
DOMAIN_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("util", "busy fraction over the last step at the applied frequency", 0.0, 1.0),
    ("offered_load", "offered work over the last step / capacity at f_max", 0.0, 4.0),
    ("mem_bound", "memory-boundedness proxy (stall share), 0 = compute-bound", 0.0, 1.0),
    ("pstate", "applied P-state / (number of P-states - 1)", 0.0, 1.0),
    ("temp_die_c", "die temperature, degC", 0.0, 150.0),
    ("power_w", "domain power over the last step, W", 0.0, 2000.0),
    ("latency_slack", "1 - p99 latency / SLA, clipped to [-1, 1]", -1.0, 1.0),
    ("backlog_s", "queued work in seconds at f_max, clipped to 10", 0.0, 10.0),
)
GLOBAL_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("tod_sin", "sin(2 pi time of day)", -1.0, 1.0),
    ("tod_cos", "cos(2 pi time of day)", -1.0, 1.0),
)
#: Telemetry written by the fused stepper per copy (order of ``node_dvfs_env.h``).
INFO_FIELDS = ("energy_j", "power_w", "sla_violation", "sla_violation_rate", "latency_ms", "temp_die_c", "work_done")
if len(DOMAIN_FIELDS) != DVFS_FIELDS or len(INFO_FIELDS) != DVFS_INFO:
    raise ImportError("powerrl.envs.node_dvfs and powerrl/_core/node_dvfs_env.h disagree on the layout; rebuild")


class NodeDVFSCore(CoreClock):
    """``n_copies`` independent copies of one server, stepped in one C call.

    Holds the kernel buffers, the per-copy clocks and the arrival process; the single env and the
    vector env are thin views over it. Demand and memory-boundedness do not depend on actions, so
    they are drawn ahead in chunks (:class:`powerrl.envs.arrivals.ArrivalChunks`) and a step is a
    single call of the fused C stepper (``powerrl/_core/node_dvfs_env.h``). All
    randomness comes from the ``np.random.Generator`` passed to :meth:`reset_copies` and
    :meth:`step`, so a seed fixes the episode whatever the actions.

    Scenario events (``cfg.events``) act at each copy's episode time ``step_count * dt_s``: heat
    waves and cooling failures set the kernel's inlet (``arrays.inlet_c``, viewed per copy and
    domain as :attr:`inlet_c`) before every step, demand surges scale the drawn demand. Without
    events none of this runs.

    Args:
        cfg: validated env config.
        n_copies: number of independent copies.
        shared_arrivals: common random numbers: every copy sees the same load scale and arrivals,
            so copies driven by different controllers are compared on identical work (all copies
            must then be reset together).
        backend: ``"c"`` (default) or ``"numpy"`` (the NumPy twin, for equivalence tests).
    """

    def __init__(self, cfg: NodeDVFSConfig, n_copies: int, shared_arrivals: bool = False,
                 backend: str = "c") -> None:
        self.cfg = cfg
        self.n_copies = n_copies
        self.shared_arrivals = shared_arrivals
        k = self.k = cfg.n_domains
        self.arrays, kernel, mem_base = build_fleet(
            cfg.profile, n_copies * k, k, [cfg.workload_class] * (n_copies * k), cfg.dt_s, cfg.inlet_c,
            backend=backend)
        self.mem_base = mem_base.reshape(n_copies, k)
        self.n_pstates = self.arrays.n_pstates
        self.trace = sources.trace_arrays(cfg.trace)
        self.row_lo, self.row_hi = self.trace.split_rows(cfg.split)
        self.steps_per_episode = max(1, int(round(cfg.episode_s / cfg.dt_s)))
        self.service_s = self.arrays.service_ms.reshape(n_copies, k) / 1000.0
        self.busy_w_server = float(self.arrays.busy_w[0] * k)
        self.load_scale = np.ones((n_copies, k))
        self._events = cfg.events
        self._cfg_inlet_c = cfg.inlet_c
        events.check_events(self._events, events.SITE_KINDS, ENV_ID)
        self.chunks = ArrivalChunks(self.trace, self.service_s, self.mem_base, cfg.dt_s, self.steps_per_episode,
                                    shared=shared_arrivals, events=self._events)
        self.start_s = np.zeros(n_copies)
        self.step_count = np.zeros(n_copies, dtype=np.int64)
        self.actions = np.zeros((n_copies, k), dtype=np.int64)
        self.obs = np.zeros((n_copies, k * len(DOMAIN_FIELDS) + len(GLOBAL_FIELDS)), dtype=np.float32)
        self.reward = np.zeros(n_copies)
        self.info_buf = np.zeros((n_copies, len(INFO_FIELDS)))
        self._inlet = self.arrays.inlet_c.reshape(n_copies, k)  # view: writes reach the kernel
        w = cfg.reward
        stepper_cls = DVFSStepper if backend == "c" else ReferenceDVFSStepper
        self.stepper = stepper_cls(
            kernel, n_copies, k, self.chunks.chunk_len, cfg.dt_s, self.busy_w_server, w.energy, w.sla,
            DOMAIN_FIELDS[1][3], DOMAIN_FIELDS[5][3], DOMAIN_FIELDS[7][3], DOMAIN_FIELDS[4][3],
            self.actions, self.chunks.demand, self.chunks.mem, self.chunks.pos, self.start_s, self.step_count,
            self.obs, self.reward, self.info_buf)

    # -- episode management -------------------------------------------------------------------
    def reset_copies(self, which: np.ndarray, rng: np.random.Generator, start_s: float | None = None) -> None:
        """Start new episodes for the copies in boolean mask ``which``.

        Episodes start at a uniformly random time of the split, or at trace time ``start_s``
        (s since trace row 0) when given (for evaluation on a chosen held-out day).
        """
        idx = np.flatnonzero(which)
        if idx.size == 0:
            return
        if start_s is None:
            episode_rows = int(np.ceil(self.steps_per_episode * self.cfg.dt_s / self.trace.interval_s))
            last_start = max(self.row_lo, self.row_hi - episode_rows - 1)
            # Shared arrivals draw for one copy, so a copy's episode does not depend on how many run.
            m = 1 if self.shared_arrivals else idx.size
            rows = rng.integers(self.row_lo, last_start + 1, size=m)
            # Start anywhere inside the 5-minute row, so episodes do not all begin on a row boundary.
            self.start_s[idx] = rows * self.trace.interval_s + rng.uniform(0, self.trace.interval_s, m)
        else:
            self.start_s[idx] = self.trace.check_start_s(start_s, self.cfg.episode_s)
        self.step_count[idx] = 0
        # Per-episode server heterogeneity around the datacentre average.
        scale = self.cfg.load_scale * rng.lognormal(0.0, NODE_LOAD_LOG_SD, 1 if self.shared_arrivals else idx.size)
        self.load_scale[idx] = scale[..., None]
        units = (idx[:, None] * self.k + np.arange(self.k)[None, :]).ravel()
        self.arrays.reset_units(units, self.cfg.inlet_c)
        if self._events:
            self._inlet[idx] = self.cfg.inlet_c
        self.chunks.refill(idx, self.start_s, self.step_count, self.load_scale, rng)
        self.stepper.observe()

    # -- stepping -------------------------------------------------------------------------------
    def step(self, rng: np.random.Generator) -> np.ndarray:
        """Advance every copy one step with the P-states in :attr:`actions`; returns the rewards."""
        chunks = self.chunks
        if chunks.steps_left <= 0:
            chunks.refill(chunks.due(), self.start_s, self.step_count, self.load_scale, rng)
        if self._events:
            self._inlet[:] = self.cfg.inlet_c + events.inlet_offset_c(
                self._events, self.step_count * self.cfg.dt_s)[:, None]
        self.stepper.step()  # advances chunks.pos in C
        chunks.steps_left -= 1
        return self.reward

    @property
    def arrival_scale(self) -> np.ndarray:
        """Per-copy, per-domain load multiplier of the arrivals."""
        return self.load_scale

    def truncated(self) -> np.ndarray:
        """Copies whose episode reached its length."""
        return self.step_count >= self.steps_per_episode

    def info(self, i: int) -> dict[str, Any]:
        """Per-step telemetry of copy ``i`` (SI units)."""
        v = self.info_buf[i].tolist()
        a, k = self.arrays, self.k
        info = {
            "energy_j": v[0], "power_w": v[1], "sla_violation": v[2] > 0.0, "sla_violation_rate": v[3],
            "latency_ms": v[4], "temp_die_c": v[5], "work_done": v[6],
            "pstate_applied": a.pstate_applied[i * k:(i + 1) * k].copy(),
            # Python scalars (.item): numpy scalar arithmetic here cost ~0.8 us, a third of a step.
            "time_s": self.start_s.item(i) + self.step_count.item(i) * self.cfg.dt_s,
            "inlet_c": self._cfg_inlet_c, "events_active": (),
        }
        if self._events:
            info["inlet_c"] = float(self._inlet[i, 0])
            info["events_active"] = self.events_active(i)
        return info


def dvfs_spaces(n_domains: int, n_pstates: int) -> tuple[spaces.MultiDiscrete, spaces.Box]:
    """NodeDVFS-v0's action and observation spaces for ``n_domains`` domains of ``n_pstates`` P-states.

    The simulator and a real node (:mod:`powerrl.envs.hw_node`) share them, so a policy runs on both.
    """
    lo = np.array([f[2] for f in DOMAIN_FIELDS] * n_domains + [f[2] for f in GLOBAL_FIELDS], dtype=np.float32)
    hi = np.array([f[3] for f in DOMAIN_FIELDS] * n_domains + [f[3] for f in GLOBAL_FIELDS], dtype=np.float32)
    return (spaces.MultiDiscrete(np.full(n_domains, n_pstates, dtype=np.int64)),
            spaces.Box(lo, hi, dtype=np.float32))


def _spaces(cfg: NodeDVFSConfig, n_pstates: int) -> tuple[spaces.MultiDiscrete, spaces.Box]:
    return dvfs_spaces(cfg.n_domains, n_pstates)


class NodeDVFSEnv(SingleCopyEnv):
    """One server's DVFS against the real Google 2019 utilisation trace.

    ## Description
    A server (a shipped profile, by default the 2-socket AMD EPYC 7502 measured with pinned
    P-states, or any profile fitted by ``powerrl calibrate``) with ``n_domains`` frequency
    domains serves requests whose arrival rate follows the Google cluster
    trace 2019 (5-minute utilisation, Poisson arrivals inside each interval). Each step the agent
    picks a P-state per domain; lower frequencies save power but slow service (by the workload's
    memory-boundedness) and raise queueing latency. Power, latency and temperature come from the
    model in ``docs/model.md`` (C kernel ``powerrl/_core/node_step.h``).

    ## Action Space
    ``MultiDiscrete([n_pstates] * n_domains)``: P-state index per domain, 0 = lowest frequency,
    ``n_pstates - 1`` = f_max (the profile's P-state table).

    ## Observation Space
    ``Box(float32)`` of ``8 * n_domains + 2`` values: for each domain, in order,

    | field | unit / meaning | min | max |
    |---|---|---|---|
    | util | busy fraction over the last step | 0 | 1 |
    | offered_load | offered work / capacity at f_max over the last step | 0 | 4 |
    | mem_bound | memory-boundedness proxy (stall share) | 0 | 1 |
    | pstate | applied P-state / (n_pstates - 1) | 0 | 1 |
    | temp_die_c | die temperature, degC | 0 | 150 |
    | power_w | domain power, W | 0 | 2000 |
    | latency_slack | 1 - p99 latency / SLA, clipped | -1 | 1 |
    | backlog_s | queued work, s at f_max, clipped | 0 | 10 |

    then ``tod_sin``, ``tod_cos``: time of day of the trace (row 0 = midnight), in [-1, 1].

    ## Rewards
    ``-reward.energy * P / P_busy - reward.sla * (share of domains violating the p99 SLA)`` where
    ``P`` is the server's power over the step and ``P_busy`` its busy power at f_max.

    ## Starting State
    A uniformly random time in the configured split (``train`` = trace days 1-21, ``heldout`` =
    days 22-28), all domains at f_max, empty queues, temperatures at the inlet temperature, and a
    per-episode load scale (lognormal, log-s.d. 0.25) for server heterogeneity.
    ``reset(options={"start_s": t})`` starts at trace time ``t`` instead (s since trace row 0, i.e.
    local midnight of day 1; day ``d`` starts at ``(d - 1) * 86400``), for evaluation on a chosen day.

    ## Episode End
    No termination; truncation after ``episode_s / dt_s`` steps.

    ## Info
    ``energy_j`` (J this step), ``power_w``, ``sla_violation`` (any domain), ``sla_violation_rate``,
    ``latency_ms`` (worst domain p99), ``temp_die_c`` (hottest domain), ``work_done`` (node-seconds
    at f_max served this step), ``pstate_applied``, ``time_s`` (trace time), ``inlet_c`` (inlet air
    during the step, degC), ``events_active`` (kinds of the scenario events active during the step).

    ## Events
    ``events`` (YAML list of :class:`powerrl.envs.events.EventSpec`, none by default) places
    scenario events in episode time: s after the episode start, so each copy of a vector env
    meets them at its own episode time. A step is affected when its start time falls in
    ``[start_s, start_s + duration_s)``; overlapping events add (temperatures) or multiply
    (factors). Keys of another kind are rejected.

    * ``heat_wave``: the inlet is ``delta_c`` (default 10) degC warmer.
    * ``cooling_failure``: the inlet rises by ``rise_c * (1 - exp(-(t - start_s) / tau_s))``
      (``rise_c`` default 20 degC, ``tau_s`` default 120 s); after the event the excess decays
      back with the same time constant.
    * ``demand_surge``: the offered load (the work arriving in each step) is multiplied by
      ``factor`` (default 2, at most 10); the draws are those of the same seed without the surge.

    ``grid_cut`` is rejected at config load: one server has no facility budget (ClusterBudget-v0 has).

    ## Arguments
    Any field of :class:`powerrl.envs.config.NodeDVFSConfig` as a keyword of ``gymnasium.make``,
    e.g. ``gym.make("powerrl/NodeDVFS-v0", n_domains=4, dt_s=0.1, split="heldout")``, or
    ``config=`` a config object.

    ## Version History
    * v0: initial version. Later added the opt-in ``events``; the default (none) leaves every
      episode bitwise as before.
    """

    def __init__(self, config: NodeDVFSConfig | None = None, backend: str = "c", **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        self.core = NodeDVFSCore(self.cfg, 1, backend=backend)
        self._action = self.core.actions[0]
        self.action_space, self.observation_space = _spaces(self.cfg, self.core.n_pstates)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at a random time of the split (or at ``options["start_s"]``, trace seconds)."""
        return self._reset_core(seed, options), self.core.info(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply one P-state per domain and advance ``dt_s`` seconds."""
        core = self.core
        self._action[:] = action
        reward = core.step(self.np_random)
        return (core.obs[0].copy(), float(reward[0]), False, bool(core.step_count[0] >= core.steps_per_episode),
                core.info(0))


class NodeDVFSVectorEnv(BatchedVectorEnv):
    """``num_envs`` copies of :class:`NodeDVFSEnv` stepped in one C call (same-step autoreset).

    ``shared_arrivals=True`` gives every copy the same arrivals (common random numbers), for
    comparing controllers copy against copy on identical work. ``infos`` holds the scalar telemetry
    of :class:`NodeDVFSEnv` per copy (``energy_j`` ... ``work_done``) and ``inlet_c``.
    """

    def __init__(self, num_envs: int = 1, config: NodeDVFSConfig | None = None, shared_arrivals: bool = False,
                 **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        core = NodeDVFSCore(self.cfg, num_envs, shared_arrivals=shared_arrivals)
        super().__init__(num_envs, core, *_spaces(self.cfg, core.n_pstates))

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        core = self.core
        core.actions[:] = np.asarray(actions).reshape(self.num_envs, core.k)
        reward = core.step(self.np_random).copy()
        infos: dict[str, Any] = {name: core.info_buf[:, j].copy() for j, name in enumerate(INFO_FIELDS)}
        infos["sla_violation"] = infos["sla_violation"] > 0.0
        infos["inlet_c"] = core.inlet_c[:, 0].copy()
        return reward, infos
