/* Standalone build of shield_units.h under ASan/UBSan (run by tests/c/test_c_headers.py).
 * Random and adversarial inputs (NaN/inf temperatures and powers, int32 extremes as proposals, huge
 * rate limits, emergencies, dry runs) and the invariants that must hold whatever they are: a valid
 * P-state; the floor while a hot trip or a dead sensor holds; offline only with a critical trip; a
 * thermal cap that is never NaN or negative, and for a dead sensor the steady-state safe power. Exit status 0 = pass. */
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include "shield_units.h"

#define N 129
#define K 9
#define T 4

static unsigned next(unsigned *seed) { *seed = *seed * 1103515245u + 12345u; return *seed >> 8; }
static double urand(unsigned *seed) { return (next(seed) & 0xFFFFFF) / 16777216.0; }

int main(void) {
    static const double trip_c[T] = {70, 80, 90, 100}, hyst_c[T] = {3, 3, 2, 5};
    static const int32_t trip_type[T] = {PR_TRIP_ACTIVE, PR_TRIP_PASSIVE, PR_TRIP_HOT, PR_TRIP_CRITICAL};
    double full[N * K], maxp[N], rd[N], rs[N], sd[N], cd[N];
    uint8_t on[N * T]; int32_t ceil_[N], last[N]; double last_t[N];
    int32_t prop[N]; double temp[N], power[N], inlet[N], rise[N]; uint8_t emerg[N];
    int32_t applied[N]; uint32_t events[N]; uint8_t offline[N]; double cap[N];
    unsigned seed = 777u;
    for (int i = 0; i < N; ++i) {
        for (int q = 0; q < K; ++q) full[i * K + q] = 100 + 30 * q;
        maxp[i] = full[i * K + K - 1] * 1.2; rd[i] = 0.05; rs[i] = 0.12;
        sd[i] = urand(&seed) < 0.2 ? 1.0 : 0.85; cd[i] = urand(&seed) < 0.1 ? 1.0 : 0.5;
        for (int t = 0; t < T; ++t) on[i * T + t] = 0;
        ceil_[i] = K - 1; last[i] = K - 1; last_t[i] = NAN;
    }
    pr_shield_params p = {T, trip_c, hyst_c, trip_type, K, 2, 2147483647, 3, 80.0, 88.0, full, maxp, rd, rs, sd, cd};
    pr_shield_state st = {on, ceil_, last, last_t};
    pr_shield_inputs in = {prop, temp, power, inlet, rise, emerg};
    pr_shield_outputs out = {applied, events, offline, cap};
    const double odd[] = {NAN, INFINITY, -INFINITY, -1e308, 1e308, 0.0};
    int failures = 0;
    for (int step = 0; step < 3000; ++step) {
        for (int i = 0; i < N; ++i) {
            unsigned r = next(&seed);
            prop[i] = r % 7 == 0 ? INT32_MAX : r % 7 == 1 ? INT32_MIN : (int32_t)(r % (K + 6)) - 3;
            temp[i] = urand(&seed) < 0.05 ? odd[next(&seed) % 6] : 20 + 95 * urand(&seed);
            power[i] = urand(&seed) < 0.05 ? odd[next(&seed) % 6] : 400 * urand(&seed);
            inlet[i] = 10 + 40 * urand(&seed); rise[i] = urand(&seed) < 0.2 ? 15.0 : 0.0;
            emerg[i] = urand(&seed) < 0.1;
        }
        pr_shield_units(&p, &st, &in, &out, N, step % 5 != 0);
        for (int i = 0; i < N; ++i) {
            int bad = applied[i] < 0 || applied[i] >= K || isnan(cap[i]) || cap[i] < 0.0;
            bad |= (!isfinite(temp[i]) || temp[i] >= 90.0) && applied[i] > p.floor_pstate;
            bad |= offline[i] && !(events[i] & PR_SH_CRITICAL);
            /* A dead sensor gets the steady-state cap wherever the unit's maximum could overheat. */
            const double steady = (p.cap_limit_c - inlet[i] - rise[i]) / (rd[i] + rs[i]);
            bad |= !isfinite(temp[i]) && steady < maxp[i] && !(cap[i] <= fmax(steady, 0.0) * (1 + 1e-12));
            if (bad && failures++ < 5)
                fprintf(stderr, "step %d unit %d: temp %g power %g proposed %d -> %d cap %g events %u\n", step, i,
                        temp[i], power[i], prop[i], applied[i], cap[i], events[i]);
        }
    }
    if (failures) { fprintf(stderr, "%d invariant failures\n", failures); return 1; }
    printf("shield_units.h: 3000 x %d unit decisions, invariants hold\n", N);
    return 0;
}
