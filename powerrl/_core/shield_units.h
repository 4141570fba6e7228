/*
 * shield_units.h -- the thermal shield's per-unit P-state filter, batched over N units.
 *
 * A unit is one thermal zone bound to one P-state actuator (a frequency domain, or a whole node),
 * like a Linux thermal zone bound to a cpufreq cooling device. Every control period the filter
 * turns the P-state a controller proposes into one that respects, in this order:
 *   1. trip points with hysteresis (drivers/thermal/thermal_core.c semantics: a trip fires at
 *      T >= trip and releases below trip - hyst): passive trips move a P-state ceiling one step
 *      per period like gov_step_wise.c; hot forces the unit to its floor P-state; critical also
 *      asks for the unit's work to be taken offline; active asks for more cooling;
 *   2. a predictive throttle: the highest P-state whose worst-case (full-load) power keeps the
 *      modelled die temperature below the lowest passive trip over the horizon;
 *   3. rate limits on the controller's own moves (lifted in emergencies; never on the shield's
 *      own reductions, which act at once);
 *   4. a thermal power cap, the hard guarantee: P-states alone cannot bound the power of
 *      memory-bound work (it barely scales with frequency), so whenever even the unit's maximum
 *      power could take the die over the cap limit (hot trip minus its hysteresis) within the
 *      horizon, the unit gets the largest power cap that keeps it under (RAPL-like).
 * A non-finite temperature reads as a failed sensor: handled as a hot trip, and capped at the power
 * that keeps the die under the limit in steady state. A non-finite or negative power reading counts
 * as 0 W and one above the unit's maximum as the maximum (the conservative direction for both
 * predictions, which estimate the heatsink as die - P R_die).
 *
 * Allocation-free, no Python, no global state; powerrl/_core/_reference.py holds the NumPy twin
 * (shield_units_reference) that tests compare against. Units: degC, W, s.
 */
#ifndef POWERRL_SHIELD_UNITS_H
#define POWERRL_SHIELD_UNITS_H

#include <math.h>
#include <stdint.h>

/* Trip types, as in include/linux/thermal.h (enum thermal_trip_type, without "critical" first). */
#define PR_TRIP_ACTIVE 0
#define PR_TRIP_PASSIVE 1
#define PR_TRIP_HOT 2
#define PR_TRIP_CRITICAL 3

/* Event bits of one unit's decision (powerrl/shield/events.py names them). */
#define PR_SH_ACTIVE (1u << 0)       /* an active trip is engaged: more cooling requested */
#define PR_SH_PASSIVE (1u << 1)      /* the passive (step_wise) ceiling lowered the P-state */
#define PR_SH_HOT (1u << 2)          /* hot trip: forced to the floor P-state, alert */
#define PR_SH_CRITICAL (1u << 3)     /* critical trip: work offline, alert */
#define PR_SH_PREDICTIVE (1u << 4)   /* predicted to cross passive within the horizon: throttled */
#define PR_SH_RATE_LIMIT (1u << 5)   /* the controller's move was larger than the rate limit */
#define PR_SH_OUT_OF_RANGE (1u << 6) /* the proposal was not a valid P-state index */
#define PR_SH_SENSOR (1u << 7)       /* temperature unreadable (NaN): handled as hot */
#define PR_SH_THERMAL_CAP (1u << 8)  /* a power cap keeps the die under the hot trip */

typedef struct {
    int32_t n_trips;
    const double *trip_c;          /* [n_trips] trip temperatures */
    const double *hyst_c;          /* [n_trips] hysteresis, >= 0 */
    const int32_t *trip_type;      /* [n_trips] PR_TRIP_* */
    int32_t n_pstates;
    int32_t floor_pstate;          /* guaranteed floor P-state (hot / critical / sensor failure) */
    int32_t max_step_up;           /* P-states per period the controller may rise; <= 0: no limit */
    int32_t max_step_down;         /* P-states per period the controller may fall; <= 0: no limit */
    double predict_limit_c;        /* die temperature the prediction must stay under (lowest passive) */
    double cap_limit_c;            /* die temperature the thermal cap guarantees (hot - hysteresis) */
    const double *full_power_w;    /* [n * n_pstates] full-load compute-bound unit power per P-state */
    const double *max_power_w;     /* [n] the most power any work can draw (busy power) */
    const double *r_die_c_per_w;   /* [n] */
    const double *r_sink_c_per_w;  /* [n] */
    const double *sink_decay;      /* [n] exp(-horizon / tau_sink); 1 disables the P-state prediction */
    const double *cap_decay;       /* [n] exp(-cap horizon / tau_sink) of the thermal cap (< 1) */
} pr_shield_params;

