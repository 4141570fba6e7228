from __future__ import annotations

import sys
import types

import pytest

from powerrl.hw.errors import HwError, HwInvalidValueError, HwUnsupportedError
from powerrl.hw.nvml import Nvml
from powerrl.hw.perf import PerfCounters, perf_capability
from powerrl.hw.sysfs import SysfsRoot


def test_perf_capability_message(fake: SysfsRoot) -> None:
    ok, why = perf_capability(SysfsRoot(fake.root, uid=1000))
    assert not ok and "perf_event_paranoid is 2" in why and "CAP_PERFMON" in why
    fake.path("proc/sys/kernel/perf_event_paranoid").write_text("0\n")
    assert perf_capability(SysfsRoot(fake.root, uid=1000)) == (True, "")
    with pytest.raises(HwUnsupportedError, match="fake sysfs tree"):
        PerfCounters(fake, [0])


def test_perf_counters_on_this_machine() -> None:
    root = SysfsRoot("/")
    ok, why = perf_capability(root)
    if not ok:
        pytest.skip(why)
    try:
        pc = PerfCounters(root, [0]).open()
    except HwError as exc:  # no PMU in VMs/containers (ENOENT), or seccomp (EPERM)
        pytest.skip(str(exc))
    ins0, cyc0 = pc.read()
    sum(range(200000))
    ins1, cyc1 = pc.read()
    pc.close()
    assert ins1[0] >= ins0[0] and cyc1[0] >= cyc0[0]


class _FakeNvml(types.ModuleType):
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.limit_mw = 300_000

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: return 1
    def nvmlDeviceGetHandleByIndex(self, i: int) -> int: return i
    def nvmlDeviceGetPowerUsage(self, h: int) -> int: return 123_456
    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int: return 5_000_000
    def nvmlDeviceGetTemperature(self, h: int, kind: int) -> int: return 61
    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int: return 1980 if kind == 1 else 2619
    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int: return self.limit_mw
    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> tuple[int, int]: return 100_000, 700_000
    def nvmlDeviceSetPowerManagementLimit(self, h: int, mw: int) -> None: self.limit_mw = mw


def test_nvml_units_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert Nvml.available() == (True, "1 GPU(s)")
    with Nvml() as nv:
        r = nv.read(0)
        assert (r.power_w, r.energy_j, r.temp_c, r.sm_clock_mhz, r.power_limit_w) == (123.456, 5000.0, 61.0, 1980.0,
                                                                                       300.0)
        assert nv.set_power_limit_w(0, 450.0) == 450.0
        with pytest.raises(HwInvalidValueError, match=r"\[100.0, 700.0\]"):
            nv.set_power_limit_w(0, 50.0)
    assert fake.limit_mw == 300_000  # restored on close


def test_nvml_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    ok, why = Nvml.available()
    assert not ok and "nvidia-ml-py" in why
