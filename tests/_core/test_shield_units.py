"""The thermal shield's C unit filter (shield_units.h) against its NumPy twin, and its basic semantics."""

from __future__ import annotations

import numpy as np
import pytest

from powerrl._core import _reference as ref
from powerrl._core.shield import ShieldUnitsKernel
from powerrl._core.shield_buffers import ShieldBuffers

TRIPS = [("active", 70.0, 3.0), ("passive", 80.0, 3.0), ("hot", 90.0, 2.0), ("critical", 100.0, 5.0)]


def _buffers(n: int, k: int = 6, rng: np.random.Generator | None = None, **kw: int) -> ShieldBuffers:
    rng = rng or np.random.default_rng(0)
    b = ShieldBuffers.allocate(n, k, TRIPS, predict_limit_c=80.0, cap_limit_c=88.0, **kw)
    b.full_power_w[:] = np.sort(rng.uniform(100, 350, (n, k)), axis=1)
    b.max_power_w[:] = b.full_power_w[:, -1] * rng.uniform(1.0, 1.3, n)
    b.r_die_c_per_w[:] = 0.05
    b.r_sink_c_per_w[:] = 0.12
    b.sink_decay[:] = np.where(rng.random(n) < 0.8, np.exp(-3.0 / 18.0), 1.0)
    b.cap_decay[:] = np.where(rng.random(n) < 0.9, np.exp(-rng.uniform(0.1, 60.0, n) / 18.0), 1.0)
    return b


def _randomise_inputs(b: ShieldBuffers, rng: np.random.Generator) -> None:
    n, k = b.n_units, b.n_pstates
    b.proposed[:] = rng.integers(-2, k + 2, n)
    b.temp_c[:] = rng.uniform(40, 110, n)
    b.temp_c[rng.random(n) < 0.05] = np.nan
    b.temp_c[rng.random(n) < 0.02] = np.inf
    b.temp_c[rng.random(n) < 0.02] = -np.inf
    b.power_w[:] = rng.uniform(80, 350, n)
    b.power_w[rng.random(n) < 0.05] = np.nan
    b.power_w[rng.random(n) < 0.03] = np.inf
    b.power_w[rng.random(n) < 0.03] = -5.0
    b.power_w[rng.random(n) < 0.03] = 1e12
    b.inlet_c[:] = rng.uniform(15, 45, n)
    b.inlet_rise_c[:] = np.where(rng.random(n) < 0.2, 15.0, 0.0)
    b.emergency[:] = rng.random(n) < 0.1


@pytest.mark.parametrize("limits", [(0, 0), (1, 2), (3, 1)])
def test_c_filter_matches_numpy_twin_over_random_trajectories(limits: tuple[int, int]) -> None:
    rng = np.random.default_rng(limits[0] * 10 + limits[1])
    b_c = _buffers(257, rng=rng, floor_pstate=1, max_step_up=limits[0], max_step_down=limits[1])
    b_np = b_c.copy()
    kernel = ShieldUnitsKernel(b_c)
    for step in range(60):
        _randomise_inputs(b_c, rng)
        for name in ("proposed", "temp_c", "power_w", "inlet_c", "inlet_rise_c", "emergency"):
            getattr(b_np, name)[:] = getattr(b_c, name)
        commit = step % 7 != 3
        kernel.run(commit)
        ref.shield_units_reference(b_np, commit)
        for name in ("applied", "events", "offline", "trip_on", "ceiling", "last_applied"):
            np.testing.assert_array_equal(getattr(b_c, name), getattr(b_np, name), err_msg=f"{name} at step {step}")
        np.testing.assert_allclose(b_c.cap_w, b_np.cap_w, rtol=1e-12, err_msg=f"cap_w at step {step}")
        np.testing.assert_array_equal(b_c.last_temp_c, b_np.last_temp_c)


def test_trip_hysteresis_passive_step_wise_and_hot_floor() -> None:
    b = _buffers(1, k=6, floor_pstate=1)
    b.sink_decay[:] = 1.0  # no prediction: test the trips alone
    kernel = ShieldUnitsKernel(b)
    b.proposed[:] = 5
    trace = [60, 81, 82, 83, 79, 78, 76, 75, 74, 91, 89, 87, 60, 60]
    applied = []
    for t in trace:
        b.temp_c[:] = t
        kernel.run()
        applied.append(int(b.applied[0]))
    # 81, 82, 83 rising over passive: one step each; 79-77 inside the hysteresis band (80 - 3): hold;
    # 76 released and cooling: one step back up per period; 91 >= hot: floor until below 90 - 2.
    assert applied[:9] == [5, 4, 3, 2, 2, 2, 3, 4, 5]
    # 89 is inside the hot hysteresis band; at 87 hot has released but passive holds (falling: hold);
    # at 60 everything has released and the ceiling climbs back one step per period.
    assert applied[9:] == [1, 1, 1, 2, 3]


