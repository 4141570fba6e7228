/* sampler.h - telemetry sampling of sysfs/procfs files on a native thread (header-only).
 *
 * Every sensor is one pre-opened file descriptor re-read with pread(fd, .., 0): sysfs attributes
 * regenerate their text on every read at offset 0 (Documentation/filesystems/sysfs.rst), so no
 * open/close or Python object is needed per sample. A POSIX thread wakes at absolute deadlines
 * t0 + k * period on CLOCK_MONOTONIC (no drift: lateness of one wake-up never shifts the next) and
 * writes one row per sample into a caller-owned ring buffer (NumPy arrays on the Python side).
 *
 * Sensor kinds:
 *   PR_SENSOR_GAUGE    one integer (e.g. scaling_cur_freq in kHz, temp in m degC); value = raw * scale.
 *   PR_SENSOR_COUNTER  one monotonically increasing integer that wraps to 0 after wrap_raw
 *                      (e.g. powercap energy_uj wraps after max_energy_range_uj, see
 *                      Documentation/power/powercap/powercap.rst); value = unwrapped raw * scale.
 *   PR_SENSOR_PROCSTAT_UTIL  the aggregate "cpu" line of /proc/stat (Documentation/filesystems/proc.rst);
 *                      value = busy jiffies / all jiffies since the previous sample, in [0, 1].
 * A failed read or an unparsable value stores NaN for that sensor, counts an error and records the
 * errno per sensor; it never stops the loop. A descriptor < 0 (the file could not be opened) is
 * such a failure on every sample, with the errno the caller stored in last_errno.
 *
 * Concurrency: only the sampler thread writes the ring and the per-sensor state; it publishes each
 * row by a release store of `count`. Readers (pr_sampler_latest, pr_sampler_window) copy rows and
 * re-check `count` afterwards, retrying when the writer may have overwritten what they copied.
 */
#ifndef POWERRL_SAMPLER_H
#define POWERRL_SAMPLER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

enum { PR_SENSOR_GAUGE = 0, PR_SENSOR_COUNTER = 1, PR_SENSOR_PROCSTAT_UTIL = 2 };

/* errno recorded for a value that was read but is not a decimal integer. */
#define PR_EPARSE EBADMSG

typedef struct {
    /* configuration (caller-owned arrays of length n_sensors unless noted) */
    int32_t n_sensors;
    const int32_t *fds;
    const uint8_t *kind;
    const double *scale;      /* SI units per raw unit, e.g. 1e-6 for energy_uj -> J */
    const int64_t *wrap_raw;  /* counters: largest raw value before the wrap to 0; <= 0: never wraps */
    int64_t period_ns;
    int64_t capacity;         /* ring rows (>= 2) */
    int32_t rt_priority;      /* > 0: run the thread SCHED_FIFO at this priority (needs CAP_SYS_NICE) */
    /* ring (caller-owned) */
    double *ring_values;      /* [capacity * n_sensors], row-major */
    int64_t *ring_t_ns;       /* [capacity] CLOCK_MONOTONIC time the sample started */
    int64_t *ring_late_ns;    /* [capacity] wake-up lateness against the deadline (0 for one-shot samples) */
    /* per-sensor state and diagnostics (caller-owned, zero-initialised) */
    int64_t *last_raw;        /* counters: previous raw; procstat: previous busy jiffies */
    int64_t *last_raw2;       /* procstat: previous total jiffies */
    int64_t *wrap_base;       /* counters: raw offset added by the wraps seen so far */
    uint8_t *have_last;
    int64_t *err_count;
    int32_t *last_errno;
    /* jitter histogram (caller-owned, n_bins): bin i counts lateness in [i, i+1) * bin_ns; last bin = overflow */
    int64_t *jitter_hist;
    int32_t n_bins;
    int64_t bin_ns;
    /* run state (written by the sampler thread) */
    int64_t count;            /* rows written so far (row i lives at i % capacity) */
    int64_t missed;           /* deadlines skipped because a sample overran them */
    int64_t max_late_ns;
    int64_t cpu_ns;           /* CPU time of the sampler thread */
    int32_t rt_errno;         /* 0, or the errno of a refused SCHED_FIFO request (the thread then runs normally) */
    int stop;
    int running;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
} pr_sampler;

