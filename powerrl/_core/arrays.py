"""The NumPy buffers shared by the C node kernel and its NumPy twin.

:class:`NodeArrays` allocates every buffer of one batch of nodes once; the C kernel
(:class:`powerrl._core.sim.NodeKernel`) binds raw pointers to them at construction and writes into
them in place, so a step allocates nothing. Callers write inputs in place (``arrays.demand[:] = ...``),
never rebind an attribute (``arrays.demand = ...`` would leave the kernel on the old buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

F64 = np.float64
I32 = np.int32
U8 = np.uint8

#: Field name -> (dtype, shape kind) where kind "n" is one per node and "nk" is per node and P-state.
LAYOUT: dict[str, tuple[type, str]] = {
    # parameters
    "idle_w": (F64, "n"), "busy_w": (F64, "n"), "shape_r": (F64, "n"), "wake_share": (F64, "n"),
    "static_share": (F64, "n"),
    "freq_ratio": (F64, "nk"), "volt_ratio": (F64, "nk"),
    "r_die_c_per_w": (F64, "n"), "r_sink_c_per_w": (F64, "n"),
    "alpha_die": (F64, "n"), "alpha_sink": (F64, "n"), "alpha_load": (F64, "n"),
    "service_ms": (F64, "n"), "sla_ms": (F64, "n"),
    # state
    "backlog": (F64, "n"), "load_avg": (F64, "n"), "temp_die_c": (F64, "n"), "temp_sink_c": (F64, "n"),
    "energy_j": (F64, "n"), "work_done": (F64, "n"),
    # inputs
    "pstate": (I32, "n"), "cap_w": (F64, "n"), "demand": (F64, "n"), "mem_bound": (F64, "n"),
    "inlet_c": (F64, "n"),
    # outputs
    "power_w": (F64, "n"), "util": (F64, "n"), "served": (F64, "n"), "freq_ratio_applied": (F64, "n"),
    "latency_ms": (F64, "n"), "pstate_applied": (I32, "n"), "sla_violation": (U8, "n"), "throttled": (U8, "n"),
}

#: Averaging time of the offered load in the queueing (latency) term, s: long against the 1 ms-1 s
#: service times of the workload classes, so the M/M/1 steady state applies, and short against the
#: 5-minute trace interval, so the latency follows the trace.
LOAD_AVG_TAU_S = 10.0

#: The state that starts at zero (the temperatures start at the inlet temperature).
COUNTER_FIELDS = ("backlog", "load_avg", "energy_j", "work_done")


@dataclass(eq=False)
class NodeArrays:
    """Every buffer of a batch of ``n_nodes`` nodes with ``n_pstates`` P-states each (see docs/model.md).

    Parameters: ``idle_w``, ``busy_w`` (W), ``shape_r``, ``wake_share``, ``static_share``,
    ``freq_ratio`` and ``volt_ratio`` (``[n_nodes, n_pstates]``, ascending), ``r_die_c_per_w``,
    ``r_sink_c_per_w`` (degC/W), ``alpha_die``, ``alpha_sink``, ``alpha_load`` (``1 - exp(-dt/tau)``),
    ``service_ms``, ``sla_ms``.
    State: ``backlog`` (node-seconds at f_max), ``load_avg`` (offered work per second, averaged),
    ``temp_die_c``, ``temp_sink_c``, ``energy_j``, ``work_done``.
    Inputs: ``pstate``, ``cap_w`` (W, ``inf`` = none), ``demand`` (node-seconds per second at f_max),
    ``mem_bound`` ([0, 1]), ``inlet_c``.
    Outputs: ``power_w``, ``util``, ``served``, ``freq_ratio_applied``, ``latency_ms`` (p99),
    ``pstate_applied``, ``sla_violation``, ``throttled``.
    """

    n_nodes: int
    n_pstates: int
    idle_w: np.ndarray
    busy_w: np.ndarray
    shape_r: np.ndarray
    wake_share: np.ndarray
    static_share: np.ndarray
    freq_ratio: np.ndarray
    volt_ratio: np.ndarray
    r_die_c_per_w: np.ndarray
    r_sink_c_per_w: np.ndarray
    alpha_die: np.ndarray
    alpha_sink: np.ndarray
    alpha_load: np.ndarray
    service_ms: np.ndarray
    sla_ms: np.ndarray
    backlog: np.ndarray
    load_avg: np.ndarray
    temp_die_c: np.ndarray
    temp_sink_c: np.ndarray
    energy_j: np.ndarray
    work_done: np.ndarray
    pstate: np.ndarray
    cap_w: np.ndarray
    demand: np.ndarray
    mem_bound: np.ndarray
    inlet_c: np.ndarray
    power_w: np.ndarray
    util: np.ndarray
    served: np.ndarray
    freq_ratio_applied: np.ndarray
    latency_ms: np.ndarray
    pstate_applied: np.ndarray
    sla_violation: np.ndarray
    throttled: np.ndarray

    @classmethod
    def allocate(cls, n_nodes: int, n_pstates: int) -> NodeArrays:
        """Zero-filled buffers (caps at +inf, i.e. uncapped); fill the parameters before stepping."""
        if n_nodes < 1 or n_pstates < 1:
            raise ValueError(f"need n_nodes >= 1 and n_pstates >= 1, got {n_nodes} and {n_pstates}")
        bufs: dict[str, np.ndarray] = {}
        for name, (dtype, kind) in LAYOUT.items():
            shape = (n_nodes, n_pstates) if kind == "nk" else (n_nodes,)
            bufs[name] = np.zeros(shape, dtype=dtype)
        bufs["cap_w"][:] = np.inf
        return cls(n_nodes=n_nodes, n_pstates=n_pstates, **bufs)

    def copy(self) -> NodeArrays:
        """Deep copy (independent buffers), e.g. to run the C kernel and its twin side by side."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in LAYOUT:
            kw[name] = kw[name].copy()
        return NodeArrays(**kw)

    def set_dt(self, dt_s: float, tau_die_s: np.ndarray, tau_sink_s: np.ndarray) -> None:
        """Precompute the thermal smoothing factors for step length ``dt_s`` (s)."""
        self.alpha_die[:] = -np.expm1(-dt_s / np.asarray(tau_die_s, dtype=F64))
        self.alpha_sink[:] = -np.expm1(-dt_s / np.asarray(tau_sink_s, dtype=F64))
        self.alpha_load[:] = -np.expm1(-dt_s / LOAD_AVG_TAU_S)

    def reset_units(self, units: np.ndarray, temp_c: float | np.ndarray) -> None:
        """Return ``units`` (indices) to a fresh start.

        Empty queues, zero counters, temperatures at ``temp_c`` (degC), idle power, top P-state
        requested, no cap.
        """
        for name in COUNTER_FIELDS:
            getattr(self, name)[units] = 0.0
        self.temp_die_c[units] = temp_c
        self.temp_sink_c[units] = temp_c
        self.power_w[units] = self.idle_w[units]
        self.util[units] = 0.0
        self.served[units] = 0.0
        self.latency_ms[units] = 0.0
        self.sla_violation[units] = 0
        self.throttled[units] = 0
        self.pstate[units] = self.n_pstates - 1
        self.pstate_applied[units] = self.n_pstates - 1
        self.cap_w[units] = np.inf

    def check(self) -> None:
        """Raise ``ValueError`` if a buffer has the wrong dtype, shape or memory layout."""
        for name, (dtype, kind) in LAYOUT.items():
            arr = getattr(self, name)
            shape = (self.n_nodes, self.n_pstates) if kind == "nk" else (self.n_nodes,)
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape \
                    or not arr.flags.c_contiguous:
                raise ValueError(f"NodeArrays.{name} must be a C-contiguous {np.dtype(dtype).name} array of "
                                 f"shape {shape}, got {getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
