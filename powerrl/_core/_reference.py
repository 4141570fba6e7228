"""NumPy twin of every C kernel in ``powerrl/_core``: the specification the C code must match.

Slow but obviously correct (vectorised over nodes, no loops except the fixed-count bisection),
used by tests that assert agreement with the C kernels on random inputs, and as the baseline of
``benchmarks/sim_kernel.py``. Equations and sources: docs/model.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from powerrl._core.arrays import NodeArrays

LN100 = float(np.log(100.0))  # p99 of an exponential sojourn time (M/M/1) is ln(100) x its mean
RHO_MAX = 0.99
LATENCY_STALLED_MS = 1.0e6


def power_share(u: np.ndarray, shape_r: np.ndarray, wake_share: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Share of (busy - idle) power at busy fraction ``u``: ``w * (u > 0) + (1 - w) * u^r * h``."""
    return np.where(u > 0.0, wake_share, 0.0) + (1.0 - wake_share) * np.power(u, shape_r) * h


def freq_factor(fr: np.ndarray, vr: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """H = 1 - (1 - s)(1 - m)(1 - fr vr^2): share of loaded-minus-idle power left at ``fr``."""
    return 1.0 - (1.0 - s) * (1.0 - m) * (1.0 - fr * vr * vr)


def speed(fr: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Throughput relative to f_max: 1 / ((1 - m) / fr + m)."""
    return 1.0 / ((1.0 - m) / fr + m)


def invert_power_share(target: np.ndarray, shape_r: np.ndarray, wake_share: np.ndarray, h: np.ndarray,
                       u_hi: np.ndarray) -> np.ndarray:
    """Largest u in [0, u_hi] whose power share is at most ``target`` (closed form)."""
    fits = target > wake_share
    base = np.where(fits, (target - wake_share) / ((1.0 - wake_share) * h), 0.0)
    return np.where(fits, np.minimum(np.power(base, 1.0 / shape_r), u_hi), 0.0)


def nodes_step(a: NodeArrays, dt_s: float) -> None:
    """One step of every node in ``a``, in place; the twin of ``pr_nodes_step`` in node_step.h."""
    n, k = a.n_nodes, a.n_pstates
    idx = np.arange(n)
    idle, dyn, r, w, s = a.idle_w, a.busy_w - a.idle_w, a.shape_r, a.wake_share, a.static_share
    m, cap = a.mem_bound, a.cap_w
    demand = np.maximum(a.demand, 0.0)
    avail = a.backlog + demand * dt_s
    requested = np.clip(a.pstate, 0, k - 1).astype(np.int32)

    # Power at every P-state, then the highest one at or below the request that fits the cap.
    fr_all, vr_all = a.freq_ratio, a.volt_ratio
    h_all = freq_factor(fr_all, vr_all, m[:, None], s[:, None])
    spd_all = speed(fr_all, m[:, None])
    cap_all = spd_all * dt_s
    u_all = np.where(avail[:, None] >= cap_all, 1.0, avail[:, None] / cap_all)
    p_all = idle[:, None] + dyn[:, None] * power_share(u_all, r[:, None], w[:, None], h_all)
    levels = np.arange(k)[None, :]
    fits = (p_all <= cap[:, None]) & (levels <= requested[:, None])
    q = np.where(fits.any(axis=1), np.where(fits, levels, -1).max(axis=1), 0).astype(np.int32)

    fr, h, spd = fr_all[idx, q], h_all[idx, q], spd_all[idx, q]
    capacity, u, power = cap_all[idx, q], u_all[idx, q], p_all[idx, q]
    throttled = q < requested
    over = power > cap
    duty = np.ones(n)
    if over.any():
        u_new = invert_power_share((cap - idle) / dyn, r, w, h, u)
        duty = np.where(over, np.where(u > 0.0, u_new / np.where(u > 0.0, u, 1.0), 1.0), 1.0)
        u = np.where(over, u_new, u)
        power = np.where(over, idle + dyn * power_share(u, r, w, h), power)
        throttled = throttled | over

    served = np.where((u < 1.0) & (duty == 1.0), avail, u * capacity)
    backlog = np.maximum(avail - served, 0.0)

    load_avg = a.load_avg + (demand - a.load_avg) * a.alpha_load
    a.load_avg[:] = load_avg
    speed_eff = spd * duty
    moving = speed_eff > 1e-12
    safe_speed = np.where(moving, speed_eff, 1.0)
    rho = np.minimum(load_avg / safe_speed, RHO_MAX)
    latency = np.where(moving, LN100 * (a.service_ms / safe_speed) / (1.0 - rho) + 1000.0 * backlog / safe_speed,
                       LATENCY_STALLED_MS)
    has_work = (demand > 0.0) | (backlog > 0.0)

    sink = a.temp_sink_c + (a.inlet_c + power * a.r_sink_c_per_w - a.temp_sink_c) * a.alpha_sink
    a.temp_die_c += (sink + power * a.r_die_c_per_w - a.temp_die_c) * a.alpha_die
    a.temp_sink_c[:] = sink

    a.backlog[:] = backlog
    a.energy_j += power * dt_s
    a.work_done += served
    a.power_w[:] = power
    a.util[:] = u
    a.served[:] = served
    a.freq_ratio_applied[:] = fr
    a.latency_ms[:] = latency
    a.pstate_applied[:] = q
    a.sla_violation[:] = has_work & (latency > a.sla_ms)
    a.throttled[:] = throttled


class ReferenceKernel:
    """Drop-in NumPy twin of :class:`powerrl._core.sim.NodeKernel` (same constructor and ``step``)."""

    def __init__(self, arrays: NodeArrays) -> None:
        arrays.check()
        self.arrays = arrays
        self.n = arrays.n_nodes

    def step(self, dt_s: float, n_steps: int = 1) -> None:
        """Advance every node by ``n_steps`` steps of ``dt_s`` seconds."""
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0 s, got {dt_s}")
        for _ in range(n_steps):
            nodes_step(self.arrays, dt_s)


class ReferenceDVFSStepper:
    """NumPy twin of :class:`powerrl._core.sim.DVFSStepper` (``node_dvfs_env.h``), same buffers."""

    def __init__(self, kernel: ReferenceKernel, n_copies: int, k: int, chunk_len: int, dt_s: float,
                 busy_w_server: float, w_energy: float, w_sla: float, max_offered: float, max_power_w: float,
                 max_backlog_s: float, max_temp_c: float, actions: np.ndarray, chunk_demand: np.ndarray,
                 chunk_mem: np.ndarray, pos: np.ndarray, start_s: np.ndarray, step_count: np.ndarray,
                 obs: np.ndarray, reward: np.ndarray, info: np.ndarray) -> None:
        self.kernel = kernel
        self.b, self.k, self.chunk_len, self.dt_s = n_copies, k, chunk_len, dt_s
        self.busy_w_server, self.w_energy, self.w_sla = busy_w_server, w_energy, w_sla
        self.max_offered, self.max_power_w = max_offered, max_power_w
        self.max_backlog_s, self.max_temp_c = max_backlog_s, max_temp_c
        self.actions, self.chunk_demand, self.chunk_mem, self.pos = actions, chunk_demand, chunk_mem, pos
        self.start_s, self.step_count, self.obs, self.reward, self.info = start_s, step_count, obs, reward, info

    def step(self) -> None:
        """Advance every copy one step with the actions in the bound buffer."""
        a, b, k = self.kernel.arrays, self.b, self.k
        if np.any((self.pos < 0) | (self.pos >= self.chunk_len)):
            raise IndexError("chunk row outside the chunk; refill first")
        copies = np.arange(b)
        a.pstate[:] = np.clip(self.actions, 0, a.n_pstates - 1).ravel()
        a.demand[:] = self.chunk_demand[self.pos, copies, :].ravel()
        a.mem_bound[:] = self.chunk_mem[self.pos, copies, :].ravel()
        self.kernel.step(self.dt_s)
        self.pos += 1
        self.step_count += 1
        power = a.power_w.reshape(b, k)
        viol = a.sla_violation.reshape(b, k).astype(np.float64)
        viol_rate = viol.sum(axis=1) / k
        self.reward[:] = -self.w_energy * power.sum(axis=1) / self.busy_w_server - self.w_sla * viol_rate
        self.info[:, 0] = power.sum(axis=1) * self.dt_s
        self.info[:, 1] = power.sum(axis=1)
        self.info[:, 2] = (viol.sum(axis=1) > 0).astype(np.float64)
        self.info[:, 3] = viol_rate
        self.info[:, 4] = np.maximum(a.latency_ms.reshape(b, k).max(axis=1), 0.0)
        self.info[:, 5] = a.temp_die_c.reshape(b, k).max(axis=1)
        self.info[:, 6] = a.served.reshape(b, k).sum(axis=1)
        self.observe()

    def observe(self) -> None:
        """Rewrite the observation buffer from the current state."""
        a, b, k = self.kernel.arrays, self.b, self.k
        f = np.empty((b, k, 8))
        f[:, :, 0] = a.util.reshape(b, k)
        f[:, :, 1] = np.clip(a.demand.reshape(b, k), 0.0, self.max_offered)
        f[:, :, 2] = a.mem_bound.reshape(b, k)
        f[:, :, 3] = a.pstate_applied.reshape(b, k) * (1.0 / (a.n_pstates - 1) if a.n_pstates > 1 else 0.0)
        f[:, :, 4] = np.clip(a.temp_die_c.reshape(b, k), 0.0, self.max_temp_c)
        f[:, :, 5] = np.clip(a.power_w.reshape(b, k), 0.0, self.max_power_w)
        f[:, :, 6] = np.clip(1.0 - a.latency_ms.reshape(b, k) / a.sla_ms.reshape(b, k), -1.0, 1.0)
        f[:, :, 7] = np.clip(a.backlog.reshape(b, k), 0.0, self.max_backlog_s)
        self.obs[:, : k * 8] = f.reshape(b, k * 8)
        tod = 2.0 * np.pi * np.fmod(self.start_s + self.step_count * self.dt_s, 86400.0) / 86400.0
        self.obs[:, -2] = np.sin(tod)
        self.obs[:, -1] = np.cos(tod)


# -- the thermal shield's unit filter (shield_units.h) -------------------------------------------
SH_ACTIVE, SH_PASSIVE, SH_HOT, SH_CRITICAL = 1, 2, 4, 8
SH_PREDICTIVE, SH_RATE_LIMIT, SH_OUT_OF_RANGE, SH_SENSOR, SH_THERMAL_CAP = 16, 32, 64, 128, 256


def shield_units_reference(b: Any, commit: bool = True) -> None:
    """NumPy twin of ``pr_shield_units`` over a :class:`powerrl._core.shield_buffers.ShieldBuffers`."""
    top, floor = b.n_pstates - 1, b.floor_pstate
    temp = b.temp_c
    ok = np.isfinite(temp)
    ev = np.where(ok, 0, SH_SENSOR).astype(np.int64)
    with np.errstate(invalid="ignore"):
        fire = ok[:, None] & (temp[:, None] >= b.trip_c[None, :])
        release = ok[:, None] & (temp[:, None] < (b.trip_c - b.hyst_c)[None, :])
        rising = ok & ~(temp < b.last_temp_c)
        falling = ok & ~(temp > b.last_temp_c)
    on = np.where(fire, 1, np.where(release, 0, b.trip_on)).astype(np.uint8)
    typed = [(on.astype(bool) & (b.trip_type == t)[None, :]).any(axis=1) for t in range(4)]
    active, passive_on, hot_on, critical_on = typed
    hot_on = hot_on | ~ok | critical_on
    ev |= np.where(active, SH_ACTIVE, 0)
    ceiling = b.ceiling.astype(np.int64)
    ceiling = np.where(passive_on, np.where(rising & (ceiling > floor), ceiling - 1, ceiling),
                       np.where(falling & (ceiling < top), ceiling + 1, ceiling))
    ceiling = np.where(hot_on & (ceiling > floor), floor, ceiling)

    q = b.proposed.astype(np.int64)
    ev |= np.where((q < 0) | (q > top), SH_OUT_OF_RANGE, 0)
    q = np.clip(q, 0, top)
    prev = b.last_applied.astype(np.int64)
    limited = b.emergency == 0
    if b.max_step_up > 0:
        up = limited & (q > prev + b.max_step_up)
        ev |= np.where(up, SH_RATE_LIMIT, 0)
        q = np.where(up, prev + b.max_step_up, q)
    if b.max_step_down > 0:
        down = limited & (q < prev - b.max_step_down)
        ev |= np.where(down, SH_RATE_LIMIT, 0)
        q = np.where(down, prev - b.max_step_down, q)
    over = q > ceiling
    ev |= np.where(over & ~hot_on, SH_PASSIVE, 0) | np.where(hot_on, SH_HOT, 0) | np.where(critical_on, SH_CRITICAL, 0)
    q = np.minimum(q, ceiling)

    # Power readings fit for the model: NaN, +-inf, negative -> 0 W; above the maximum -> the maximum.
    with np.errstate(invalid="ignore"):
        power = np.where((b.power_w >= 0.0) & ~np.isinf(b.power_w), np.minimum(b.power_w, b.max_power_w), 0.0)
    # Predictive throttle: highest j <= q with j <= floor or a predicted die under the limit.
    pw = b.full_power_w
    inlet = (b.inlet_c + b.inlet_rise_c)[:, None]
    sink_now = (np.where(ok, temp, 0.0) - power * b.r_die_c_per_w)[:, None]
    sink_target = inlet + pw * b.r_sink_c_per_w[:, None]
    die = sink_target + (sink_now - sink_target) * b.sink_decay[:, None] + pw * b.r_die_c_per_w[:, None]
    j = np.arange(b.n_pstates)[None, :]
    allowed = ((j <= floor) | (die < b.predict_limit_c)) & (j <= q[:, None])
    qp = np.where(allowed, j, -1).max(axis=1)
    use = (q > floor) & ok & (b.sink_decay < 1.0) & (qp < q)
    ev |= np.where(use, SH_PREDICTIVE, 0)
    q = np.where(use, qp, q)

    # Thermal power cap: the same prediction solved for the power that stays under cap_limit_c; an
    # unreadable sensor gets the steady state (decay 0).
    decay = np.where(ok, b.cap_decay, 0.0)
    gain = b.r_sink_c_per_w * (1.0 - decay) + b.r_die_c_per_w
    room = b.cap_limit_c - (b.inlet_c + b.inlet_rise_c) * (1.0 - decay) - np.where(ok, sink_now[:, 0], 0.0) * decay
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(decay < 1.0, np.where(room > 0.0, room / gain, 0.0), np.inf)
        capped = safe < b.max_power_w
    ev |= np.where(capped, SH_THERMAL_CAP, 0)

    b.applied[:] = q
    b.cap_w[:] = np.where(capped, safe, np.inf)
    b.events[:] = ev
    b.offline[:] = critical_on
    if commit:
        b.trip_on[:] = on
        b.ceiling[:] = ceiling
        b.last_applied[:] = q
        b.last_temp_c[:] = np.where(ok, temp, b.last_temp_c)
