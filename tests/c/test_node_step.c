/* Standalone build of node_step.h under ASan/UBSan (run by tests/c/test_c_headers.py).
 * Exercises caps below idle, zero demand, out-of-range P-state requests and long steps, and checks
 * invariants that must hold whatever the inputs: power within [idle, max(cap, idle)] under a cap,
 * non-negative backlog, work conservation. Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "node_step.h"

#define N 257
#define K 7

static double urand(unsigned *seed) { *seed = *seed * 1103515245u + 12345u; return ((*seed >> 8) & 0xFFFFFF) / 16777216.0; }

int main(void) {
    double idle[N], busy[N], r[N], w[N], s[N], fr[N * K], vr[N * K], rd[N], rs[N], ad[N], as[N], al[N], svc[N], sla[N];
    double backlog[N], lavg[N], tdie[N], tsink[N], energy[N], work[N];
    int32_t ps[N]; double cap[N], demand[N], mb[N], inlet[N];
    double pw[N], util[N], served[N], fra[N], lat[N]; int32_t psa[N]; uint8_t viol[N], thr[N];
    unsigned seed = 12345u;
    for (int i = 0; i < N; ++i) {
        idle[i] = 50 + 100 * urand(&seed); busy[i] = idle[i] + 10 + 300 * urand(&seed);
        r[i] = 0.25 + 3.75 * urand(&seed); w[i] = 0.95 * urand(&seed); s[i] = urand(&seed);
        for (int q = 0; q < K; ++q) { fr[i * K + q] = 0.4 + 0.6 * q / (K - 1); vr[i * K + q] = 0.7 + 0.3 * fr[i * K + q]; }
        rd[i] = 0.05; rs[i] = 0.1; ad[i] = 0.1; as[i] = 0.01; al[i] = 0.05; lavg[i] = 0; svc[i] = 5; sla[i] = 100;
        backlog[i] = 0; tdie[i] = tsink[i] = 25; energy[i] = work[i] = 0;
    }
    pr_node_params p = {idle, busy, r, w, s, fr, vr, rd, rs, ad, as, al, svc, sla, K};
    pr_node_state st = {backlog, lavg, tdie, tsink, energy, work};
    pr_node_inputs in = {ps, cap, demand, mb, inlet};
    pr_node_outputs out = {pw, util, served, fra, lat, psa, viol, thr};
    double arrived[N] = {0};
    int failures = 0;
    for (int step = 0; step < 2000; ++step) {
        double dt = (step % 10 == 0) ? 30.0 : 0.1;
        for (int i = 0; i < N; ++i) {
            ps[i] = (int32_t)(urand(&seed) * (K + 4)) - 2;
            cap[i] = urand(&seed) < 0.3 ? INFINITY : 600 * urand(&seed);
            demand[i] = urand(&seed) < 0.1 ? 0.0 : 1.5 * urand(&seed);
            mb[i] = urand(&seed); inlet[i] = 15 + 25 * urand(&seed);
            arrived[i] += demand[i] * dt;
        }
        pr_nodes_step(&p, &st, &in, &out, N, dt);
        for (int i = 0; i < N; ++i) {
            double limit = cap[i] > idle[i] ? cap[i] : idle[i];
            if (pw[i] > limit + 1e-9 || pw[i] < idle[i] - 1e-9 || backlog[i] < 0 || psa[i] < 0 || psa[i] >= K
                || !isfinite(lat[i]) || !isfinite(tdie[i])) {
                if (failures++ < 5) fprintf(stderr, "invariant broken at step %d node %d: p=%g cap=%g\n", step, i, pw[i], cap[i]);
            }
        }
    }
    for (int i = 0; i < N; ++i)
        if (fabs(arrived[i] - backlog[i] - work[i]) > 1e-6 * (1 + arrived[i])) {
            if (failures++ < 10) fprintf(stderr, "work not conserved at node %d\n", i);
        }
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("node_step.h: ok\n");
    return 0;
}