typedef struct {
    uint8_t *trip_on;              /* [n * n_trips] hysteresis state of each trip */
    int32_t *ceiling;              /* [n] step_wise passive ceiling */
    int32_t *last_applied;         /* [n] P-state applied last period (rate limits) */
    double *last_temp_c;           /* [n] temperature last period (trend) */
} pr_shield_state;

typedef struct {
    const int32_t *proposed;       /* [n] proposed P-state index (any int32) */
    const double *temp_c;          /* [n] zone temperature now, NaN = unreadable */
    const double *power_w;         /* [n] unit power over the last period */
    const double *inlet_c;         /* [n] inlet temperature now */
    const double *inlet_rise_c;    /* [n] inlet increase assumed over the horizon (cooling failure) */
    const uint8_t *emergency;      /* [n] 1 lifts the rate limits */
} pr_shield_inputs;

typedef struct {
    int32_t *applied;              /* [n] P-state to apply */
    uint32_t *events;              /* [n] PR_SH_* bits */
    uint8_t *offline;              /* [n] 1 while a critical trip holds */
    double *cap_w;                 /* [n] thermal power cap, +inf when none is needed */
} pr_shield_outputs;

/* A power reading fit for the model: NaN, +-inf and negative -> 0 W, above the maximum -> the maximum. */
static inline double pr_shield_power(const pr_shield_params *p, int64_t i, double power) {
    if (!(power >= 0.0) || isinf(power)) return 0.0;
    return power < p->max_power_w[i] ? power : p->max_power_w[i];
}

/* Highest P-state q <= q_hi whose worst-case power keeps the die under the limit at the horizon:
 * sink now from the die reading (the die settles in ~1 s, so die - P R_die is the heatsink), the
 * heatsink relaxing toward inlet + P_q R_sink, the die P_q R_die above it (docs/shield.md). */
static inline int32_t pr_shield_predict(const pr_shield_params *p, int64_t i, int32_t q_hi, double temp,
                                        double power, double inlet) {
    const double decay = p->sink_decay[i];
    if (decay >= 1.0 || !isfinite(temp)) return q_hi;
    const double r_die = p->r_die_c_per_w[i];
    const double r_sink = p->r_sink_c_per_w[i];
    const double sink_now = temp - power * r_die;
    const double *pw = p->full_power_w + i * (int64_t)p->n_pstates;
    int32_t q = q_hi;
    for (; q > p->floor_pstate; --q) {
        const double sink_target = inlet + pw[q] * r_sink;
        const double die = sink_target + (sink_now - sink_target) * decay + pw[q] * r_die;
        if (die < p->predict_limit_c) break;
    }
    return q;
}

/* Largest power keeping the die under cap_limit_c at the cap horizon (the same model solved for P:
 * the prediction is linear in P). An unreadable sensor gets the steady-state answer (decay 0). */
static inline double pr_shield_safe_power(const pr_shield_params *p, int64_t i, double temp, double power,
                                          double inlet) {
    const double decay = isfinite(temp) ? p->cap_decay[i] : 0.0;
    if (decay >= 1.0) return INFINITY;
    const double r_die = p->r_die_c_per_w[i];
    const double sink_now = isfinite(temp) ? temp - power * r_die : 0.0;
    const double gain = p->r_sink_c_per_w[i] * (1.0 - decay) + r_die;
    const double room = p->cap_limit_c - inlet * (1.0 - decay) - sink_now * decay;
    return room > 0.0 ? room / gain : 0.0;
}

