# cython: language_level=3
"""Thin Cython wrapper of ``shield_units.h``: binds the NumPy buffers once, filters N units per call."""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from powerrl._core.shield cimport (pr_shield_inputs, pr_shield_outputs, pr_shield_params, pr_shield_state,
                                   pr_shield_units)

cnp.import_array()


cdef inline void *_ptr(object b, str name, object dtype, tuple shape) except NULL:
    arr = getattr(b, name)
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape or not arr.flags.c_contiguous:
        raise ValueError(f"ShieldBuffers.{name} must be a C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{shape}, got {getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
    return cnp.PyArray_DATA(<cnp.ndarray> arr)


cdef class ShieldUnitsKernel:
    """Runs the unit filter over a :class:`powerrl._core.shield_buffers.ShieldBuffers` in place.

    Keeps raw pointers into the buffers: write inputs in place (``b.temp_c[:] = x``), never rebind.
    """

    cdef pr_shield_params p
    cdef pr_shield_state st
    cdef pr_shield_inputs inp
    cdef pr_shield_outputs out
    cdef int64_t n
    cdef readonly object buffers

    def __init__(self, b):
        cdef int64_t n = b.n_units
        cdef int k = b.n_pstates
        cdef int t = b.trip_c.shape[0]
        self.buffers = b
        self.n = n
        self.p.n_trips = t
        self.p.trip_c = <const double *> _ptr(b, "trip_c", np.float64, (t,))
        self.p.hyst_c = <const double *> _ptr(b, "hyst_c", np.float64, (t,))
        self.p.trip_type = <const int32_t *> _ptr(b, "trip_type", np.int32, (t,))
        self.p.n_pstates = k
        self.p.floor_pstate = b.floor_pstate
        self.p.max_step_up = b.max_step_up
        self.p.max_step_down = b.max_step_down
        self.p.predict_limit_c = b.predict_limit_c
        self.p.cap_limit_c = b.cap_limit_c
        self.p.full_power_w = <const double *> _ptr(b, "full_power_w", np.float64, (n, k))
        self.p.max_power_w = <const double *> _ptr(b, "max_power_w", np.float64, (n,))
        self.p.r_die_c_per_w = <const double *> _ptr(b, "r_die_c_per_w", np.float64, (n,))
        self.p.r_sink_c_per_w = <const double *> _ptr(b, "r_sink_c_per_w", np.float64, (n,))
        self.p.sink_decay = <const double *> _ptr(b, "sink_decay", np.float64, (n,))
        self.p.cap_decay = <const double *> _ptr(b, "cap_decay", np.float64, (n,))
        self.st.trip_on = <uint8_t *> _ptr(b, "trip_on", np.uint8, (n, t))
        self.st.ceiling = <int32_t *> _ptr(b, "ceiling", np.int32, (n,))
        self.st.last_applied = <int32_t *> _ptr(b, "last_applied", np.int32, (n,))
        self.st.last_temp_c = <double *> _ptr(b, "last_temp_c", np.float64, (n,))
        self.inp.proposed = <const int32_t *> _ptr(b, "proposed", np.int32, (n,))
        self.inp.temp_c = <const double *> _ptr(b, "temp_c", np.float64, (n,))
        self.inp.power_w = <const double *> _ptr(b, "power_w", np.float64, (n,))
        self.inp.inlet_c = <const double *> _ptr(b, "inlet_c", np.float64, (n,))
        self.inp.inlet_rise_c = <const double *> _ptr(b, "inlet_rise_c", np.float64, (n,))
        self.inp.emergency = <const uint8_t *> _ptr(b, "emergency", np.uint8, (n,))
        self.out.applied = <int32_t *> _ptr(b, "applied", np.int32, (n,))
        self.out.events = <uint32_t *> _ptr(b, "events", np.uint32, (n,))
        self.out.offline = <uint8_t *> _ptr(b, "offline", np.uint8, (n,))
        self.out.cap_w = <double *> _ptr(b, "cap_w", np.float64, (n,))

    def run(self, bint commit=True):
        """Filter every unit's proposal into ``applied``/``events``/``offline``; ``commit`` updates the state."""
        with nogil:
            pr_shield_units(&self.p, &self.st, &self.inp, &self.out, self.n, commit)
