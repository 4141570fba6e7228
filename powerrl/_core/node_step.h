/*
 * node_step.h -- one simulation step of N server nodes (or frequency domains), batched.
 *
 * All buffers are owned by NumPy and passed in as structs of pointers (structure of arrays).
 * The step allocates nothing, calls no Python and keeps no global state, so the same header is
 * built standalone under ASan/UBSan (tests/c/test_node_step.c). The equations, with their
 * sources, are in docs/model.md; powerrl/_core/_reference.py is the NumPy twin of this file.
 *
 * Units: power W, energy J, temperature degC, time s, latency ms, work in node-seconds of
 * work at f_max ("demand" is offered work per second, i.e. a fraction of one node at f_max).
 */
#ifndef POWERRL_NODE_STEP_H
#define POWERRL_NODE_STEP_H

#include <math.h>
#include <stdint.h>

/* ln(100): p99 of an exponential sojourn time is ln(100) x its mean (M/M/1, Kleinrock 1975, 3.2). */
#define PR_LN100 4.605170185988092
/* Utilisation ceiling of the queueing term: keeps p99 finite when offered load reaches capacity;
 * the backlog term then carries the overload. */
#define PR_RHO_MAX 0.99
/* Latency reported when a node serves nothing at all (duty cycle 0): 1000 s, always an SLA miss. */
#define PR_LATENCY_STALLED_MS 1.0e6

typedef struct {
    const double *idle_w;          /* [n] active-idle power */
    const double *busy_w;          /* [n] power at u = 1, f = f_max, SPECpower workload */
    const double *shape_r;         /* [n] exponent r of the load-proportional part u^r, > 0 */
    const double *wake_share;      /* [n] share w of (busy - idle) drawn at any u > 0, [0, 1) */
    const double *static_share;    /* [n] share of the load-proportional part not scaling with f, V */
    const double *freq_ratio;      /* [n * n_pstates] f / f_max per P-state, ascending */
    const double *volt_ratio;      /* [n * n_pstates] V(f) / V(f_max) per P-state */
    const double *r_die_c_per_w;   /* [n] die-to-heatsink thermal resistance */
    const double *r_sink_c_per_w;  /* [n] heatsink-to-inlet thermal resistance */
    const double *alpha_die;       /* [n] 1 - exp(-dt / tau_die), precomputed for the env's dt */
    const double *alpha_sink;      /* [n] 1 - exp(-dt / tau_sink) */
    const double *alpha_load;      /* [n] 1 - exp(-dt / tau_load), smoothing of the queueing load */
    const double *service_ms;      /* [n] mean service time of one request at f_max */
    const double *sla_ms;          /* [n] p99 latency objective */
    int32_t n_pstates;
} pr_node_params;

typedef struct {
    double *backlog;               /* [n] queued work, node-seconds at f_max */
    double *load_avg;              /* [n] offered work per second, exponentially averaged */
    double *temp_die_c;            /* [n] */
    double *temp_sink_c;           /* [n] */
    double *energy_j;              /* [n] cumulative */
    double *work_done;             /* [n] cumulative served work, node-seconds at f_max */
} pr_node_state;

typedef struct {
    const int32_t *pstate;         /* [n] requested P-state index, clamped to [0, n_pstates) */
    const double *cap_w;           /* [n] power cap; +inf for none */
    const double *demand;          /* [n] offered work per second this step (>= 0) */
    const double *mem_bound;       /* [n] memory-boundedness m in [0, 1] */
    const double *inlet_c;         /* [n] inlet air temperature */
} pr_node_inputs;

typedef struct {
    double *power_w;               /* [n] average power over the step */
    double *util;                  /* [n] busy fraction at the applied frequency */
    double *served;                /* [n] work served this step, node-seconds at f_max */
    double *freq_ratio;            /* [n] applied f / f_max */
    double *latency_ms;            /* [n] p99 latency estimate */
    int32_t *pstate_applied;       /* [n] P-state actually run (lower than requested under a cap) */
    uint8_t *sla_violation;        /* [n] 1 when p99 > SLA while there is work */
    uint8_t *throttled;            /* [n] 1 when the cap lowered the P-state or the duty cycle */
} pr_node_outputs;

/* Share of (busy - idle) drawn at busy fraction u: a wake floor w as soon as any work runs, plus
 * a load-proportional part u^r scaled by the frequency factor h (docs/model.md). 0 at u = 0, 1 at
 * u = 1 and h = 1, non-decreasing in u. */
static inline double pr_power_share(double u, double r, double w, double h) {
    if (u <= 0.0) return 0.0;
    /* Saturated nodes are common under binding caps; pow(1, r) == 1 exactly, so skip the call. */
    const double ur = u >= 1.0 ? 1.0 : pow(u, r);
    return w + (1.0 - w) * ur * h;
}

/* Share of the loaded-minus-idle power left at frequency ratio fr (docs/model.md). */
static inline double pr_freq_factor(double fr, double vr, double m, double s) {
    return 1.0 - (1.0 - s) * (1.0 - m) * (1.0 - fr * vr * vr);
}

