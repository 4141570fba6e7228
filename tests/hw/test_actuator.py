from __future__ import annotations

import errno

import numpy as np
import pytest

from powerrl.hw.actuator import Actuator, Target, check_userspace, cpufreq_targets, rapl_targets
from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.errors import HwInvalidValueError, HwNotAllowedError
from powerrl.hw.fake import FakeKernel
from powerrl.hw.rapl import Rapl
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot

pytest.importorskip("powerrl._core.sampler", reason="Cython core not built")


def test_batched_setspeed_with_rate_limit_and_restore(fake: SysfsRoot, writer: SafeWriter) -> None:
    cf = Cpufreq(fake)
    pols = cf.policies()
    with pytest.raises(HwInvalidValueError, match="userspace"):
        check_userspace(cf, pols)
    for p in pols:
        cf.set_governor(writer, p, "userspace")
    check_userspace(cf, pols)
    fk = FakeKernel(fake.root, load=0.5)
    act = Actuator(fake, writer, cpufreq_targets(pols, "scaling_setspeed", min_interval_s=0.05))
    rep = act.apply(np.full(8, 1400.0), now_ns=1_000_000_000)
    assert rep.written == 8 and set(rep.status.values()) == {"ok"}
    fk.step(0.1)
    assert [cf.cur_freq_mhz(p) for p in pols] == [1400.0] * 8
    rep = act.apply(np.full(8, 1600.0), now_ns=1_010_000_000)
    assert rep.written == 0 and set(rep.status.values()) == {"rate_limited"}
    mask = np.zeros(8, dtype=bool)
    mask[2] = True
    rep = act.apply(np.full(8, 1700.0), mask, now_ns=1_100_000_000)
    assert rep.written == 1 and rep.status["policy2.scaling_setspeed_mhz"] == "ok"
    assert rep.status["policy0.scaling_setspeed_mhz"] == "skipped"
    # 1700 MHz is not in the acpi-cpufreq table: the fake kernel resolves it, verify() reports it
    fk.step(0.1)
    late = writer.verify()
    assert [r.readback for r in late] == ["1800000"]
    with pytest.raises(HwInvalidValueError, match="outside"):
        act.apply(np.full(8, 9000.0))
    act.close()
    writer.restore()
    assert all(cf.governor(p) == "schedutil" for p in pols)


def test_rapl_caps_and_errors(fake: SysfsRoot, writer: SafeWriter) -> None:
    r = Rapl(fake)
    pkgs = [z for z in r.zones() if z.parent is None]
    act = Actuator(fake, writer, rapl_targets(pkgs, "long_term", min_interval_s=0.0))
    rep = act.apply([150.0, 160.0])
    assert rep.written == 2
    assert [r.power_limit_w(z, r.constraint(z)) for z in pkgs] == [150.0, 160.0]
    with pytest.raises(HwInvalidValueError, match="outside"):
        act.apply([150.0, 1000.0])  # above constraint_0_max_power_uw
    # a kernel error from the batch surfaces as the errno's exception, the other targets still done
    real = act.native

    class Failing:
        def actuate(self, raw, mask, now_ns):
            written, rb, st = real.actuate(raw, mask, now_ns)
            st = st.copy()
            st[1] = -errno.EINVAL
            return written, rb, st

    act.native = Failing()
    with pytest.raises(HwInvalidValueError, match="EINVAL"):
        act.apply([140.0, 170.0])
    assert r.power_limit_w(pkgs[0], r.constraint(pkgs[0])) == 140.0
    act.close()
    writer.restore()
    assert r.power_limit_w(pkgs[0], r.constraint(pkgs[0])) == 230.0


def test_targets_must_be_allowlisted(fake: SysfsRoot, writer: SafeWriter) -> None:
    with pytest.raises(HwNotAllowedError):
        Actuator(fake, writer, [Target("x", "sys/class/powercap/intel-rapl:0/energy_uj", 1.0, 0, 1)])
