# C declarations of the thermal shield's unit filter, made once here and cimported by shield.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t


cdef extern from "shield_units.h" nogil:
    ctypedef struct pr_shield_params:
        int32_t n_trips
        const double *trip_c
        const double *hyst_c
        const int32_t *trip_type
        int32_t n_pstates
        int32_t floor_pstate
        int32_t max_step_up
        int32_t max_step_down
        double predict_limit_c
        double cap_limit_c
        const double *full_power_w
        const double *max_power_w
        const double *r_die_c_per_w
        const double *r_sink_c_per_w
        const double *sink_decay
        const double *cap_decay

    ctypedef struct pr_shield_state:
        uint8_t *trip_on
        int32_t *ceiling
        int32_t *last_applied
        double *last_temp_c

    ctypedef struct pr_shield_inputs:
        const int32_t *proposed
        const double *temp_c
        const double *power_w
        const double *inlet_c
        const double *inlet_rise_c
        const uint8_t *emergency

    ctypedef struct pr_shield_outputs:
        int32_t *applied
        uint32_t *events
        uint8_t *offline
        double *cap_w

    void pr_shield_units(const pr_shield_params *p, pr_shield_state *st, const pr_shield_inputs *inp,
                         pr_shield_outputs *out, int64_t n, int commit)
