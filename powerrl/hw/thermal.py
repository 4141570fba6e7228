"""Thermal zones, cooling devices (Documentation/driver-api/thermal/sysfs-api.rst) and hwmon sensors.

``/sys/class/thermal/thermal_zoneN`` has ``type``, ``temp`` (m degC) and trip points
``trip_point_K_{temp,type,hyst}`` (m degC; types ``active``, ``passive``, ``hot``, ``critical``).
``cooling_deviceN`` has ``type``, ``max_state`` and ``cur_state`` (0..max_state; a larger value is
rejected with EINVAL). hwmon chips (Documentation/hwmon/sysfs-interface.rst) under
``/sys/class/hwmon/hwmonN`` report ``tempK_input`` (m degC), ``powerK_input``/``powerK_average``
(uW) and ``energyK_input`` (uJ), each with an optional ``_label``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from powerrl.hw.errors import HwInvalidValueError
from powerrl.hw.safety import SafeWriter, WriteResult
from powerrl.hw.sysfs import HWMON_DIR, THERMAL_DIR, SysfsRoot

MILLI = 1000.0


@dataclass(frozen=True)
class TripPoint:
    """A trip point: temperature and hysteresis in degC, type (``passive``, ``critical``, ...)."""

    index: int
    temp_c: float
    type: str
    hyst_c: float


@dataclass(frozen=True)
class ThermalZone:
    """A thermal zone and its trip points."""

    id: int
    rel: str
    type: str
    trips: tuple[TripPoint, ...]

    @property
    def temp_rel(self) -> str:
        """Path of ``temp`` (m degC)."""
        return f"{self.rel}/temp"


@dataclass(frozen=True)
class CoolingDevice:
    """A cooling device (fan, processor throttling, ...) with states ``0..max_state``."""

    id: int
    rel: str
    type: str
    max_state: int


@dataclass(frozen=True)
class HwmonSensor:
    """One hwmon input: ``kind`` is ``temp`` (degC), ``power`` (W) or ``energy`` (J); ``scale`` = SI per raw."""

    chip: str
    rel: str
    kind: str
    label: str
    scale: float


_HWMON_INPUT = re.compile(r"^(temp|power|energy)(\d+)_(input|average)$")
_HWMON_SCALE = {"temp": 1e-3, "power": 1e-6, "energy": 1e-6}


class Thermal:
    """Thermal zones, cooling devices and hwmon sensors under ``root``."""

    def __init__(self, root: SysfsRoot) -> None:
        self.root = root

    def zones(self) -> list[ThermalZone]:
        """Every ``thermal_zoneN``."""
        out = []
        for name in self.root.listdir(THERMAL_DIR):
            if not (name.startswith("thermal_zone") and name[12:].isdigit()):
                continue
            rel = f"{THERMAL_DIR}/{name}"
            trips = []
            k = 0
            while self.root.exists(f"{rel}/trip_point_{k}_temp"):
                hyst = self.root.try_int(f"{rel}/trip_point_{k}_hyst")
                trips.append(TripPoint(k, self.root.read_int(f"{rel}/trip_point_{k}_temp") / MILLI,
                                       self.root.try_str(f"{rel}/trip_point_{k}_type") or "unknown",
                                       0.0 if hyst is None else hyst / MILLI))
                k += 1
            out.append(ThermalZone(int(name[12:]), rel, self.root.read_str(f"{rel}/type"), tuple(trips)))
        return sorted(out, key=lambda z: z.id)

    def temp_c(self, z: ThermalZone) -> float:
        """Zone temperature in degC."""
        return self.root.read_int(z.temp_rel) / MILLI

    def cooling_devices(self) -> list[CoolingDevice]:
        """Every ``cooling_deviceN``."""
        out = []
        for name in self.root.listdir(THERMAL_DIR):
            if not (name.startswith("cooling_device") and name[14:].isdigit()):
                continue
            rel = f"{THERMAL_DIR}/{name}"
            out.append(CoolingDevice(int(name[14:]), rel, self.root.read_str(f"{rel}/type"),
                                     self.root.read_int(f"{rel}/max_state")))
        return sorted(out, key=lambda d: d.id)

    def cur_state(self, d: CoolingDevice) -> int:
        """Current cooling state."""
        return self.root.read_int(f"{d.rel}/cur_state")

    def set_cur_state(self, w: SafeWriter, d: CoolingDevice, state: int) -> WriteResult:
        """Set a cooling state in ``[0, max_state]`` (larger values are EINVAL in the kernel too)."""
        if not 0 <= state <= d.max_state:
            raise HwInvalidValueError(f"cooling_device{d.id} ({d.type}) state must be in [0, {d.max_state}], "
                                      f"got {state}", path=f"{d.rel}/cur_state")
        return w.write(f"{d.rel}/cur_state", int(state))

    def hwmon_sensors(self) -> list[HwmonSensor]:
        """Every temperature, power and energy input of every hwmon chip."""
        out = []
        for chip_dir in self.root.listdir(HWMON_DIR):
            rel = f"{HWMON_DIR}/{chip_dir}"
            chip = self.root.try_str(f"{rel}/name") or chip_dir
            for entry in self.root.listdir(rel):
                m = _HWMON_INPUT.match(entry)
                if not m:
                    continue
                kind, idx = m.group(1), m.group(2)
                label = self.root.try_str(f"{rel}/{kind}{idx}_label") or f"{kind}{idx}"
                out.append(HwmonSensor(chip, f"{rel}/{entry}", kind, label, _HWMON_SCALE[kind]))
        return out

    def read_hwmon(self, s: HwmonSensor) -> float:
        """One hwmon input in SI units (degC, W or J)."""
        return self.root.read_int(s.rel) * s.scale
