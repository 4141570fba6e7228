# C declarations of the simulation kernel, made once here and cimported by the .pyx wrappers.
from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from "node_step.h" nogil:
    ctypedef struct pr_node_params:
        const double *idle_w
        const double *busy_w
        const double *shape_r
        const double *wake_share
        const double *static_share
        const double *freq_ratio
        const double *volt_ratio
        const double *r_die_c_per_w
        const double *r_sink_c_per_w
        const double *alpha_die
        const double *alpha_sink
        const double *alpha_load
        const double *service_ms
        const double *sla_ms
        int32_t n_pstates

    ctypedef struct pr_node_state:
        double *backlog
        double *load_avg
        double *temp_die_c
        double *temp_sink_c
        double *energy_j
        double *work_done

    ctypedef struct pr_node_inputs:
        const int32_t *pstate
        const double *cap_w
        const double *demand
        const double *mem_bound
        const double *inlet_c

    ctypedef struct pr_node_outputs:
        double *power_w
        double *util
        double *served
        double *freq_ratio
        double *latency_ms
        int32_t *pstate_applied
        uint8_t *sla_violation
        uint8_t *throttled

    void pr_nodes_step(const pr_node_params *p, pr_node_state *st, const pr_node_inputs *inp,
                       pr_node_outputs *out, int64_t n, double dt_s)
