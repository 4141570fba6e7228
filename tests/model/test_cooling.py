import numpy as np
import pytest

from powerrl.config import from_dict
from powerrl.errors import ConfigError
from powerrl.model.cooling import (
    CoolingSpec,
    cooling_power_w,
    crac_cop,
    economiser_active,
    facility_power,
    rack_inlet_c,
)


def test_cop_matches_moore_2005():
    # COP(T) = 0.0068 T^2 + 0.0008 T + 0.458
    assert crac_cop(15.0) == pytest.approx(0.0068 * 225 + 0.012 + 0.458)  # 2.0
    assert crac_cop(15.0) == pytest.approx(2.0, abs=0.001)
    assert crac_cop(25.0) == pytest.approx(4.728)
    np.testing.assert_allclose(crac_cop(np.array([0.0, 20.0])), [0.458, 3.194])
    temps = np.linspace(10, 30, 21)
    assert np.all(np.diff(crac_cop(temps)) > 0)  # warmer supply air = cheaper cooling


def test_cooling_power_and_pue():
    spec = CoolingSpec(supply_c=20.0, overhead_frac=0.1)
    assert cooling_power_w(100e3, spec) == pytest.approx(100e3 / 3.194)
    fp = facility_power(np.array([100e3, 50e3, 0.0]), spec)
    assert fp.pue[0] == pytest.approx(1 + 1 / 3.194 + 0.1)
    assert fp.pue[1] == pytest.approx(fp.pue[0])  # no fixed loads: PUE independent of IT power
    assert np.isnan(fp.pue[2]) and fp.total_w[2] == 0.0
    np.testing.assert_allclose(fp.total_w, fp.it_w + fp.cooling_w + fp.overhead_w)
    # raising supply temperature lowers PUE
    assert facility_power(1e5, CoolingSpec(supply_c=25.0)).pue < facility_power(1e5, CoolingSpec(supply_c=15.0)).pue
    # per-time-step supply temperatures broadcast
    cool = cooling_power_w(np.full(3, 1e4), spec, supply_c=np.array([15.0, 20.0, 25.0]))
    np.testing.assert_allclose(cool, 1e4 / crac_cop(np.array([15.0, 20.0, 25.0])))


def test_rack_inlet_adds_recirculation():
    np.testing.assert_allclose(rack_inlet_c(18.0, (1.0, 3.5, 0.0)), [19.0, 21.5, 18.0])
    np.testing.assert_allclose(rack_inlet_c(18.0, 2.0, n_racks=4), [20.0] * 4)
    series = rack_inlet_c(np.array([18.0, 20.0]), (1.0, 2.0))
    assert series.shape == (2, 2) and series[1, 1] == 22.0
    with pytest.raises(ValueError, match="n_racks"):
        rack_inlet_c(18.0, (1.0, 2.0), n_racks=3)


def test_economiser_switches_on_when_cold():
    spec = CoolingSpec(supply_c=18.0, economiser=True, economiser_approach_dc=3.0, economiser_fan_frac=0.05)
    ambient = np.array([10.0, 15.0, 15.1, 30.0])
    np.testing.assert_array_equal(economiser_active(ambient, spec), [True, True, False, False])
    cool = cooling_power_w(np.full(4, 1e5), spec, ambient_c=ambient)
    np.testing.assert_allclose(cool, [5e3, 5e3, 1e5 / crac_cop(18.0), 1e5 / crac_cop(18.0)])
    off = CoolingSpec(supply_c=18.0, economiser=False)
    assert not economiser_active(5.0, off)
    assert cooling_power_w(1e5, off, ambient_c=5.0) == pytest.approx(1e5 / crac_cop(18.0))


def test_cooling_spec_validation():
    spec = from_dict(CoolingSpec, {"supply_c": 22, "recirc_dc": [1.0, 2.0], "economiser": True})
    assert spec.recirc_dc == (1.0, 2.0) and spec.supply_c == 22.0
    with pytest.raises(ConfigError, match="supply_c"):
        from_dict(CoolingSpec, {"supply_c": 80})
    with pytest.raises(ConfigError, match="recirc_dc"):
        from_dict(CoolingSpec, {"recirc_dc": []})
