"""Telemetry: what to sample, the native :class:`Sampler` and its pure-Python twin :class:`PyReader`.

:func:`discover_sensors` lists the files; :class:`PyReader` reads the same files with the same semantics.

A :class:`Sensor` is one integer attribute (or the ``cpu`` line of ``/proc/stat``) with its unit
conversion: gauges are ``raw * scale`` (kHz -> MHz is ``1e-3``, m degC -> degC is ``1e-3``), counters
are unwrapped (``energy_uj`` wraps after ``max_energy_range_uj``, powercap.rst) and scaled (uJ -> J is
``1e-6``); ``/proc/stat`` gives the utilisation in [0, 1] since the previous sample. A failed read gives
NaN for that sensor and is counted with its errno; the other sensors are unaffected.

:class:`PyReader` is the equivalence-test twin of ``powerrl/_core/sampler.h`` and the benchmark
baseline: it opens, reads and closes every file per sample (``preopened=True`` uses ``os.pread``
on kept descriptors instead).
"""

from __future__ import annotations

import errno as _errno
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from powerrl.hw.cpufreq import KHZ_PER_MHZ, Cpufreq
from powerrl.hw.errors import HwError
from powerrl.hw.rapl import Rapl
from powerrl.hw.sysfs import CPUFREQ_DIR, PROC_STAT, SysfsRoot
from powerrl.hw.thermal import Thermal

#: Sensor kinds, equal to ``SENSOR_*`` of :mod:`powerrl._core.sampler` (checked by tests).
GAUGE, COUNTER, PROCSTAT_UTIL = 0, 1, 2
EPARSE = _errno.EBADMSG  # errno recorded for an unparsable value (PR_EPARSE in sampler.h)


@dataclass(frozen=True)
class Sensor:
    """One sampled attribute: ``name`` (unit suffix included), path, kind, SI per raw unit, wrap range."""

    name: str
    rel: str
    kind: int = GAUGE
    scale: float = 1.0
    wrap_raw: int = 0


def discover_sensors(root: SysfsRoot, *, cpufreq: bool = True, rapl: bool = True, thermal: bool = True,
                     hwmon: bool = True, procstat: bool = True) -> list[Sensor]:
    """Every sensor the node offers, in a stable order: frequencies, energies, temperatures, utilisation.

    Files that exist but cannot be read (a root-only ``energy_uj`` as non-root) are still listed:
    the sampler records their error per sensor, and ``powerrl hw probe`` explains it.
    """
    out: list[Sensor] = []
    if cpufreq:
        cf = Cpufreq(root)
        for pid in cf.policy_ids():
            out.append(Sensor(f"policy{pid}.cur_freq_mhz", f"{CPUFREQ_DIR}/policy{pid}/scaling_cur_freq", GAUGE,
                              1.0 / KHZ_PER_MHZ))
    if rapl:
        r = Rapl(root)
        for z in r.zones():
            label = z.name if z.parent is None else f"{_zone_name(root, z.parent)}/{z.name}"
            out.append(Sensor(f"{label}.energy_j", z.energy_rel, COUNTER, 1e-6, z.max_energy_range_uj))
    th = Thermal(root)
    if thermal:
        for tz in th.zones():
            out.append(Sensor(f"thermal_zone{tz.id}.{tz.type}.temp_c", tz.temp_rel, GAUGE, 1e-3))
    if hwmon:
        for hs in th.hwmon_sensors():
            unit = {"temp": "temp_c", "power": "power_w", "energy": "energy_j"}[hs.kind]
            chip_dir, entry = hs.rel.split("/")[-2:]
            kind = COUNTER if hs.kind == "energy" else GAUGE
            stem = entry.removesuffix("_input")  # "temp1", "power1_average"
            out.append(Sensor(f"{chip_dir}.{hs.chip}.{stem}.{unit}", hs.rel, kind, hs.scale))
    if procstat and root.exists(PROC_STAT):
        out.append(Sensor("proc_stat.util", PROC_STAT, PROCSTAT_UTIL, 1.0))
    return out


def _zone_name(root: SysfsRoot, zid: str) -> str:
    return root.try_str(f"sys/class/powercap/{zid}/name") or zid


_INT = re.compile(rb"^[ \t]*([+-]?[0-9]+)[ \t\n\x00]*$")