static inline int64_t pr_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t pr_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Parse an optionally signed decimal integer with optional surrounding whitespace. 0 on success. */
static inline int pr_parse_i64(const char *buf, ssize_t len, int64_t *out) {
    ssize_t i = 0;
    int neg = 0, digits = 0;
    uint64_t v = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t')) ++i;
    if (i < len && (buf[i] == '-' || buf[i] == '+')) { neg = buf[i] == '-'; ++i; }
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        if (v > (uint64_t)INT64_MAX / 10) return -1;
        v = v * 10 + (uint64_t)(buf[i] - '0');
        ++digits; ++i;
    }
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\0')) ++i;
    if (!digits || i != len || v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* Parse the "cpu " line of /proc/stat into busy and total jiffies. 0 on success.
 * busy = user + nice + system + irq + softirq + steal; total = busy + idle + iowait
 * (guest and guest_nice are already included in user and nice, proc.rst). */
static inline int pr_parse_procstat(const char *buf, ssize_t len, int64_t *busy, int64_t *total) {
    int64_t f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ssize_t i = 0;
    int nf = 0;
    if (len < 4 || memcmp(buf, "cpu ", 4) != 0) return -1;
    i = 4;
    while (nf < 8 && i < len && buf[i] != '\n') {
        while (i < len && buf[i] == ' ') ++i;
        if (i >= len || buf[i] < '0' || buf[i] > '9') break;
        int64_t v = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            if (v > INT64_MAX / 10 - 10) return -1;
            v = v * 10 + (buf[i] - '0');
            ++i;
        }
        f[nf++] = v;
    }
    if (nf < 4) return -1;
    *busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    *total = *busy + f[3] + f[4];
    return 0;
}

/* Read every sensor once into ring row `count % capacity` and publish it. Sampler thread only
 * (or the caller while no thread runs). */
static inline void pr_sampler_sample(pr_sampler *s, int64_t t_ns, int64_t late_ns) {
    const int64_t c = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
    const int64_t row = c % s->capacity;
    double *out = s->ring_values + row * (int64_t)s->n_sensors;
    char buf[512];
    for (int32_t i = 0; i < s->n_sensors; ++i) {
        double value = NAN;
        const int fd = s->fds[i];
        if (fd < 0) {
            s->err_count[i] += 1;
            out[i] = NAN;
            continue;
        }
        const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n < 0) {
            s->err_count[i] += 1;
            s->last_errno[i] = errno;
            out[i] = NAN;
            continue;
        }
        buf[n] = '\0';
        if (s->kind[i] == PR_SENSOR_PROCSTAT_UTIL) {
            int64_t busy, total;
            if (pr_parse_procstat(buf, n, &busy, &total) != 0) {
                s->err_count[i] += 1;
                s->last_errno[i] = PR_EPARSE;
            } else {
                if (s->have_last[i] && total > s->last_raw2[i] && busy >= s->last_raw[i])
                    value = (double)(busy - s->last_raw[i]) / (double)(total - s->last_raw2[i]);
                s->last_raw[i] = busy;
                s->last_raw2[i] = total;
                s->have_last[i] = 1;
            }
            out[i] = value;
            continue;
        }
        int64_t raw;
        if (pr_parse_i64(buf, n, &raw) != 0) {
            s->err_count[i] += 1;
            s->last_errno[i] = PR_EPARSE;
            out[i] = NAN;
            continue;
        }
        if (s->kind[i] == PR_SENSOR_COUNTER) {
            /* A counter that went backwards wrapped once past wrap_raw (powercap.rst); with sampling at
             * 100 ms and ranges of minutes at full power, two wraps between samples cannot happen. */
            if (s->have_last[i] && raw < s->last_raw[i] && s->wrap_raw[i] > 0)
                s->wrap_base[i] += s->wrap_raw[i] + 1;
            s->last_raw[i] = raw;
            s->have_last[i] = 1;
            value = (double)(s->wrap_base[i] + raw) * s->scale[i];
        } else {
            value = (double)raw * s->scale[i];
        }
        out[i] = value;
    }
    s->ring_t_ns[row] = t_ns;
    s->ring_late_ns[row] = late_ns;
    __atomic_store_n(&s->count, c + 1, __ATOMIC_RELEASE);
}

