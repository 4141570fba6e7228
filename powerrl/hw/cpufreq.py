"""CPU frequency scaling: cpufreq policies and the intel_pstate / amd-pstate drivers.

Layout (Documentation/admin-guide/pm/cpufreq.rst): one ``policyN`` directory per group of CPUs
sharing a clock under ``/sys/devices/system/cpu/cpufreq``, with ``related_cpus`` (all CPUs of the
policy, online or not) and ``affected_cpus`` (the online ones), ``cpuinfo_{min,max}_freq`` (hardware
limits), ``scaling_{min,max,cur}_freq`` (policy limits and the current frequency), and for table
drivers such as acpi-cpufreq ``scaling_available_frequencies``. ``scaling_setspeed`` accepts a
frequency only under the ``userspace`` governor and reads ``<unsupported>`` otherwise. Every
frequency is an integer in kHz, converted here once to MHz floats.

intel_pstate (Documentation/admin-guide/pm/intel_pstate.rst) adds ``intel_pstate/{status,
max_perf_pct,min_perf_pct,no_turbo}``; in active mode it offers only the ``performance`` and
``powersave`` "governors" and per-policy ``energy_performance_preference``. amd-pstate
(Documentation/admin-guide/pm/amd-pstate.rst) exposes ``amd_pstate/status`` and, in active mode
(amd-pstate-epp), the same EPP attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from powerrl.hw.errors import HwError, HwInvalidValueError
from powerrl.hw.safety import SafeWriter, WriteResult
from powerrl.hw.sysfs import AMD_PSTATE_DIR, CPUFREQ_DIR, INTEL_PSTATE_DIR, SysfsRoot

KHZ_PER_MHZ = 1000


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """CPU ids from a kernel CPU list: ``"0 1 2"`` (related_cpus) or ``"0-3,8"`` (online)."""
    cpus: list[int] = []
    for token in text.replace(",", " ").split():
        if "-" in token:
            lo, hi = token.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(token))
    return tuple(cpus)


@dataclass(frozen=True)
class CpufreqPolicy:
    """Static description of one cpufreq policy (frequencies in MHz)."""

    id: int
    rel: str
    driver: str
    related_cpus: tuple[int, ...]
    affected_cpus: tuple[int, ...]
    cpuinfo_min_mhz: float
    cpuinfo_max_mhz: float
    available_freqs_mhz: tuple[float, ...]
    available_governors: tuple[str, ...]
    available_epp: tuple[str, ...]

    def attr(self, name: str) -> str:
        """Path of attribute ``name`` of this policy, relative to the root."""
        return f"{self.rel}/{name}"


@dataclass(frozen=True)
class PstateDriverStatus:
    """Global state of intel_pstate or amd-pstate (``None`` fields: not exposed by this driver)."""

    driver: str
    status: str | None
    max_perf_pct: int | None = None
    min_perf_pct: int | None = None
    no_turbo: bool | None = None


class Cpufreq:
    """Reads and sets cpufreq policies under ``root``."""

    def __init__(self, root: SysfsRoot) -> None:
        self.root = root

    def available(self) -> tuple[bool, str]:
        """Whether cpufreq policies exist, and why not."""
        if not self.root.exists(CPUFREQ_DIR):
            return False, "missing driver: no cpufreq directory (no cpufreq driver loaded, or a VM/container)"
        if not self.policy_ids():
            return False, "missing driver: cpufreq directory has no policyN (no scaling driver bound)"
        return True, ""

    def policy_ids(self) -> list[int]:
        """Ids of the ``policyN`` directories, ascending."""
        ids = [int(n[6:]) for n in self.root.listdir(CPUFREQ_DIR) if n.startswith("policy") and n[6:].isdigit()]
        return sorted(ids)

    def policies(self) -> list[CpufreqPolicy]:
        """Every policy with its limits, frequencies and governors."""
        return [self.policy(i) for i in self.policy_ids()]

    def policy(self, pid: int) -> CpufreqPolicy:
        """Policy ``pid``; raises :class:`HwError` when it does not exist."""
        rel = f"{CPUFREQ_DIR}/policy{pid}"
        if not self.root.exists(rel):
            raise HwError(f"no cpufreq policy{pid} under {self.root.path(CPUFREQ_DIR)}", path=rel)
        r = self.root
        freqs = r.read_words(f"{rel}/scaling_available_frequencies") if r.exists(
            f"{rel}/scaling_available_frequencies") else ()
        epp = r.read_words(f"{rel}/energy_performance_available_preferences") if r.exists(
            f"{rel}/energy_performance_available_preferences") else ()
        return CpufreqPolicy(
            id=pid, rel=rel, driver=r.read_str(f"{rel}/scaling_driver"),
            related_cpus=parse_cpu_list(r.read_text(f"{rel}/related_cpus")),
            affected_cpus=parse_cpu_list(r.read_text(f"{rel}/affected_cpus")),
            cpuinfo_min_mhz=r.read_int(f"{rel}/cpuinfo_min_freq") / KHZ_PER_MHZ,
            cpuinfo_max_mhz=r.read_int(f"{rel}/cpuinfo_max_freq") / KHZ_PER_MHZ,
            available_freqs_mhz=tuple(sorted(int(f) / KHZ_PER_MHZ for f in freqs)),
            available_governors=r.read_words(f"{rel}/scaling_available_governors"),
            available_epp=epp,
        )

    # -- reads -------------------------------------------------------------------------------------
    def cur_freq_mhz(self, p: CpufreqPolicy) -> float:
        """Current frequency (``scaling_cur_freq``) in MHz."""
        return self.root.read_int(p.attr("scaling_cur_freq")) / KHZ_PER_MHZ

    def min_freq_mhz(self, p: CpufreqPolicy) -> float:
        """Policy lower limit (``scaling_min_freq``) in MHz."""
        return self.root.read_int(p.attr("scaling_min_freq")) / KHZ_PER_MHZ

    def max_freq_mhz(self, p: CpufreqPolicy) -> float:
        """Policy upper limit (``scaling_max_freq``) in MHz."""
        return self.root.read_int(p.attr("scaling_max_freq")) / KHZ_PER_MHZ

    def governor(self, p: CpufreqPolicy) -> str:
        """The policy's governor (or intel_pstate/amd-pstate-epp "policy" name)."""
        return self.root.read_str(p.attr("scaling_governor"))

    def setspeed_mhz(self, p: CpufreqPolicy) -> float | None:
        """``scaling_setspeed`` in MHz, or ``None`` when it reads ``<unsupported>`` (governor is not userspace)."""
        text = self.root.read_str(p.attr("scaling_setspeed"))
        return None if text.startswith("<") else int(text) / KHZ_PER_MHZ

    def epp(self, p: CpufreqPolicy) -> str | None:
        """``energy_performance_preference``, or ``None`` when the driver has none."""
        return self.root.try_str(p.attr("energy_performance_preference"))

    def driver_status(self) -> PstateDriverStatus | None:
        """Global intel_pstate or amd-pstate state, or ``None`` for other drivers."""
        r = self.root
        if r.exists(INTEL_PSTATE_DIR):
            nt = r.try_int(f"{INTEL_PSTATE_DIR}/no_turbo")
            return PstateDriverStatus("intel_pstate", r.try_str(f"{INTEL_PSTATE_DIR}/status"),
                                      r.try_int(f"{INTEL_PSTATE_DIR}/max_perf_pct"),
                                      r.try_int(f"{INTEL_PSTATE_DIR}/min_perf_pct"),
                                      None if nt is None else bool(nt))
        if r.exists(AMD_PSTATE_DIR):
            return PstateDriverStatus("amd-pstate", r.try_str(f"{AMD_PSTATE_DIR}/status"))
        return None

    # -- writes (through the SafeWriter) -----------------------------------------------------------
    def set_governor(self, w: SafeWriter, p: CpufreqPolicy, governor: str) -> WriteResult:
        """Select a governor among ``available_governors``."""
        if governor not in p.available_governors:
            raise HwInvalidValueError(f"governor {governor!r} is not offered by policy{p.id} (driver {p.driver}); "
                                      f"choose one of {', '.join(p.available_governors)}", path=p.attr(
                                          "scaling_governor"))
        return w.write(p.attr("scaling_governor"), governor)

    def _khz(self, p: CpufreqPolicy, mhz: float, what: str) -> int:
        if not p.cpuinfo_min_mhz <= mhz <= p.cpuinfo_max_mhz:
            raise HwInvalidValueError(f"{what} {mhz} MHz is outside policy{p.id}'s hardware range "
                                      f"[{p.cpuinfo_min_mhz}, {p.cpuinfo_max_mhz}] MHz", path=p.attr(what))
        return int(round(mhz * KHZ_PER_MHZ))

    def set_setspeed_mhz(self, w: SafeWriter, p: CpufreqPolicy, mhz: float) -> WriteResult:
        """Set the frequency under the userspace governor (cpufreq.rst: scaling_setspeed)."""
        gov = self.governor(p)
        if gov != "userspace":
            hint = ("select it first with set_governor(..., 'userspace')" if "userspace" in p.available_governors
                    else f"driver {p.driver} offers no userspace governor; cap scaling_max_freq instead")
            raise HwInvalidValueError(f"scaling_setspeed of policy{p.id} needs the userspace governor (now "
                                      f"{gov!r}): {hint}", path=p.attr("scaling_setspeed"))
        return w.write(p.attr("scaling_setspeed"), self._khz(p, mhz, "scaling_setspeed"))

    def set_max_freq_mhz(self, w: SafeWriter, p: CpufreqPolicy, mhz: float) -> WriteResult:
        """Set the policy upper limit; works under every governor and driver."""
        return w.write(p.attr("scaling_max_freq"), self._khz(p, mhz, "scaling_max_freq"))

    def set_min_freq_mhz(self, w: SafeWriter, p: CpufreqPolicy, mhz: float) -> WriteResult:
        """Set the policy lower limit."""
        return w.write(p.attr("scaling_min_freq"), self._khz(p, mhz, "scaling_min_freq"))

    def set_epp(self, w: SafeWriter, p: CpufreqPolicy, preference: str) -> WriteResult:
        """Set ``energy_performance_preference`` (intel_pstate.rst, amd-pstate.rst)."""
        if not p.available_epp:
            raise HwInvalidValueError(f"policy{p.id} (driver {p.driver}) has no energy_performance_preference",
                                      path=p.attr("energy_performance_preference"))
        if preference not in p.available_epp:
            raise HwInvalidValueError(f"EPP {preference!r} not offered; choose one of {', '.join(p.available_epp)}",
                                      path=p.attr("energy_performance_preference"))
        return w.write(p.attr("energy_performance_preference"), preference)

    def set_max_perf_pct(self, w: SafeWriter, pct: int) -> WriteResult:
        """intel_pstate global performance limit in percent of the maximum (intel_pstate.rst)."""
        if not 0 <= pct <= 100:
            raise HwInvalidValueError(f"max_perf_pct must be in [0, 100] %, got {pct}",
                                      path=f"{INTEL_PSTATE_DIR}/max_perf_pct")
        return w.write(f"{INTEL_PSTATE_DIR}/max_perf_pct", int(pct))

    def set_min_perf_pct(self, w: SafeWriter, pct: int) -> WriteResult:
        """intel_pstate global lower performance limit in percent (intel_pstate.rst)."""
        if not 0 <= pct <= 100:
            raise HwInvalidValueError(f"min_perf_pct must be in [0, 100] %, got {pct}",
                                      path=f"{INTEL_PSTATE_DIR}/min_perf_pct")
        return w.write(f"{INTEL_PSTATE_DIR}/min_perf_pct", int(pct))

    def set_no_turbo(self, w: SafeWriter, no_turbo: bool) -> WriteResult:
        """Disable (True) or allow (False) turbo P-states under intel_pstate."""
        return w.write(f"{INTEL_PSTATE_DIR}/no_turbo", int(bool(no_turbo)))
