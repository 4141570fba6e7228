"""A fake ``/sys`` + ``/proc`` tree with the kernel's layout, units and quirks, and a fake kernel driving it.

Three parts, so that the backends run their real code path (same paths, same ``open``/``read``/
``write`` calls, same parsing) against a plain directory:

* :func:`make_fake_sysfs` writes the tree: cpufreq policies for acpi-cpufreq, intel_pstate or
  amd-pstate(-epp), powercap intel-rapl zones, thermal zones and cooling devices, hwmon chips,
  ``/proc/stat`` and ``perf_event_paranoid``, plus the marker :data:`~powerrl.hw.sysfs.FAKE_MARKER`
  holding the tree's parameters. Quirks reproduced: ``scaling_setspeed`` reads ``<unsupported>``
  unless the governor is ``userspace``; ``scaling_available_governors`` and
  ``scaling_available_frequencies`` end with a space before the newline; acpi-cpufreq lists turbo as
  base + 1 MHz; ``energy_uj`` is root-only (0400) and wraps after ``max_energy_range_uj``.
* :class:`FakeDriver` is the tree's ``store()`` callbacks. :class:`~powerrl.hw.sysfs.SysfsRoot` calls
  :meth:`FakeDriver.store` before writing a fake tree's file, and it raises ``OSError`` with the
  errno the kernel driver returns (``EINVAL`` for an unknown governor, ``scaling_setspeed`` outside
  userspace, a cooling state above ``max_state``; ``EACCES`` for read-only attributes and
  BIOS-locked RAPL zones; ``EBUSY`` for EPP under the performance policy) or returns the text the
  driver would store (a frequency resolved to the next table entry, a limit clamped into range).
  This is the documented injection hook for in-process tests.
* :class:`FakeKernel` polls the tree (in-process with :meth:`FakeKernel.step`, or as a process:
  ``powerrl hw fake-kernel DIR``) and reacts like the kernel and firmware: a write that bypassed the
  hook (the native actuator, a shell ``echo``) is validated with the same rules, and a rejected value
  is put back with the error logged to ``.powerrl-fake-kernel/errors.log`` (the writer's read-back
  then sees the old value); firmware clamps RAPL limits above ``constraint_N_max_power_uw`` and
  ignores writes to locked zones (a silent override that :meth:`powerrl.hw.safety.SafeWriter.verify`
  reports). Each step runs powerrl's own node model (the C kernel :class:`powerrl._core.sim.NodeKernel`
  when built, else its NumPy twin ``powerrl._core._reference.nodes_step``), one simulated node per
  CPU: ``scaling_cur_freq`` follows the governor, ``scaling_setspeed`` and the limits, RAPL
  ``energy_uj`` counters advance with the simulated power (and cap it), temperatures follow the RC
  thermal model, ``/proc/stat`` ticks follow the simulated utilisation.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from powerrl._core.arrays import NodeArrays
from powerrl.hw.errors import HwError
from powerrl.hw.safety import DEFAULT_ALLOWLIST
from powerrl.hw.sysfs import (
    AMD_PSTATE_DIR,
    CPUFREQ_DIR,
    FAKE_MARKER,
    HWMON_DIR,
    INTEL_PSTATE_DIR,
    PERF_PARANOID,
    POWERCAP_DIR,
    PROC_STAT,
    THERMAL_DIR,
    SysfsRoot,
)
from powerrl.model.power import volt_ratio

DRIVERS = ("acpi-cpufreq", "intel_pstate", "amd-pstate")
STATE_DIR = ".powerrl-fake-kernel"
USER_HZ = 100  # /proc/stat tick rate seen by user space (proc.rst)
RO, RW, ROOT_ONLY = 0o444, 0o644, 0o400


FAKE_PROFILE = "epyc7502"


def _profile_param(name: str) -> float:
    """One load-curve parameter of :data:`FAKE_PROFILE`."""
    from powerrl.model.profiles import get_profile

    return float(getattr(get_profile(FAKE_PROFILE), name))


@dataclass
class FakeSpec:
    """Parameters of a fake node (stored in the marker file; powers in W, temperatures in degC)."""

    cpus: int = 64
    sockets: int = 2
    driver: str = "acpi-cpufreq"
    freqs_khz: list[int] = field(default_factory=list)
    base_khz: int = 0
    energy_range_uj: int = 262_143_328_850  # typical package max_energy_range_uj (32-bit counter x 61 uJ)
    idle_w_per_socket: float = 55.0
    busy_w_per_socket: float = 205.0
    uncore_w_per_socket: float = 12.0
    dram_w_per_socket: float = 9.0
    platform_w: float = 40.0
    # Load-curve shape of the shipped profile measured with pinned P-states (docs/calibration.md), so
    # the fake node trades power for frequency the way the simulator's envs do.
    shape_r: float = field(default_factory=lambda: _profile_param("shape_r"))
    wake_share: float = field(default_factory=lambda: _profile_param("wake_share"))
    static_share: float = field(default_factory=lambda: _profile_param("static_share"))
    mem_bound: float = 0.2
    r_die_c_per_w: float = 0.08
    r_sink_c_per_w: float = 0.12
    tau_die_s: float = 1.0
    tau_sink_s: float = 18.0
    inlet_c: float = 24.0
    pl1_w: float = 230.0
    pl2_w: float = 276.0
    max_power_w: float = 300.0
    locked_zones: list[str] = field(default_factory=list)
    load: float = 0.3

    def validate(self) -> None:
        """Raise :class:`HwError` for impossible layouts."""
        if self.driver not in DRIVERS:
            raise HwError(f"fake driver {self.driver!r} unknown; choose one of {', '.join(DRIVERS)}")
        if self.sockets < 1 or self.cpus < self.sockets or self.cpus % self.sockets:
            raise HwError(f"need cpus >= sockets >= 1 with cpus divisible by sockets, got {self.cpus} CPUs on "
                          f"{self.sockets} sockets")
        if self.energy_range_uj < 1000:
            raise HwError(f"energy_range_uj must be >= 1000 uJ, got {self.energy_range_uj}")
        if not 0.0 <= self.load <= 1.0:
            raise HwError(f"load must be in [0, 1], got {self.load}")


def _default_freqs(driver: str) -> tuple[list[int], int]:
    if driver == "acpi-cpufreq":
        # Xeon-like table; acpi-cpufreq lists the turbo range as base + 1 MHz (cpufreq.rst, "boost").
        table = list(range(1_000_000, 2_400_001, 200_000)) + [2_401_000]
        return table, 2_400_000
    if driver == "intel_pstate":
        return list(range(800_000, 3_500_001, 100_000)), 2_400_000
    return list(range(400_000, 3_400_001, 100_000)), 2_500_000


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, rel: str, text: str, mode: int = RO) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():  # rewriting a read-only attribute as a non-root owner: lend write permission
            os.chmod(p, stat.S_IMODE(p.stat().st_mode) | stat.S_IWUSR)
        p.write_text(text + "\n", encoding="ascii")
        os.chmod(p, mode)


def make_fake_sysfs(directory: str | os.PathLike[str], *, cpus: int = 64, sockets: int = 2,
                    driver: str = "acpi-cpufreq", energy_range_uj: int | None = None,
                    locked_zones: tuple[str, ...] = (), load: float = 0.3) -> SysfsRoot:
    """Create a fake tree in ``directory`` (created; must be empty or absent) and return its root.

    Args:
        directory: where to create ``sys/``, ``proc/`` and the marker.
        cpus: logical CPUs (one cpufreq policy each, as acpi-cpufreq and intel_pstate create).
        sockets: packages; CPUs are split evenly, one RAPL package zone and thermal zone per socket.
        driver: ``acpi-cpufreq`` (Intel RAPL, table frequencies, userspace governor), ``intel_pstate``
            (active mode, EPP, psys zone) or ``amd-pstate`` (active amd-pstate-epp, energy-only RAPL).
        energy_range_uj: ``max_energy_range_uj`` of every zone (small values exercise the wrap).
        locked_zones: RAPL zone ids whose limits the "BIOS" locked (writes EACCES / ignored).
        load: initial CPU load in [0, 1] (node-seconds per second at f_max, see docs/model.md).
    """
    spec = FakeSpec(cpus=cpus, sockets=sockets, driver=driver, locked_zones=list(locked_zones), load=load)
    if energy_range_uj is not None:
        spec.energy_range_uj = int(energy_range_uj)
    spec.validate()
    spec.freqs_khz, spec.base_khz = _default_freqs(driver)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise HwError(f"fake-sysfs directory {str(root)!r} is not empty; choose a new directory", path=str(root))
    w = _Writer(root)
    per = cpus // sockets
    fmin, fmax = min(spec.freqs_khz), max(spec.freqs_khz)

    # -- CPU topology and cpufreq (cpufreq.rst) ---------------------------------------------------
    w(f"{'sys/devices/system/cpu'}/online", f"0-{cpus - 1}")
    w(f"{'sys/devices/system/cpu'}/possible", f"0-{cpus - 1}")
    for c in range(cpus):
        w(f"sys/devices/system/cpu/cpu{c}/topology/physical_package_id", str(c // per))
    if driver == "acpi-cpufreq":
        governors, gov0, sdriver = "conservative ondemand userspace powersave performance schedutil ", "schedutil", \
            "acpi-cpufreq"
        w(f"{CPUFREQ_DIR}/boost", "1", RW)
    elif driver == "intel_pstate":
        governors, gov0, sdriver = "performance powersave ", "powersave", "intel_pstate"
        w(f"{INTEL_PSTATE_DIR}/status", "active", RW)
        w(f"{INTEL_PSTATE_DIR}/max_perf_pct", "100", RW)
        w(f"{INTEL_PSTATE_DIR}/min_perf_pct", str(round(100 * fmin / fmax)), RW)
        w(f"{INTEL_PSTATE_DIR}/no_turbo", "0", RW)
        w(f"{INTEL_PSTATE_DIR}/num_pstates", str(len(spec.freqs_khz)))
        w(f"{INTEL_PSTATE_DIR}/turbo_pct", str(round(100 * (fmax - spec.base_khz) / (fmax - fmin))))
    else:
        governors, gov0, sdriver = "performance powersave ", "powersave", "amd-pstate-epp"
        w(f"{AMD_PSTATE_DIR}/status", "active", RW)
    for c in range(cpus):
        p = f"{CPUFREQ_DIR}/policy{c}"
        w(f"{p}/affected_cpus", str(c))
        w(f"{p}/related_cpus", str(c))
        w(f"{p}/cpuinfo_min_freq", str(fmin))
        w(f"{p}/cpuinfo_max_freq", str(fmax))
        w(f"{p}/cpuinfo_transition_latency", "10000" if driver == "acpi-cpufreq" else "0")
        w(f"{p}/scaling_driver", sdriver)
        w(f"{p}/scaling_available_governors", governors)
        w(f"{p}/scaling_governor", gov0, RW)
        w(f"{p}/scaling_min_freq", str(fmin), RW)
        w(f"{p}/scaling_max_freq", str(fmax), RW)
        w(f"{p}/scaling_cur_freq", str(fmin))
        w(f"{p}/scaling_setspeed", "<unsupported>", RW)
        if driver == "acpi-cpufreq":
            w(f"{p}/scaling_available_frequencies", " ".join(str(f) for f in sorted(spec.freqs_khz, reverse=True))
              + " ")
        else:
            w(f"{p}/base_frequency", str(spec.base_khz))
            w(f"{p}/energy_performance_available_preferences",
              "default performance balance_performance balance_power power ")
            w(f"{p}/energy_performance_preference", "balance_performance", RW)
        if driver == "amd-pstate":
            w(f"{p}/amd_pstate_max_freq", str(fmax))
            w(f"{p}/amd_pstate_lowest_nonlinear_freq", str(1_500_000))

    # -- powercap intel-rapl (powercap.rst); AMD exposes energy only, no limits --------------------
    intel = driver != "amd-pstate"
    w(f"{POWERCAP_DIR}/intel-rapl/enabled", "1", RW)
    for s in range(sockets):
        z = f"{POWERCAP_DIR}/intel-rapl:{s}"
        _zone(w, z, f"package-{s}", spec, intel, [("long_term", spec.pl1_w, 27_983_872),
                                                  ("short_term", spec.pl2_w, 2_440)])
        subs = [("core", 0.8 * spec.pl1_w), ("uncore", 2 * spec.uncore_w_per_socket),
                ("dram", 3 * spec.dram_w_per_socket)] if intel else [("core", 0.0)]
        for k, (name, limit_w) in enumerate(subs):
            _zone(w, f"{z}:{k}", name, spec, intel, [("long_term", limit_w, 976)] if intel else [])
    if driver == "intel_pstate":
        _zone(w, f"{POWERCAP_DIR}/intel-rapl:{sockets}", "psys", spec, True,
              [("long_term", sockets * spec.max_power_w + spec.platform_w, 27_983_872),
               ("short_term", sockets * spec.max_power_w * 1.2 + spec.platform_w, 976)])

    # -- thermal (sysfs-api.rst) and hwmon (hwmon/sysfs-interface.rst) ------------------------------
    t0 = int(spec.inlet_c * 1000 + 10_000)
    _thermal_zone(w, 0, "acpitz", t0, [(105_000, "critical", 0)])
    if intel:
        for s in range(sockets):
            _thermal_zone(w, s + 1, "x86_pkg_temp", t0, [(95_000, "passive", 2_000), (105_000, "critical", 0)])
    dev = 0
    for _c in range(cpus):
        _cooling(w, dev, "Processor", 3)
        dev += 1
    _cooling(w, dev, "Fan", 10)
    dev += 1
    if intel:
        _cooling(w, dev, "intel_powerclamp", 50)
    for s in range(sockets):
        h = f"{HWMON_DIR}/hwmon{s}"
        w(f"{h}/name", "coretemp" if intel else "k10temp")
        w(f"{h}/temp1_label", f"Package id {s}" if intel else "Tctl")
        w(f"{h}/temp1_input", str(t0))
    h = f"{HWMON_DIR}/hwmon{sockets}"
    w(f"{h}/name", "power_meter")
    w(f"{h}/power1_input", "0")
    w(f"{h}/power1_average", "0")
    if not intel:
        h = f"{HWMON_DIR}/hwmon{sockets + 1}"
        w(f"{h}/name", "amd_energy")
        for s in range(sockets):
            w(f"{h}/energy{s + 1}_label", f"Esocket{s}")
            w(f"{h}/energy{s + 1}_input", "0", ROOT_ONLY)

    # -- procfs ---------------------------------------------------------------------------------
    w(PERF_PARANOID, "2", RW)
    _write_proc_stat(w, np.zeros(cpus, dtype=np.int64), np.zeros(cpus, dtype=np.int64))
    (root / FAKE_MARKER).write_text(json.dumps({"version": 1, **asdict(spec)}, indent=1), encoding="utf-8")
    (root / STATE_DIR).mkdir()
    return SysfsRoot(root)


def _zone(w: _Writer, z: str, name: str, spec: FakeSpec, limits: bool,
          constraints: list[tuple[str, float, int]]) -> None:
    w(f"{z}/name", name)
    w(f"{z}/energy_uj", "0", ROOT_ONLY)  # root-only since Linux 5.10 (CVE-2020-8694)
    w(f"{z}/max_energy_range_uj", str(spec.energy_range_uj))
    w(f"{z}/enabled", "1" if limits else "0", RW)
    if not limits:
        return
    for k, (cname, watts, window_us) in enumerate(constraints):
        w(f"{z}/constraint_{k}_name", cname)
        w(f"{z}/constraint_{k}_power_limit_uw", str(int(watts * 1e6)), RW)
        w(f"{z}/constraint_{k}_time_window_us", str(window_us), RW)
        w(f"{z}/constraint_{k}_max_power_uw", str(int(spec.max_power_w * 1e6)))


def _thermal_zone(w: _Writer, zid: int, ztype: str, temp_mc: int, trips: list[tuple[int, str, int]]) -> None:
    z = f"{THERMAL_DIR}/thermal_zone{zid}"
    w(f"{z}/type", ztype)
    w(f"{z}/temp", str(temp_mc))
    w(f"{z}/mode", "enabled", RW)
    w(f"{z}/policy", "step_wise", RW)
    for k, (t, kind, hyst) in enumerate(trips):
        w(f"{z}/trip_point_{k}_temp", str(t))
        w(f"{z}/trip_point_{k}_type", kind)
        w(f"{z}/trip_point_{k}_hyst", str(hyst))


def _cooling(w: _Writer, dev: int, ctype: str, max_state: int) -> None:
    d = f"{THERMAL_DIR}/cooling_device{dev}"
    w(f"{d}/type", ctype)
    w(f"{d}/max_state", str(max_state))
    w(f"{d}/cur_state", "0", RW)


def _write_proc_stat(w: _Writer, busy: np.ndarray, idle: np.ndarray) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice; busy split 80 % user, 20 % system.
    def line(name: str, b: int, i: int) -> str:
        u = b * 4 // 5
        return f"{name} {u} 0 {b - u} {i} 0 0 0 0 0 0"
    lines = [line("cpu ", int(busy.sum()), int(idle.sum()))]
    lines += [line(f"cpu{c}", int(busy[c]), int(idle[c])) for c in range(len(busy))]
    lines += ["intr 0", "ctxt 0", "btime 1700000000", "processes 1", "procs_running 1", "procs_blocked 0"]
    w(PROC_STAT, "\n".join(lines), RO)


# ---------------------------------------------------------------------------------------------------
def _oserr(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)} ({what})")


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _oserr(errno.EINVAL, f"{what}: {text!r} is not an integer") from None


class FakeDriver:
    """The ``store()`` callbacks of a fake tree: validate a write like the kernel driver (see module doc)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.freqs = sorted(int(f) for f in info["freqs_khz"])
        self.table = info["driver"] == "acpi-cpufreq"
        self.locked = set(info.get("locked_zones", ()))

    def store(self, root: SysfsRoot, rel: str, text: str) -> str:
        """Return the text the driver stores for ``text`` written to ``rel``, or raise ``OSError``."""
        p = root.path(rel)
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            raise _oserr(errno.ENOENT, rel) from None
        if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            # kernfs refuses to open an attribute without store() for writing, even for root.
            raise _oserr(errno.EACCES, f"{rel} is read-only")
        name = p.name
        parent = rel.rsplit("/", 1)[0]
        text = text.strip()
        if name == "scaling_governor":
            avail = root.read_words(f"{parent}/scaling_available_governors")
            if text not in avail:
                raise _oserr(errno.EINVAL, f"governor {text!r} not in {avail}")
            # Starting the userspace governor sets its target to the current frequency; any other
            # governor makes scaling_setspeed read "<unsupported>" (cpufreq.rst).
            setspeed = root.path(f"{parent}/scaling_setspeed")
            if text != "userspace":
                _raw_write(setspeed, "<unsupported>")
            elif not _raw_read(setspeed).isdigit():
                _raw_write(setspeed, str(root.read_int(f"{parent}/scaling_cur_freq")))
            return text
        if name == "scaling_setspeed":
            if root.read_str(f"{parent}/scaling_governor") != "userspace":
                raise _oserr(errno.EINVAL, "scaling_setspeed needs the userspace governor")
            khz = _int(text, name)
            lo, hi = root.read_int(f"{parent}/scaling_min_freq"), root.read_int(f"{parent}/scaling_max_freq")
            # __cpufreq_driver_target clamps to the policy limits; table drivers resolve
            # CPUFREQ_RELATION_L (lowest frequency at or above the target); the attribute shows policy->cur.
            return str(self.resolve(min(max(khz, lo), hi)))
        if name in ("scaling_min_freq", "scaling_max_freq"):
            khz = min(max(_int(text, name), root.read_int(f"{parent}/cpuinfo_min_freq")),
                      root.read_int(f"{parent}/cpuinfo_max_freq"))
            other = root.read_int(f"{parent}/scaling_max_freq" if name == "scaling_min_freq"
                                  else f"{parent}/scaling_min_freq")
            if (name == "scaling_min_freq" and khz > other) or (name == "scaling_max_freq" and khz < other):
                raise _oserr(errno.EINVAL, f"{name} {khz} kHz conflicts with the other limit {other} kHz")
            return str(khz)
        if name == "energy_performance_preference":
            if root.read_str(f"{parent}/scaling_governor") == "performance":
                raise _oserr(errno.EBUSY, "EPP is fixed under the performance policy (intel_pstate.rst)")
            avail = root.read_words(f"{parent}/energy_performance_available_preferences")
            if text not in avail and not (text.isdigit() and 0 <= int(text) <= 255):
                raise _oserr(errno.EINVAL, f"EPP {text!r} not in {avail}")
            return text
        if name in ("max_perf_pct", "min_perf_pct"):
            v = _int(text, name)
            if not 0 <= v <= 100:
                raise _oserr(errno.EINVAL, f"{name} must be in [0, 100]")
            return str(v)
        if name in ("no_turbo", "boost", "enabled"):
            v = _int(text, name)
            if v not in (0, 1):
                raise _oserr(errno.EINVAL, f"{name} must be 0 or 1")
            if name == "enabled" and p.parent.name in self.locked:
                raise _oserr(errno.EACCES, f"{p.parent.name} is locked by the BIOS")
            return str(v)
        if name.startswith("constraint_") and name.endswith(("_power_limit_uw", "_time_window_us")):
            v = _int(text, name)
            if v < 0:
                raise _oserr(errno.EINVAL, f"{name} must be >= 0")
            if p.parent.name in self.locked:
                # intel_rapl_common: rapl_write_pl_data() returns -EACCES for a locked limit.
                raise _oserr(errno.EACCES, f"{p.parent.name} power limit is locked by the BIOS")
            return str(v)
        if name == "cur_state":
            v = _int(text, name)
            if not 0 <= v <= root.read_int(f"{parent}/max_state"):
                raise _oserr(errno.EINVAL, "cooling state above max_state (thermal_sysfs.c cur_state_store)")
            return str(v)
        return text

    def resolve(self, khz: int) -> int:
        """Frequency the driver runs for a target: next table entry up (acpi-cpufreq) or the target itself."""
        if not self.table:
            return khz
        for f in self.freqs:
            if f >= khz:
                return f
        return self.freqs[-1]


