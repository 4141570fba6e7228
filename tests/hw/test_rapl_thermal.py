from __future__ import annotations

import math

import pytest

from powerrl.hw.errors import HwInvalidValueError, HwPermissionError
from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.hw.procstat import ProcStat, parse_proc_stat
from powerrl.hw.rapl import EnergyCounter, Rapl, unwrap_delta_uj
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot
from powerrl.hw.thermal import Thermal


def test_unwrap() -> None:
    assert unwrap_delta_uj(10, 30, 100) == 20
    assert unwrap_delta_uj(90, 5, 100) == 16  # 90 -> 100, 0, ..., 5
    c = EnergyCounter(100)
    for raw in (90, 95, 3, 50):
        c.update(raw)
    assert c.energy_j == pytest.approx(61e-6)


def test_zones_subzones_constraints(fake: SysfsRoot) -> None:
    r = Rapl(fake)
    zones = {z.id: z for z in r.zones()}
    assert zones["intel-rapl:0"].name == "package-0" and zones["intel-rapl:0"].parent is None
    assert zones["intel-rapl:1:2"].name == "dram" and zones["intel-rapl:1:2"].parent == "intel-rapl:1"
    pkg = zones["intel-rapl:0"]
    assert [c.name for c in pkg.constraints] == ["long_term", "short_term"]
    assert r.power_limit_w(pkg, r.constraint(pkg)) == pytest.approx(230.0)
    assert r.time_window_s(pkg, r.constraint(pkg)) == pytest.approx(27.983872)
    with pytest.raises(HwInvalidValueError, match="peak_power"):
        r.constraint(pkg, "peak_power")


def test_energy_advances_wraps_and_cap_throttles(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=4, sockets=1, energy_range_uj=50_000_000)  # wraps every 50 J
    fk = FakeKernel(root.root, load=1.0)
    r = Rapl(root)
    pkg = r.zone("intel-rapl:0")
    counter = EnergyCounter(pkg.max_energy_range_uj)
    counter.update(r.energy_uj(pkg))
    raws = []
    for _ in range(20):
        fk.step(0.1)
        raws.append(r.energy_uj(pkg))
        counter.update(raws[-1])
    assert any(b < a for a, b in zip(raws, raws[1:], strict=False)), "counter should wrap"
    p_full = counter.energy_j / 2.0
    assert 150 < p_full < 260  # package power at full load (W)
    with SafeWriter(root, install_handlers=False) as w:
        r.set_power_limit_w(w, pkg, r.constraint(pkg), 100.0)
        counter2 = EnergyCounter(pkg.max_energy_range_uj)
        counter2.update(r.energy_uj(pkg))
        for _ in range(10):
            fk.step(0.1)
            counter2.update(r.energy_uj(pkg))
        assert counter2.energy_j / 1.0 <= 100.0 + 1e-6
        # firmware clamps a limit above constraint_0_max_power_uw silently; verify() reports it
        res = r.set_power_limit_w(w, pkg, r.constraint(pkg), 400.0)
        assert not res.overridden
        fk.step(0.1)
        late = w.verify()
        assert len(late) == 1 and late[0].readback == "300000000"
    assert r.power_limit_w(pkg, r.constraint(pkg)) == pytest.approx(230.0)


def test_locked_zone(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=2, sockets=1, locked_zones=("intel-rapl:0",))
    r = Rapl(root)
    pkg = r.zone("intel-rapl:0")
    with SafeWriter(root, install_handlers=False) as w:
        with pytest.raises(HwPermissionError, match="locked by the BIOS"):
            r.set_power_limit_w(w, pkg, r.constraint(pkg), 100.0)


def test_thermal_zones_trips_cooling_hwmon(fake: SysfsRoot, writer: SafeWriter) -> None:
    th = Thermal(fake)
    zones = th.zones()
    assert [z.type for z in zones] == ["acpitz", "x86_pkg_temp", "x86_pkg_temp"]
    pkg = zones[1]
    assert [(t.type, t.temp_c, t.hyst_c) for t in pkg.trips] == [("passive", 95.0, 2.0), ("critical", 105.0, 0.0)]
    devs = th.cooling_devices()
    assert devs[0].type == "Processor" and devs[0].max_state == 3
    with pytest.raises(HwInvalidValueError, match=r"\[0, 3\]"):
        th.set_cur_state(writer, devs[0], 4)
    # past the Python check, the driver's store() rejects it too (EINVAL)
    with pytest.raises(HwInvalidValueError, match="EINVAL"):
        writer.write(f"{devs[0].rel}/cur_state", 7)
    th.set_cur_state(writer, devs[0], 2)
    assert th.cur_state(devs[0]) == 2
    kinds = {s.kind for s in th.hwmon_sensors()}
    assert kinds == {"temp", "power"}


def test_temperature_follows_load(fake: SysfsRoot) -> None:
    th = Thermal(fake)
    z = th.zones()[1]
    fk = FakeKernel(fake.root, load=0.0)
    for _ in range(50):
        fk.step(1.0)
    cold = th.temp_c(z)
    fk.load[:] = 1.0
    for _ in range(50):
        fk.step(1.0)
    hot = th.temp_c(z)
    assert hot > cold + 5.0
    assert math.isfinite(hot) and hot < 105.0


def test_procstat_utilisation_follows_load(fake: SysfsRoot) -> None:
    ps = ProcStat(fake)
    fk = FakeKernel(fake.root, load=0.4)
    assert ps.utilisation() is None
    for _ in range(10):
        fk.step(0.1)
    util = ps.utilisation()
    assert util is not None and util.shape == (9,)
    # schedutil lowers the frequency, so the busy share exceeds the load at f_max (as on real nodes)
    assert util[0] == pytest.approx(fk.arrays.util.mean(), abs=0.05)
    assert 0.4 < util[0] < 1.0


def test_parse_proc_stat() -> None:
    t = parse_proc_stat("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\nintr 1\n")
    assert t.names == ("cpu", "cpu0") and t.busy[0] == 15 and t.total[0] == 100


def test_amd_energy_only_rapl_and_hwmon_energy(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=2, sockets=1, driver="amd-pstate")
    r = Rapl(root)
    assert all(not z.constraints for z in r.zones())
    th = Thermal(root)
    energy = [s for s in th.hwmon_sensors() if s.kind == "energy"]
    assert energy and energy[0].label == "Esocket0"
    fk = FakeKernel(root.root, load=0.5)
    fk.step(1.0)
    assert th.read_hwmon(energy[0]) > 1.0  # joules after one second
