"""Clairvoyant allocation bound for ``powerrl/ClusterBudget-v0``: a per-step LP over the known next step.

:class:`AllocationOracle` reads what no deployable controller can: the next step's offered work per
node (``core.chunks.peek()`` after ``core.prefetch_arrivals``), its memory-boundedness and every
node's queued work. For each copy it then solves, with HiGHS (``scipy.optimize.linprog``)::

    maximise    sum_i w_i * work_i(P_i)
    subject to  sum_i P_i               <= budget * (1 - reserve_frac)     (the shield's facility limit)
                sum_{i in PDU g} P_i    <= pdu_limit_g                     (each PDU)
                sum_{i: prio >= 1} P_i  <= budget * (1 - reserve - critical_reserve)   (when set)
                base_i <= P_i <= max_i

where ``w`` is the priority weight (16, 8, 4, 2, 1) and ``work_i(P)`` the node's **concave
power->work frontier** for this step: the upper concave envelope of the points the simulator's
node can reach (``powerrl/_core/node_step.h``, twin :mod:`powerrl.model.power`):

* ``(idle_i, 0)``: a cap at idle power serves nothing;
* for each P-state q: ``work_q = min(avail_i, speed_q * dt)`` at power
  ``node_power_w(u_q, f_q, V_q, m_i)``, ``u_q = work_q / (speed_q * dt)``, with ``avail_i =
  backlog_i + demand_i * dt`` (node-seconds at f_max).

Between ``(idle, 0)`` and the lowest P-state the envelope runs straight, as idle injection would
if power were linear in the duty cycle. The LP is a fractional knapsack over the envelope's
segments (variables: power on each segment above the base; rows: the facility, the PDUs and, if
set, the non-Critical scope).

The LP's powers become caps ``P_i + 1 mW`` (so float32 actions never land a hair under a
P-state's power) and then actions. The caps sum within the shield's limits, so the shield leaves
them alone (no intervention) and the budget is never overshot (power <= cap on every node).

Bound, not optimum: the LP is **myopic** (one step, clairvoyant about that step only; serving
more now versus later is not traded off), and it is a **relaxation** of the simulator, which
realises a staircase (the highest P-state whose power fits the cap; idle injection below the
lowest, whose work is convex in power because of the wake floor and ``u^r``, r < 1). A basic LP
optimum has at most one fractional node per binding row, so the gap is a few nodes' partial
P-state steps. The shield's phase-in of announced grid cuts and its thermal P-state ceilings are
not modelled (neither happens in the default scenario).

Failure: if the HiGHS status is not optimal (0), or a copy's bases alone exceed one of its limits
(infeasible), that copy's caps are its **bases**, which the shield then cuts into its emergency
floors as it must.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from scipy import sparse
from scipy.optimize import linprog

from powerrl.baselines.allocation import ENV_ID, LIMIT_RTOL, N_PRIORITIES, caps_to_safe_action
from powerrl.baselines.base import Baseline
from powerrl.control import ControlTarget
from powerrl.errors import ConfigError
from powerrl.model.power import node_power_w, speed
from powerrl.shield.config import resolve_shield_config

#: Added to every LP power before it becomes a cap, W: above the float32 action round trip
#: (|error| <= 2^-24 * (busy - idle) ~ 1e-5 W) and the C kernel's pow() vs NumPy's, far below
#: any P-state step (~7 W).
CAP_EPS_W = 1e-3
#: LP solvers of :class:`AllocationOracle` (``solver`` parameter).
SOLVERS = ("highs", "greedy")
#: Segments shorter than this (W) are dropped from the LP.
MIN_SEGMENT_W = 1e-9


class AllocationOracle(Baseline):
    """Priority-weighted work maximised per step by an LP over the known next step (module docstring).

    Not registered: the ``oracle`` dispatcher (:mod:`powerrl.baselines.oracle`) builds it for
    ClusterBudget-v0. :meth:`bind` must be called after every reset with the unwrapped batched
    vector env (``env.core`` a ClusterBudgetCore, ``env.np_random``) and the core copy of each row.

    Args:
        shield: the shield config (name, path or mapping) whose reserves the caps respect; default
            ``"default"`` (``reserve_frac`` 0.02, no Critical reserve).
        solver: ``"highs"`` (default: ``scipy.optimize.linprog(method="highs")``, ~3 ms for 64
            nodes) or ``"greedy"`` (the same optimum by Edmonds' greedy algorithm, exact because
            the facility and PDU rows are laminar; ~10x faster; HiGHS is used anyway when a
            Critical reserve adds a non-laminar row).
    """

    env_ids = (ENV_ID,)
    clairvoyant = True
    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, shield: Any = "default", solver: str = "highs") -> None:
        super().__init__(action_space, observation_space, target)
        assert target is not None
        if solver not in SOLVERS:
            raise ConfigError("controller.oracle.solver", solver, "one of " + ", ".join(SOLVERS))
        self.solver = solver
        if target.priority is None or target.base_frac is None or target.group is None \
                or target.group_limit_w is None:
            raise ConfigError("controller.oracle.target", target.env_id,
                              "a ClusterBudget-v0 target (powerrl.envs.target.control_target(env))")
        budget_cfg = resolve_shield_config(shield).budget
        self.reserve_frac = float(budget_cfg.reserve_frac)
        self.critical_reserve_frac = float(budget_cfg.critical_reserve_frac)
        self.cfg_budget_w = budget_cfg.budget_w
        self.n = target.n_units
        self.idle_w = np.asarray(target.idle_w, dtype=np.float64)
        self.busy_w = np.asarray(target.busy_w, dtype=np.float64)
        dyn = self.busy_w - self.idle_w
        self.prio = np.asarray(target.priority, dtype=np.int64)
        # The shield's per-node range (powerrl.shield.caps.CapShield): base = idle + base_frac[p] (busy - idle).
        self.base_w = self.idle_w + np.asarray(target.base_frac, dtype=np.float64)[self.prio] * dyn
        max_frac = float(np.asarray(target.extras.get("max_frac", 1.0)))
        self.max_w = np.maximum(self.idle_w + max_frac * dyn, self.base_w)
        self.weight = np.asarray(target.extras.get("priority_weight", 2.0 ** (4 - np.arange(N_PRIORITIES))),
                                 dtype=np.float64)[self.prio]
        self.pdu = np.asarray(target.group, dtype=np.int64)
        self.pdu_limit_w = np.asarray(target.group_limit_w, dtype=np.float64)
        self.n_pdus = len(self.pdu_limit_w)
        self.dt_s = float(target.dt_s)
        self.env: Any = None
        self.copies = np.zeros(0, dtype=np.int64)
        #: HiGHS status of the last solve (0 = optimal), for tests and diagnostics.
        self.last_status = 0

    def bind(self, env: Any, copies: np.ndarray) -> None:
        """Keep the unwrapped vector env and the core copy driven by each batch row."""
        core = getattr(env, "core", None)
        if core is None or not hasattr(core, "chunks"):
            raise TypeError(f"AllocationOracle.bind needs the unwrapped ClusterBudget vector env, got {type(env)}")
        if core.n != self.n:
            raise ValueError(f"the env has {core.n} nodes per copy, the target {self.n}")
        self.env = env
        self.copies = np.asarray(copies, dtype=np.int64).reshape(-1)

    # -- the frontier ----------------------------------------------------------------------------
    def frontier_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Reachable (power W, work node-s) points ``[B, n, 1 + n_pstates]`` of the next step.

        Point 0 is (idle, 0); point ``1 + q`` is P-state ``q`` at the busy fraction the available
        work gives. Prefetches the arrivals (which draws nothing the step would not draw).
        """
        env = self.env
        if env is None:
            raise RuntimeError("AllocationOracle needs bind(env, copies) after every reset")
        core = env.core
        core.prefetch_arrivals(env.np_random)
        demand, mem = core.chunks.peek()
        c = self.copies
        n = self.n
        a = core.arrays
        units = c[:, None] * n + np.arange(n)[None, :]  # [B, n] flat node index
        avail = a.backlog[units] + np.maximum(demand[c], 0.0) * core.cfg.dt_s
        m = mem[c][:, :, None]
        fr = a.freq_ratio[units]  # [B, n, K]
        cap_work = speed(fr, m) * core.cfg.dt_s  # work per step at full busy fraction
        work = np.minimum(avail[:, :, None], cap_work)
        u = np.where(cap_work > 0, work / np.maximum(cap_work, 1e-300), 0.0)
        u = np.where(avail[:, :, None] >= cap_work, 1.0, u)  # as the kernel: saturated is exactly 1
        idle = a.idle_w[units][:, :, None]
        power = node_power_w(u, fr, a.volt_ratio[units], m, idle, a.busy_w[units][:, :, None],
                             a.shape_r[units][:, :, None], a.static_share[units][:, :, None],
                             a.wake_share[units][:, :, None])
        p_pts = np.concatenate((idle, power), axis=2)
        w_pts = np.concatenate((np.zeros_like(idle), work), axis=2)
        return p_pts, w_pts

    # -- the LP ----------------------------------------------------------------------------------
    def solve(self, p_pts: np.ndarray, w_pts: np.ndarray, budget_w: np.ndarray) -> np.ndarray:
        """LP powers per node, W ``[B, n]`` (bases where a copy is infeasible or the solver fails)."""
        b, n, _ = p_pts.shape
        seg = concave_segments(p_pts, w_pts)
        s_lo = np.maximum(seg.p0, self.base_w[None, :, None])
        s_hi = np.minimum(seg.p1, self.max_w[None, :, None])
        length = np.where(seg.valid, s_hi - s_lo, 0.0)
        # Limits less the bases and 2 CAP_EPS_W per node for the margin added to every cap.
        eps = 2.0 * CAP_EPS_W
        fac = budget_w * (1.0 - self.reserve_frac) * (1.0 - LIMIT_RTOL) - self.base_w.sum() - eps * n
        pdu_base = np.bincount(self.pdu, weights=self.base_w + eps, minlength=self.n_pdus)
        pdu_room = self.pdu_limit_w * (1.0 - LIMIT_RTOL) - pdu_base
        rows = [fac[:, None], np.broadcast_to(pdu_room, (b, self.n_pdus))]
        nc = self.critical_reserve_frac > 0
        if nc:
            nc_room = (budget_w * (1.0 - self.reserve_frac - self.critical_reserve_frac) * (1.0 - LIMIT_RTOL)
                       - (self.base_w[self.prio >= 1] + eps).sum())
            rows.append(nc_room[:, None])
        rhs = np.concatenate(rows, axis=1)  # [B, R]: facility, PDUs, (non-Critical)
        feasible = np.all(rhs >= 0.0, axis=1)
        keep = (length > MIN_SEGMENT_W) & feasible[:, None, None]
        bi, ni, _ = np.nonzero(keep)
        powers = np.broadcast_to(self.base_w, (b, n)).copy()
        self.last_status = 0
        if bi.size == 0:
            return powers
        value = self.weight[ni] * seg.slope[keep]  # weighted work per W on each segment
        if self.solver == "greedy" and not nc:
            x: np.ndarray | None = _greedy_laminar(bi, self.pdu[ni], value, length[keep], rhs[:, 0], rhs[:, 1:],
                                                   self.n_pdus)
        else:
            x = self._highs(bi, ni, value, length[keep], rhs)
        if x is None:
            return powers
        powers += np.bincount(bi * n + ni, weights=x, minlength=b * n).reshape(b, n)
        return powers

    def _highs(self, bi: np.ndarray, ni: np.ndarray, value: np.ndarray, length: np.ndarray, rhs: np.ndarray
               ) -> np.ndarray | None:
        """The LP with HiGHS; None (and :attr:`last_status`) when it is not solved to optimality."""
        nv = bi.size
        n_rows = rhs.shape[1]
        cols = np.arange(nv)
        r_idx = [bi * n_rows, bi * n_rows + 1 + self.pdu[ni]]
        c_idx = [cols, cols]
        if n_rows > 1 + self.n_pdus:
            sel = self.prio[ni] >= 1
            r_idx.append(bi[sel] * n_rows + 1 + self.n_pdus)
            c_idx.append(cols[sel])
        ri = np.concatenate(r_idx)
        a_ub = sparse.csr_array((np.ones(ri.size), (ri, np.concatenate(c_idx))), shape=(rhs.size, nv))
        bounds = np.column_stack((np.zeros(nv), length))
        res = linprog(-value, A_ub=a_ub, b_ub=np.maximum(rhs, 0.0).ravel(), bounds=bounds, method="highs")
        self.last_status = int(res.status)
        if res.status != 0 or res.x is None:
            return None
        return np.clip(res.x, 0.0, length)

    def budget_w(self) -> np.ndarray:
        """The next step's facility budget per row, W (the shield's: lowered to a configured budget)."""
        budget = np.asarray(self.env.core.budget_w, dtype=np.float64)[self.copies]
        if self.cfg_budget_w is not None:
            budget = np.minimum(budget, float(self.cfg_budget_w))
        return budget

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Caps from the LP for each bound copy, as ClusterBudget-v0 actions (float32 ``[B, n]``)."""
        b = np.asarray(observations).shape[0]
        if self.copies.size != b:
            raise ValueError(f"{b} observation rows but {self.copies.size} bound copies: call bind(env, copies)")
        p_pts, w_pts = self.frontier_points()
        powers = self.solve(p_pts, w_pts, self.budget_w())
        caps = np.minimum(powers + CAP_EPS_W, self.max_w)
        return caps_to_safe_action(caps, self.idle_w, self.busy_w, self.base_w)


class Segments:
    """Segments of the upper concave envelope, one per starting vertex: arrays ``[B, n, K]``.

    ``p0, w0`` start, ``p1, w1`` end (W, node-seconds), ``slope = (w1 - w0) / (p1 - p0)``,
    ``valid`` where a segment starts at that point.
    """

    def __init__(self, p0: np.ndarray, w0: np.ndarray, p1: np.ndarray, w1: np.ndarray, valid: np.ndarray) -> None:
        self.p0, self.w0, self.p1, self.w1, self.valid = p0, w0, p1, w1, valid
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slope = np.where(valid, (w1 - w0) / np.where(valid, p1 - p0, 1.0), 0.0)


def concave_segments(p: np.ndarray, w: np.ndarray) -> Segments:
    """Upper concave envelope of point sets ``(p, w)`` ``[..., K]``, as segments with positive slope.

    Points are sorted by power (ties: most work first); points not on the Pareto front (no more
    work than a cheaper point) are dropped, so the envelope only rises. A remaining point ``j`` is
    a vertex when every slope into it from the left is larger than every slope out of it to the
    right (collinear points are dropped). Vectorised over the leading axes; O(K^2) per set.
    """
    order = np.lexsort((-w, p), axis=-1)
    p = np.take_along_axis(p, order, axis=-1)
    w = np.take_along_axis(w, order, axis=-1)
    k = p.shape[-1]
    prev_max = np.concatenate((np.full(w.shape[:-1] + (1,), -np.inf), np.maximum.accumulate(w, axis=-1)[..., :-1]),
                              axis=-1)
    pareto = w > prev_max + 1e-15 * np.maximum(1.0, np.abs(w))
    dp = p[..., None, :] - p[..., :, None]  # [.., i, j] = p_j - p_i
    dw = w[..., None, :] - w[..., :, None]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # i < j
    pair = upper & pareto[..., :, None] & pareto[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(pair, dw / np.where(pair, dp, 1.0), np.nan)
    into = np.min(np.where(pair, slope, np.inf), axis=-2)  # min over i < j of slope(i, j)
    out = np.max(np.where(pair, slope, -np.inf), axis=-1)  # max over l > j of slope(j, l)
    vertex = pareto & (into > out * (1.0 + 1e-12) + 1e-300)
    # Next vertex to the right of each point (k = none).
    idx = np.where(vertex, np.arange(k), k)
    nxt = np.minimum.accumulate(idx[..., ::-1], axis=-1)[..., ::-1]
    nxt = np.concatenate((nxt[..., 1:], np.full(nxt.shape[:-1] + (1,), k)), axis=-1)
    valid = vertex & (nxt < k)
    nxt_c = np.minimum(nxt, k - 1)
    p1 = np.take_along_axis(p, nxt_c, axis=-1)
    w1 = np.take_along_axis(w, nxt_c, axis=-1)
    return Segments(p, w, p1, w1, valid)


def _greedy_laminar(row: np.ndarray, pdu: np.ndarray, value: np.ndarray, length: np.ndarray,
                    fac_room: np.ndarray, pdu_room: np.ndarray, n_pdus: int) -> np.ndarray:
    """Exact LP solution when the rows are laminar (facility over PDUs): fill segments by value.

    Each row's constraints are the facility and its PDUs, a laminar family with unit
    coefficients, so the feasible set is a polymatroid and filling segments in decreasing order
    of value, each as far as its PDU and the facility allow, is optimal (Edmonds' greedy
    algorithm). Vectorised: a segment's PDU-limited fill is its length clipped by what its PDU's
    more valuable segments left; the facility then takes the PDU-limited fills in value order
    until it is full (segments after that point get nothing).

    Args:
        row: batch row (copy) of each segment.
        pdu: PDU of each segment's node.
        value: objective per W of each segment (> 0).
        length: segment length, W.
        fac_room: ``[B]`` facility room above the bases, W (>= 0).
        pdu_room: ``[B, n_pdus]`` PDU rooms above the bases, W (>= 0).
        n_pdus: number of PDUs.

    Returns:
        Power on each segment, W.
    """
    order = np.lexsort((-value, pdu, row))
    key = (row * n_pdus + pdu)[order]
    fill = np.empty_like(length)
    fill[order] = _fill_in_groups(key, length[order], pdu_room.ravel()[key])
    order = np.lexsort((-value, row))
    r = row[order]
    out = np.empty_like(length)
    out[order] = _fill_in_groups(r, fill[order], fac_room[r])
    return out


def _fill_in_groups(key: np.ndarray, want: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Fill segments in the given order within each run of equal ``key``, up to the run's ``room``.

    ``key`` is sorted into runs (one per group); a segment gets ``min(want, room - what the run's
    earlier segments took)``, clipped at 0: an exclusive cumulative sum restarted at every run.
    """
    cum = np.cumsum(want)
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[first, key.size])
    before = cum - want - np.repeat((cum - want)[first], size)
    return np.clip(room - before, 0.0, want)


def envelope_work(seg: Segments, power_w: np.ndarray) -> np.ndarray:
    """Work on the concave envelope at ``power_w`` (``[B, n]``), node-seconds: the LP's prediction.

    The envelope starts at (idle, 0) (the cheapest reachable point) and rises along the segments.
    """
    span = np.where(seg.valid, seg.p1 - seg.p0, 0.0)
    part = np.clip(power_w[..., None] - seg.p0, 0.0, span)
    return (seg.slope * part).sum(axis=-1)