def _parse_procstat(data: bytes) -> tuple[int, int] | None:
    line = data.split(b"\n", 1)[0]
    if not line.startswith(b"cpu "):
        return None
    f: list[int] = []
    for tok in line[4:].split(b" "):
        if not tok:
            continue
        if not tok.isdigit() or len(f) == 8:
            break
        f.append(int(tok))
    if len(f) < 4:
        return None
    f += [0] * (8 - len(f))
    busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    return busy, busy + f[3] + f[4]


class PyReader:
    """Pure-Python sampler of ``sensors`` with the semantics of ``sampler.h`` (one row per :meth:`sample`)."""

    def __init__(self, root: SysfsRoot, sensors: list[Sensor], *, preopened: bool = False) -> None:
        self.root = root
        self.sensors = list(sensors)
        n = len(self.sensors)
        self.paths = [str(root.path(s.rel)) for s in self.sensors]
        self.kind = [s.kind for s in self.sensors]
        self.scale = [s.scale for s in self.sensors]
        self.wrap = [s.wrap_raw for s in self.sensors]
        self.last_raw = [0] * n
        self.last_raw2 = [0] * n
        self.wrap_base = [0] * n
        self.have_last = [False] * n
        self.err_count = np.zeros(n, dtype=np.int64)
        self.last_errno = np.zeros(n, dtype=np.int32)
        self.fds: list[int] | None = None
        if preopened:
            self.fds = []
            for i, p in enumerate(self.paths):
                try:
                    self.fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
                except OSError as exc:
                    self.fds.append(-1)
                    self.last_errno[i] = exc.errno or 0

    def close(self) -> None:
        """Close the kept descriptors (``preopened=True``)."""
        for fd in self.fds or ():
            if fd >= 0:
                os.close(fd)
        self.fds = None

    def _read(self, i: int) -> bytes:
        if self.fds is not None:
            fd = self.fds[i]
            if fd < 0:
                raise OSError(int(self.last_errno[i]), "not open")
            return os.pread(fd, 511, 0)
        with open(self.paths[i], "rb", buffering=0) as fh:
            return fh.read(511)

    def sample(self) -> np.ndarray:
        """Read every sensor once; returns the values in SI units (NaN where a read failed)."""
        out = np.full(len(self.sensors), np.nan)
        for i in range(len(self.sensors)):
            try:
                data = self._read(i)
            except OSError as exc:
                self.err_count[i] += 1
                self.last_errno[i] = exc.errno or 0
                continue
            if self.kind[i] == PROCSTAT_UTIL:
                parsed = _parse_procstat(data)
                if parsed is None:
                    self.err_count[i] += 1
                    self.last_errno[i] = EPARSE
                    continue
                busy, total = parsed
                if self.have_last[i] and total > self.last_raw2[i] and busy >= self.last_raw[i]:
                    out[i] = (busy - self.last_raw[i]) / (total - self.last_raw2[i])
                self.last_raw[i], self.last_raw2[i], self.have_last[i] = busy, total, True
                continue
            m = _INT.match(data)
            if m is None:
                self.err_count[i] += 1
                self.last_errno[i] = EPARSE
                continue
            raw = int(m.group(1))
            if self.kind[i] == COUNTER:
                if self.have_last[i] and raw < self.last_raw[i] and self.wrap[i] > 0:
                    self.wrap_base[i] += self.wrap[i] + 1
                self.last_raw[i], self.have_last[i] = raw, True
                out[i] = float(self.wrap_base[i] + raw) * self.scale[i]
            else:
                out[i] = float(raw) * self.scale[i]
        return out


@dataclass(frozen=True)
class SamplerStats:
    """Timing of a sampler run: samples, missed deadlines, lateness percentiles (s), CPU time (s)."""

    samples: int
    missed: int
    late_p50_s: float
    late_p99_s: float
    late_max_s: float
    cpu_time_s: float
    wall_s: float

    @property
    def cpu_share(self) -> float:
        """Sampler CPU time as a fraction of one core over the run."""
        return self.cpu_time_s / self.wall_s if self.wall_s > 0 else float("nan")


