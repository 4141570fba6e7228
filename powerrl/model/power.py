"""Node power and speed as functions of load, frequency and memory-boundedness (docs/model.md).

Pure, vectorised NumPy (float64) twins of the formulas the C kernel (``powerrl/_core/node_step.h``)
implements::

    P(u, f, m) = P_idle + (P_busy - P_idle) * (w * awake(u) + (1 - w) * u^r * h(f, m))
    awake(u)   = 1 if u > 0 else 0
    h(f, m)    = 1 - (1 - s) * (1 - m) * (1 - fr * vr^2)
    speed(f,m) = 1 / ((1 - m) / fr + m)
    vr(fr)     = v0 + (1 - v0) * fr

``w`` (``wake_share``) is the share of the loaded-minus-idle power drawn as soon as the node runs any
work at all: the package leaves its deep idle states (SPECpower "active idle" sits well below what the
loaded levels extrapolate to). ``r`` (``shape_r``) bends the rest of the curve: ``r < 1`` concave
(2007-era servers), ``r > 1`` convex (servers whose governor lowers the frequency at light load).
At ``f = f_max`` the curve is ``g(u) = w * awake(u) + (1 - w) * u^r`` (:func:`load_curve`); it is
what ``powerrl calibrate`` fits to SPECpower results. The derivation of the constants below from the
measured EPYC 7502 data is in :mod:`powerrl.model.profiles` (``derive_frequency_model``) and
docs/calibration.md; ``tests/model/test_profiles.py`` checks that they agree.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: Intercept ``v0`` of the linear voltage-frequency relation ``V(f)/V(f_max) = v0 + (1 - v0) f/f_max``.
#: Least-squares fit to the measured full-system power of the compute kernel on a 2-socket EPYC 7502
#: at 1.5 / 2.2 / 2.5 GHz, 128 threads, C2 allowed (Schöne et al., IEEE Cluster 2021; data file
#: ``powerrl/data/pstates/epyc7502_2s_power_vs_freq_threads_summary.csv``) with ``STATIC_SHARE = 0``:
#: 0.572. The RAPL core-domain power ratios of the same runs (core power ~ f V^2) give 0.55
#: independently, which supports the value.
VF_INTERCEPT = 0.58

#: Share of the load-proportional power (above the wake floor) that does not scale with f and V.
#: From the same EPYC 7502 runs: going from 4 to 128 busy threads at 2.5 GHz adds 129.7 W at the wall
#: but 143.9 W in the RAPL core domain, and package-minus-core power stays at ~111 W: all of the
#: load-proportional power is core (CMOS dynamic) power, so s = max(0, 1 - 143.9/129.7) = 0. Uncore,
#: memory and fan power are in the wake floor and in ``idle_w``.
STATIC_SHARE = 0.0

#: Memory-boundedness ``m`` in [0, 1] of each workload class (the fraction of run time that does not
#: shrink with core frequency; see :func:`speed`).
CLASS_MEM_BOUND: dict[str, float] = {
    # The EPYC 7502 'compute' kernel is the m = 0 reference the V-f relation is fitted to.
    "compute": 0.0,
    # Fitted to the EPYC 7502 'memory_copy' kernel at 128 threads, C2 allowed: full-system power
    # ratios P(1.5)/P(2.5) = 0.921 and P(2.2)/P(2.5) = 0.965 are reproduced (to 0.2 % and 0.7 %)
    # with m = 0.69 (least squares, see profiles.derive_frequency_model).
    "memory": 0.69,
    # Request serving stalls cores often on cache misses and prefers memory latency over bandwidth
    # (Kanev et al., "Profiling a warehouse-scale computer", ISCA 2015, measured on 20,000 Google
    # machines) but also computes in bursts: a judgement value between compute and memory-copy.
    "interactive": 0.4,
    # Throughput batch work (analytics, builds, transcoding) is mostly compute with some streaming
    # phases: a judgement value closer to the compute kernel.
    "batch": 0.2,
    # No work runs (u = 0), so m changes neither power nor throughput; 0 keeps h well defined.
    "idle": 0.0,
}


def _f64(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def awake(u: ArrayLike) -> FloatArray:
    """1.0 where the node does any work (``u > 0``), else 0.0.

    Args:
        u: busy fraction in [0, 1].
    """
    return (_f64(u) > 0.0).astype(np.float64)


def load_curve(u: ArrayLike, shape_r: ArrayLike, wake_share: ArrayLike) -> FloatArray:
    """Load curve at ``f_max``: ``g(u) = w * awake(u) + (1 - w) * u^r``; ``g(0) = 0``, ``g(1) = 1``.

    Args:
        u: busy fraction in [0, 1] (SPECpower: achieved fraction of maximum throughput).
        shape_r: exponent ``r`` > 0 of the load-proportional part.
        wake_share: share ``w`` in [0, 1) of ``busy_w - idle_w`` drawn at any nonzero load.

    Returns:
        Share of ``busy_w - idle_w`` drawn at load ``u`` and ``f_max``, non-decreasing in ``u``.
    """
    u_ = _f64(u)
    w = _f64(wake_share)
    return w * awake(u_) + (1.0 - w) * np.power(u_, _f64(shape_r))


def volt_ratio(freq_ratio: ArrayLike, intercept: float = VF_INTERCEPT) -> FloatArray:
    """Core voltage relative to the voltage at ``f_max``: ``v0 + (1 - v0) * f/f_max``.

    Args:
        freq_ratio: ``f / f_max`` in (0, 1].
        intercept: ``v0``, the extrapolated voltage ratio at zero frequency (default
            :data:`VF_INTERCEPT`, derived from EPYC 7502 measurements).
    """
    return intercept + (1.0 - intercept) * _f64(freq_ratio)


def freq_factor(freq_ratio: ArrayLike, volt_ratio: ArrayLike, mem_bound: ArrayLike,
                static_share: ArrayLike) -> FloatArray:
    """Share of the load-proportional power left at a lower P-state: ``h = 1 - (1-s)(1-m)(1 - fr vr^2)``.

    Args:
        freq_ratio: ``fr = f / f_max`` in (0, 1].
        volt_ratio: ``vr = V(f) / V(f_max)`` in (0, 1].
        mem_bound: workload memory-boundedness ``m`` in [0, 1]; stalled cores burn less
            frequency-dependent power.
        static_share: ``s`` in [0, 1], share not scaling with f and V.

    Returns:
        ``h`` in (0, 1]; 1 at ``f_max``.
    """
    fr, vr = _f64(freq_ratio), _f64(volt_ratio)
    return 1.0 - (1.0 - _f64(static_share)) * (1.0 - _f64(mem_bound)) * (1.0 - fr * vr * vr)


def node_power_w(u: ArrayLike, freq_ratio: ArrayLike, volt_ratio: ArrayLike, mem_bound: ArrayLike,
                 idle_w: ArrayLike, busy_w: ArrayLike, shape_r: ArrayLike, static_share: ArrayLike,
                 wake_share: ArrayLike) -> FloatArray:
    """Average wall power of a node (W): ``idle + (busy - idle) * (w awake(u) + (1-w) u^r h)``.

    Args:
        u: busy fraction in [0, 1] at the current frequency.
        freq_ratio: ``f / f_max`` in (0, 1].
        volt_ratio: ``V(f) / V(f_max)`` in (0, 1].
        mem_bound: workload memory-boundedness in [0, 1].
        idle_w: active-idle power (W).
        busy_w: power at ``u = 1`` and ``f_max`` (W).
        shape_r: load-curve exponent ``r`` > 0.
        static_share: share of the load-proportional power not scaling with f and V, [0, 1].
        wake_share: share of ``busy_w - idle_w`` drawn at any nonzero load, [0, 1).

    Returns:
        Power in W, broadcast over the inputs; ``idle_w`` at ``u = 0``, ``busy_w`` at ``u = 1, f_max``.
    """
    w = _f64(wake_share)
    h = freq_factor(freq_ratio, volt_ratio, mem_bound, static_share)
    share = w * awake(u) + (1.0 - w) * np.power(_f64(u), _f64(shape_r)) * h
    idle = _f64(idle_w)
    return idle + (_f64(busy_w) - idle) * share


def speed(freq_ratio: ArrayLike, mem_bound: ArrayLike) -> FloatArray:
    """Throughput relative to ``f_max``: run time = CPU part * f_max/f + memory part.

    Args:
        freq_ratio: ``f / f_max`` in (0, 1].
        mem_bound: memory-boundedness ``m`` in [0, 1] (the part of run time not shrinking with f).

    Returns:
        ``1 / ((1 - m) / fr + m)`` in (0, 1]; 1 at ``f_max`` or for ``m = 1``.
    """
    m = _f64(mem_bound)
    return 1.0 / ((1.0 - m) / _f64(freq_ratio) + m)
