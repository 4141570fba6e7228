# cython: language_level=3
"""Thin Cython wrapper of ``node_step.h``: binds NumPy buffers once, steps N nodes in one C call."""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from powerrl._core.core cimport (PR_DVFS_FIELDS, PR_DVFS_INFO, pr_dvfs_env, pr_dvfs_load_inputs,
                                 pr_dvfs_reward_info, pr_dvfs_write_obs, pr_node_inputs, pr_node_outputs,
                                 pr_node_params, pr_node_state, pr_nodes_step)

cnp.import_array()


cdef inline double *_f64(object arr):
    return <double *> cnp.PyArray_DATA(<cnp.ndarray> arr)


cdef inline void *_buffer(object arr, object dtype, tuple shape, str name) except NULL:
    """Raw pointer into a C-contiguous NumPy array, after checking its dtype and shape."""
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape or not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}, got "
                         f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
    return cnp.PyArray_DATA(<cnp.ndarray> arr)


DVFS_FIELDS = PR_DVFS_FIELDS
DVFS_INFO = PR_DVFS_INFO


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


cdef class DVFSStepper:
    """Fused NodeDVFS step of ``n_copies`` copies: inputs from chunks, kernel, observation, reward.

    Every buffer is owned by the caller (NumPy) and bound once here:
    ``actions`` int64 ``[n_copies, k]`` (written by the caller before :meth:`step`),
    ``chunk_demand`` and ``chunk_mem`` float64 ``[chunk_len, n_copies, k]`` (exogenous inputs),
    ``pos`` int64 ``[n_copies]`` (row of each copy in its chunk; advanced by :meth:`step`),
    ``start_s`` float64 and ``step_count`` int64 ``[n_copies]`` (clock; ``step_count`` advanced),
    ``obs`` float32 ``[n_copies, 8 k + 2]``, ``reward`` float64 ``[n_copies]``,
    ``info`` float64 ``[n_copies, 7]``. The caller refills a copy's chunk before ``pos`` reaches
    ``chunk_len`` (see ``powerrl.envs.node_dvfs``).
    """

    cdef NodeKernel kernel
    cdef pr_dvfs_env e
    cdef readonly object buffers
    cdef int64_t *actions
    cdef double *chunk_demand
    cdef double *chunk_mem
    cdef int64_t *pos
    cdef double *start_s
    cdef int64_t *step_count
    cdef float *obs
    cdef double *reward
    cdef double *info
    cdef int32_t *in_pstate
    cdef double *in_demand
    cdef double *in_mem

    def __init__(self, NodeKernel kernel, int n_copies, int k, int chunk_len, double dt_s, double busy_w_server,
                 double w_energy, double w_sla, double max_offered, double max_power_w, double max_backlog_s,
                 double max_temp_c, actions, chunk_demand, chunk_mem, pos, start_s, step_count, obs, reward, info):
        if n_copies * k != kernel.n:
            raise ValueError(f"n_copies * k = {n_copies * k} does not match the kernel's {kernel.n} units")
        if not dt_s > 0.0 or not busy_w_server > 0.0:
            raise ValueError(f"dt_s and busy_w_server must be > 0, got {dt_s} and {busy_w_server}")
        self.kernel = kernel
        self.e.n_copies = n_copies
        self.e.k = k
        self.e.n_pstates = kernel.p.n_pstates
        self.e.chunk_len = chunk_len
        self.e.dt_s = dt_s
        self.e.busy_w_server = busy_w_server
        self.e.w_energy = w_energy
        self.e.w_sla = w_sla
        self.e.max_offered = max_offered
        self.e.max_power_w = max_power_w
        self.e.max_backlog_s = max_backlog_s
        self.e.max_temp_c = max_temp_c
        self.buffers = (actions, chunk_demand, chunk_mem, pos, start_s, step_count, obs, reward, info)
        self.actions = <int64_t *> _buffer(actions, np.int64, (n_copies, k), "actions")
        self.chunk_demand = <double *> _buffer(chunk_demand, np.float64, (chunk_len, n_copies, k), "chunk_demand")
        self.chunk_mem = <double *> _buffer(chunk_mem, np.float64, (chunk_len, n_copies, k), "chunk_mem")
        self.pos = <int64_t *> _buffer(pos, np.int64, (n_copies,), "pos")
        self.start_s = <double *> _buffer(start_s, np.float64, (n_copies,), "start_s")
        self.step_count = <int64_t *> _buffer(step_count, np.int64, (n_copies,), "step_count")
        self.obs = <float *> _buffer(obs, np.float32, (n_copies, k * PR_DVFS_FIELDS + 2), "obs")
        self.reward = <double *> _buffer(reward, np.float64, (n_copies,), "reward")
        self.info = <double *> _buffer(info, np.float64, (n_copies, PR_DVFS_INFO), "info")
        arrays = kernel.arrays
        self.in_pstate = <int32_t *> cnp.PyArray_DATA(<cnp.ndarray> arrays.pstate)
        self.in_demand = _f64(arrays.demand)
        self.in_mem = _f64(arrays.mem_bound)

    def step(self):
        """Advance every copy one step with the actions in the bound ``actions`` buffer."""
        cdef int64_t b
        for b in range(self.e.n_copies):
            if self.pos[b] < 0 or self.pos[b] >= self.e.chunk_len:
                raise IndexError(f"copy {b}: chunk row {self.pos[b]} outside [0, {self.e.chunk_len}); refill first")
        with nogil:
            pr_dvfs_load_inputs(&self.e, self.actions, self.chunk_demand, self.chunk_mem, self.pos,
                                self.in_pstate, self.in_demand, self.in_mem)
            pr_nodes_step(&self.kernel.p, &self.kernel.st, &self.kernel.inp, &self.kernel.out, self.kernel.n,
                          self.e.dt_s)
            for b in range(self.e.n_copies):
                self.pos[b] += 1
                self.step_count[b] += 1
            pr_dvfs_reward_info(&self.e, &self.kernel.st, &self.kernel.out, self.reward, self.info)
            pr_dvfs_write_obs(&self.e, &self.kernel.p, &self.kernel.st, &self.kernel.inp, &self.kernel.out,
                              self.start_s, self.step_count, self.obs)

    def observe(self):
        """Rewrite the observation buffer from the current state (after a reset)."""
        with nogil:
            pr_dvfs_write_obs(&self.e, &self.kernel.p, &self.kernel.st, &self.kernel.inp, &self.kernel.out,
                              self.start_s, self.step_count, self.obs)