class Sampler:
    """Samples ``sensors`` under ``root`` every ``period_s`` on a native thread (no GIL, no drift).

    Args:
        root: hardware root.
        sensors: what to sample; default :func:`discover_sensors`.
        period_s: sampling period in s (default 0.1).
        capacity: ring rows (default 1024, i.e. ~102 s at 100 ms); window statistics cover at most
            ``capacity - 1`` rows.
        rt_priority: ``> 0`` asks for SCHED_FIFO at this priority (root/CAP_SYS_NICE) to cut wake-up
            jitter under CPU load; when refused the sampler runs normally (see :meth:`stats`).
    """

    def __init__(self, root: SysfsRoot, sensors: list[Sensor] | None = None, *, period_s: float = 0.1,
                 capacity: int = 1024, rt_priority: int = 0) -> None:
        from powerrl._core.sampler import NativeSampler

        self.root = root
        self.sensors = discover_sensors(root) if sensors is None else list(sensors)
        self.names = [s.name for s in self.sensors]
        self._fds: list[int] = []
        open_errno = []
        for s in self.sensors:
            try:
                self._fds.append(root.open_fd(s.rel))
                open_errno.append(0)
            except HwError as exc:
                self._fds.append(-1)
                open_errno.append(exc.errno or _errno.EIO)
        self.native: Any = NativeSampler(self._fds, [s.kind for s in self.sensors], [s.scale for s in self.sensors],
                                         [s.wrap_raw for s in self.sensors], open_errno, period_s=period_s,
                                         capacity=capacity, rt_priority=rt_priority)
        self.period_s = period_s
        self._t_start: float | None = None
        self._wall = 0.0

    def start(self) -> Sampler:
        """Start sampling (first sample at once)."""
        from powerrl._core.sampler import monotonic_ns

        self._t_start = monotonic_ns() * 1e-9
        self.native.start()
        return self

    def stop(self) -> None:
        """Stop sampling (immediately, not after a period)."""
        from powerrl._core.sampler import monotonic_ns

        self.native.stop()
        if self._t_start is not None:
            self._wall += monotonic_ns() * 1e-9 - self._t_start
            self._t_start = None

    def close(self) -> None:
        """Stop and close every descriptor."""
        self.stop()
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds = []

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample_once(self) -> np.ndarray:
        """Take one sample synchronously (sampler stopped) and return it."""
        self.native.sample_once()
        latest = self.native.latest()
        return np.asarray(latest[1])

    def latest(self) -> tuple[float, dict[str, float]] | None:
        """Newest sample as ``(monotonic time in s, {sensor name: value})``; ``None`` before the first."""
        got = self.native.latest()
        if got is None:
            return None
        t_s, values = got
        return t_s, dict(zip(self.names, values.tolist(), strict=True))

    def window(self, seconds: float) -> dict[str, dict[str, float]]:
        """Statistics over the last ``seconds``: per sensor ``mean``, ``min``, ``max`` and ``rate`` (/s)."""
        k = max(1, int(round(seconds / self.period_s)))
        w = self.native.window(k)
        return {name: {"mean": float(w["mean"][i]), "min": float(w["min"][i]), "max": float(w["max"][i]),
                       "rate": float(w["rate"][i])} for i, name in enumerate(self.names)}

    def errors(self) -> dict[str, tuple[int, str]]:
        """Sensors that failed at least once: ``{name: (failures, errno name)}``."""
        counts, codes = self.native.err_count, self.native.last_errno
        return {n: (int(counts[i]), _errno.errorcode.get(int(codes[i]), str(int(codes[i]))))
                for i, n in enumerate(self.names) if counts[i]}

    def stats(self) -> SamplerStats:
        """Samples, missed deadlines, lateness p50/p99/max and CPU time so far."""
        from powerrl._core.sampler import monotonic_ns

        wall = self._wall + (monotonic_ns() * 1e-9 - self._t_start if self._t_start is not None else 0.0)
        late = late_ns_in_ring(self.native)
        p50, p99 = (np.percentile(late, [50, 99]) * 1e-9) if late.size else (float("nan"), float("nan"))
        return SamplerStats(int(self.native.count), int(self.native.missed), float(p50), float(p99),
                            float(self.native.max_late_s), float(self.native.cpu_time_s), wall)


def late_ns_in_ring(native: Any) -> np.ndarray:
    """Wake-up lateness (ns) of the samples still in the ring, oldest first."""
    c, cap = int(native.count), int(native.capacity)
    n = min(c, cap - 1)
    idx = np.arange(c - n, c) % cap
    return np.asarray(native.ring_late_ns)[idx].copy()


def hist_percentile(hist: np.ndarray, bin_s: float, q: float) -> float:
    """Upper edge (s) of the histogram bin holding quantile ``q`` in [0, 1] (resolution ``bin_s``)."""
    total = int(hist.sum())
    if total == 0:
        return float("nan")
    k = int(np.searchsorted(np.cumsum(hist), max(1, int(np.ceil(q * total)))))
    return (k + 1) * bin_s
