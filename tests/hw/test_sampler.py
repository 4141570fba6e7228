from __future__ import annotations

import errno
import time

import numpy as np
import pytest

from powerrl.hw import sensors as S
from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.hw.sensors import PyReader, Sampler, Sensor, discover_sensors, hist_percentile
from powerrl.hw.sysfs import SysfsRoot

sampler_mod = pytest.importorskip("powerrl._core.sampler", reason="Cython core not built")


def test_kind_constants_match_c() -> None:
    assert (S.GAUGE, S.COUNTER, S.PROCSTAT_UTIL) == (sampler_mod.SENSOR_GAUGE, sampler_mod.SENSOR_COUNTER,
                                                     sampler_mod.SENSOR_PROCSTAT_UTIL)


def test_discovery_names_units(fake: SysfsRoot) -> None:
    names = [s.name for s in discover_sensors(fake)]
    assert names[0] == "policy0.cur_freq_mhz"
    assert "package-0.energy_j" in names and "package-1/dram.energy_j" in names
    assert "thermal_zone1.x86_pkg_temp.temp_c" in names
    assert any(n.endswith("power_w") for n in names) and names[-1] == "proc_stat.util"


def test_native_equals_python_reader_with_wrap(tmp_path) -> None:
    root = make_fake_sysfs(tmp_path / "n", cpus=8, sockets=2, energy_range_uj=30_000_000)
    fk = FakeKernel(root.root, load=0.7)
    sensors = discover_sensors(root)
    py = PyReader(root, sensors)
    pyp = PyReader(root, sensors, preopened=True)
    with Sampler(root, sensors, capacity=64) as s:
        s.stop()
        # One sample from each reader first: the sampler's thread may have taken a sample before stop(),
        # and a reader without a previous sample has no rate (util NaN) while one with it has.
        # (A step first, so that the primed energy is above any sample the thread took.)
        fk.step(0.1)
        s.sample_once(), py.sample(), pyp.sample()
        wrapped = False
        prev = None
        for step in range(30):
            fk.step(0.1)
            if step == 10:
                fk.load[:] = 0.2
            a = s.sample_once()
            b = py.sample()
            c = pyp.sample()
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=0, atol=0, equal_nan=True)
            np.testing.assert_allclose(c, b, rtol=0, atol=0, equal_nan=True)
            raw = root.read_int("sys/class/powercap/intel-rapl:0/energy_uj")
            wrapped |= prev is not None and raw < prev
            prev = raw
        assert wrapped
        e = s.native.ring_values[:30, s.names.index("package-0.energy_j")]
        assert np.all(np.diff(e) > 0)  # unwrapped energy is monotonic
        assert s.errors() == {}
    pyp.close()


def test_failing_sensor_is_recorded_and_loop_goes_on(fake: SysfsRoot) -> None:
    sensors = [Sensor("ok", "sys/class/thermal/thermal_zone0/temp", S.GAUGE, 1e-3),
               Sensor("bad", "sys/devices/system/cpu/cpufreq/policy0/scaling_setspeed", S.GAUGE, 1.0),
               Sensor("missing", "sys/class/thermal/thermal_zone9/temp", S.GAUGE, 1e-3),
               Sensor("forbidden", "sys/class/powercap/intel-rapl:0/energy_uj", S.COUNTER, 1e-6, 2**40)]
    user = SysfsRoot(fake.root, uid=1000)
    with Sampler(user, sensors, period_s=0.01) as s:
        time.sleep(0.15)
    assert s.native.count >= 5
    errs = s.errors()
    assert errs["bad"][1] == "EBADMSG" and errs["missing"][1] == "ENOENT" and errs["forbidden"][1] == "EACCES"
    assert "ok" not in errs
    assert errs["bad"][0] == s.native.count
    values = s.latest()[1]
    assert values["ok"] == pytest.approx(34.0) and np.isnan(values["bad"])
    py = PyReader(user, sensors)
    py.sample()
    assert py.last_errno[1] == errno.EBADMSG


def test_thread_timing_window_and_stop(fake: SysfsRoot) -> None:
    fk = FakeKernel(fake.root, load=1.0)
    stop = fk.start_thread(0.02)
    try:
        started = time.monotonic()
        s = Sampler(fake, period_s=0.01, capacity=256).start()
        time.sleep(0.6)
        t0 = time.monotonic()
        s.stop()
        # Correctness, not speed: stop() returns promptly instead of hanging, the sampler never
        # takes more samples than periods elapsed, and every period is either sampled or counted
        # as missed (loose bounds: a loaded CI machine may delay the thread).
        assert time.monotonic() - t0 < 5.0
        st = s.stats()
        periods = (time.monotonic() - started) / 0.01
        assert 5 <= st.samples <= periods + 2
        assert st.samples + st.missed >= 40
        assert int(s.native.jitter_hist.sum()) == st.samples
        assert 0.0 <= st.late_p50_s <= st.late_max_s and st.cpu_time_s > 0.0
        ts = np.asarray(s.native.ring_t_ns[: st.samples])
        assert np.all(np.diff(ts) > 0)
        w = s.window(0.3)
        pkg = w["package-0.energy_j"]
        assert 100.0 < pkg["rate"] < 400.0  # W from J/s of the unwrapped counter
        assert np.isnan(w["policy0.cur_freq_mhz"]["rate"])
        assert w["policy0.cur_freq_mhz"]["min"] <= w["policy0.cur_freq_mhz"]["mean"] <= w["policy0.cur_freq_mhz"]["max"]
        s.close()
    finally:
        stop.set()


def test_native_arguments_checked() -> None:
    with pytest.raises(ValueError, match="period_s"):
        sampler_mod.NativeSampler([0], [0], [1.0], [0], period_s=0.0)
    with pytest.raises(ValueError, match="kinds"):
        sampler_mod.NativeSampler([0], [7], [1.0], [0])
    with pytest.raises(ValueError, match="shape"):
        sampler_mod.NativeSampler([0, 1], [0], [1.0], [0])


def test_hist_percentile() -> None:
    h = np.zeros(10, dtype=np.int64)
    h[1] = 98
    h[5] = 2
    assert hist_percentile(h, 1e-5, 0.5) == pytest.approx(2e-5)
    assert hist_percentile(h, 1e-5, 0.99) == pytest.approx(6e-5)
