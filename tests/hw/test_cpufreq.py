from __future__ import annotations

import pytest

from powerrl.hw.cpufreq import Cpufreq, parse_cpu_list
from powerrl.hw.errors import HwBusyError, HwInvalidValueError
from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot


def test_parse_cpu_list() -> None:
    assert parse_cpu_list("0-3,8 10") == (0, 1, 2, 3, 8, 10)
    assert parse_cpu_list("5\n") == (5,)


def test_discovers_policies_in_mhz(fake: SysfsRoot) -> None:
    cf = Cpufreq(fake)
    assert cf.available() == (True, "")
    pols = cf.policies()
    assert [p.id for p in pols] == list(range(8))
    p = pols[3]
    assert p.related_cpus == (3,) and p.affected_cpus == (3,)
    assert p.driver == "acpi-cpufreq"
    assert p.cpuinfo_min_mhz == 1000.0 and p.cpuinfo_max_mhz == 2401.0  # turbo listed as base + 1 MHz
    assert p.available_freqs_mhz[0] == 1000.0 and 2400.0 in p.available_freqs_mhz
    assert "userspace" in p.available_governors and "" not in p.available_governors
    assert cf.setspeed_mhz(p) is None
    assert cf.driver_status() is None


def test_setspeed_needs_userspace_and_reports_resolution(fake: SysfsRoot, writer: SafeWriter) -> None:
    cf = Cpufreq(fake)
    p = cf.policy(0)
    with pytest.raises(HwInvalidValueError, match="userspace"):
        cf.set_setspeed_mhz(writer, p, 1800)
    cf.set_governor(writer, p, "userspace")
    assert cf.set_setspeed_mhz(writer, p, 1800).overridden is False
    res = cf.set_setspeed_mhz(writer, p, 1700)  # not a table entry: the driver picks 1800 MHz
    assert res.overridden and res.readback == "1800000" and res in writer.overrides
    with pytest.raises(HwInvalidValueError, match="hardware range"):
        cf.set_setspeed_mhz(writer, p, 5000)
    with pytest.raises(HwInvalidValueError, match="not offered"):
        cf.set_governor(writer, p, "turbo")


def test_cur_freq_follows_setspeed_and_limits(fake: SysfsRoot, writer: SafeWriter) -> None:
    fk = FakeKernel(fake.root, load=0.5)
    cf = Cpufreq(fake)
    p0, p1 = cf.policy(0), cf.policy(1)
    cf.set_governor(writer, p0, "userspace")
    cf.set_setspeed_mhz(writer, p0, 1400)
    cf.set_governor(writer, p1, "performance")
    cf.set_max_freq_mhz(writer, p1, 2000)
    fk.step(0.1)
    assert cf.cur_freq_mhz(p0) == 1400.0
    assert cf.cur_freq_mhz(p1) == 2000.0
    # scaling_min above scaling_max is rejected (EINVAL), nothing changes
    with pytest.raises(HwInvalidValueError):
        cf.set_min_freq_mhz(writer, p1, 2200)
    assert cf.min_freq_mhz(p1) == 1000.0
    # restoring puts the original governor and limits back
    writer.restore()
    assert cf.governor(p0) == "schedutil" and cf.max_freq_mhz(p1) == 2401.0
    assert cf.setspeed_mhz(p0) is None


def test_intel_pstate_knobs_and_epp(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=4, sockets=1, driver="intel_pstate")
    cf = Cpufreq(root)
    st = cf.driver_status()
    assert st is not None and st.driver == "intel_pstate" and st.status == "active" and st.max_perf_pct == 100
    p = cf.policy(0)
    assert "userspace" not in p.available_governors and "balance_power" in p.available_epp
    with SafeWriter(root, install_handlers=False) as w:
        cf.set_epp(w, p, "power")
        assert cf.epp(p) == "power"
        cf.set_governor(w, p, "performance")
        with pytest.raises(HwBusyError, match="EBUSY"):
            cf.set_epp(w, p, "balance_power")
        cf.set_max_perf_pct(w, 50)
        cf.set_no_turbo(w, True)
        FakeKernel(root.root).step(0.1)
        assert cf.cur_freq_mhz(p) == 1700.0  # 50 % of 3500 MHz, under the performance policy
        with pytest.raises(HwInvalidValueError):
            cf.set_max_perf_pct(w, 120)
    assert cf.driver_status().max_perf_pct == 100 and cf.epp(p) == "balance_performance"


def test_amd_pstate_status(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=2, sockets=1, driver="amd-pstate")
    cf = Cpufreq(root)
    assert cf.driver_status().driver == "amd-pstate"
    assert cf.policy(0).driver == "amd-pstate-epp"
