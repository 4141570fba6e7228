/* Standalone build of sampler.h and actuator.h under ASan/UBSan (run by tests/c/test_c_headers.py).
 * Exercises gauges, a wrapping counter, /proc/stat utilisation, unparsable and unopenable sensors,
 * window statistics, the sampling thread (deadlines, histogram, stop) and batched actuation with
 * rate limiting, read-back and failing targets. Exit status 0 = pass. */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "actuator.h"
#include "sampler.h"

#define NS 5
#define CAP 64
#define NB 101

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); ++failures; } } while (0)

static char dir[] = "/tmp/pr_sampler_XXXXXX";

static void put(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

static int open_file(const char *name, int flags) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, flags);
    if (fd < 0) { perror(path); exit(2); }
    return fd;
}

static void unlink_file(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

int main(void) {
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
    put("freq", "2400000\n");
    put("energy", "999990\n");
    put("stat", "cpu  100 0 50 850 0 0 0 0 0 0\ncpu0 1 2 3 4\n");
    put("bad", "<unsupported>\n");
    put("target", "1000\n");

    int32_t fds[NS] = {open_file("freq", O_RDONLY), open_file("energy", O_RDONLY), open_file("stat", O_RDONLY),
                       open_file("bad", O_RDONLY), -1};
    uint8_t kind[NS] = {PR_SENSOR_GAUGE, PR_SENSOR_COUNTER, PR_SENSOR_PROCSTAT_UTIL, PR_SENSOR_GAUGE, PR_SENSOR_GAUGE};
    double scale[NS] = {1e-3, 1e-6, 1.0, 1.0, 1.0};
    int64_t wrap[NS] = {0, 999999, 0, 0, 0};
    double ring[CAP * NS];
    int64_t t[CAP], late[CAP], last_raw[NS] = {0}, last_raw2[NS] = {0}, base[NS] = {0}, errs[NS] = {0};
    int64_t hist[NB] = {0};
    uint8_t have[NS] = {0};
    int32_t eno[NS] = {0, 0, 0, 0, ENOENT};
    pr_sampler s;
    memset(&s, 0, sizeof s);
    s.n_sensors = NS; s.fds = fds; s.kind = kind; s.scale = scale; s.wrap_raw = wrap;
    s.period_ns = 5000000; s.capacity = CAP;
    s.ring_values = ring; s.ring_t_ns = t; s.ring_late_ns = late;
    s.last_raw = last_raw; s.last_raw2 = last_raw2; s.wrap_base = base; s.have_last = have;
    s.err_count = errs; s.last_errno = eno; s.jitter_hist = hist; s.n_bins = NB; s.bin_ns = 10000;
    CHECK(pr_sampler_init(&s) == 0);

    /* one-shot samples */
    pr_sampler_sample(&s, pr_mono_ns(), 0);
    CHECK(s.count == 1);
    CHECK(fabs(ring[0] - 2400.0) < 1e-9);
    CHECK(fabs(ring[1] - 0.99999) < 1e-12);
    CHECK(isnan(ring[2]));              /* utilisation needs two samples */
    CHECK(isnan(ring[3]) && errs[3] == 1 && eno[3] == PR_EPARSE);
    CHECK(isnan(ring[4]) && errs[4] == 1 && eno[4] == ENOENT);
    put("energy", "10\n");               /* wrapped: 999990 -> 999999 -> 0 -> 10 = +20 uJ */
    put("stat", "cpu  160 0 90 900 0 0 0 0 0 0\n");  /* +100 busy of +150 total */
    put("freq", "-5\n");
    pr_sampler_sample(&s, pr_mono_ns(), 0);
    CHECK(fabs(ring[NS + 1] - 1.000010) < 1e-12);
    CHECK(fabs(ring[NS + 2] - 100.0 / 150.0) < 1e-12);
    CHECK(fabs(ring[NS + 0] + 0.005) < 1e-12);
    put("energy", "30\n");
    pr_sampler_sample(&s, pr_mono_ns(), 0);
    CHECK(fabs(ring[2 * NS + 1] - 1.000030) < 1e-12);

    double values[NS], mean[NS], vmin[NS], vmax[NS], rate[NS];
    int64_t tl = 0;
    CHECK(pr_sampler_latest(&s, values, &tl) == 3);
    CHECK(tl == t[2] && values[1] == ring[2 * NS + 1]);
    CHECK(pr_sampler_window(&s, 1000, mean, vmin, vmax, rate) == 3);
    CHECK(fabs(vmax[1] - 1.000030) < 1e-12 && fabs(vmin[1] - 0.99999) < 1e-12);
    CHECK(fabs(rate[1] - 40e-6 / ((double)(t[2] - t[0]) * 1e-9)) < 1e-6);
    CHECK(isnan(rate[0]));              /* gauges have no rate */
    CHECK(isnan(mean[3]) && isnan(mean[4]));

    /* a sensor whose file vanished and whose reads fail keeps the loop running */
    close(fds[3]);
    fds[3] = 1000; /* not an open descriptor: EBADF on every read */
    pr_sampler_sample(&s, pr_mono_ns(), 0);
    CHECK(eno[3] == EBADF && errs[3] == 4);

    /* the thread: 5 ms period for ~120 ms */
    const int64_t c0 = s.count;
    CHECK(pr_sampler_start(&s) == 0);
    CHECK(pr_sampler_start(&s) == EBUSY);
    usleep(120000);
    const int64_t t_stop = pr_mono_ns();
    pr_sampler_stop(&s);
    CHECK(pr_mono_ns() - t_stop < 50000000);  /* stop wakes the thread, no period wait */
    const int64_t taken = s.count - c0;
    CHECK(taken >= 15 && taken <= 30);
    int64_t hsum = 0;
    for (int i = 0; i < NB; ++i) hsum += hist[i];
    CHECK(hsum == taken);
    CHECK(s.cpu_ns > 0);
    for (int64_t j = c0 + 1; j < s.count; ++j) {
        const int64_t d = t[j % CAP] - t[(j - 1) % CAP];
        CHECK(d > 0);
    }
    CHECK(pr_sampler_window(&s, 10000, mean, vmin, vmax, rate) == (s.count < CAP - 1 ? s.count : CAP - 1));
    pr_sampler_destroy(&s);

    /* actuator */
    int32_t afd[3] = {open_file("target", O_RDWR), open_file("freq", O_RDONLY), open_file("stat", O_RDWR)};
    int64_t interval[3] = {1000000, 0, 0}, lw[3] = {0}, lv[3] = {0}, vals[3] = {800, 5, 7}, rb[3] = {0};
    uint8_t hw[3] = {0}, mask[3] = {1, 1, 0};
    int32_t st[3] = {0};
    pr_actuator a = {3, afd, interval, lw, lv, hw};
    CHECK(pr_actuate(&a, vals, mask, 10, rb, st) == 1);
    CHECK(st[0] == PR_ACT_OK && rb[0] == 800);
    CHECK(st[1] == -EBADF);            /* read-only descriptor: the write fails, reported per target */
    CHECK(st[2] == PR_ACT_SKIPPED);
    int64_t got = 0;
    CHECK(pr_read_i64_fd(afd[0], &got) == 0 && got == 800);
    struct stat sb;
    CHECK(fstat(afd[0], &sb) == 0 && sb.st_size == 4);  /* "800\n": shorter text truncated the file */
    vals[0] = 1200;
    CHECK(pr_actuate(&a, vals, mask, 20, rb, st) == 0);
    CHECK(st[0] == PR_ACT_RATE_LIMITED);
    CHECK(pr_actuate(&a, vals, mask, 10 + 1000000, rb, st) == 1 && st[0] == PR_ACT_OK && rb[0] == 1200);
    CHECK(pr_actuate(&a, vals, mask, 20 + 1000000, rb, st) == 0 && st[0] == PR_ACT_UNCHANGED);
    /* something else changed the attribute: the same request is written again and read back */
    CHECK(pr_write_i64_fd(afd[0], 3) == 0);
    CHECK(pr_actuate(&a, vals, mask, 20 + 3000000, rb, st) == 1 && st[0] == PR_ACT_OK);
    for (int i = 0; i < 3; ++i) close(afd[i]);

    close(fds[0]); close(fds[1]); close(fds[2]);
    unlink_file("freq"); unlink_file("energy"); unlink_file("stat"); unlink_file("bad"); unlink_file("target");
    rmdir(dir);
    if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
    printf("test_sampler: ok\n");
    return 0;
}
