"""Checks against the real /sys of this node; deselected by default (run with ``-m hardware`` as root)."""

from __future__ import annotations

import math
import time

import pytest

from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.probe import probe
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot

pytestmark = pytest.mark.hardware


@pytest.fixture
def real() -> SysfsRoot:
    root = SysfsRoot("/")
    if not Cpufreq(root).available()[0]:
        pytest.skip("this node has no cpufreq policies")
    return root


def test_probe_and_sample_real_node(real: SysfsRoot) -> None:
    from powerrl.hw.sensors import Sampler

    caps = probe(real)
    assert any(c.area == "cpufreq" and c.mode == "sense" and c.ok for c in caps)
    with Sampler(real, period_s=0.1) as s:
        time.sleep(1.0)
    values = s.latest()[1]
    assert all(math.isfinite(v) and v > 0 for k, v in values.items() if k.endswith("cur_freq_mhz"))
    assert s.stats().samples >= 9


def test_limit_round_trip_on_real_node(real: SysfsRoot) -> None:
    cf = Cpufreq(real)
    p = cf.policies()[0]
    if not real.access(p.attr("scaling_max_freq"), write=True)[0]:
        pytest.skip("scaling_max_freq is not writable (run as root)")
    before = cf.max_freq_mhz(p)
    with SafeWriter(real) as w:
        res = cf.set_max_freq_mhz(w, p, p.cpuinfo_min_mhz)
        assert not res.overridden, res.describe()
    assert cf.max_freq_mhz(p) == before