def _raw_write(path: Path, text: str) -> None:
    """Write a file of the fake tree as the kernel would (bypassing permission bits).

    The new text is written over the old one and the file then cut to its length, so a concurrent
    reader (the sampler of another process) never sees an empty file, only, when the text got
    shorter, briefly a stale tail, which it records as a failed read of that sensor.
    """
    data = (text + "\n").encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY)
    except PermissionError:
        # Not root: the kernel ignores mode bits on its own attributes, so lend the owner write
        # permission for this one write (the tree belongs to whoever created it) and take it back.
        mode = stat.S_IMODE(os.stat(path).st_mode)
        os.chmod(path, mode | stat.S_IWUSR)
        try:
            fd = os.open(path, os.O_WRONLY)
        finally:
            os.chmod(path, mode)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _raw_read(path: Path) -> str:
    with open(path, "rb", buffering=0) as fh:
        return fh.read(65536).decode("ascii", errors="replace").strip()


def _step_fn() -> Any:
    """The simulator's node step: the C kernel when built, else its NumPy twin."""
    try:
        from powerrl._core.sim import NodeKernel
    except ImportError:
        from powerrl._core._reference import nodes_step

        return lambda arrays: (lambda dt: nodes_step(arrays, dt))
    return lambda arrays: NodeKernel(arrays).step