static inline void pr_sampler_record_late(pr_sampler *s, int64_t late_ns) {
    int64_t bin = late_ns < 0 ? 0 : late_ns / s->bin_ns;
    if (bin >= s->n_bins) bin = s->n_bins - 1;
    __atomic_add_fetch(&s->jitter_hist[bin], 1, __ATOMIC_RELAXED);
    if (late_ns > __atomic_load_n(&s->max_late_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&s->max_late_ns, late_ns, __ATOMIC_RELAXED);
}

static void *pr_sampler_main(void *arg) {
    pr_sampler *s = (pr_sampler *)arg;
#ifdef __linux__
    /* The default 50 us timer slack of normal threads would add up to 50 us to every wake-up
     * (Documentation/timers/timers-howto.rst); 1 us keeps lateness at the scheduler's latency. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
    if (s->rt_priority > 0) {
        struct sched_param sp;
        memset(&sp, 0, sizeof sp);
        sp.sched_priority = s->rt_priority;
        s->rt_errno = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    }
    int64_t deadline = pr_mono_ns();
    pthread_mutex_lock(&s->mutex);
    while (!s->stop) {
        struct timespec ts = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
        int rc = 0;
        /* Absolute deadline: an early return (signal, spurious wake-up) waits again for the same one. */
        while (!s->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&s->cond, &s->mutex, &ts);
        if (s->stop) break;
        pthread_mutex_unlock(&s->mutex);
        const int64_t now = pr_mono_ns();
        const int64_t late = now - deadline;
        pr_sampler_sample(s, now, late);
        pr_sampler_record_late(s, late);
        deadline += s->period_ns;
        const int64_t after = pr_mono_ns();
        if (after >= deadline) {
            /* Overran one or more deadlines: skip them (counted) and stay on the original grid. */
            const int64_t k = (after - deadline) / s->period_ns + 1;
            __atomic_add_fetch(&s->missed, k, __ATOMIC_RELAXED);
            deadline += k * s->period_ns;
        }
        __atomic_store_n(&s->cpu_ns, pr_thread_cpu_ns(), __ATOMIC_RELAXED);
        pthread_mutex_lock(&s->mutex);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

/* Initialise the synchronisation objects; call once after filling the configuration. 0 or an errno. */
static inline int pr_sampler_init(pr_sampler *s) {
    pthread_condattr_t attr;
    int rc;
    if (s->n_sensors < 0 || s->capacity < 2 || s->period_ns <= 0 || s->n_bins < 2 || s->bin_ns <= 0)
        return EINVAL;
    s->count = s->missed = s->max_late_ns = s->cpu_ns = 0;
    s->rt_errno = 0;
    s->stop = s->running = 0;
    if ((rc = pthread_mutex_init(&s->mutex, NULL)) != 0) return rc;
    if ((rc = pthread_condattr_init(&attr)) != 0) return rc;
    if ((rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)) == 0)
        rc = pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) pthread_mutex_destroy(&s->mutex);
    return rc;
}

static inline int pr_sampler_start(pr_sampler *s) {
    int rc;
    if (s->running) return EBUSY;
    s->stop = 0;
    if ((rc = pthread_create(&s->thread, NULL, pr_sampler_main, s)) != 0) return rc;
    s->running = 1;
    return 0;
}

/* Stop the thread (wakes it at once) and join it. Safe to call when not running. */
static inline void pr_sampler_stop(pr_sampler *s) {
    if (!s->running) return;
    pthread_mutex_lock(&s->mutex);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mutex);
    pthread_join(s->thread, NULL);
    s->running = 0;
}

static inline void pr_sampler_destroy(pr_sampler *s) {
    pr_sampler_stop(s);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mutex);
}

/* Copy the newest row into values[n_sensors] and its time into *t_ns. Returns the number of rows
 * written so far (0: nothing copied). */
static inline int64_t pr_sampler_latest(const pr_sampler *s, double *values, int64_t *t_ns) {
    for (;;) {
        const int64_t c = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
        if (c == 0) return 0;
        const int64_t row = (c - 1) % s->capacity;
        memcpy(values, s->ring_values + row * (int64_t)s->n_sensors, sizeof(double) * (size_t)s->n_sensors);
        *t_ns = s->ring_t_ns[row];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) - c < s->capacity - 1) return c;
    }
}

/* Statistics over the newest k rows (k <= capacity - 1, fewer if fewer exist): per sensor the mean,
 * min and max of the non-NaN values, and for counters the rate (value change / time change, e.g. J/s = W)
 * between the first and last non-NaN value (NaN when undefined). Returns the rows used. */
static inline int64_t pr_sampler_window(const pr_sampler *s, int64_t k, double *mean, double *vmin,
                                        double *vmax, double *rate) {
    if (k > s->capacity - 1) k = s->capacity - 1;
    for (;;) {
        const int64_t c = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
        const int64_t used = c < k ? c : k;
        for (int32_t i = 0; i < s->n_sensors; ++i) {
            double sum = 0.0, lo = INFINITY, hi = -INFINITY, v0 = NAN, v1 = NAN;
            int64_t t0 = 0, t1 = 0, n = 0;
            for (int64_t j = c - used; j < c; ++j) {
                const int64_t row = j % s->capacity;
                const double v = s->ring_values[row * (int64_t)s->n_sensors + i];
                if (isnan(v)) continue;
                if (n == 0) { v0 = v; t0 = s->ring_t_ns[row]; }
                v1 = v; t1 = s->ring_t_ns[row];
                sum += v; lo = v < lo ? v : lo; hi = v > hi ? v : hi;
                ++n;
            }
            mean[i] = n ? sum / (double)n : NAN;
            vmin[i] = n ? lo : NAN;
            vmax[i] = n ? hi : NAN;
            rate[i] = (s->kind[i] == PR_SENSOR_COUNTER && n >= 2 && t1 > t0) ? (v1 - v0) / ((double)(t1 - t0) * 1e-9)
                                                                          : NAN;
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) - c < s->capacity - used) return used;
    }
}

#endif /* POWERRL_SAMPLER_H */