/* Throughput relative to f_max: run time = CPU part * f_max / f + memory part. */
static inline double pr_speed(double fr, double m) {
    return 1.0 / ((1.0 - m) / fr + m);
}

/* Largest u in [0, u_hi] whose power share is at most target (closed form of pr_power_share). */
static inline double pr_invert_power_share(double target, double r, double w, double h, double u_hi) {
    if (target <= w) return 0.0;  /* not even the wake floor fits: stay idle */
    double u = pow((target - w) / ((1.0 - w) * h), 1.0 / r);
    return u < u_hi ? u : u_hi;
}

static inline void pr_nodes_step(const pr_node_params *p, pr_node_state *st,
                                 const pr_node_inputs *in, pr_node_outputs *out,
                                 int64_t n, double dt_s) {
    const int32_t k = p->n_pstates;
    for (int64_t i = 0; i < n; ++i) {
        const double idle = p->idle_w[i];
        const double dyn = p->busy_w[i] - idle;
        const double r = p->shape_r[i];
        const double w = p->wake_share[i];
        const double s = p->static_share[i];
        const double m = in->mem_bound[i];
        const double cap = in->cap_w[i];
        const double demand = in->demand[i] > 0.0 ? in->demand[i] : 0.0;
        const double avail = st->backlog[i] + demand * dt_s;
        const double *fr_tab = p->freq_ratio + i * (int64_t)k;
        const double *vr_tab = p->volt_ratio + i * (int64_t)k;

        int32_t q = in->pstate[i];
        if (q < 0) q = 0;
        if (q > k - 1) q = k - 1;
        const int32_t requested = q;

        /* Highest P-state at or below the request whose power fits the cap (RAPL-like). */
        double fr, h, spd, capacity, u, power;
        for (;;) {
            fr = fr_tab[q];
            h = pr_freq_factor(fr, vr_tab[q], m, s);
            spd = pr_speed(fr, m);
            capacity = spd * dt_s;
            u = avail >= capacity ? 1.0 : avail / capacity;
            power = idle + dyn * pr_power_share(u, r, w, h);
            if (power <= cap || q == 0) break;
            --q;
        }
        double duty = 1.0;
        uint8_t throttled = q < requested;
        if (power > cap) {
            /* Even the lowest P-state is over the cap: cut the busy fraction (idle injection).
             * Power never drops below idle, so a cap under idle stalls the node at idle. */
            const double u_new = pr_invert_power_share((cap - idle) / dyn, r, w, h, u);
            duty = u > 0.0 ? u_new / u : 1.0;
            u = u_new;
            power = idle + dyn * pr_power_share(u, r, w, h);
            throttled = 1;
        }

        /* Not saturated and not throttled: everything available is served (exactly, so that an
         * empty queue stays exactly empty instead of holding round-off). */
        const double served = (u < 1.0 && duty == 1.0) ? avail : u * capacity;
        double backlog = avail - served;
        if (backlog < 0.0) backlog = 0.0;

        /* Latency: M/M/1 p99 at the effective speed plus the time to drain the backlog. The
         * steady-state formula needs the load over many service times, not one step's Poisson
         * count, so rho uses the averaged load; bursts within it show up in the backlog term. */
        const double load_avg = st->load_avg[i] + (demand - st->load_avg[i]) * p->alpha_load[i];
        st->load_avg[i] = load_avg;
        const double speed_eff = spd * duty;
        double latency;
        if (speed_eff > 1e-12) {
            double rho = load_avg / speed_eff;
            if (rho > PR_RHO_MAX) rho = PR_RHO_MAX;
            latency = PR_LN100 * (p->service_ms[i] / speed_eff) / (1.0 - rho)
                      + 1000.0 * backlog / speed_eff;
        } else {
            latency = PR_LATENCY_STALLED_MS;
        }
        const uint8_t has_work = demand > 0.0 || backlog > 0.0;

        /* Two-stage RC thermal model, exact exponential discretisation (docs/model.md). */
        const double sink_target = in->inlet_c[i] + power * p->r_sink_c_per_w[i];
        const double sink = st->temp_sink_c[i] + (sink_target - st->temp_sink_c[i]) * p->alpha_sink[i];
        const double die_target = sink + power * p->r_die_c_per_w[i];
        st->temp_die_c[i] += (die_target - st->temp_die_c[i]) * p->alpha_die[i];
        st->temp_sink_c[i] = sink;

        st->backlog[i] = backlog;
        st->energy_j[i] += power * dt_s;
        st->work_done[i] += served;

        out->power_w[i] = power;
        out->util[i] = u;
        out->served[i] = served;
        out->freq_ratio[i] = fr;
        out->latency_ms[i] = latency;
        out->pstate_applied[i] = q;
        out->sla_violation[i] = has_work && latency > p->sla_ms[i];
        out->throttled[i] = throttled;
    }
}

#endif /* POWERRL_NODE_STEP_H */
