"""The clairvoyant DVFS oracle of ``powerrl/NodeDVFS-v0``: lowest-energy P-states that keep the SLA.

:class:`DVFSOracle` knows the arrivals of the coming steps (the env draws them ahead in chunks,
:class:`powerrl.envs.arrivals.ArrivalChunks`) and simulates them: each decision it copies the
state of the copies it drives onto a private scratch kernel with one unit per (domain, candidate
P-state), runs the next step at every candidate followed by ``lookahead_steps`` steps at f_max
(one batched kernel call per step), and picks per domain the candidate with the least energy over
those steps among those whose next step and look-ahead raise no SLA violation; f_max when none
does. It is never deployable and deliberately not registered: the comparison harness
instantiates it as ``DVFSOracle(action_space, observation_space, target=target)`` and calls
:meth:`DVFSOracle.bind` with the unwrapped vector env after every reset.

What it guarantees, exactly:

* Clairvoyant greedy, not a global optimum: each step is chosen against the known arrivals of the
  next ``1 + lookahead_steps`` steps, assuming f_max afterwards. No P-state it picks causes an SLA
  violation in that horizon that f_max from the next step on would avoid; a violation can still
  come from arrivals beyond the horizon (a burst met with the backlog left by earlier
  slow-downs) or be unavoidable (f_max violates too; the oracle then runs f_max).
* Energy is the horizon's, so a slow step whose backlog costs more at f_max afterwards is not
  picked for its own step's saving alone. Over an episode this is a greedy bound: its energy is not
  proven minimal among SLA-meeting schedules, only lower than each fixed P-state that meets the
  SLA as well on the held-out windows measured in ``tests/baselines/test_oracles.py``.
* The simulation is exact for the kernel (``powerrl/_core/node_step.h``): the scratch units get
  every parameter, state field (backlog, averaged load, temperatures, counters) and input (inlet,
  power cap) of the real units, and the real arrays are only read. Inputs set after the decision
  are not known: a shield's new thermal caps, a heat wave's inlet in the next step (temperatures
  do not change power or latency in the kernel, caps do).
* The look-ahead ends where the drawn chunk ends (``chunks.steps_left``); a new chunk is never
  drawn early except by ``prefetch_arrivals`` when the current one is used up, which changes no
  draw.

Cost: ``1 + lookahead_steps`` kernel calls over ``copies * domains * n_pstates`` units per
decision (about 30-40 us for one server of 2 domains and 11 P-states with 10 look-ahead steps).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from powerrl._core.arrays import LAYOUT, NodeArrays
from powerrl._core.sim import NodeKernel
from powerrl.baselines.base import Baseline
from powerrl.control import ControlTarget
from powerrl.errors import ConfigError

#: State and input fields carried from the real units into the scratch units before each decision
#: (every ``pr_node_state`` field of node_step.h, and the inputs the env does not set per step).
CARRIED_FIELDS = ("backlog", "load_avg", "temp_die_c", "temp_sink_c", "work_done", "inlet_c", "cap_w")


class DVFSOracle(Baseline):
    """Clairvoyant greedy P-state choice per domain: least energy with no SLA violation ahead.

    Args:
        action_space: NodeDVFS-v0's ``MultiDiscrete([n_pstates] * n_domains)``.
        observation_space: its observation space (unused).
        target: the env's :class:`ControlTarget` (unused beyond the env check).
        lookahead_steps: steps simulated at f_max after the decided one (default 10 = 1 s at the
            default 0.1 s step; >= 0).

    Call :meth:`bind` (the harness does) before :meth:`act_batch`. After each decision
    ``last_energy_j`` and ``last_violation`` (``[B, n_domains, n_pstates]``) hold every
    candidate's horizon energy (J) and whether it violated the SLA in the horizon.
    """

    env_ids = ("powerrl/NodeDVFS-v0",)
    clairvoyant = True
    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"lookahead_steps": (5, 10, 20)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, lookahead_steps: int = 10) -> None:
        super().__init__(action_space, observation_space, target)
        if not isinstance(lookahead_steps, int | np.integer) or isinstance(lookahead_steps, bool) \
                or lookahead_steps < 0:
            raise ConfigError("controller.oracle.lookahead_steps", lookahead_steps,
                              "an integer >= 0 (steps simulated at f_max after the decided one, e.g. 10)")
        self.lookahead_steps = int(lookahead_steps)
        self._env: Any = None
        self._copies = np.zeros(0, dtype=np.int64)
        self.last_energy_j = np.zeros((0, 0, 0))
        self.last_violation = np.zeros((0, 0, 0), dtype=np.uint8)

    def bind(self, env: Any, copies: np.ndarray) -> None:
        """Drive copies ``copies`` of ``env`` (the unwrapped vector env); builds the scratch kernel."""
        env = getattr(env, "unwrapped", env)  # a wrapper (e.g. ShieldedVectorEnv) is looked through
        core = env.core
        real = core.arrays
        copies = np.asarray(copies, dtype=np.int64).reshape(-1)
        k, p = int(core.k), int(real.n_pstates)
        units = (copies[:, None] * k + np.arange(k)[None, :]).reshape(-1)
        src = np.repeat(units, p)  # scratch unit (row, domain, candidate) -> real unit
        scratch = NodeArrays.allocate(src.size, p)
        for name in LAYOUT:  # every parameter, state, input and output: an exact replica
            getattr(scratch, name)[...] = getattr(real, name)[src]
        self._env, self._core, self._real, self._copies = env, core, real, copies
        self._k, self._p, self._src = k, p, src
        # Contiguous copies (the usual binding) are read through slices, which cost less than gathers.
        lo = int(copies[0]) if copies.size else 0
        contiguous = copies.size > 0 and bool(np.array_equal(copies, np.arange(lo, lo + copies.size)))
        self._copy_sel: slice | np.ndarray = slice(lo, lo + copies.size) if contiguous else copies
        self._unit_sel: slice | np.ndarray = slice(lo * k, (lo + copies.size) * k) if contiguous else units
        self._scratch = scratch
        self._kernel = NodeKernel(scratch)
        self._cand = np.tile(np.arange(p, dtype=np.int32), units.size)
        self._top = np.full(src.size, p - 1, dtype=np.int32)
        self._viol = np.zeros(src.size, dtype=np.uint8)
        # Violation penalty per candidate: any violation outweighs any energy, and f_max's weighs
        # half, so that f_max wins when every candidate violates.
        self._penalty = np.where(self._cand == p - 1, 0.5e300, 1e300).reshape(-1, k, p)
        self._dt = float(core.cfg.dt_s)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """P-state per domain ``[B, n_domains]`` (int64) for the bound copies' next step."""
        if self._env is None:
            raise ValueError("DVFSOracle is clairvoyant: call bind(env, copies) with the unwrapped vector env first")
        b = np.asarray(observations).shape[0]
        if b != self._copies.size:
            raise ValueError(f"DVFSOracle: got {b} observations but is bound to {self._copies.size} copies")
        core, real, s = self._core, self._real, self._scratch
        p = self._p
        core.prefetch_arrivals(self._env.np_random)
        ch = core.chunks
        horizon = 1 + max(0, min(self.lookahead_steps, int(ch.steps_left) - 1))
        pos = ch.pos[self._copy_sel]
        if isinstance(self._copy_sel, slice) and (pos == pos[0]).all():
            p0 = int(pos[0])
            demand = ch.demand[p0:p0 + horizon, self._copy_sel]                          # [H, B, k]
            mem = ch.mem[p0:p0 + horizon, self._copy_sel]
        else:
            rows = pos[None, :] + np.arange(horizon)[:, None]                             # [H, B]
            demand = ch.demand[rows, self._copies[None, :]]
            mem = ch.mem[rows, self._copies[None, :]]
        demand = np.repeat(demand.reshape(horizon, -1), p, axis=1)                        # [H, B * k * P]
        mem = np.repeat(mem.reshape(horizon, -1), p, axis=1)
        sel = self._unit_sel
        for name in CARRIED_FIELDS:
            getattr(s, name).reshape(-1, p)[...] = getattr(real, name)[sel, None]
        s.energy_j[:] = 0.0
        s.pstate[:] = self._cand
        viol = self._viol
        viol[:] = 0
        kernel, dt = self._kernel, self._dt
        for j in range(horizon):
            s.demand[:] = demand[j]
            s.mem_bound[:] = mem[j]
            kernel.step(dt)
            viol |= s.sla_violation
            if j == 0:
                s.pstate[:] = self._top
        #: Energy over the horizon, J, and whether any step of it violated the SLA, per row, domain
        #: and candidate P-state ``[B, k, n_pstates]`` (views of the scratch, valid until the next call).
        self.last_energy_j = s.energy_j.reshape(b, self._k, p)
        self.last_violation = viol.reshape(b, self._k, p)
        score = self.last_energy_j + self.last_violation * self._penalty
        return np.argmin(score, axis=2).astype(np.int64)
