"""A node's hardware layout for control: frequency domains, their sensors and the P-state table.

A host file (``kind: host``, ``configs/hosts/*.yaml``, ``docs/deploy.md``) says how a real node maps
onto the units a NodeDVFS policy was trained on: which cpufreq policies form each frequency domain,
which RAPL package zone measures (and caps) its power, which thermal sensor is its die temperature,
and which frequencies the P-state indices stand for. :func:`bind_host` checks that against what the
node offers and returns a :class:`HostLayout`; anything missing is a :class:`~powerrl.errors.ConfigError`
naming the key, the value and the fix, before anything is written.

The top-level ``agent:`` section of the same file belongs to the node agent
(:mod:`powerrl.runtime.config`) and is ignored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from powerrl.config import from_dict, join_key, load_kind, spec
from powerrl.errors import ConfigError
from powerrl.hw.cpufreq import Cpufreq, CpufreqPolicy, parse_cpu_list
from powerrl.hw.errors import HwError
from powerrl.hw.rapl import Rapl, RaplZone
from powerrl.hw.sysfs import SysfsRoot
from powerrl.hw.thermal import Thermal

#: cpufreq attributes a host may actuate (``scaling_setspeed`` needs the userspace governor).
ACTUATE_KNOBS = ("scaling_max_freq", "scaling_setspeed")
#: Thermal zone types that are a CPU package's die temperature, in order of preference
#: (``x86_pkg_temp``: drivers/thermal/intel/x86_pkg_temp_thermal.c).
PACKAGE_ZONE_TYPES = ("x86_pkg_temp",)
#: hwmon chips reporting a CPU package temperature as ``temp1_input`` (drivers/hwmon/coretemp.c, k10temp.c).
PACKAGE_HWMON_CHIPS = ("coretemp", "k10temp", "zenpower")


@dataclass(frozen=True)
class DomainSpec:
    """One frequency domain: its CPUs and, optionally, the sensors that belong to it.

    ``cpus`` is a kernel CPU list (``"0-31"``, ``"0-15,32-47"``); every cpufreq policy whose
    ``related_cpus`` lie in it belongs to the domain. ``rapl_zone`` (``intel-rapl:0``) measures and
    caps its power; ``temp`` names its die temperature: ``thermal_zoneN`` or ``hwmonN/tempK_input``.
    Unset sensors are found by package order (the N-th domain gets the N-th package zone).
    """

    cpus: str
    rapl_zone: str | None = None
    temp: str | None = None


@dataclass(frozen=True)
class HostConfig:
    """How a real node maps onto NodeDVFS-v0's frequency domains (the hardware part of a host file)."""

    name: str = field(default="", metadata=spec(doc="node name in logs and metrics (default: the host name)"))
    root: str = field(default="/", metadata=spec(doc="hardware root: / on a node, a fake tree in tests"))
    profile: str = field(default="epyc7502", metadata=spec(
        doc="server profile whose power and thermal model the shield and the baselines use"))
    n_domains: int = field(default=2, metadata=spec(lo=1, hi=64, doc="frequency domains (CPU packages by default)"))
    domains: tuple[DomainSpec, ...] = field(default=(), metadata=spec(doc="explicit domains (overrides n_domains)"))
    n_pstates: int = field(default=11, metadata=spec(lo=2, hi=64, doc="P-state indices the policy chooses from"))
    pstates_mhz: tuple[float, ...] = field(default=(), metadata=spec(
        unit="MHz", doc="explicit ascending P-state table; default n_pstates evenly spaced over cpuinfo_min..max "
        "(over the entries of the driver's frequency table where it has one)"))
    actuate: str = field(default="scaling_max_freq", metadata=spec(choices=ACTUATE_KNOBS))
    mem_bound: float = field(default=0.4, metadata=spec(lo=0.0, hi=1.0, doc="memory-boundedness of the workload"))
    sla_ms: float = field(default=100.0, metadata=spec(lo=0.0, lo_open=True, unit="ms", doc="p99 latency SLA"))
    service_ms: float = field(default=5.0, metadata=spec(lo=0.0, lo_open=True, unit="ms",
                                                         doc="mean service time of a request at f_max"))
    latency_file: str | None = field(default=None, metadata=spec(
        doc="file the application rewrites with its current p99 latency in ms (absolute, or under root)"))
    inlet_c: float = field(default=24.0, metadata=spec(lo=-20.0, hi=60.0, unit="degC", doc="inlet air temperature"))
    priority: int = field(default=1, metadata=spec(lo=0, hi=4, doc="0 = Critical .. 4 = Background"))
    rapl_caps: bool = field(default=True, metadata=spec(
        doc="write RAPL long-term limits for thermal and coordinator caps (where the zones offer them)"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Cross-field checks: an ascending table of n_pstates entries, domains that name CPUs."""
        if self.pstates_mhz:
            t = np.asarray(self.pstates_mhz)
            if len(t) != self.n_pstates:
                raise ConfigError(join_key(path, "pstates_mhz"), list(self.pstates_mhz),
                                  f"{self.n_pstates} frequencies (n_pstates), ascending", source)
            if not (np.all(np.diff(t) > 0) and t[0] > 0):
                raise ConfigError(join_key(path, "pstates_mhz"), list(self.pstates_mhz),
                                  "positive frequencies in ascending order, MHz", source)
        for i, d in enumerate(self.domains):
            try:
                parse_cpu_list(d.cpus)
            except (ValueError, HwError):
                raise ConfigError(join_key(path, f"domains[{i}].cpus"), d.cpus,
                                  "a kernel CPU list such as '0-31' or '0-15,32-47'", source) from None

    @property
    def domain_count(self) -> int:
        """Number of frequency domains (explicit domains win over ``n_domains``)."""
        return len(self.domains) if self.domains else self.n_domains


def host_config(data: dict[str, Any] | None = None, source: str | None = None) -> HostConfig:
    """A validated :class:`HostConfig` from a host file's mapping (its ``agent:`` section is skipped)."""
    data = dict(data or {})
    data.pop("agent", None)
    return from_dict(HostConfig, data, source=source)


def load_host_config(path: str | Path) -> HostConfig:
    """Load and validate the hardware part of a host file (``kind: host``)."""
    return host_config(load_kind(path, "host"), str(path))


@dataclass(frozen=True)
class Domain:
    """A bound frequency domain: its cpufreq policies, CPUs, power zone and temperature sensor path."""

    index: int
    policies: tuple[CpufreqPolicy, ...]
    cpus: tuple[int, ...]
    rapl: RaplZone | None
    temp_rel: str | None
    temp_label: str


@dataclass(frozen=True)
class HostLayout:
    """A host config bound to a node: domains, P-state table (MHz, ascending) and where things are."""

    config: HostConfig
    root: SysfsRoot
    domains: tuple[Domain, ...]
    pstates_mhz: np.ndarray
    driver: str
    notes: tuple[str, ...] = ()

    @property
    def policies(self) -> tuple[CpufreqPolicy, ...]:
        """Every controlled cpufreq policy, domain by domain."""
        return tuple(p for d in self.domains for p in d.policies)

    @property
    def policy_domain(self) -> np.ndarray:
        """Domain index of each entry of :attr:`policies`."""
        return np.array([d.index for d in self.domains for _ in d.policies], dtype=np.int64)

    def pstate_of_mhz(self, mhz: np.ndarray) -> np.ndarray:
        """Nearest P-state index of frequencies ``mhz`` (array)."""
        t = self.pstates_mhz
        idx = np.clip(np.searchsorted(t, mhz), 1, len(t) - 1)
        lower_closer = np.abs(np.asarray(mhz) - t[idx - 1]) <= np.abs(t[idx] - np.asarray(mhz))
        return np.where(lower_closer, idx - 1, idx).astype(np.int64)


def _package_zones(rapl: Rapl) -> list[RaplZone]:
    """Top-level ``package-N`` zones in package order."""
    zones = [z for z in rapl.zones() if z.parent is None and z.name.startswith("package-")]
    return sorted(zones, key=lambda z: int(z.name.split("-")[1]) if z.name.split("-")[1].isdigit() else 0)


def _package_temps(root: SysfsRoot) -> list[tuple[str, str]]:
    """``(path, label)`` of per-package die temperatures in package order: x86_pkg_temp zones, else hwmon."""
    th = Thermal(root)
    zones = [z for z in th.zones() if z.type in PACKAGE_ZONE_TYPES and root.exists(z.temp_rel)]
    if zones:
        return [(z.temp_rel, f"thermal_zone{z.id}") for z in sorted(zones, key=lambda z: z.id)]
    found = []
    for s in th.hwmon_sensors():
        if s.kind == "temp" and s.chip in PACKAGE_HWMON_CHIPS and s.rel.endswith("temp1_input"):
            chip_dir = s.rel.split("/")[-2]
            # coretemp labels its package sensor "Package id N" (drivers/hwmon/coretemp.c): the package
            # it measures. Unlabelled chips (k10temp "Tctl") are ordered by hwmon number, numerically.
            m = re.fullmatch(r"Package id (\d+)", s.label.strip())
            key = (0, int(m.group(1))) if m else (1, int(chip_dir[5:]) if chip_dir[5:].isdigit() else 0)
            found.append((key, s.rel, f"{chip_dir}/temp1_input"))
    return [(rel, label) for _, rel, label in sorted(found)]


_HWMON_TEMP = re.compile(r"^hwmon\d+/temp\d+_input$")
_ZONE = re.compile(r"^thermal_zone\d+$")


def _temp_path(root: SysfsRoot, name: str, key: str, source: str | None) -> str:
    if _ZONE.match(name):
        rel = f"sys/class/thermal/{name}/temp"
    elif _HWMON_TEMP.match(name):
        rel = f"sys/class/hwmon/{name}"
    else:
        raise ConfigError(key, name, "a sensor name such as 'thermal_zone1' or 'hwmon0/temp1_input'", source)
    if not root.exists(rel):
        raise ConfigError(key, name, f"a temperature sensor this node has (no {root.path(rel)})", source)
    return rel


def _split_contiguous(policies: list[CpufreqPolicy], n: int) -> list[list[CpufreqPolicy]]:
    """``n`` groups of consecutive policies (ordered by first CPU), as equal in size as possible."""
    ordered = sorted(policies, key=lambda p: min(p.related_cpus or (p.id,)))
    return [list(chunk) for chunk in np.array_split(np.array(ordered, dtype=object), n)]


def _by_package(root: SysfsRoot, policies: list[CpufreqPolicy]) -> dict[int, list[CpufreqPolicy]] | None:
    """Policies grouped by ``topology/physical_package_id`` of their first CPU, or None without topology."""
    groups: dict[int, list[CpufreqPolicy]] = {}
    for p in policies:
        cpu = min(p.related_cpus or (p.id,))
        text = root.try_str(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")
        if text is None or not text.strip().lstrip("-").isdigit():
            return None
        groups.setdefault(int(text), []).append(p)
    return groups


def _packages_of(root: SysfsRoot, members: list[CpufreqPolicy], i: int, n: int, n_packages: int,
                 guess: bool) -> set[int]:
    """Every package (index in package order) a domain's CPUs lie in: from the topology, or by shares.

    Without topology the shares are a guess that holds for domains splitting the CPUs in order
    (``guess``); for explicitly listed domains nothing is known then (empty set).
    """
    ids = set()
    for p in members:
        for cpu in p.related_cpus or (p.id,):
            text = root.try_str(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")
            if text is None or not text.strip().isdigit():
                if not guess:
                    return set()
                # No topology: domains and packages both split the CPU range in order.
                first, last = i * n_packages / n, (i + 1) * n_packages / n
                return set(range(int(first), max(int(first) + 1, int(np.ceil(last - 1e-9)))))
            ids.add(int(text))
    return ids


def _package_index(root: SysfsRoot, members: list[CpufreqPolicy], i: int, n: int, n_packages: int) -> int:
    """Which of ``n_packages`` package sensors (in package order) belongs to domain ``i`` of ``n``.

    The package of the domain's first CPU when the node reports its topology, else the domain's
    share of the CPU range (domains and packages both split the CPUs in order).
    """
    cpu = min(min(p.related_cpus or (p.id,)) for p in members)
    text = root.try_str(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")
    if text is not None and text.strip().isdigit() and int(text) < n_packages:
        return int(text)
    return min(i * n_packages // n, n_packages - 1)


def bind_host(cfg: HostConfig, root: SysfsRoot | None = None, source: str | None = None) -> HostLayout:
    """Bind ``cfg`` to the node under ``root`` (default ``cfg.root``).

    Raises:
        ConfigError: the node lacks something the config names or needs (cpufreq, a domain's CPUs,
            a sensor, enough frequencies); the message says which key and how to fix it.
    """
    root = root if root is not None else SysfsRoot(cfg.root)
    cf = Cpufreq(root)
    ok, why = cf.available()
    if not ok:
        raise ConfigError("root", str(root.root), f"a node with cpufreq policies ({why}); check root, or load the "
                          "cpufreq driver (docs/hardware.md)", source)
    policies = cf.policies()
    notes: list[str] = []
    n = cfg.domain_count
    if cfg.domains:
        groups = []
        owner: dict[int, int] = {}
        for i, d in enumerate(cfg.domains):
            cpus = set(parse_cpu_list(d.cpus))
            members = [p for p in policies if set(p.related_cpus or (p.id,)) <= cpus]
            if not members:
                raise ConfigError(f"domains[{i}].cpus", d.cpus, "CPUs that have cpufreq policies on this node "
                                  f"(policies cover CPUs {min(p.id for p in policies)}-{max(p.id for p in policies)})",
                                  source)
            for p in members:
                if p.id in owner:
                    # Two domains writing one policy: the last write would silently win.
                    raise ConfigError(f"domains[{i}].cpus", d.cpus, f"CPUs of no other domain (policy{p.id} is "
                                      f"already in domains[{owner[p.id]}])", source)
                owner[p.id] = i
            groups.append(members)
    else:
        if len(policies) < n:
            raise ConfigError("n_domains", n, f"at most {len(policies)} (this node has {len(policies)} cpufreq "
                              "policies)", source)
        pkg = _by_package(root, policies)
        if pkg is not None and len(pkg) == n:
            groups = [pkg[k] for k in sorted(pkg)]
        else:
            groups = _split_contiguous(policies, n)
            notes.append(f"domains: {n} groups of consecutive CPUs"
                         + ("" if pkg is None else f" (the node has {len(pkg)} packages)"))
    rapl = Rapl(root)
    packages = _package_zones(rapl) if rapl.available()[0] else []
    temps = _package_temps(root)
    n_pkg = max(len(packages), len(temps))
    for i, members in enumerate(groups):
        spanned = _packages_of(root, members, i, n, n_pkg, not cfg.domains) if n_pkg > 1 else set()
        if len(spanned) > 1:
            # One domain, one package: a domain across packages would see one package's power and
            # heat only, and its cap would reach one package.
            key = f"domains[{i}].cpus" if cfg.domains else "n_domains"
            value = cfg.domains[i].cpus if cfg.domains else n
            raise ConfigError(key, value, f"domains that each lie within one CPU package (domain {i} spans packages "
                              f"{sorted(spanned)} of {n_pkg}); use a multiple of {n_pkg} domains, or list them", source)
    domains = []
    for i, members in enumerate(groups):
        spec_i = cfg.domains[i] if cfg.domains else DomainSpec(cpus="")
        zone: RaplZone | None = None
        if spec_i.rapl_zone is not None:
            try:
                zone = rapl.zone(spec_i.rapl_zone)
            except HwError:
                have = ", ".join(rapl.zone_ids()) or "none"
                raise ConfigError(f"domains[{i}].rapl_zone", spec_i.rapl_zone, f"a RAPL zone this node has: {have}",
                                  source) from None
        elif packages:
            zone = packages[_package_index(root, members, i, n, len(packages))]
        if spec_i.temp is not None:
            temp_rel: str | None = _temp_path(root, spec_i.temp, f"domains[{i}].temp", source)
            label = spec_i.temp
        elif temps:
            temp_rel, label = temps[_package_index(root, members, i, n, len(temps))]
        else:
            temp_rel, label = None, "none"
        domain_cpus = tuple(sorted({c for p in members for c in (p.related_cpus or (p.id,))}))
        domains.append(Domain(i, tuple(members), domain_cpus, zone, temp_rel, label))
    if packages and len(packages) != n and not cfg.domains:
        notes.append(f"power: {len(packages)} RAPL package zone(s) for {n} domains: a zone's power is split "
                     "equally over the domains in its package")
    if not temps and not any(d.temp for d in cfg.domains):
        notes.append("temperature: no package sensor (x86_pkg_temp, coretemp, k10temp): the shield sees NaN "
                     "and keeps every domain at the floor P-state")
    lo = max(p.cpuinfo_min_mhz for p in policies)
    hi = min(p.cpuinfo_max_mhz for p in policies)
    if cfg.pstates_mhz:
        table = np.asarray(cfg.pstates_mhz, dtype=np.float64)
        if table[0] < lo - 1e-3 or table[-1] > hi + 1e-3:
            raise ConfigError("pstates_mhz", list(cfg.pstates_mhz),
                              f"frequencies within this node's cpuinfo range {lo:g}-{hi:g} MHz", source)
    else:
        # Evenly spaced over the hardware range: the simulator's tables are too (docs/model.md), and a
        # driver resolves each target to its own nearest table entry (acpi-cpufreq) or runs it (HWP).
        table = np.round(np.linspace(lo, hi, cfg.n_pstates), 3)
        offered = sorted(set.intersection(*(set(p.available_freqs_mhz) for p in policies)))
        if offered:
            # A driver with a frequency table (acpi-cpufreq) runs only its entries: P-states are entries
            # spread evenly over the table (every entry reachable when there are enough P-states), so
            # what is written is what runs and the pstate feature is exact.
            avail = np.asarray(offered, dtype=np.float64)
            table = avail[np.round(np.linspace(0, len(avail) - 1, cfg.n_pstates)).astype(int)]
            distinct = len(np.unique(table))
            if distinct < cfg.n_pstates:
                notes.append(f"pstates: the driver offers {len(avail)} frequencies, so the {cfg.n_pstates} P-states "
                             f"map to {distinct} distinct ones (neighbouring indices share a frequency)")
    return HostLayout(cfg, root, tuple(domains), table, policies[0].driver, tuple(notes))
