"""Package/core/uncore/DRAM/psys energy and power limits through the powercap intel-rapl interface.

Layout (Documentation/power/powercap/powercap.rst): ``/sys/class/powercap`` lists every zone flat,
``intel-rapl:N`` for top-level zones (``package-N``, ``psys``) and ``intel-rapl:N:M`` for their
subzones (``core``, ``uncore``, ``dram``). Each zone has ``name``, ``energy_uj`` (a counter in uJ that
wraps to 0 after ``max_energy_range_uj``; root-only, mode 0400, since Linux 5.10 / CVE-2020-8694),
``enabled`` and constraints ``constraint_K_{name,power_limit_uw,time_window_us,max_power_uw}``.
AMD processors expose the same interface (amd RAPL MSRs through intel_rapl_msr).
"""

from __future__ import annotations

from dataclasses import dataclass

from powerrl.hw.errors import HwInvalidValueError
from powerrl.hw.safety import SafeWriter, WriteResult
from powerrl.hw.sysfs import POWERCAP_DIR, SysfsRoot

UJ_PER_J = 1_000_000
UW_PER_W = 1_000_000
US_PER_S = 1_000_000


@dataclass(frozen=True)
class RaplConstraint:
    """One power limit of a zone: index, name (``long_term``/``short_term``/``peak_power``)."""

    index: int
    name: str
    max_power_w: float | None

    def attr(self, zone_rel: str, what: str) -> str:
        """Path of ``constraint_K_<what>`` of this constraint in ``zone_rel``."""
        return f"{zone_rel}/constraint_{self.index}_{what}"


@dataclass(frozen=True)
class RaplZone:
    """A powercap zone: ``intel-rapl:0`` (``package-0``) or a subzone ``intel-rapl:0:1`` (``dram``)."""

    id: str
    rel: str
    name: str
    parent: str | None
    max_energy_range_uj: int
    constraints: tuple[RaplConstraint, ...]

    @property
    def energy_rel(self) -> str:
        """Path of ``energy_uj``."""
        return f"{self.rel}/energy_uj"


def unwrap_delta_uj(prev_uj: int, cur_uj: int, max_energy_range_uj: int) -> int:
    """Energy in uJ between two readings of a counter that wraps to 0 after ``max_energy_range_uj``."""
    if cur_uj >= prev_uj:
        return cur_uj - prev_uj
    return cur_uj + max_energy_range_uj + 1 - prev_uj


class EnergyCounter:
    """Accumulates a wrapping ``energy_uj`` counter into joules since the first reading."""

    def __init__(self, max_energy_range_uj: int) -> None:
        self.max_energy_range_uj = max_energy_range_uj
        self._prev: int | None = None
        self.energy_j = 0.0

    def update(self, raw_uj: int) -> float:
        """Feed one reading; returns the energy in J accumulated since the first."""
        if self._prev is not None:
            self.energy_j += unwrap_delta_uj(self._prev, raw_uj, self.max_energy_range_uj) / UJ_PER_J
        self._prev = raw_uj
        return self.energy_j


class Rapl:
    """Reads RAPL energy and sets power limits under ``root``."""

    def __init__(self, root: SysfsRoot) -> None:
        self.root = root

    def available(self) -> tuple[bool, str]:
        """Whether intel-rapl zones exist, and why not."""
        if not self.zone_ids():
            return False, ("missing driver: no intel-rapl zones under /sys/class/powercap (load intel_rapl_msr; "
                           "VMs rarely expose RAPL)")
        return True, ""

    def zone_ids(self) -> list[str]:
        """``intel-rapl:N`` and ``intel-rapl:N:M`` ids, parents before subzones."""
        ids = [n for n in self.root.listdir(POWERCAP_DIR) if n.startswith("intel-rapl:")]
        return sorted(ids, key=lambda z: tuple(int(x) for x in z.split(":")[1:]))

    def zones(self) -> list[RaplZone]:
        """Every zone and subzone."""
        return [self.zone(z) for z in self.zone_ids()]

    def zone(self, zid: str) -> RaplZone:
        """Zone ``zid`` (e.g. ``"intel-rapl:0"``)."""
        rel = f"{POWERCAP_DIR}/{zid}"
        r = self.root
        constraints = []
        k = 0
        while r.exists(f"{rel}/constraint_{k}_power_limit_uw"):
            mp = r.try_int(f"{rel}/constraint_{k}_max_power_uw")
            constraints.append(RaplConstraint(k, r.try_str(f"{rel}/constraint_{k}_name") or f"constraint_{k}",
                                              None if mp is None else mp / UW_PER_W))
            k += 1
        parts = zid.split(":")
        return RaplZone(id=zid, rel=rel, name=r.read_str(f"{rel}/name"),
                        parent=":".join(parts[:-1]) if len(parts) > 2 else None,
                        max_energy_range_uj=r.read_int(f"{rel}/max_energy_range_uj"),
                        constraints=tuple(constraints))

    def energy_uj(self, z: RaplZone) -> int:
        """Raw ``energy_uj`` (wrapping counter; needs root on Linux >= 5.10)."""
        return self.root.read_int(z.energy_rel)

    def enabled(self, z: RaplZone) -> bool:
        """Whether the zone's power limiting is enabled."""
        return bool(self.root.read_int(f"{z.rel}/enabled"))

    def power_limit_w(self, z: RaplZone, c: RaplConstraint) -> float:
        """Constraint power limit in W."""
        return self.root.read_int(c.attr(z.rel, "power_limit_uw")) / UW_PER_W

    def time_window_s(self, z: RaplZone, c: RaplConstraint) -> float:
        """Constraint averaging window in s."""
        return self.root.read_int(c.attr(z.rel, "time_window_us")) / US_PER_S

    def constraint(self, z: RaplZone, name: str = "long_term") -> RaplConstraint:
        """The constraint called ``name``."""
        for c in z.constraints:
            if c.name == name:
                return c
        raise HwInvalidValueError(f"zone {z.id} ({z.name}) has no constraint {name!r}; it has "
                                  f"{', '.join(c.name for c in z.constraints) or 'none'}", path=z.rel)

    def set_power_limit_w(self, w: SafeWriter, z: RaplZone, c: RaplConstraint, watts: float) -> WriteResult:
        """Set a power limit in W; firmware may clamp it, which the read-back reports."""
        if not watts > 0.0:
            raise HwInvalidValueError(f"power limit must be > 0 W, got {watts}", path=c.attr(z.rel, "power_limit_uw"))
        return w.write(c.attr(z.rel, "power_limit_uw"), int(round(watts * UW_PER_W)))

    def set_time_window_s(self, w: SafeWriter, z: RaplZone, c: RaplConstraint, seconds: float) -> WriteResult:
        """Set a constraint's averaging window in s (the hardware rounds it to its encoding)."""
        if not seconds > 0.0:
            raise HwInvalidValueError(f"time window must be > 0 s, got {seconds}",
                                      path=c.attr(z.rel, "time_window_us"))
        return w.write(c.attr(z.rel, "time_window_us"), int(round(seconds * US_PER_S)))

    def set_enabled(self, w: SafeWriter, z: RaplZone, enabled: bool) -> WriteResult:
        """Enable or disable power limiting of a zone."""
        return w.write(f"{z.rel}/enabled", int(bool(enabled)))
