# cython: language_level=3
"""Thin Cython wrapper of ``node_step.h``: binds NumPy buffers once, steps N nodes in one C call."""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from powerrl._core.core cimport (pr_node_inputs, pr_node_outputs, pr_node_params, pr_node_state,
                                 pr_nodes_step)

cnp.import_array()


cdef inline double *_f64(object arr):
    return <double *> cnp.PyArray_DATA(<cnp.ndarray> arr)


cdef class NodeKernel:
    """Steps every node of a :class:`powerrl._core.arrays.NodeArrays` in place, without the GIL.

    The kernel keeps a reference to ``arrays`` and raw pointers into its buffers: write inputs in
    place (``arrays.demand[:] = x``); rebinding an attribute would leave the kernel on the old buffer.
    """

    cdef pr_node_params p
    cdef pr_node_state st
    cdef pr_node_inputs inp
    cdef pr_node_outputs out
    cdef int64_t n
    cdef readonly object arrays

    def __init__(self, arrays):
        arrays.check()
        self.arrays = arrays
        self.n = arrays.n_nodes
        self.p.idle_w = _f64(arrays.idle_w)
        self.p.busy_w = _f64(arrays.busy_w)
        self.p.shape_r = _f64(arrays.shape_r)
        self.p.wake_share = _f64(arrays.wake_share)
        self.p.static_share = _f64(arrays.static_share)
        self.p.freq_ratio = _f64(arrays.freq_ratio)
        self.p.volt_ratio = _f64(arrays.volt_ratio)
        self.p.r_die_c_per_w = _f64(arrays.r_die_c_per_w)
        self.p.r_sink_c_per_w = _f64(arrays.r_sink_c_per_w)
        self.p.alpha_die = _f64(arrays.alpha_die)
        self.p.alpha_sink = _f64(arrays.alpha_sink)
        self.p.alpha_load = _f64(arrays.alpha_load)
        self.p.service_ms = _f64(arrays.service_ms)
        self.p.sla_ms = _f64(arrays.sla_ms)
        self.p.n_pstates = arrays.n_pstates
        self.st.backlog = _f64(arrays.backlog)
        self.st.load_avg = _f64(arrays.load_avg)
        self.st.temp_die_c = _f64(arrays.temp_die_c)
        self.st.temp_sink_c = _f64(arrays.temp_sink_c)
        self.st.energy_j = _f64(arrays.energy_j)
        self.st.work_done = _f64(arrays.work_done)
        self.inp.pstate = <int32_t *> cnp.PyArray_DATA(<cnp.ndarray> arrays.pstate)
        self.inp.cap_w = _f64(arrays.cap_w)
        self.inp.demand = _f64(arrays.demand)
        self.inp.mem_bound = _f64(arrays.mem_bound)
        self.inp.inlet_c = _f64(arrays.inlet_c)
        self.out.power_w = _f64(arrays.power_w)
        self.out.util = _f64(arrays.util)
        self.out.served = _f64(arrays.served)
        self.out.freq_ratio = _f64(arrays.freq_ratio_applied)
        self.out.latency_ms = _f64(arrays.latency_ms)
        self.out.pstate_applied = <int32_t *> cnp.PyArray_DATA(<cnp.ndarray> arrays.pstate_applied)
        self.out.sla_violation = <uint8_t *> cnp.PyArray_DATA(<cnp.ndarray> arrays.sla_violation)
        self.out.throttled = <uint8_t *> cnp.PyArray_DATA(<cnp.ndarray> arrays.throttled)

    def step(self, double dt_s, int n_steps=1):
        """Advance every node by ``n_steps`` steps of ``dt_s`` seconds with the current inputs."""
        cdef int i
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0 s, got {dt_s}")
        with nogil:
            for i in range(n_steps):
                pr_nodes_step(&self.p, &self.st, &self.inp, &self.out, self.n, dt_s)
