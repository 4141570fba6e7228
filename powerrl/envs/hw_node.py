"""A real node seen exactly as ``powerrl/NodeDVFS-v0`` sees a simulated one: observation, shield, actuation.

:class:`HardwareNode` is the one place that turns hardware readings into the NodeDVFS observation
(the same fields, units, order and bounds, so an exported policy's in-graph normalisation applies
unchanged) and turns P-state indices and power caps back into sysfs writes. The node agent
(:mod:`powerrl.runtime.agent`) and ``powerrl/RealNode-v0`` (:mod:`powerrl.envs.real_node`) both use it.

How each observation field is measured (per frequency domain; ``docs/deploy.md`` has the table):

* ``util``: busy share of the domain's CPUs over the last period, from ``/proc/stat`` ticks
  (user + nice + system + irq + softirq + steal over all but idle + iowait: ``filesystems/proc.rst``).
* ``offered_load``: ``util * speed``, the work done in units of capacity at f_max, with the
  simulator's speed ``1 / ((1 - m) f_max / f_cur + m)`` (``m`` = ``mem_bound``): the simulator's
  offered load while the domain is not saturated (saturation hides excess demand).
* ``mem_bound``: the host file's constant (hardware counters are not needed by the policy's
  decision in practice, and ``perf`` needs privileges most deployments do not grant).
* ``pstate``: the P-state index last written (before the first write: nearest to ``scaling_cur_freq``).
* ``temp_die_c``: the domain's package temperature (``x86_pkg_temp`` zone or ``coretemp``/``k10temp``).
* ``power_w``: the domain's RAPL package energy over the last period (J/s); a zone shared by
  several domains is split equally.
* ``latency_slack``: ``1 - p99 / sla_ms`` from the application's ``latency_file``; without one,
  the M/M/1 estimate ``p99 = ln(100) * service_ms / speed / (1 - util)`` (M/M/1 response time is
  exponential with rate ``mu - lambda``).
* ``backlog_s``: runnable tasks beyond the CPUs (``procs_running`` of ``/proc/stat``) times the
  service time, per CPU: a queue proxy.
* ``tod_sin``, ``tod_cos``: local time of day.

Pitfalls: the first reading has no previous one, so rates (util, power) are NaN until the second;
callers treat NaN features as stale sensors (the watchdog's fallback decides). A gauge that fails
to read keeps its last good value for ``SENSOR_HOLD_READS`` consecutive reads first (still listed
in ``Reading.errors``); counters are never held.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from powerrl._core.sampler import proc_stat_cpus
from powerrl.control import ControlTarget
from powerrl.envs.node_dvfs import DOMAIN_FIELDS, ENV_ID, GLOBAL_FIELDS, dvfs_spaces
from powerrl.envs.target import readonly_copy
from powerrl.errors import PowerrlError
from powerrl.hw.actuator import ActuationReport, Actuator, Target, cpufreq_targets
from powerrl.hw.cpufreq import KHZ_PER_MHZ, Cpufreq
from powerrl.hw.errors import HwError
from powerrl.hw.host import HostLayout
from powerrl.hw.procstat import PROC_STAT
from powerrl.hw.rapl import UW_PER_W, Rapl, RaplZone
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sensors import COUNTER, GAUGE, Sampler, Sensor
from powerrl.model.profiles import get_profile
from powerrl.shield.config import ShieldConfig
from powerrl.shield.shield import Shield, Telemetry
from powerrl.shield.thermal import ThermalShield, UnitModel

#: The zone name the hardware provides to the shield: one CPU package temperature per domain.
HW_ZONES = ("package",)
#: cpufreq policies per domain whose ``scaling_cur_freq`` is sampled (evenly spread over the domain):
#: the domain's mean frequency only scales ``offered_load``, and every extra file costs ~3 us cold.
FREQ_SAMPLES_PER_DOMAIN = 4
#: A gauge (temperature, frequency) that fails to read keeps its last good value for this many
#: consecutive reads before it reads as unknown: one torn or EIO read (an I2C/BMC sensor, a
#: concurrent rewrite) must not floor a domain; at 100 ms this holds a value at most 0.2 s old,
#: well inside the die's ~1 s time constant and the shield's 0.5 s telemetry age limit.
SENSOR_HOLD_READS = 2
#: Unchanged P-states are re-written (and read back, to catch overrides) at least this often, s.
REASSERT_S = 1.0
#: Bytes first read from ``/proc/stat`` (about 150 bytes per CPU line: ~400 CPUs); doubled while a
#: read fills it. Not more: a 1 MiB read buffer is an mmap/munmap per read (~10 us hot, far more cold).
PROC_STAT_BYTES = 1 << 16
#: ln(100): the 99th percentile of an exponential distribution in units of its mean.
LN_100 = math.log(100.0)
_FIELD = {name: j for j, (name, *_rest) in enumerate(DOMAIN_FIELDS)}
_LO = np.array([f[2] for f in DOMAIN_FIELDS])
_HI = np.array([f[3] for f in DOMAIN_FIELDS])


@dataclass
class Reading:
    """One synchronous sample of a node (SI units, per domain unless stated)."""

    t_s: float  # monotonic clock of the sample, s
    wall_s: float  # wall clock, s since the epoch
    util: np.ndarray
    freq_mhz: np.ndarray
    temp_c: np.ndarray
    power_w: np.ndarray
    energy_j: float  # cumulative energy of the measured zones, J (NaN without RAPL)
    latency_ms: float  # p99 latency, ms (NaN when unknown)
    procs_running: int
    errors: dict[str, int] = field(default_factory=dict)  # sensor -> failed reads this sample


def parse_proc_stat_cpus(text: str | bytes, n_cpus: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-CPU busy and total ticks (``[n_cpus]``, -1 where a CPU is missing) and ``procs_running``.

    Busy time is user + nice + system + irq + softirq + steal; idle is idle + iowait (the split of
    ``powerrl.hw.procstat`` and ``sampler.h``). The ``cpuN`` table counts as a whole: a torn or
    foreign text (a non-number, fewer than 5 columns, rows of different lengths) leaves every CPU
    unknown rather than shifting values between CPUs. Parsed in C (``proc_stat_cpus`` in
    ``sampler.pyx``): about 10x faster than the Python twin :func:`parse_proc_stat_cpus_py`.
    """
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    busy = np.empty(n_cpus, dtype=np.int64)
    total = np.empty(n_cpus, dtype=np.int64)
    running = proc_stat_cpus(np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8), busy, total)
    return busy, total, int(running)


