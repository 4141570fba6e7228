# C declarations of the telemetry sampler and the actuator, made once here and cimported by sampler.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "sampler.h" nogil:
    enum:
        PR_SENSOR_GAUGE
        PR_SENSOR_COUNTER
        PR_SENSOR_PROCSTAT_UTIL
        PR_EPARSE

    ctypedef struct pr_sampler:
        int32_t n_sensors
        const int32_t *fds
        const uint8_t *kind
        const double *scale
        const int64_t *wrap_raw
        int64_t period_ns
        int64_t capacity
        int32_t rt_priority
        double *ring_values
        int64_t *ring_t_ns
        int64_t *ring_late_ns
        int64_t *last_raw
        int64_t *last_raw2
        int64_t *wrap_base
        uint8_t *have_last
        int64_t *err_count
        int32_t *last_errno
        int64_t *jitter_hist
        int32_t n_bins
        int64_t bin_ns
        int64_t count
        int64_t missed
        int64_t max_late_ns
        int64_t cpu_ns
        int32_t rt_errno
        int running

    int64_t pr_mono_ns()
    int pr_sampler_init(pr_sampler *s)
    int pr_sampler_start(pr_sampler *s)
    void pr_sampler_stop(pr_sampler *s)
    void pr_sampler_destroy(pr_sampler *s)
    void pr_sampler_sample(pr_sampler *s, int64_t t_ns, int64_t late_ns)
    int64_t pr_sampler_latest(const pr_sampler *s, double *values, int64_t *t_ns)
    int64_t pr_sampler_window(const pr_sampler *s, int64_t k, double *mean, double *vmin, double *vmax,
                              double *rate)


cdef extern from "actuator.h" nogil:
    enum:
        PR_ACT_OK
        PR_ACT_SKIPPED
        PR_ACT_RATE_LIMITED
        PR_ACT_OVERRIDDEN
        PR_ACT_UNCHANGED

    ctypedef struct pr_actuator:
        int32_t n_targets
        const int32_t *fds
        const int64_t *min_interval_ns
        int64_t *last_write_ns
        int64_t *last_value
        uint8_t *has_written

    int pr_read_i64_fd(int fd, int64_t *out)
    int pr_write_i64_fd(int fd, int64_t value)
    int32_t pr_actuate(pr_actuator *a, const int64_t *values, const uint8_t *mask, int64_t now_ns,
                       int64_t *readback, int32_t *status)
