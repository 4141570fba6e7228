"""Fill the C kernel's buffers from server profiles and workload classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from powerrl._core._reference import ReferenceKernel
from powerrl._core.arrays import NodeArrays
from powerrl._core.sim import NodeKernel
from powerrl.envs import sources
from powerrl.model.profiles import get_profile


def build_fleet(profile_name: str, n_units: int, units_per_server: int, classes: list[str] | np.ndarray,
                dt_s: float, inlet_c: float, backend: str = "c") -> tuple[NodeArrays, Any, np.ndarray]:
    """Allocate and fill ``n_units`` kernel units (servers or frequency domains of servers).

    A server with ``units_per_server`` frequency domains is modelled as that many units, each with
    ``1/units_per_server`` of the server's idle and busy power and ``units_per_server`` times its
    thermal resistances (so each unit's temperature equals the whole package's).

    Args:
        profile_name: shipped profile name or profile YAML path.
        n_units: total units in the batch.
        units_per_server: frequency domains per server (1 for whole-server units).
        classes: workload class name per unit (length ``n_units``).
        dt_s: step length (s), used to precompute the thermal smoothing factors.
        inlet_c: initial inlet, heatsink and die temperature (degC).
        backend: ``"c"`` for the C kernel, ``"numpy"`` for its NumPy twin (equivalence tests).

    Returns:
        ``(arrays, kernel, mem_bound_base)`` where ``mem_bound_base`` is each unit's class
        memory-boundedness (the env adds the trace's variation around it).
    """
    prof = get_profile(profile_name)
    freqs = np.asarray(prof.pstates_mhz, dtype=np.float64)
    volts = np.asarray(prof.volt_ratio, dtype=np.float64)
    a = NodeArrays.allocate(n_units, len(freqs))
    div = float(units_per_server)
    a.idle_w[:] = prof.idle_w / div
    a.busy_w[:] = prof.busy_w / div
    a.shape_r[:] = prof.shape_r
    a.wake_share[:] = prof.wake_share
    a.static_share[:] = prof.static_share
    a.freq_ratio[:] = freqs / freqs[-1]
    a.volt_ratio[:] = volts
    a.r_die_c_per_w[:] = prof.r_die_c_per_w * div
    a.r_sink_c_per_w[:] = prof.r_sink_c_per_w * div
    a.set_dt(dt_s, np.full(n_units, prof.tau_die_s), np.full(n_units, prof.tau_sink_s))
    mem_base = np.zeros(n_units)
    for name in sorted(set(classes)):
        cp = sources.class_params(name)
        sel = np.asarray(classes) == name
        a.service_ms[sel] = cp.service_ms
        a.sla_ms[sel] = cp.sla_ms
        mem_base[sel] = cp.mem_bound
    a.temp_die_c[:] = inlet_c
    a.temp_sink_c[:] = inlet_c
    a.inlet_c[:] = inlet_c
    a.pstate[:] = len(freqs) - 1
    if backend not in ("c", "numpy"):
        raise ValueError(f"backend = {backend!r}: use 'c' or 'numpy'")
    return a, (NodeKernel(a) if backend == "c" else ReferenceKernel(a)), mem_base


def pstate_array(x: np.ndarray, shape: tuple[int, int], n_pstates: int, name: str) -> np.ndarray:
    """Integer P-state indices of ``shape`` from ``x``, clipped to ``[0, n_pstates - 1]``."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer) or arr.size != shape[0] * shape[1]:
        raise ValueError(f"{name} must be integer P-state indices of shape (n_copies, n_nodes) = {shape}, "
                         f"got {arr.dtype} of shape {arr.shape}")
    return np.clip(arr.reshape(shape), 0, n_pstates - 1)
