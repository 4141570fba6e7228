/* actuator.h - batched integer writes to sysfs attributes with rate limiting and read-back (header-only).
 *
 * One target = one pre-opened O_RDWR descriptor of an integer attribute: scaling_setspeed or
 * scaling_max_freq (kHz, Documentation/admin-guide/pm/cpufreq.rst), constraint_N_power_limit_uw (uW,
 * Documentation/power/powercap/powercap.rst), cooling_device cur_state
 * (Documentation/driver-api/thermal/sysfs-api.rst), max_perf_pct (intel_pstate.rst).
 * A write is "%lld\n" at offset 0, like `echo`; the file is then truncated to that length, which
 * kernfs ignores (sysfs attributes have no size) and which keeps a fake tree of regular files exact.
 * Each written target is read back at once: a value that differs was changed by the kernel or
 * firmware (clamped to a limit, overridden by a BIOS lock) and is reported, not hidden.
 *
 * Allowlisting, saving the original values and restoring them are done by the caller before a
 * descriptor reaches this code (powerrl/hw/safety.py).
 */
#ifndef POWERRL_ACTUATOR_H
#define POWERRL_ACTUATOR_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "sampler.h"

/* Per-target status of one pr_actuate call (negative values are -errno of the failed write or read). */
enum {
    PR_ACT_OK = 0,           /* written and read back unchanged */
    PR_ACT_SKIPPED = 1,      /* not requested (mask 0) */
    PR_ACT_RATE_LIMITED = 2, /* requested within min_interval_ns of the previous write: not written */
    PR_ACT_OVERRIDDEN = 3,   /* written, but the read-back differs (clamped or overridden) */
    PR_ACT_UNCHANGED = 4     /* requested value equals the last written one and still reads back: not rewritten */
};

typedef struct {
    int32_t n_targets;
    const int32_t *fds;              /* O_RDWR descriptors */
    const int64_t *min_interval_ns;  /* per target: minimum time between two writes */
    int64_t *last_write_ns;          /* per target, caller-owned; state */
    int64_t *last_value;             /* per target, caller-owned; state */
    uint8_t *has_written;            /* per target, caller-owned, zero-initialised; state */
} pr_actuator;

static inline int pr_read_i64_fd(int fd, int64_t *out) {
    char buf[64];
    const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) return errno;
    buf[n] = '\0';
    return pr_parse_i64(buf, n, out) == 0 ? 0 : PR_EPARSE;
}

static inline int pr_write_i64_fd(int fd, int64_t value) {
    char buf[32];
    const int len = snprintf(buf, sizeof buf, "%lld\n", (long long)value);
    const ssize_t n = pwrite(fd, buf, (size_t)len, 0);
    if (n < 0) return errno;
    if (n != len) return EIO;
    /* Truncate a regular file to the new text; on kernfs this is accepted and has no effect. */
    if (ftruncate(fd, len) != 0 && errno != EINVAL && errno != EPERM && errno != EACCES) return errno;
    return 0;
}

/* Write values[i] to every target with mask[i] != 0 that is not rate limited, read each back into
 * readback[i] and set status[i] (PR_ACT_*). now_ns <= 0 means "now" on CLOCK_MONOTONIC.
 * Returns the number of writes issued. Never stops at a failing target. */
static inline int32_t pr_actuate(pr_actuator *a, const int64_t *values, const uint8_t *mask, int64_t now_ns,
                                 int64_t *readback, int32_t *status) {
    int32_t written = 0;
    if (now_ns <= 0) now_ns = pr_mono_ns();
    for (int32_t i = 0; i < a->n_targets; ++i) {
        if (!mask[i]) { status[i] = PR_ACT_SKIPPED; continue; }
        int64_t rb = 0;
        if (a->has_written[i] && a->last_value[i] == values[i]
                && pr_read_i64_fd(a->fds[i], &rb) == 0 && rb == values[i]) {
            readback[i] = rb;
            status[i] = PR_ACT_UNCHANGED;
            continue;
        }
        if (a->has_written[i] && now_ns - a->last_write_ns[i] < a->min_interval_ns[i]) {
            status[i] = PR_ACT_RATE_LIMITED;
            continue;
        }
        int rc = pr_write_i64_fd(a->fds[i], values[i]);
        a->has_written[i] = 1;
        a->last_write_ns[i] = now_ns;
        a->last_value[i] = values[i];
        if (rc != 0) { status[i] = -rc; continue; }
        ++written;
        rc = pr_read_i64_fd(a->fds[i], &rb);
        if (rc != 0) { status[i] = -rc; continue; }
        readback[i] = rb;
        status[i] = rb == values[i] ? PR_ACT_OK : PR_ACT_OVERRIDDEN;
    }
    return written;
}

#endif /* POWERRL_ACTUATOR_H */