def test_critical_sets_offline_and_sensor_failure_is_hot() -> None:
    b = _buffers(2, floor_pstate=0)
    b.sink_decay[:] = 1.0
    kernel = ShieldUnitsKernel(b)
    b.proposed[:] = 5
    b.temp_c[:] = [101.0, np.nan]
    kernel.run()
    assert list(b.applied) == [0, 0]
    assert b.offline[0] == 1 and b.offline[1] == 0
    assert b.events[0] & ref.SH_CRITICAL and b.events[1] & ref.SH_SENSOR and b.events[1] & ref.SH_HOT


def test_predictive_throttle_picks_highest_safe_pstate() -> None:
    b = _buffers(1, k=4)
    b.full_power_w[0] = [100.0, 200.0, 300.0, 400.0]
    b.sink_decay[:] = 0.0  # horizon >> tau_sink: the steady state is predicted
    kernel = ShieldUnitsKernel(b)
    b.proposed[:] = 3
    b.temp_c[:] = 50.0
    b.power_w[:] = 100.0
    b.inlet_c[:] = 40.0
    kernel.run()
    # steady die = 40 + P (0.12 + 0.05): 57, 74, 91, 108 -> highest under 80 is P-state 1
    assert b.applied[0] == 1 and b.events[0] & ref.SH_PREDICTIVE


def test_rate_limits_bind_the_controller_not_the_shield_and_lift_in_emergencies() -> None:
    b = _buffers(1, k=8, max_step_up=1, max_step_down=1)
    b.sink_decay[:] = 1.0
    kernel = ShieldUnitsKernel(b)
    b.temp_c[:] = 50.0
    b.proposed[:] = 0
    kernel.run()
    assert b.applied[0] == 6 and b.events[0] & ref.SH_RATE_LIMIT
    b.emergency[:] = 1
    kernel.run()
    assert b.applied[0] == 0
    b.emergency[:] = 0
    b.proposed[:] = 7
    b.temp_c[:] = 95.0  # hot: the shield's own reduction is not rate-limited
    kernel.run()
    assert b.applied[0] == 0


def test_dry_run_leaves_state_untouched() -> None:
    rng = np.random.default_rng(3)
    b = _buffers(50, rng=rng)
    kernel = ShieldUnitsKernel(b)
    _randomise_inputs(b, rng)
    before = b.copy()
    kernel.run(False)
    for name in ("trip_on", "ceiling", "last_applied", "last_temp_c"):
        np.testing.assert_array_equal(getattr(b, name), getattr(before, name))


def test_kernel_rejects_wrong_buffers() -> None:
    b = _buffers(3)
    b.temp_c = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="temp_c"):
        ShieldUnitsKernel(b)


def test_thermal_cap_keeps_memory_bound_power_under_the_hot_trip() -> None:
    b = _buffers(1, k=4)
    b.full_power_w[0] = [100.0, 200.0, 300.0, 400.0]
    b.max_power_w[:] = 450.0
    b.sink_decay[:] = 0.0  # steady state
    b.cap_decay[:] = 0.0
    kernel = ShieldUnitsKernel(b)
    b.proposed[:] = 0
    b.temp_c[:] = 60.0
    b.power_w[:] = 100.0
    b.inlet_c[:] = 40.0
    kernel.run()
    # steady die = 40 + P * 0.17 <= 88 -> P <= 282.35 W, below the 450 W any work can draw
    assert b.cap_w[0] == pytest.approx(48.0 / 0.17)
    assert b.events[0] & ref.SH_THERMAL_CAP
    b.inlet_c[:] = 20.0  # (88 - 20) / 0.17 = 400 W: still under 450 W
    kernel.run()
    assert b.cap_w[0] == pytest.approx(400.0)
    b.inlet_c[:] = 10.0  # 458 W: no cap needed
    kernel.run()
    assert b.cap_w[0] == np.inf and not b.events[0] & ref.SH_THERMAL_CAP


def test_bad_readings_never_switch_the_thermal_cap_off() -> None:
    b = _buffers(4, k=4)
    b.full_power_w[:] = [100.0, 200.0, 300.0, 400.0]
    b.max_power_w[:] = 450.0
    b.sink_decay[:] = 1.0  # predictive throttle off: the cap still looks ahead
    b.cap_decay[:] = 0.0
    kernel = ShieldUnitsKernel(b)
    b.proposed[:] = 3
    b.temp_c[:] = [92.0, np.nan, -np.inf, 92.0]
    b.power_w[:] = [np.inf, 100.0, 100.0, 1e12]
    b.inlet_c[:] = 40.0
    kernel.run()
    # Unreadable or implausible: steady-state cap (88 - 40) / 0.17; huge or infinite power is clamped.
    np.testing.assert_allclose(b.cap_w, 48.0 / 0.17)
    assert (b.events[1:3] & ref.SH_SENSOR).all() and (b.applied[1:3] == 0).all()


def test_huge_rate_limits_do_not_overflow() -> None:
    b = _buffers(1, k=6, max_step_up=2**31 - 1, max_step_down=2**31 - 1)
    b.sink_decay[:] = 1.0
    b.cap_decay[:] = 1.0
    kernel = ShieldUnitsKernel(b)
    b.last_applied[:] = 3
    b.proposed[:] = 5
    b.temp_c[:] = 40.0
    kernel.run()
    assert b.applied[0] == 5