def parse_proc_stat_cpus_py(text: str, n_cpus: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pure-Python twin of :func:`parse_proc_stat_cpus`: the plain reference its C version is tested against."""
    busy = np.full(n_cpus, -1, dtype=np.int64)
    total = np.full(n_cpus, -1, dtype=np.int64)
    found: dict[int, tuple[int, int]] = {}
    running, want, bad = 0, -1, False
    for line in text.split("\n"):
        if line.startswith("cpu") and line[3:4].isdigit():
            if bad:
                continue
            head = 3
            while head < len(line) and line[head].isdigit():
                head += 1
            tokens = [t for t in line[head:].split(" ") if t]
            if (head - 3 > 9 or len(tokens) < 5 or (want >= 0 and len(tokens) != want)
                    or not all(t.isascii() and t.isdigit() and len(t) <= 18 for t in tokens)):
                bad = True  # a torn or foreign table: every CPU unknown
                continue
            want = len(tokens)
            v = [int(t) for t in tokens[:8]] + [0] * max(0, 8 - len(tokens))
            b = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            found[int(line[3:head])] = (b, b + v[3] + v[4])
        elif line.startswith("procs_running "):
            parts = line.split()
            if len(parts) > 1 and parts[1].isascii() and parts[1].isdigit():
                running = int(parts[1])
    if not bad:
        for cpu, (b, t) in found.items():
            if cpu < n_cpus:
                busy[cpu], total[cpu] = b, t
    return busy, total, running


def unit_model(layout: HostLayout) -> UnitModel:
    """The shield's power and thermal model of each domain.

    The host profile's server split over the domains, evaluated at the host's P-state table
    (docs/model.md).
    """
    n = len(layout.domains)
    return UnitModel.from_profile(get_profile(layout.config.profile), n, n, pstates_mhz=layout.pstates_mhz)


def node_shield(layout: HostLayout, cfg: ShieldConfig, source: str | None = None) -> Shield:
    """The thermal shield over a node's domains (units), checked against the host's zones and P-states."""
    cfg.check_zones(HW_ZONES, layout.config.name or "this host", source)
    cfg.check_pstates(len(layout.pstates_mhz), layout.config.name or "this host", source)
    return Shield(cfg, ThermalShield(cfg, unit_model(layout)))


def hardware_target(layout: HostLayout, period_s: float, shield_cfg: ShieldConfig) -> ControlTarget:
    """The :class:`ControlTarget` of a real node.

    Built as :func:`powerrl.envs.target.control_target` builds one for the simulator: baselines
    read the P-state table and per-domain powers from it.
    """
    prof = get_profile(layout.config.profile)
    model = unit_model(layout)
    n = len(layout.domains)
    return ControlTarget(
        env_id=ENV_ID, dt_s=period_s, n_units=n, unit_fields=tuple(f[0] for f in DOMAIN_FIELDS),
        global_fields=tuple(f[0] for f in GLOBAL_FIELDS), freqs_mhz=readonly_copy(layout.pstates_mhz),
        idle_w=readonly_copy(np.full(n, prof.idle_w / n)), busy_w=readonly_copy(np.full(n, prof.busy_w / n)),
        busy_w_at_pstate=readonly_copy(model.full_power_w),
        extras={"shield": shield_cfg, "sla_ms": layout.config.sla_ms, "service_ms": layout.config.service_ms})


class HardwareNode:
    """Samples a bound host, builds NodeDVFS observations and actuates P-states and RAPL caps.

    Args:
        layout: the bound host (:func:`powerrl.hw.host.bind_host`).
        writer: the session's :class:`SafeWriter`; None = read-only (dry run: nothing is ever written).
        period_s: control period, s (for the sampler's statistics).
        fixed_dt_s: time between samples used for rates (power), s; None = the measured time. Set it
            when a fake kernel is stepped in-process faster than real time (tests, ``RealNode-v0``
            over a :class:`~powerrl.hw.fake.FakeKernel`).
    """

    def __init__(self, layout: HostLayout, writer: SafeWriter | None = None, period_s: float = 0.1,
                 fixed_dt_s: float | None = None) -> None:
        self.layout = layout
        self.fixed_dt_s = fixed_dt_s
        self.root = layout.root
        self.writer = writer
        self.period_s = period_s
        cfg = layout.config
        self.n = len(layout.domains)
        self.n_pstates = len(layout.pstates_mhz)
        self.f_max_mhz = float(layout.pstates_mhz[-1])
        self.action_space, self.observation_space = dvfs_spaces(self.n, self.n_pstates)
        self.policy_domain = layout.policy_domain
        sampled = []
        for d in layout.domains:
            pick = np.unique(np.linspace(0, len(d.policies) - 1, min(FREQ_SAMPLES_PER_DOMAIN, len(d.policies)))
                             .round().astype(int))
            sampled += [(d.index, d.policies[i]) for i in pick]
        self._freq_domain = np.array([i for i, _ in sampled], dtype=np.int64)
        self._freq_count = np.bincount(self._freq_domain, minlength=self.n).astype(np.float64)
        sensors = [Sensor(f"policy{p.id}.cur_freq_mhz", p.attr("scaling_cur_freq"), GAUGE, 1.0 / KHZ_PER_MHZ)
                   for _, p in sampled]
        self._freq_slice = slice(0, len(sensors))
        # Energy: one counter per distinct zone; share[d, z] splits a zone over the domains it measures.
        zones: list[RaplZone] = []
        for d in layout.domains:
            if d.rapl is not None and d.rapl.id not in [z.id for z in zones]:
                zones.append(d.rapl)
        self._zone_share = np.zeros((self.n, len(zones)))
        for d in layout.domains:
            if d.rapl is not None:
                self._zone_share[d.index, [z.id for z in zones].index(d.rapl.id)] = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            users = self._zone_share.sum(axis=0)
            self._zone_share = np.where(users > 0, self._zone_share / np.maximum(users, 1), 0.0)
        self.zones = zones
        e0 = len(sensors)
        sensors += [Sensor(f"{z.name}.energy_j", z.energy_rel, COUNTER, 1e-6, z.max_energy_range_uj) for z in zones]
        self._energy_slice = slice(e0, len(sensors))
        t0 = len(sensors)
        self._temp_index = np.full(self.n, -1)
        for d in layout.domains:
            if d.temp_rel is not None:
                self._temp_index[d.index] = len(sensors)
                sensors.append(Sensor(f"domain{d.index}.temp_c", d.temp_rel, GAUGE, 1e-3))
        self._temp_slice = slice(t0, len(sensors))
        self.sensors = sensors
        self.sampler = Sampler(self.root, sensors, period_s=period_s)
        self._gauge = np.array([s.kind == GAUGE for s in sensors])
        self._last_good = np.full(len(sensors), np.nan)
        self._fails = np.zeros(len(sensors), dtype=np.int64)
        self._cpu_domain = np.full(max(max(d.cpus) for d in layout.domains) + 1, -1)
        for d in layout.domains:
            self._cpu_domain[list(d.cpus)] = d.index
        self._n_cpus = len(self._cpu_domain)
        self._domain_cpus = np.array([len(d.cpus) for d in layout.domains], dtype=np.float64)
        self._prev_ticks: tuple[np.ndarray, np.ndarray] | None = None
        self._stat_fd = -1
        self._stat_bytes = PROC_STAT_BYTES
        self._pstate_written_s = -np.inf
        self._prev_energy: np.ndarray | None = None
        self._prev_t: float | None = None
        self._latency_path = None
        if cfg.latency_file:
            lf = cfg.latency_file
            self._latency_path = lf if os.path.isabs(lf) and cfg.root == "/" else str(self.root.path(lf.lstrip("/")))
        self.pstate = np.full(self.n, -1, dtype=np.int64)  # last written (before: the running one; -1 unknown)
        self._written = False
        self._freq_act: Actuator | None = None
        self._cap_act: Actuator | None = None
        self._cap_original_w = np.zeros(0)  # the cap zones' limits before any write (set when opened), W
        self._cap_zones = [z for z in zones if any(c.name == "long_term" for c in z.constraints)]
        self.cap_w = np.full(self.n, np.inf)  # caps last written per domain (W, inf = none)
        self.reading: Reading | None = None

    # -- sensing -------------------------------------------------------------------------------------
    def sample(self) -> Reading:
        """Take one sample now (native reads of every sensor plus ``/proc/stat``)."""
        self.sampler.native.sample_once()
        t_s, values = self.sampler.native.latest()
        wall = time.time()
        errors: dict[str, int] = {}
        if not np.isfinite(values).all():
            bad = ~np.isfinite(values)
            for i in np.flatnonzero(bad).tolist():
                errors[self.sensors[i].name] = 1  # reported even when held below
            held = bad & self._gauge & (self._fails < SENSOR_HOLD_READS) & np.isfinite(self._last_good)
            self._fails = np.where(bad, self._fails + 1, 0)
            values = np.where(held, self._last_good, values)
        elif self._fails.any():
            self._fails[:] = 0
        self._last_good = np.where(np.isfinite(values), values, self._last_good)
        n = self.n
        text = self._read_proc_stat()
        if not text:
            errors["proc_stat"] = 1  # util is then unknown (NaN), not frozen at the last value
        busy, total, running = parse_proc_stat_cpus(text, self._n_cpus)
        util = np.full(n, np.nan)
        if self._prev_ticks is not None:
            pb, pt = self._prev_ticks
            # Counters never go backwards; a CPU whose counters do (a torn read, a hot-unplug) is skipped this time.
            ok = (busy >= pb) & (total >= pt) & (pb >= 0) & (self._cpu_domain >= 0)
            db = np.where(ok, busy - pb, 0).astype(np.float64)
            dt = np.where(ok, total - pt, 0).astype(np.float64)
            sb = np.bincount(self._cpu_domain[ok], weights=db[ok], minlength=n)
            st = np.bincount(self._cpu_domain[ok], weights=dt[ok], minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                util = np.where(st > 0, np.clip(sb / np.maximum(st, 1), 0.0, 1.0), np.nan)
                # No tick elapsed (USER_HZ = 100 over a 100 ms period can give 0 on an idle CPU): keep the last.
                if self.reading is not None and "proc_stat" not in errors:
                    util = np.where(st > 0, util, self.reading.util)
        self._prev_ticks = (busy, total)
        freqs = values[self._freq_slice]
        # A NaN (failed read) makes its domain's sum, and so its mean, NaN.
        freq = np.bincount(self._freq_domain, weights=freqs, minlength=n) / self._freq_count
        energy = values[self._energy_slice]
        power = np.full(n, np.nan)
        if self.zones and self._prev_energy is not None and self._prev_t is not None and t_s > self._prev_t:
            dt_s = self.fixed_dt_s if self.fixed_dt_s is not None else t_s - self._prev_t
            zone_w = (energy - self._prev_energy) / dt_s
            power = self._zone_share @ np.where(np.isfinite(zone_w), zone_w, np.nan)
        self._prev_energy, self._prev_t = energy, t_s
        temp = np.full(n, np.nan)
        have = self._temp_index >= 0
        temp[have] = values[self._temp_index[have]]
        r = Reading(t_s=float(t_s), wall_s=wall, util=util, freq_mhz=freq, temp_c=temp, power_w=power,
                    energy_j=float(np.sum(energy)) if self.zones else math.nan, latency_ms=self._latency_ms(),
                    procs_running=running, errors=errors)
        known = np.isfinite(freq)
        if not self._written and known.any():
            # Until the agent writes, the P-state is whatever the kernel runs (where it reads).
            self.pstate[known] = self.layout.pstate_of_mhz(freq[known])
        self.reading = r
        return r

    def _read_proc_stat(self) -> bytes:
        """``/proc/stat`` through a kept descriptor (``pread`` at 0 regenerates it); b"" when unreadable."""
        try:
            if self._stat_fd < 0:
                self._stat_fd = self.root.open_fd(PROC_STAT)
            data = os.pread(self._stat_fd, self._stat_bytes, 0)
            while len(data) >= self._stat_bytes:  # a node with more CPUs than the buffer holds
                self._stat_bytes *= 2
                data = os.pread(self._stat_fd, self._stat_bytes, 0)
            return data
        except (OSError, HwError):
            if self._stat_fd >= 0:
                os.close(self._stat_fd)
                self._stat_fd = -1
            return b""

    def _latency_ms(self) -> float:
        if self._latency_path is None:
            return math.nan
        try:
            with open(self._latency_path, encoding="ascii") as fh:
                v = float(fh.read().strip())
            return v if v >= 0 and math.isfinite(v) else math.nan
        except (OSError, ValueError):
            return math.nan

    def observation(self, r: Reading) -> np.ndarray:
        """The NodeDVFS-v0 observation of reading ``r`` (float32; NaN where a sensor failed)."""
        cfg = self.layout.config
        n = self.n
        per = np.empty((n, len(DOMAIN_FIELDS)))
        # Throughput relative to f_max, the simulator's (node_step.h pr_speed): run time = CPU part
        # f_max/f + memory part, so memory-bound work loses less than the frequency ratio.
        m = cfg.mem_bound
        speed = 1.0 / ((1.0 - m) * self.f_max_mhz / r.freq_mhz + m)
        per[:, _FIELD["util"]] = r.util
        per[:, _FIELD["offered_load"]] = r.util * speed
        per[:, _FIELD["mem_bound"]] = cfg.mem_bound
        per[:, _FIELD["pstate"]] = np.maximum(self.pstate, 0) / (self.n_pstates - 1)
        per[:, _FIELD["temp_die_c"]] = r.temp_c
        per[:, _FIELD["power_w"]] = r.power_w
        if math.isfinite(r.latency_ms):
            p99 = np.full(n, r.latency_ms)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                p99 = np.where(r.util < 1.0, LN_100 * cfg.service_ms / speed / (1.0 - r.util), np.inf)
                p99 = np.where(np.isnan(r.util) | np.isnan(speed), np.nan, p99)  # unknown, not a violation
        per[:, _FIELD["latency_slack"]] = 1.0 - p99 / cfg.sla_ms
        cpus = self._domain_cpus.sum()
        per[:, _FIELD["backlog_s"]] = max(0, r.procs_running - cpus) / cpus * cfg.service_ms / 1000.0
        with np.errstate(invalid="ignore"):
            per = np.where(np.isnan(per), np.nan, np.clip(per, _LO, _HI))
        lt = time.localtime(r.wall_s)
        tod = 2.0 * math.pi * (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec) / 86400.0
        return np.concatenate([per.ravel(), [math.sin(tod), math.cos(tod)]]).astype(np.float32)

    def telemetry(self, r: Reading, inlet_c: float | None = None) -> Telemetry:
        """The shield's view of reading ``r`` (NaN temperatures read as hot; NaN power as 0 W)."""
        inlet = self.layout.config.inlet_c if inlet_c is None else inlet_c
        return Telemetry(temp_c=r.temp_c, unit_power_w=np.where(np.isnan(r.power_w), 0.0, r.power_w),
                         inlet_c=np.full(self.n, inlet), time_s=r.t_s)

    # -- actuation -----------------------------------------------------------------------------------
    def _require_writer(self) -> SafeWriter:
        if self.writer is None:
            raise HwError("this HardwareNode is read-only (dry run): pass a SafeWriter to actuate")
        return self.writer

    def prepare(self) -> None:
        """Open the frequency targets and, where caps are on, the RAPL limits; journaled first.

        Selects ``userspace`` for ``scaling_setspeed``. Called by the first write, or up front so that
        the first thermal or budget event does not pay for opening and journaling (milliseconds).
        """
        w = self._require_writer()
        if self.can_cap:
            self._open_caps(w)
        if self._freq_act is not None:
            return
        knob = self.layout.config.actuate
        pols = self.layout.policies
        if knob == "scaling_setspeed":
            cf = Cpufreq(self.root)
            for p in pols:
                if cf.governor(p) != "userspace":
                    cf.set_governor(w, p, "userspace")
        self._freq_act = Actuator(self.root, w, cpufreq_targets(pols, knob))

    def freqs_for(self, pstate: np.ndarray) -> np.ndarray:
        """Per-policy target frequencies (MHz) of per-domain P-states."""
        return self.layout.pstates_mhz[np.asarray(pstate, dtype=np.int64)[self.policy_domain]]

    def apply_pstates(self, pstate: np.ndarray, now_s: float | None = None) -> ActuationReport | None:
        """Write per-domain P-states to every policy of each domain (one native batch).

        P-states equal to the last written ones are not touched again until ``REASSERT_S`` has
        passed (``now_s``: monotonic seconds, default now); then the batch is re-written and read
        back, which catches a value changed behind the agent's back. Returns None when skipped.
        """
        self.prepare()
        assert self._freq_act is not None
        p = np.asarray(pstate, dtype=np.int64)
        now = time.monotonic() if now_s is None else now_s
        if np.array_equal(p, self.pstate) and now - self._pstate_written_s < REASSERT_S:
            return None
        report = self._freq_act.apply(self.freqs_for(p))
        self.pstate[:] = p
        self._pstate_written_s = now
        self._written = True
        return report

    @property
    def can_cap(self) -> bool:
        """Whether the host may write RAPL long-term limits for caps (config and zones allow it)."""
        return self.layout.config.rapl_caps and bool(self._cap_zones)

    def zone_caps_w(self, domain_cap_w: np.ndarray) -> np.ndarray:
        """Per cap zone limit (W) of per-domain caps (a zone shared by domains gets their sum)."""
        ids = [z.id for z in self.zones]
        out = np.zeros(len(self._cap_zones))
        for k, z in enumerate(self._cap_zones):
            j = ids.index(z.id)
            out[k] = float(np.sum(np.where(self._zone_share[:, j] > 0, domain_cap_w, 0.0)))
        return out

    def original_limits_w(self) -> np.ndarray:
        """The cap zones' long-term limits as the journal saved them (or as now, before any write), W."""
        rapl = Rapl(self.root)
        out = []
        saved = self.writer.saved if self.writer is not None else {}
        for z in self._cap_zones:
            c = rapl.constraint(z, "long_term")
            rel = c.attr(z.rel, "power_limit_uw")
            text = saved.get(rel)
            out.append(int(text) / UW_PER_W if text and text.strip().isdigit() else rapl.power_limit_w(z, c))
        return np.array(out)

    def _open_caps(self, w: SafeWriter) -> None:
        if self._cap_act is not None:
            return
        rapl = Rapl(self.root)
        targets = []
        for z in self._cap_zones:
            c = rapl.constraint(z, "long_term")
            hi = c.max_power_w if c.max_power_w else 1e6
            targets.append(Target(f"{z.name}.long_term.power_limit_w", c.attr(z.rel, "power_limit_uw"), UW_PER_W,
                                  0.0, hi, 0.0))
        self._cap_act = Actuator(self.root, w, targets)
        # Journaled by the actuator just now: the originals are fixed until a restore re-opens the caps.
        self._cap_original_w = self.original_limits_w()

    def apply_caps(self, domain_cap_w: np.ndarray) -> ActuationReport | None:
        """Write RAPL long-term limits for per-domain caps (W, inf = no cap: the original limit).

        Caps are rounded down to whole watts (no write churn from float noise) and clamped into the
        constraint's range. Returns None when the host has no cap zone or caps are off.
        """
        if not self.can_cap:
            return None
        self._open_caps(self._require_writer())
        assert self._cap_act is not None
        original = self._cap_original_w  # read once per opening, not from sysfs every tick
        want = self.zone_caps_w(np.asarray(domain_cap_w, dtype=np.float64))
        top_w = np.array([t.hi for t in self._cap_act.targets])
        limit = np.where(np.isfinite(want), np.minimum(np.floor(want), original), original)
        limit = np.clip(limit, 1.0, top_w)
        report = self._cap_act.apply(limit)
        self.cap_w = np.asarray(domain_cap_w, dtype=np.float64).copy()
        return report

    def actuate(self, pstate: np.ndarray | None, cap_w: np.ndarray) -> list[str]:
        """Write P-states (None: leave them) and, where any cap is or was in force, the RAPL caps.

        Never raises on a refused write: each failure is returned as ``"pstate: ..."`` or
        ``"cap: ..."`` for the caller to log, and the other write still happens.
        """
        errors = []
        if pstate is not None:
            try:
                self.apply_pstates(pstate)
            except PowerrlError as exc:
                errors.append(f"pstate: {exc}")
        if self.can_cap and (np.isfinite(cap_w).any() or np.isfinite(self.cap_w).any()):
            try:
                self.apply_caps(cap_w)
            except PowerrlError as exc:
                errors.append(f"cap: {exc}")
        return errors

    def reopen(self) -> None:
        """Forget the actuators (after the writer restored everything): the next write journals afresh."""
        for act in (self._freq_act, self._cap_act):
            if act is not None:
                act.close()
        self._freq_act = self._cap_act = None
        self.pstate[:] = -1  # after a restore the kernel's frequency runs: re-read at the next sample
        self.cap_w = np.full(self.n, np.inf)
        self._pstate_written_s = -np.inf
        self._written = False

    def close(self) -> None:
        """Close the sampler and actuators (restoring is the writer's job)."""
        self.reopen()
        self.sampler.close()
        if self._stat_fd >= 0:
            os.close(self._stat_fd)
            self._stat_fd = -1
