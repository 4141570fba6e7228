# cython: language_level=3
"""Thin Cython wrappers of ``sampler.h`` and ``actuator.h`` over NumPy-owned buffers.

:class:`NativeSampler` reads pre-opened file descriptors on a native thread without the GIL into a
ring buffer that NumPy allocates once; :class:`NativeActuator` writes integer attributes in batches
with rate limiting and read-back. Both take raw descriptors: opening files, the allowlist, the
restore journal and unit conversion live in :mod:`powerrl.hw` (the only package touching sysfs).
"""

import numpy as np
cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from powerrl._core.sampler cimport (PR_ACT_OK, PR_ACT_OVERRIDDEN, PR_ACT_RATE_LIMITED, PR_ACT_SKIPPED,
                                    PR_ACT_UNCHANGED, PR_SENSOR_COUNTER, PR_SENSOR_GAUGE,
                                    PR_SENSOR_PROCSTAT_UTIL, pr_actuate, pr_actuator, pr_mono_ns,
                                    pr_sampler, pr_sampler_destroy, pr_sampler_init, pr_sampler_latest,
                                    pr_sampler_sample, pr_sampler_start, pr_sampler_stop, pr_sampler_window)

cnp.import_array()

#: Sensor kinds (see sampler.h): one integer scaled to SI; a wrapping counter unwrapped and scaled;
#: the aggregate utilisation from the "cpu" line of /proc/stat.
SENSOR_GAUGE = PR_SENSOR_GAUGE
SENSOR_COUNTER = PR_SENSOR_COUNTER
SENSOR_PROCSTAT_UTIL = PR_SENSOR_PROCSTAT_UTIL

#: Per-target status codes of :meth:`NativeActuator.actuate` (negative values are ``-errno``).
ACT_OK = PR_ACT_OK
ACT_SKIPPED = PR_ACT_SKIPPED
ACT_RATE_LIMITED = PR_ACT_RATE_LIMITED
ACT_OVERRIDDEN = PR_ACT_OVERRIDDEN
ACT_UNCHANGED = PR_ACT_UNCHANGED


def monotonic_ns():
    """CLOCK_MONOTONIC in ns, the clock of every sampler timestamp."""
    return pr_mono_ns()


cdef inline void *_ptr(cnp.ndarray arr):
    return cnp.PyArray_DATA(arr)


def _vec(values, dtype, n, name):
    arr = np.ascontiguousarray(values, dtype=dtype).copy()
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