/* Filter n units. With commit = 0 nothing in st changes (used to compute action masks). */
static inline void pr_shield_units(const pr_shield_params *p, pr_shield_state *st, const pr_shield_inputs *in,
                                   pr_shield_outputs *out, int64_t n, int commit) {
    const int32_t top = p->n_pstates - 1;
    const int32_t nt = p->n_trips;
    for (int64_t i = 0; i < n; ++i) {
        const double temp = in->temp_c[i];
        const int sensor_ok = isfinite(temp);  /* false for NaN and +-inf */
        uint32_t ev = sensor_ok ? 0u : PR_SH_SENSOR;

        /* 1. Trips with hysteresis. */
        int passive_on = 0, hot_on = !sensor_ok, critical_on = 0;
        uint8_t *on = st->trip_on + i * (int64_t)nt;
        for (int32_t t = 0; t < nt; ++t) {
            int state = on[t];
            if (sensor_ok) {
                if (temp >= p->trip_c[t]) state = 1;
                else if (temp < p->trip_c[t] - p->hyst_c[t]) state = 0;
            }
            if (commit) on[t] = (uint8_t)state;
            if (!state) continue;
            switch (p->trip_type[t]) {
                case PR_TRIP_ACTIVE: ev |= PR_SH_ACTIVE; break;
                case PR_TRIP_PASSIVE: passive_on = 1; break;
                case PR_TRIP_HOT: hot_on = 1; break;
                default: critical_on = 1; break;
            }
        }
        hot_on |= critical_on;

        /* step_wise: throttle one step while a passive trip holds and the zone is not cooling;
         * release one step once every passive trip has released and the zone is not warming. */
        int32_t ceiling = st->ceiling[i];
        const double last = st->last_temp_c[i];
        const int rising = sensor_ok && !(temp < last);
        const int falling = sensor_ok && !(temp > last);
        if (passive_on) {
            if (rising && ceiling > p->floor_pstate) --ceiling;
        } else if (falling && ceiling < top) {
            ++ceiling;
        }
        if (hot_on && ceiling > p->floor_pstate) ceiling = p->floor_pstate;

        /* 2. The controller's proposal, range-checked and rate-limited. */
        int32_t q = in->proposed[i];
        if (q < 0 || q > top) {
            ev |= PR_SH_OUT_OF_RANGE;
            q = q < 0 ? 0 : top;
        }
        const int64_t prev = st->last_applied[i];  /* 64-bit: prev + step never overflows */
        if (!in->emergency[i]) {
            if (p->max_step_up > 0 && q > prev + p->max_step_up) {
                q = (int32_t)(prev + p->max_step_up);
                ev |= PR_SH_RATE_LIMIT;
            }
            if (p->max_step_down > 0 && q < prev - p->max_step_down) {
                q = (int32_t)(prev - p->max_step_down);
                ev |= PR_SH_RATE_LIMIT;
            }
        }

        /* 3. Safety reductions, at once. */
        if (q > ceiling) {
            q = ceiling;
            ev |= hot_on ? PR_SH_HOT : PR_SH_PASSIVE;
        }
        if (hot_on) ev |= PR_SH_HOT;
        if (critical_on) ev |= PR_SH_CRITICAL;
        const double power = pr_shield_power(p, i, in->power_w[i]);
        const double inlet = in->inlet_c[i] + in->inlet_rise_c[i];
        if (q > p->floor_pstate) {
            const int32_t qp = pr_shield_predict(p, i, q, temp, power, inlet);
            if (qp < q) {
                q = qp;
                ev |= PR_SH_PREDICTIVE;
            }
        }

        /* 4. Thermal power cap: only where the most power any work can draw could overheat. */
        double cap = INFINITY;
        const double safe = pr_shield_safe_power(p, i, temp, power, inlet);
        if (safe < p->max_power_w[i]) {
            cap = safe;
            ev |= PR_SH_THERMAL_CAP;
        }

        out->applied[i] = q;
        out->cap_w[i] = cap;
        out->events[i] = ev;
        out->offline[i] = (uint8_t)critical_on;
        if (commit) {
            st->ceiling[i] = ceiling;
            st->last_applied[i] = q;
            if (sensor_ok) st->last_temp_c[i] = temp;
        }
    }
}

#endif /* POWERRL_SHIELD_UNITS_H */
