import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from powerrl.model import power

unit = st.floats(0.0, 1.0)
ratio = st.floats(0.3, 1.0)
shape = st.floats(0.25, 4.0)
wake = st.floats(0.0, 0.95)


def test_load_curve_limits():
    r = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(power.load_curve(0.0, r, 0.3), 0.0)
    np.testing.assert_allclose(power.load_curve(1.0, r, 0.3), 1.0)
    # the wake share is drawn at any nonzero load
    assert power.load_curve(1e-9, 1.5, 0.3) >= 0.3


@given(u1=unit, u2=unit, r=shape, w=wake)
def test_load_curve_monotone(u1, u2, r, w):
    lo, hi = sorted((u1, u2))
    assert power.load_curve(lo, r, w) <= power.load_curve(hi, r, w) + 1e-12


def test_volt_ratio_linear():
    assert power.volt_ratio(1.0) == 1.0
    np.testing.assert_allclose(power.volt_ratio(0.0), power.VF_INTERCEPT)
    fr = np.linspace(0.3, 1.0, 8)
    assert np.all(np.diff(power.volt_ratio(fr)) > 0)


@given(fr=ratio, m=unit, s=unit)
def test_freq_factor_bounds(fr, m, s):
    h = power.freq_factor(fr, power.volt_ratio(fr), m, s)
    assert 0.0 < h <= 1.0 + 1e-12
    assert power.freq_factor(1.0, 1.0, m, s) == 1.0


@given(f1=ratio, f2=ratio, m=unit)
def test_freq_factor_monotone_in_f_and_m(f1, f2, m):
    lo, hi = sorted((f1, f2))
    h_lo = power.freq_factor(lo, power.volt_ratio(lo), m, 0.1)
    assert h_lo <= power.freq_factor(hi, power.volt_ratio(hi), m, 0.1) + 1e-12
    # a more memory-bound workload keeps more of its power at a lower frequency
    assert power.freq_factor(lo, power.volt_ratio(lo), m, 0.0) <= power.freq_factor(lo, power.volt_ratio(lo), 1.0, 0.0)


@given(u=unit, fr=ratio, m=unit, r=shape, w=wake)
def test_node_power_between_idle_and_busy(u, fr, m, r, w):
    p = power.node_power_w(u, fr, power.volt_ratio(fr), m, 100.0, 300.0, r, 0.0, w)
    assert 100.0 - 1e-9 <= p <= 300.0 + 1e-9


def test_node_power_endpoints_and_broadcast():
    u = np.array([0.0, 0.5, 1.0])
    p = power.node_power_w(u, 1.0, 1.0, 0.0, 100.0, 300.0, 1.2, 0.0, 0.2)
    assert p.dtype == np.float64 and p.shape == (3,)
    assert p[0] == 100.0 and p[2] == 300.0
    np.testing.assert_allclose(p[1], 100.0 + 200.0 * (0.2 + 0.8 * 0.5**1.2))


def test_node_power_lower_at_lower_frequency():
    fr = np.array([0.6, 0.8, 1.0])
    p = power.node_power_w(1.0, fr, power.volt_ratio(fr), 0.0, 100.0, 300.0, 1.0, 0.0, 0.3)
    assert np.all(np.diff(p) > 0)
    # the wake floor does not scale with frequency: at tiny load power is ~ idle + w * (busy - idle)
    p_small = power.node_power_w(1e-6, fr, power.volt_ratio(fr), 0.0, 100.0, 300.0, 1.0, 0.0, 0.3)
    np.testing.assert_allclose(p_small, 160.0, atol=1e-3)


@given(fr=ratio, m=unit)
def test_speed_limits(fr, m):
    s = power.speed(fr, m)
    assert fr - 1e-12 <= s <= 1.0 + 1e-12
    assert power.speed(1.0, m) == 1.0
    np.testing.assert_allclose(power.speed(fr, 1.0), 1.0)
    np.testing.assert_allclose(power.speed(fr, 0.0), fr)


def test_class_mem_bound_table():
    assert set(power.CLASS_MEM_BOUND) == {"compute", "memory", "interactive", "batch", "idle"}
    assert all(0.0 <= m <= 1.0 for m in power.CLASS_MEM_BOUND.values())
    assert power.CLASS_MEM_BOUND["compute"] < power.CLASS_MEM_BOUND["interactive"] < power.CLASS_MEM_BOUND["memory"]