# no_gc_clear: the garbage collector must never drop the ring buffers while the C thread may still
# write into them; __dealloc__ stops the thread first.
@cython.no_gc_clear
cdef class NativeSampler:
    """Samples ``n`` pre-opened descriptors every ``period_s`` on a native thread, without the GIL.

    Args:
        fds: one descriptor per sensor (int); ``-1`` marks a sensor whose file could not be opened,
            with its errno in ``open_errno``. The caller keeps them open while this object lives.
        kinds: :data:`SENSOR_GAUGE`, :data:`SENSOR_COUNTER` or :data:`SENSOR_PROCSTAT_UTIL` per sensor.
        scales: SI units per raw unit (e.g. ``1e-6`` for ``energy_uj`` in J, ``1e-3`` for m degC).
        wrap_raw: for counters the largest raw value before the wrap to 0 (``max_energy_range_uj``);
            ``0`` = never wraps. Ignored for other kinds.
        open_errno: errno of a failed open per sensor (``0`` otherwise).
        period_s: sampling period in seconds (> 0; 0.1 by default).
        capacity: ring rows (>= 2); window statistics cover at most ``capacity - 1`` rows.
        jitter_bin_s: width of a jitter histogram bin in seconds (10 us by default).
        jitter_bins: number of bins; the last one counts every lateness beyond the others.
        rt_priority: ``> 0`` runs the thread ``SCHED_FIFO`` at this priority (1-99; needs root or
            CAP_SYS_NICE); when refused the thread runs normally and :attr:`rt_errno` says why.
    """

    cdef pr_sampler s
    cdef bint initialised
    cdef readonly object fds, kinds, scales, wrap_raw
    cdef readonly object ring_values, ring_t_ns, ring_late_ns
    cdef object _last_raw, _last_raw2, _wrap_base, _have_last, _err_count, _last_errno, _hist
    cdef readonly double period_s
    cdef readonly double jitter_bin_s
    cdef object _scratch_values, _scratch_t, _mean, _min, _max, _rate

    def __cinit__(self):
        self.initialised = False

    def __init__(self, fds, kinds, scales, wrap_raw, open_errno=None, double period_s=0.1,
                 Py_ssize_t capacity=1024, double jitter_bin_s=1e-5, int jitter_bins=2001, int rt_priority=0):
        n = len(fds)
        if not period_s > 0.0:
            raise ValueError(f"period_s must be > 0 s, got {period_s}")
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 rows, got {capacity}")
        if not 0 <= rt_priority <= 99:
            raise ValueError(f"rt_priority must be in [0, 99] (0 = normal scheduling), got {rt_priority}")
        if not jitter_bin_s > 0.0 or jitter_bins < 2:
            raise ValueError(f"need jitter_bin_s > 0 and jitter_bins >= 2, got {jitter_bin_s} and {jitter_bins}")
        self.fds = _vec(fds, np.int32, n, "fds")
        self.kinds = _vec(kinds, np.uint8, n, "kinds")
        if np.any(self.kinds > PR_SENSOR_PROCSTAT_UTIL):
            raise ValueError(f"kinds must be 0 (gauge), 1 (counter) or 2 (procstat util), got {self.kinds}")
        self.scales = _vec(scales, np.float64, n, "scales")
        self.wrap_raw = _vec(wrap_raw, np.int64, n, "wrap_raw")
        self._last_errno = _vec(np.zeros(n) if open_errno is None else open_errno, np.int32, n, "open_errno")
        self.ring_values = np.full((capacity, n), np.nan, dtype=np.float64)
        self.ring_t_ns = np.zeros(capacity, dtype=np.int64)
        self.ring_late_ns = np.zeros(capacity, dtype=np.int64)
        self._last_raw = np.zeros(n, dtype=np.int64)
        self._last_raw2 = np.zeros(n, dtype=np.int64)
        self._wrap_base = np.zeros(n, dtype=np.int64)
        self._have_last = np.zeros(n, dtype=np.uint8)
        self._err_count = np.zeros(n, dtype=np.int64)
        self._hist = np.zeros(jitter_bins, dtype=np.int64)
        self._scratch_values = np.empty(n, dtype=np.float64)
        self._scratch_t = np.zeros(1, dtype=np.int64)
        self._mean = np.empty(n, dtype=np.float64)
        self._min = np.empty(n, dtype=np.float64)
        self._max = np.empty(n, dtype=np.float64)
        self._rate = np.empty(n, dtype=np.float64)
        self.period_s = period_s
        self.jitter_bin_s = jitter_bin_s
        self.s.n_sensors = n
        self.s.fds = <const int32_t *> _ptr(self.fds)
        self.s.kind = <const uint8_t *> _ptr(self.kinds)
        self.s.scale = <const double *> _ptr(self.scales)
        self.s.wrap_raw = <const int64_t *> _ptr(self.wrap_raw)
        self.s.period_ns = <int64_t> (period_s * 1e9 + 0.5)
        self.s.capacity = capacity
        self.s.rt_priority = rt_priority
        self.s.ring_values = <double *> _ptr(self.ring_values)
        self.s.ring_t_ns = <int64_t *> _ptr(self.ring_t_ns)
        self.s.ring_late_ns = <int64_t *> _ptr(self.ring_late_ns)
        self.s.last_raw = <int64_t *> _ptr(self._last_raw)
        self.s.last_raw2 = <int64_t *> _ptr(self._last_raw2)
        self.s.wrap_base = <int64_t *> _ptr(self._wrap_base)
        self.s.have_last = <uint8_t *> _ptr(self._have_last)
        self.s.err_count = <int64_t *> _ptr(self._err_count)
        self.s.last_errno = <int32_t *> _ptr(self._last_errno)
        self.s.jitter_hist = <int64_t *> _ptr(self._hist)
        self.s.n_bins = jitter_bins
        self.s.bin_ns = max(1, <int64_t> (jitter_bin_s * 1e9 + 0.5))
        rc = pr_sampler_init(&self.s)
        if rc != 0:
            raise OSError(rc, "pr_sampler_init failed")
        self.initialised = True
        self.ring_values.flags.writeable = False
        self.ring_t_ns.flags.writeable = False
        self.ring_late_ns.flags.writeable = False

    def __dealloc__(self):
        if self.initialised:
            with nogil:
                pr_sampler_destroy(&self.s)

    @property
    def n_sensors(self):
        """Number of sensors (columns of the ring)."""
        return self.s.n_sensors

    @property
    def capacity(self):
        """Rows of the ring buffer."""
        return self.s.capacity

    @property
    def running(self):
        """True while the sampling thread runs."""
        return bool(self.s.running)

    def start(self):
        """Start the sampling thread; the first sample is taken at once, then one every period."""
        if self.s.running:
            raise RuntimeError("sampler already running")
        rc = pr_sampler_start(&self.s)
        if rc != 0:
            raise OSError(rc, "could not start the sampler thread")

    def stop(self):
        """Stop and join the sampling thread (returns within microseconds, not a period)."""
        with nogil:
            pr_sampler_stop(&self.s)

    def sample_once(self):
        """Take one sample synchronously (no thread may be running); returns the row count."""
        if self.s.running:
            raise RuntimeError("sample_once() while the sampling thread runs; stop() it first")
        with nogil:
            pr_sampler_sample(&self.s, pr_mono_ns(), 0)
        return self.s.count

    def latest(self):
        """Newest sample as ``(t_s, values)`` (monotonic seconds, a copy), or ``None`` before the first."""
        cdef int64_t c
        cdef double *values = <double *> _ptr(self._scratch_values)
        cdef int64_t *t_ns = <int64_t *> _ptr(self._scratch_t)
        with nogil:
            c = pr_sampler_latest(&self.s, values, t_ns)
        if c == 0:
            return None
        return self._scratch_t[0] * 1e-9, self._scratch_values.copy()

    def window(self, Py_ssize_t k):
        """Per-sensor ``mean``, ``min``, ``max`` (NaN skipped) and counter ``rate`` per second over the newest k rows.

        Returns a dict of copies plus ``n`` (rows used, at most ``capacity - 1``).
        """
        cdef int64_t used
        cdef double *mean = <double *> _ptr(self._mean)
        cdef double *vmin = <double *> _ptr(self._min)
        cdef double *vmax = <double *> _ptr(self._max)
        cdef double *rate = <double *> _ptr(self._rate)
        if k < 1:
            raise ValueError(f"window length must be >= 1 row, got {k}")
        with nogil:
            used = pr_sampler_window(&self.s, k, mean, vmin, vmax, rate)
        return {"mean": self._mean.copy(), "min": self._min.copy(), "max": self._max.copy(),
                "rate": self._rate.copy(), "n": int(used)}

    @property
    def count(self):
        """Samples taken so far."""
        return self.s.count

    @property
    def missed(self):
        """Deadlines skipped because a sample overran them."""
        return self.s.missed

    @property
    def max_late_s(self):
        """Largest wake-up lateness against the deadline so far, in seconds."""
        return self.s.max_late_ns * 1e-9

    @property
    def rt_errno(self):
        """0, or the errno of a refused SCHED_FIFO request (set once the thread started)."""
        return self.s.rt_errno

    @property
    def cpu_time_s(self):
        """CPU time consumed by the sampling thread so far, in seconds."""
        return self.s.cpu_ns * 1e-9

    @property
    def jitter_hist(self):
        """Copy of the lateness histogram (bin i: ``[i, i+1) * jitter_bin_s``; last bin: overflow)."""
        return self._hist.copy()

    @property
    def err_count(self):
        """Copy of the failed reads per sensor."""
        return self._err_count.copy()

    @property
    def last_errno(self):
        """Copy of the errno of the last failure per sensor (0: never failed)."""
        return self._last_errno.copy()


