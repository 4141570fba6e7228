"""``powerrl hw probe``: what this node can sense and actuate, and for each thing it cannot, why.

Reasons are phrased by cause: ``missing driver`` (no sysfs directory or attribute), ``permission``
(mode bits / not root), ``BIOS lock`` (a root write refused with EACCES; only detected with
``write_test=True``, which writes each limit's current value back and restores it), ``governor``
(the current governor or driver mode forbids the knob), ``not installed`` (optional package).
The probe only reads unless ``write_test`` is set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.errors import HwError, HwPermissionError
from powerrl.hw.nvml import Nvml
from powerrl.hw.perf import PerfCounters, perf_capability
from powerrl.hw.procstat import ProcStat
from powerrl.hw.rapl import Rapl
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import INTEL_PSTATE_DIR, SysfsRoot
from powerrl.hw.thermal import Thermal


@dataclass(frozen=True)
class Capability:
    """One probed capability: ``mode`` is ``sense`` or ``actuate``; ``reason`` says why not when ``ok`` is false."""

    area: str
    mode: str
    name: str
    ok: bool
    detail: str = ""
    reason: str = ""


def probe(root: SysfsRoot, *, write_test: bool = False) -> list[Capability]:
    """Probe every backend under ``root`` (read-only unless ``write_test``)."""
    caps: list[Capability] = []
    caps += _probe_cpufreq(root)
    caps += _probe_rapl(root, write_test)
    caps += _probe_thermal(root)
    ok, why = ProcStat(root).available()
    caps.append(Capability("procstat", "sense", "cpu utilisation (/proc/stat)", ok, reason=why))
    if root.is_fake:
        caps.append(Capability("perf", "sense", "per-CPU instructions and cycles", False,
                               reason="missing driver: a fake tree has no PMU (perf counters need the real root)"))
    else:
        ok, why = perf_capability(root)
        if ok:
            try:  # opening one counter pair is read-only and tells a PMU-less VM/container apart
                PerfCounters(root, [0]).open().close()
            except HwError as exc:
                ok, why = False, f"missing driver: {exc}"
        caps.append(Capability("perf", "sense", "per-CPU instructions and cycles", ok, reason=why))
    ok, why = Nvml.available()
    caps.append(Capability("nvml", "sense", "NVIDIA GPU power, energy, temperature, clocks", ok,
                           why if ok else "", "" if ok else
                           ("not installed: " + why if "nvidia-ml-py" in why else "missing driver: " + why)))
    caps.append(Capability("nvml", "actuate", "NVIDIA GPU power limit", ok and root.uid == 0,
                           reason="" if ok and root.uid == 0 else
                           ("permission: setting a GPU power limit needs root" if ok else "missing driver: no NVML")))
    return caps


def _probe_cpufreq(root: SysfsRoot) -> list[Capability]:
    cf = Cpufreq(root)
    ok, why = cf.available()
    if not ok:
        return [Capability("cpufreq", "sense", "CPU frequency", False, reason=why),
                Capability("cpufreq", "actuate", "CPU frequency limits", False, reason=why)]
    pols = cf.policies()
    p0 = pols[0]
    out = []
    readable, rwhy = root.access(p0.attr("scaling_cur_freq"))
    out.append(Capability("cpufreq", "sense", "CPU frequency (scaling_cur_freq)", readable,
                          f"{len(pols)} policies, driver {p0.driver}, "
                          f"{p0.cpuinfo_min_mhz:g}-{p0.cpuinfo_max_mhz:g} MHz",
                          rwhy))
    writable, wwhy = root.access(p0.attr("scaling_max_freq"), write=True)
    out.append(Capability("cpufreq", "actuate", "frequency limits (scaling_min/max_freq)", writable,
                          "any governor" if writable else "", wwhy))
    gov = cf.governor(p0)
    if "userspace" not in p0.available_governors:
        reason = (f"governor: driver {p0.driver} offers only {', '.join(p0.available_governors)}; use scaling_max_freq"
                  + (" or max_perf_pct (or boot with intel_pstate=passive)" if p0.driver == "intel_pstate" else ""))
        out.append(Capability("cpufreq", "actuate", "exact frequency (scaling_setspeed)", False, reason=reason))
    elif not writable:
        out.append(Capability("cpufreq", "actuate", "exact frequency (scaling_setspeed)", False, reason=wwhy))
    else:
        out.append(Capability("cpufreq", "actuate", "exact frequency (scaling_setspeed)", True,
                              f"userspace governor offered (current: {gov}; selected when actuating)"))
    status = cf.driver_status()
    if status is not None:
        out.append(Capability(status.driver, "sense", f"{status.driver} status", status.status is not None,
                              f"mode {status.status}" + (f", max_perf_pct {status.max_perf_pct}, no_turbo "
                                                         f"{int(bool(status.no_turbo))}"
                                                         if status.max_perf_pct is not None else "")))
        if status.driver == "intel_pstate":
            w, why = root.access(f"{INTEL_PSTATE_DIR}/max_perf_pct", write=True)
            out.append(Capability("intel_pstate", "actuate", "max/min_perf_pct, no_turbo", w, reason=why))
    if p0.available_epp:
        w, why = root.access(p0.attr("energy_performance_preference"), write=True)
        if w and gov == "performance":
            w, why = False, "governor: EPP is fixed to 'performance' under the performance policy (select powersave)"
        out.append(Capability("cpufreq", "actuate", "energy_performance_preference", w,
                              ", ".join(p0.available_epp) if w else "", why))
    return out


def _probe_rapl(root: SysfsRoot, write_test: bool) -> list[Capability]:
    r = Rapl(root)
    ok, why = r.available()
    if not ok:
        return [Capability("rapl", "sense", "package/DRAM energy", False, reason=why),
                Capability("rapl", "actuate", "power limits", False, reason=why)]
    out = []
    writer = SafeWriter(root, install_handlers=False) if write_test else None
    try:
        for z in r.zones():
            label = f"{z.id} ({z.name})"
            readable, rwhy = root.access(z.energy_rel)
            if not readable and rwhy.startswith("permission"):
                rwhy = ("permission: energy_uj is root-only (mode 0400 since Linux 5.10, CVE-2020-8694); run as root "
                        "or grant read access with a udev rule")
            out.append(Capability("rapl", "sense", f"energy {label}", readable,
                                  f"wraps after {z.max_energy_range_uj} uJ" if readable else "", rwhy))
            if not z.constraints:
                out.append(Capability("rapl", "actuate", f"power limit {label}", False,
                                      reason="missing driver: this zone exposes no power-limit constraints "
                                             "(energy-only RAPL, as on AMD processors)"))
                continue
            c = z.constraints[0]
            rel = c.attr(z.rel, "power_limit_uw")
            w, wwhy = root.access(rel, write=True)
            detail = ", ".join(x.name for x in z.constraints)
            if w and not r.enabled(z):
                detail += " (limiting disabled: enabled = 0)"
            if w and writer is not None:
                try:
                    writer.write(rel, root.read_str(rel))
                except HwPermissionError:
                    w, wwhy = False, ("BIOS lock: the power limit is locked by firmware (write refused with EACCES as "
                                      "root); unlock it in the BIOS setup")
                except HwError as exc:
                    w, wwhy = False, f"write test failed: {exc}"
            out.append(Capability("rapl", "actuate", f"power limit {label}", w, detail if w else "", wwhy))
    finally:
        if writer is not None:
            writer.close()
    return out


def _probe_thermal(root: SysfsRoot) -> list[Capability]:
    th = Thermal(root)
    zones = th.zones()
    out = [Capability("thermal", "sense", "thermal zones", bool(zones),
                      ", ".join(sorted({z.type for z in zones})) + f" ({len(zones)} zones)" if zones else "",
                      "" if zones else "missing driver: no thermal zones under /sys/class/thermal")]
    devs = th.cooling_devices()
    if devs:
        w, why = root.access(f"{devs[0].rel}/cur_state", write=True)
        out.append(Capability("thermal", "actuate", "cooling devices (cur_state)", w,
                              f"{len(devs)} devices: " + ", ".join(sorted({d.type for d in devs})) if w else "", why))
    else:
        out.append(Capability("thermal", "actuate", "cooling devices (cur_state)", False,
                              reason="missing driver: no cooling devices"))
    hs = th.hwmon_sensors()
    kinds = sorted({s.kind for s in hs})
    out.append(Capability("hwmon", "sense", "hwmon temperature/power/energy inputs", bool(hs),
                          f"{len(hs)} inputs ({', '.join(kinds)}) from " + ", ".join(sorted({s.chip for s in hs}))
                          if hs else "", "" if hs else "missing driver: no hwmon inputs"))
    return out


def to_json(root: SysfsRoot, caps: list[Capability]) -> dict[str, Any]:
    """The probe as plain data (``powerrl hw probe --json``)."""
    return {"root": str(root.root), "fake": root.is_fake, "uid": root.uid, "capabilities": [asdict(c) for c in caps]}


def format_text(root: SysfsRoot, caps: list[Capability]) -> str:
    """The probe as an aligned table, one capability per line."""
    kind = "fake tree" if root.is_fake else "real node"
    lines = [f"hardware root {root.root} ({kind}, uid {root.uid})"]
    for c in caps:
        mark = "ok" if c.ok else "--"
        text = c.detail if c.ok else c.reason
        lines.append(f"  [{mark}] {c.mode:<7} {c.area:<12} {c.name}" + (f": {text}" if text else ""))
    n_ok = sum(c.ok for c in caps)
    lines.append(f"{n_ok}/{len(caps)} capabilities available")
    return "\n".join(lines)
