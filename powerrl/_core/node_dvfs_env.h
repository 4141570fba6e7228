/*
 * node_dvfs_env.h -- the per-step glue of powerrl/NodeDVFS-v0 around node_step.h, fused so that
 * a step of B copies is one call: load each copy's action and its exogenous inputs (precomputed
 * demand and memory-boundedness chunks), step the nodes, then write observations, rewards and
 * telemetry into NumPy-owned buffers. NumPy twin: powerrl/_core/_reference.py (dvfs_*).
 *
 * Observation per copy: for each of k domains, 8 floats (util, offered load, mem_bound,
 * P-state / (n_pstates - 1), die temperature degC, power W, latency slack, backlog s), then
 * sin and cos of the time of day. Telemetry per copy (PR_DVFS_INFO doubles): energy J, power W,
 * any-domain SLA violation (0/1), share of domains violating, worst p99 ms, hottest die degC,
 * work served (node-seconds at f_max).
 */
#ifndef POWERRL_NODE_DVFS_ENV_H
#define POWERRL_NODE_DVFS_ENV_H

#include <math.h>
#include <stdint.h>
#include "node_step.h"

#define PR_DVFS_FIELDS 8
#define PR_DVFS_INFO 7
#define PR_TWO_PI 6.283185307179586
#define PR_DAY_S 86400.0

typedef struct {
    int64_t n_copies;
    int32_t k;               /* frequency domains per copy */
    int32_t n_pstates;
    int64_t chunk_len;       /* rows of the exogenous chunk buffers */
    double dt_s;
    double busy_w_server;    /* reward normaliser: the server's busy power, W */
    double w_energy, w_sla;  /* reward weights */
    double max_offered, max_power_w, max_backlog_s, max_temp_c;  /* observation clips */
} pr_dvfs_env;

static inline double pr_clip(double x, double lo, double hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Kernel inputs of every unit from the actions and row pos[b] of copy b's chunk.
 * chunk_* are [chunk_len, n_copies, k]; actions, pstate, demand, mem_bound are [n_copies * k]. */
static inline void pr_dvfs_load_inputs(const pr_dvfs_env *e, const int64_t *actions,
                                       const double *chunk_demand, const double *chunk_mem,
                                       const int64_t *pos, int32_t *pstate, double *demand,
                                       double *mem_bound) {
    const int32_t k = e->k;
    for (int64_t b = 0; b < e->n_copies; ++b) {
        const int64_t row = pos[b];
        for (int32_t d = 0; d < k; ++d) {
            const int64_t unit = b * k + d;
            const int64_t src = (row * e->n_copies + b) * k + d;
            int64_t q = actions[unit];
            if (q < 0) q = 0;
            if (q > e->n_pstates - 1) q = e->n_pstates - 1;
            pstate[unit] = (int32_t)q;
            demand[unit] = chunk_demand[src];
            mem_bound[unit] = chunk_mem[src];
        }
    }
}

/* Observation of every copy from the node buffers and its clock (start_s + step_count * dt). */
static inline void pr_dvfs_write_obs(const pr_dvfs_env *e, const pr_node_params *p, const pr_node_state *st,
                                     const pr_node_inputs *in, const pr_node_outputs *out,
                                     const double *start_s, const int64_t *step_count, float *obs) {
    const int32_t k = e->k;
    const int64_t width = (int64_t)k * PR_DVFS_FIELDS + 2;
    const double pstate_norm = e->n_pstates > 1 ? 1.0 / (e->n_pstates - 1) : 0.0;
    for (int64_t b = 0; b < e->n_copies; ++b) {
        float *o = obs + b * width;
        for (int32_t d = 0; d < k; ++d) {
            const int64_t u = b * k + d;
            float *f = o + d * PR_DVFS_FIELDS;
            f[0] = (float)out->util[u];
            f[1] = (float)pr_clip(in->demand[u], 0.0, e->max_offered);
            f[2] = (float)in->mem_bound[u];
            f[3] = (float)(out->pstate_applied[u] * pstate_norm);
            f[4] = (float)pr_clip(st->temp_die_c[u], 0.0, e->max_temp_c);
            f[5] = (float)pr_clip(out->power_w[u], 0.0, e->max_power_w);
            f[6] = (float)pr_clip(1.0 - out->latency_ms[u] / p->sla_ms[u], -1.0, 1.0);
            f[7] = (float)pr_clip(st->backlog[u], 0.0, e->max_backlog_s);
        }
        const double t = start_s[b] + (double)step_count[b] * e->dt_s;
        const double tod = PR_TWO_PI * fmod(t, PR_DAY_S) / PR_DAY_S;
        o[width - 2] = (float)sin(tod);
        o[width - 1] = (float)cos(tod);
    }
}

/* Reward and telemetry of every copy after a kernel step. */
static inline void pr_dvfs_reward_info(const pr_dvfs_env *e, const pr_node_state *st,
                                       const pr_node_outputs *out, double *reward, double *info) {
    const int32_t k = e->k;
    for (int64_t b = 0; b < e->n_copies; ++b) {
        double power = 0.0, work = 0.0, lat = 0.0, temp = -INFINITY;
        int32_t viol = 0;
        for (int32_t d = 0; d < k; ++d) {
            const int64_t u = b * k + d;
            power += out->power_w[u];
            work += out->served[u];
            viol += out->sla_violation[u];
            if (out->latency_ms[u] > lat) lat = out->latency_ms[u];
            if (st->temp_die_c[u] > temp) temp = st->temp_die_c[u];
        }
        const double viol_rate = (double)viol / k;
        reward[b] = -e->w_energy * power / e->busy_w_server - e->w_sla * viol_rate;
        double *inf = info + b * PR_DVFS_INFO;
        inf[0] = power * e->dt_s;
        inf[1] = power;
        inf[2] = viol > 0 ? 1.0 : 0.0;
        inf[3] = viol_rate;
        inf[4] = lat;
        inf[5] = temp;
        inf[6] = work;
    }
}

#endif /* POWERRL_NODE_DVFS_ENV_H */