cdef class NativeActuator:
    """Batched integer writes to pre-opened ``O_RDWR`` descriptors with rate limiting and read-back.

    Args:
        fds: one descriptor per target, kept open by the caller while this object lives.
        min_interval_s: per target (or one for all), the minimum time between two writes in seconds.
    """

    cdef pr_actuator a
    cdef readonly object fds
    cdef object _min_interval_ns, _last_write_ns, _last_value, _has_written
    cdef object _mask, _readback, _status

    def __init__(self, fds, min_interval_s=0.0):
        n = len(fds)
        self.fds = _vec(fds, np.int32, n, "fds")
        interval = np.broadcast_to(np.asarray(min_interval_s, dtype=np.float64), (n,))
        if np.any(~(interval >= 0.0)):
            raise ValueError(f"min_interval_s must be >= 0 s, got {min_interval_s}")
        self._min_interval_ns = np.ascontiguousarray(np.round(interval * 1e9), dtype=np.int64)
        self._last_write_ns = np.zeros(n, dtype=np.int64)
        self._last_value = np.zeros(n, dtype=np.int64)
        self._has_written = np.zeros(n, dtype=np.uint8)
        self._mask = np.ones(n, dtype=np.uint8)
        self._readback = np.zeros(n, dtype=np.int64)
        self._status = np.zeros(n, dtype=np.int32)
        self.a.n_targets = n
        self.a.fds = <const int32_t *> _ptr(self.fds)
        self.a.min_interval_ns = <const int64_t *> _ptr(self._min_interval_ns)
        self.a.last_write_ns = <int64_t *> _ptr(self._last_write_ns)
        self.a.last_value = <int64_t *> _ptr(self._last_value)
        self.a.has_written = <uint8_t *> _ptr(self._has_written)

    @property
    def n_targets(self):
        """Number of targets."""
        return self.a.n_targets

    def actuate(self, values, mask=None, int64_t now_ns=0):
        """Write ``values`` (raw integers, e.g. kHz or uW) where ``mask`` is true; read each back.

        Returns ``(written, readback, status)``: the number of writes issued, the raw value read back
        per target and a ``ACT_*`` code (or ``-errno``) per target. ``readback`` and ``status`` are
        reused by the next call; copy them to keep them. ``now_ns`` (monotonic, 0 = now) is for tests.
        """
        cdef int32_t written
        cdef int32_t n = self.a.n_targets
        vals = np.ascontiguousarray(values, dtype=np.int64)
        if vals.shape != (n,):
            raise ValueError(f"values must have shape ({n},), got {vals.shape}")
        if mask is None:
            m = self._mask
        else:
            m = np.ascontiguousarray(mask, dtype=np.uint8)
            if m.shape != (n,):
                raise ValueError(f"mask must have shape ({n},), got {m.shape}")
        cdef const int64_t *pvals = <const int64_t *> _ptr(vals)
        cdef const uint8_t *pmask = <const uint8_t *> _ptr(m)
        cdef int64_t *readback = <int64_t *> _ptr(self._readback)
        cdef int32_t *status = <int32_t *> _ptr(self._status)
        with nogil:
            written = pr_actuate(&self.a, pvals, pmask, now_ns, readback, status)
        return written, self._readback, self._status


