"""NVIDIA GPUs through NVML (the optional ``nvidia-ml-py`` package, imported as ``pynvml``).

NVML reports power in mW, energy in mJ, temperature in degC and clocks in MHz
(NVML API reference, "Device Queries"); they are converted here to W, J, degC and MHz.
Setting a power limit needs root (``nvmlDeviceSetPowerManagementLimit``); the original limit of each
GPU is saved before the first change and put back by :meth:`Nvml.close` (NVML limits are not files,
so they are outside the on-disk restore journal of :mod:`powerrl.hw.safety`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from powerrl.hw.errors import HwError, HwInvalidValueError, HwUnsupportedError

MW_PER_W = 1000.0
MJ_PER_J = 1000.0


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@dataclass(frozen=True)
class GpuReading:
    """One reading of one GPU."""

    index: int
    power_w: float
    energy_j: float | None
    temp_c: float
    sm_clock_mhz: float
    mem_clock_mhz: float
    power_limit_w: float


class Nvml:
    """NVML session; use as a context manager or call :meth:`close`."""

    def __init__(self) -> None:
        nv = _import_pynvml()
        if nv is None:
            raise HwUnsupportedError("NVIDIA GPU telemetry needs the optional package nvidia-ml-py "
                                     "(pip install nvidia-ml-py)")
        self.nv: Any = nv
        try:
            self.nv.nvmlInit()
        except Exception as exc:  # pynvml.NVMLError and its many subclasses
            raise HwUnsupportedError(f"NVML could not initialise ({exc}): no NVIDIA driver or GPU") from None
        self._handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in range(self.nv.nvmlDeviceGetCount())]
        self._original_mw: dict[int, int] = {}

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether NVML can be used here, and why not."""
        try:
            n = Nvml()
        except HwError as exc:
            return False, str(exc)
        count = n.count
        n.close()
        return (True, f"{count} GPU(s)") if count else (False, "NVML found no GPU")

    @property
    def count(self) -> int:
        """Number of GPUs."""
        return len(self._handles)

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.nv, fn)(*args)
        except Exception as exc:  # NVMLError_NotSupported, NVMLError_NoPermission, ...
            raise HwError(f"NVML {fn} failed: {exc}") from None

    def read(self, index: int) -> GpuReading:
        """Power (W), total energy (J, ``None`` before Volta), temperature (degC), clocks (MHz), limit (W)."""
        h = self._handles[index]
        nv = self.nv
        try:
            energy: float | None = nv.nvmlDeviceGetTotalEnergyConsumption(h) / MJ_PER_J
        except Exception:  # not supported before Volta
            energy = None
        return GpuReading(
            index=index,
            power_w=self._call("nvmlDeviceGetPowerUsage", h) / MW_PER_W,
            energy_j=energy,
            temp_c=float(self._call("nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU)),
            sm_clock_mhz=float(self._call("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM)),
            mem_clock_mhz=float(self._call("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_MEM)),
            power_limit_w=self._call("nvmlDeviceGetPowerManagementLimit", h) / MW_PER_W,
        )

    def power_limit_range_w(self, index: int) -> tuple[float, float]:
        """Allowed power-limit range in W."""
        lo, hi = self._call("nvmlDeviceGetPowerManagementLimitConstraints", self._handles[index])
        return lo / MW_PER_W, hi / MW_PER_W

    def set_power_limit_w(self, index: int, watts: float) -> float:
        """Set the power limit (needs root) and return the limit read back in W."""
        lo, hi = self.power_limit_range_w(index)
        if not lo <= watts <= hi:
            raise HwInvalidValueError(f"GPU {index} power limit must be in [{lo}, {hi}] W, got {watts}")
        if index not in self._original_mw:
            self._original_mw[index] = int(self._call("nvmlDeviceGetPowerManagementLimit", self._handles[index]))
        self._call("nvmlDeviceSetPowerManagementLimit", self._handles[index], int(round(watts * MW_PER_W)))
        return float(self._call("nvmlDeviceGetPowerManagementLimit", self._handles[index]) / MW_PER_W)

    def close(self) -> None:
        """Put back every changed power limit and shut NVML down."""
        for index, mw in self._original_mw.items():
            self._call("nvmlDeviceSetPowerManagementLimit", self._handles[index], mw)
        self._original_mw.clear()
        try:
            self.nv.nvmlShutdown()
        except Exception:  # already shut down
            pass

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
