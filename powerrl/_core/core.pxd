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

cdef extern from "node_dvfs_env.h" nogil:
    int PR_DVFS_FIELDS
    int PR_DVFS_INFO

    ctypedef struct pr_dvfs_env:
        int64_t n_copies
        int32_t k
        int32_t n_pstates
        int64_t chunk_len
        double dt_s
        double busy_w_server
        double w_energy
        double w_sla
        double max_offered
        double max_power_w
        double max_backlog_s
        double max_temp_c

    void pr_dvfs_load_inputs(const pr_dvfs_env *e, const int64_t *actions, const double *chunk_demand,
                             const double *chunk_mem, const int64_t *pos, int32_t *pstate, double *demand,
                             double *mem_bound)
    void pr_dvfs_write_obs(const pr_dvfs_env *e, const pr_node_params *p, const pr_node_state *st,
                           const pr_node_inputs *inp, const pr_node_outputs *out, const double *start_s,
                           const int64_t *step_count, float *obs)
    void pr_dvfs_reward_info(const pr_dvfs_env *e, const pr_node_state *st, const pr_node_outputs *out,
                             double *reward, double *info)