cdef inline bint _starts_with(const unsigned char *s, Py_ssize_t n, const char *prefix) noexcept nogil:
    cdef Py_ssize_t k = 0
    while prefix[k] != 0:
        if k >= n or s[k] != <unsigned char> prefix[k]:
            return False
        k += 1
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
def proc_stat_cpus(const unsigned char[::1] text, int64_t[::1] busy, int64_t[::1] total):
    """Per-CPU busy and total ticks of a ``/proc/stat`` text into ``busy``/``total`` (-1 = unknown).

    The C twin of :func:`powerrl.envs.hw_node.parse_proc_stat_cpus_py` (same results, tested):
    busy = user + nice + system + irq + softirq + steal, total = busy + idle + iowait; the table of
    ``cpuN`` lines counts only as a whole: a line with a non-number, or fewer than 5 or a different
    number of columns than the others (a torn read), leaves every CPU unknown. Returns
    ``procs_running`` (0 when absent or unparsable).
    """
    cdef Py_ssize_t n = text.shape[0], i = 0, j, c, ncpu = busy.shape[0]
    cdef int64_t v[10]
    cdef int64_t running = 0, x, cpu
    cdef int cols, want = -1, k
    cdef bint bad = False, digits
    busy[:] = -1
    total[:] = -1
    cdef int64_t[::1] tmp_b = np.full(ncpu, -1, dtype=np.int64)
    cdef int64_t[::1] tmp_t = np.full(ncpu, -1, dtype=np.int64)
    with nogil:
        while i < n:
            # -- one line: [i, j) -----------------------------------------------------------------
            j = i
            while j < n and text[j] != 10:
                j += 1
            if not bad and j - i > 3 and text[i] == 99 and text[i + 1] == 112 and text[i + 2] == 117 and 48 <= text[i + 3] <= 57:
                c = i + 3
                cpu = 0
                while c < j and 48 <= text[c] <= 57:
                    if c - i - 3 >= 9:  # no node has a billion CPUs: a crafted number, not an id
                        bad = True
                        break
                    cpu = cpu * 10 + (text[c] - 48)
                    c += 1
                cols = 0
                while c < j:
                    while c < j and text[c] == 32:
                        c += 1
                    if c >= j:
                        break
                    digits = False
                    x = 0
                    k = 0
                    while c < j and 48 <= text[c] <= 57:
                        x = x * 10 + (text[c] - 48)
                        digits = True
                        c += 1
                        k += 1
                    if k > 18:  # would overflow int64: not a tick count
                        bad = True
                        break
                    if not digits or (c < j and text[c] != 32):
                        bad = True
                        break
                    if cols < 10:
                        v[cols] = x
                    cols += 1
                if cols < 5 or (want >= 0 and cols != want):
                    bad = True
                want = cols
                for k in range(cols, 8):
                    v[k] = 0
                if not bad and 0 <= cpu < ncpu:
                    tmp_b[cpu] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                    tmp_t[cpu] = tmp_b[cpu] + v[3] + v[4]
            elif j - i > 14 and _starts_with(&text[i], j - i, b"procs_running "):
                c = i + 14
                while c < j and text[c] == 32:
                    c += 1
                x = 0
                digits = False
                while c < j and 48 <= text[c] <= 57:
                    x = x * 10 + (text[c] - 48)
                    digits = True
                    c += 1
                if digits and (c == j or text[c] == 32):
                    running = x
            i = j + 1
    if not bad:
        busy[:] = tmp_b
        total[:] = tmp_t
    return running