class FakeKernel:
    """Makes a fake tree behave like a live node (see the module docstring).

    Args:
        directory: a tree made by :func:`make_fake_sysfs`.
        load: CPU load in [0, 1] per CPU (or one value); default the tree's ``load``. A file
            ``.powerrl-fake-kernel/load`` (one number, or one per CPU) overrides it on every step, so
            another process can change the load of a running fake kernel. Likewise a file
            ``.powerrl-fake-kernel/inlet`` (one number, degC) sets the inlet air temperature of every
            CPU: a heat wave or cooling failure for tests of the thermal shield (removing the file
            returns to the tree's ``inlet_c``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, load: float | None = None) -> None:
        self.sysfs = SysfsRoot(directory)
        if self.sysfs.fake_info is None:
            raise HwError(f"{directory} is not a fake tree (no {FAKE_MARKER}); create one with "
                          "'powerrl hw fake-sysfs DIR'", path=str(directory))
        self.root = self.sysfs.root
        info = self.sysfs.fake_info
        self.info = info
        self.driver = FakeDriver(info)
        self.n = int(info["cpus"])
        self.sockets = int(info["sockets"])
        self.per = self.n // self.sockets
        self.freqs = np.array(sorted(info["freqs_khz"]), dtype=np.int64)
        self.fmax = int(self.freqs[-1])
        self.load = np.full(self.n, float(info["load"] if load is None else load))
        self.errors: list[str] = []
        self.steps = 0
        (self.root / STATE_DIR).mkdir(exist_ok=True)
        k = len(self.freqs)
        a = NodeArrays.allocate(self.n, k)
        s = self.per
        a.idle_w[:] = info["idle_w_per_socket"] / s
        a.busy_w[:] = info["busy_w_per_socket"] / s
        a.shape_r[:] = info["shape_r"]
        a.wake_share[:] = info.get("wake_share", 0.0)
        a.static_share[:] = info["static_share"]
        fr = self.freqs / self.fmax
        a.freq_ratio[:] = fr
        a.volt_ratio[:] = volt_ratio(fr)  # the simulator's V-f relation (docs/model.md)
        a.r_die_c_per_w[:] = info["r_die_c_per_w"] * s
        a.r_sink_c_per_w[:] = info["r_sink_c_per_w"] * s
        a.service_ms[:] = 5.0
        a.sla_ms[:] = 100.0
        a.mem_bound[:] = info["mem_bound"]
        a.inlet_c[:] = info["inlet_c"]
        a.temp_die_c[:] = a.temp_sink_c[:] = info["inlet_c"] + 10.0
        a.pstate[:] = k - 1
        self.arrays = a
        self.tau_die = np.full(self.n, float(info["tau_die_s"]))
        self.tau_sink = np.full(self.n, float(info["tau_sink_s"]))
        self._step = _step_fn()(a)
        self._dt: float | None = None
        self.zones = [z for z in self.sysfs.listdir(POWERCAP_DIR) if z.startswith("intel-rapl:")]
        self._energy = {z: float(self.sysfs.read_int(f"{POWERCAP_DIR}/{z}/energy_uj")) for z in self.zones}
        self.range_uj = int(info["energy_range_uj"])
        st = self._read_proc_ticks()
        self._busy = st[0].astype(np.float64)
        self._idle = st[1].astype(np.float64)
        self._hwmon_energy = np.zeros(self.sockets)
        self._writable = self._list_writable()
        self._snapshot = {rel: _raw_read(self.root / rel) for rel in self._writable}

    # -- helpers -----------------------------------------------------------------------------------
    def _list_writable(self) -> list[str]:
        out: list[str] = []
        for pattern in DEFAULT_ALLOWLIST:
            out.extend(str(p.relative_to(self.root)) for p in self.root.glob(pattern))
        return sorted(set(out))

    def _read_proc_ticks(self) -> tuple[np.ndarray, np.ndarray]:
        busy = np.zeros(self.n, dtype=np.int64)
        idle = np.zeros(self.n, dtype=np.int64)
        for line in _raw_read(self.root / PROC_STAT).splitlines():
            parts = line.split()
            if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
                c = int(parts[0][3:])
                v = [int(x) for x in parts[1:9]]
                busy[c] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                idle[c] = v[3] + v[4]
        return busy, idle

    def _log_error(self, msg: str) -> None:
        self.errors.append(msg)
        with open(self.root / STATE_DIR / "errors.log", "a", encoding="utf-8") as fh:
            fh.write(f"{time.time():.3f} {msg}\n")

    def _set(self, rel: str, text: str) -> None:
        _raw_write(self.root / rel, text)
        if rel in self._snapshot:
            self._snapshot[rel] = text

    def _read_load(self) -> None:
        p = self.root / STATE_DIR / "load"
        if not p.exists():
            return
        try:
            vals = np.array([float(x) for x in p.read_text(encoding="ascii").split()])
        except ValueError:
            self._log_error(f"{p}: not numbers, load unchanged")
            return
        if vals.size in (1, self.n):
            self.load[:] = np.clip(vals, 0.0, 1.0)
        else:
            self._log_error(f"{p}: need 1 or {self.n} values, got {vals.size}")

    def _read_inlet(self) -> None:
        p = self.root / STATE_DIR / "inlet"
        try:
            text = p.read_text(encoding="ascii")
        except FileNotFoundError:
            self.arrays.inlet_c[:] = self.info["inlet_c"]
            return
        try:
            inlet = float(text.strip())
        except ValueError:
            self._log_error(f"{p}: not a number, inlet unchanged")
            return
        if not -20.0 <= inlet <= 150.0:
            self._log_error(f"{p}: {inlet} degC outside [-20, 150], inlet unchanged")
            return
        self.arrays.inlet_c[:] = inlet

    # -- the kernel's and firmware's reactions ------------------------------------------------------
    def _police_writes(self) -> None:
        """Validate attributes changed since the last step; put rejected values back; firmware overrides."""
        # Governors first: they decide whether scaling_setspeed is valid.
        order = sorted(self._writable, key=lambda r: (not r.endswith("scaling_governor"), r))
        for rel in order:
            cur = _raw_read(self.root / rel)
            old = self._snapshot[rel]
            if not cur:
                continue  # a writer truncated the file and has not written yet (sysfs stores are atomic)
            if cur != old:
                try:
                    stored = self.driver.store(self.sysfs, rel, cur)
                except OSError as exc:
                    self._log_error(f"write {cur!r} to /{rel} rejected: {exc.strerror}; kept {old!r}")
                    stored = old
                if stored != cur:
                    _raw_write(self.root / rel, stored)
                self._snapshot[rel] = stored
            zone = rel.split("/")[-2]
            if "_power_limit_uw" in rel:
                self._firmware_limit(rel, zone, old)

    def _firmware_limit(self, rel: str, zone: str, old: str) -> None:
        cur = int(self._snapshot[rel])
        if zone in self.driver.locked and str(cur) != old:
            # A locked limit is ignored by the package: the register keeps its old value.
            self._set(rel, old)
            self._log_error(f"/{rel}: {zone} is locked, firmware kept {old}")
            return
        max_rel = rel.replace("_power_limit_uw", "_max_power_uw")
        if (self.root / max_rel).exists():
            mx = int(_raw_read(self.root / max_rel))
            if cur > mx:
                self._set(rel, str(mx))  # the package clamps silently to its maximum

    def _int_attr(self, path: Path) -> int:
        """An integer attribute; while a writer has truncated it (empty, sysfs stores are atomic) its last value."""
        text = _raw_read(path)
        if not text.lstrip("-").isdigit():
            text = self._snapshot.get(str(path.relative_to(self.root)), "0")
        return int(text)

    def _requested_khz(self, util: np.ndarray) -> np.ndarray:
        fmin, fmax = int(self.freqs[0]), self.fmax
        req = np.empty(self.n, dtype=np.float64)
        intel = self.root / INTEL_PSTATE_DIR
        perf_cap = fmax
        if intel.exists():
            pct = int(_raw_read(intel / "max_perf_pct"))
            perf_cap = int(fmax * pct / 100)
            if _raw_read(intel / "no_turbo") == "1":
                perf_cap = min(perf_cap, int(self.info["base_khz"]))
        for c in range(self.n):
            p = self.root / CPUFREQ_DIR / f"policy{c}"
            gov = _raw_read(p / "scaling_governor")
            lo, hi = self._int_attr(p / "scaling_min_freq"), self._int_attr(p / "scaling_max_freq")
            if gov == "userspace":
                sp = _raw_read(p / "scaling_setspeed")
                f = float(sp) if sp.isdigit() else hi
            elif gov == "performance":
                f = hi
            elif gov == "powersave" and self.driver.table:
                f = lo
            else:
                # schedutil-like: next_freq = 1.25 * f_max * util (cpufreq.rst, "schedutil").
                f = 1.25 * fmax * float(util[c])
            cool = self.root / THERMAL_DIR / f"cooling_device{c}"
            if cool.exists():
                # ACPI processor cooling: each state removes an equal share of the frequency range.
                state, mx = int(_raw_read(cool / "cur_state")), int(_raw_read(cool / "max_state"))
                hi = min(hi, int(fmax - (fmax - fmin) * state / mx))
            req[c] = min(max(f, lo), hi, perf_cap)
        return req

    def step(self, dt_s: float = 0.1) -> None:
        """Advance the fake node by ``dt_s`` seconds: police writes, simulate, update the attributes."""
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0 s, got {dt_s}")
        self._read_load()
        self._read_inlet()
        self._police_writes()
        a = self.arrays
        if self._dt != dt_s:
            a.set_dt(dt_s, self.tau_die, self.tau_sink)
            self._dt = dt_s
        req = self._requested_khz(self.load)
        a.pstate[:] = np.maximum(np.searchsorted(self.freqs, req, side="right") - 1, 0)
        a.demand[:] = self.load
        # RAPL long-term limit of each package, shared equally by its CPUs after uncore power.
        uncore = float(self.info["uncore_w_per_socket"])
        for s in range(self.sockets):
            z = self.root / POWERCAP_DIR / f"intel-rapl:{s}"
            cap = math.inf
            if (z / "constraint_0_power_limit_uw").exists() and _raw_read(z / "enabled") == "1":
                cap = (int(_raw_read(z / "constraint_0_power_limit_uw")) / 1e6 - uncore) / self.per
            a.cap_w[s * self.per:(s + 1) * self.per] = max(cap, 0.0)
        self._step(dt_s)
        self._publish(dt_s)
        self.steps += 1

    def _publish(self, dt_s: float) -> None:
        a = self.arrays
        cur = self.freqs[a.pstate_applied]
        for c in range(self.n):
            p = f"{CPUFREQ_DIR}/policy{c}"
            # scaling_cur_freq reports the frequency actually run (below the target when a RAPL cap
            # throttles); scaling_setspeed keeps the resolved target.
            self._set(f"{p}/scaling_cur_freq", str(int(cur[c])))
        info = self.info
        sock_cpu = a.power_w.reshape(self.sockets, self.per).sum(axis=1)
        load_s = a.util.reshape(self.sockets, self.per).mean(axis=1)
        pkg = sock_cpu + info["uncore_w_per_socket"]
        dram = info["dram_w_per_socket"] * (0.5 + load_s)
        for z in self.zones:
            name = _raw_read(self.root / POWERCAP_DIR / z / "name")
            parts = z.split(":")
            s = int(parts[1]) if parts[1].isdigit() and int(parts[1]) < self.sockets else 0
            if name.startswith("package-"):
                pw = pkg[s]
            elif name == "core":
                pw = sock_cpu[s] - (a.idle_w[0] * self.per) * info["static_share"]
            elif name == "uncore":
                pw = info["uncore_w_per_socket"] * 0.3
            elif name == "dram":
                pw = dram[s]
            else:  # psys: the whole platform
                pw = float(pkg.sum() + dram.sum() + info["platform_w"])
            self._energy[z] = (self._energy[z] + max(pw, 0.0) * dt_s * 1e6) % (self.range_uj + 1)
            self._set(f"{POWERCAP_DIR}/{z}/energy_uj", str(int(self._energy[z])))
        die = a.temp_die_c.reshape(self.sockets, self.per)
        for s in range(self.sockets):
            t_mc = str(int(round(die[s].max() * 1000)))
            zp = f"{THERMAL_DIR}/thermal_zone{s + 1}"
            if (self.root / zp).exists():
                self._set(f"{zp}/temp", t_mc)
            self._set(f"{HWMON_DIR}/hwmon{s}/temp1_input", t_mc)
        self._set(f"{THERMAL_DIR}/thermal_zone0/temp", str(int(round(die.mean() * 1000 - 5000))))
        total_uw = str(int((pkg.sum() + dram.sum() + info["platform_w"]) * 1e6))
        self._set(f"{HWMON_DIR}/hwmon{self.sockets}/power1_input", total_uw)
        self._set(f"{HWMON_DIR}/hwmon{self.sockets}/power1_average", total_uw)
        amd = self.root / HWMON_DIR / f"hwmon{self.sockets + 1}"
        if amd.exists():
            self._hwmon_energy += pkg * dt_s
            for s in range(self.sockets):
                self._set(f"{HWMON_DIR}/hwmon{self.sockets + 1}/energy{s + 1}_input",
                          str(int(self._hwmon_energy[s] * 1e6)))
        ticks = dt_s * USER_HZ
        self._busy += a.util * ticks
        self._idle += (1.0 - a.util) * ticks
        _write_proc_stat(_Writer(self.root), np.floor(self._busy).astype(np.int64),
                         np.floor(self._idle).astype(np.int64))

    def run(self, period_s: float = 0.1, duration_s: float | None = None,
            stop: threading.Event | None = None) -> int:
        """Step every ``period_s`` (absolute deadlines) until ``duration_s`` passes or ``stop`` is set."""
        stop = stop or threading.Event()
        (self.root / STATE_DIR / "pid").write_text(str(os.getpid()), encoding="ascii")
        t0 = time.monotonic()
        deadline = t0
        while not stop.is_set():
            self.step(period_s)
            deadline += period_s
            now = time.monotonic()
            if duration_s is not None and now - t0 >= duration_s:
                break
            if deadline > now:
                stop.wait(deadline - now)
            else:
                deadline = now
        return self.steps

    def start_thread(self, period_s: float = 0.1) -> threading.Event:
        """Run in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.run, args=(period_s, None, stop), daemon=True,
                         name="powerrl-fake-kernel").start()
        return stop
