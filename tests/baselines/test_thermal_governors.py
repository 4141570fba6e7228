"""Kernel thermal governors on NodeDVFS-v0: step_wise's trend logic, IPA's PID and split, a real episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _governor_helpers import HELDOUT_2PM_S, make, observations  # noqa: E402 - tests/baselines is on sys.path

import powerrl  # noqa: F401 - registers the envs
import powerrl.baselines.oracle  # noqa: F401 - registers the oracle (refused as an inner governor)
import powerrl.baselines.thermal_governors  # noqa: F401 - registers the governors
from powerrl.envs.shielded import ShieldedEnv
from powerrl.envs.target import control_target
from powerrl.errors import ConfigError


def obs_of(target, temp, util=0.5, pstate=10, batch=1):
    """Observations with per-domain ``temp`` (scalar or [B, n]), ``util`` and P-state index ``pstate``."""
    return observations(target, util, pstate, temp, batch)


# -- step_wise ----------------------------------------------------------------------------------
TEMPS = [70, 79, 80, 81, 82, 82, 81.5, 79, 78.5, 79, 77, 79, 76]


def test_step_wise_trend_logic(env, target):
    sw = make("step_wise", env, target, governor="performance")  # the ceiling shows through unchanged
    sw.reset(batch=1)
    got = [int(sw.act_batch(obs_of(target, t))[0, 0]) for t in TEMPS]
    # trip 80, hyst 2 (threshold 78 once crossed):
    # 70, 79: below the trip -> no limit; 80, 81, 82 rising at/above the trip -> one state each;
    # 82 stable -> hold; 81.5, 79 falling while throttled (79 >= 78) -> one state less but >= 1;
    # 78.5 falling -> stays at 1; 79 rising -> 2; 77 < 78 and falling -> released at once
    # (threshold back to 80); 79 rising below 80 -> nothing; 76 -> nothing.
    assert got == [10, 10, 9, 8, 7, 7, 8, 9, 9, 8, 10, 10, 10]


def test_step_wise_stepwise_release_and_domains(env, target):
    sw = make("step_wise", env, target, governor="performance", full_release=False)
    sw.reset(batch=1)
    temps = [np.array([[t, 50.0]]) for t in (80, 81, 82, 77, 76, 75, 74)]
    got = [sw.act_batch(obs_of(target, t)).tolist()[0] for t in temps]
    # One state per falling poll below the threshold (kernels before the 2024 change); domain 1 cool.
    assert got == [[9, 10], [8, 10], [7, 10], [8, 10], [9, 10], [10, 10], [10, 10]]


def test_step_wise_limits_inner_governor(env, target):
    sw = make("step_wise", env, target, governor="userspace", governor_params={"pstate": 9}, trip_c=70.0)
    sw.reset(batch=1)
    assert sw.act_batch(obs_of(target, 60.0)).tolist() == [[9, 9]]  # inner's choice under the trip
    # Rising above the trip: ceilings 9, 8, 7, 6, 5 -> min(9, ceiling).
    got = [int(sw.act_batch(obs_of(target, t))[0, 0]) for t in (71.0, 72.0, 73.0, 74.0, 90.0)]
    assert got == [9, 8, 7, 6, 5]
    # schedutil (default inner) sees the ceiling as policy->max.
    sw = make("step_wise", env, target, trip_c=70.0)
    sw.reset(batch=1)
    assert sw.act_batch(obs_of(target, 75.0, util=1.0)).tolist() == [[9, 9]]
    assert sw.params == {"trip_c": 70.0, "hyst_c": 2.0}


def test_step_wise_validation(env, target):
    with pytest.raises(ConfigError, match="hyst_c"):
        make("step_wise", env, target, trip_c=80.0, hyst_c=80.0)
    with pytest.raises(ConfigError, match="governor"):
        make("step_wise", env, target, governor="no_such_governor")
    with pytest.raises(ConfigError, match="governor"):
        make("step_wise", env, target, governor="power_allocator")
    with pytest.raises(ConfigError, match="governor"):
        make("step_wise", env, target, governor="oracle")
    with pytest.raises(ConfigError, match="headroom"):
        make("step_wise", env, target, governor_params={"headroom": 0.1})


# -- power_allocator ------------------------------------------------------------------------------
def test_ipa_constants(env, target):
    ipa = make("power_allocator", env, target)
    p = np.asarray(target.busy_w_at_pstate)
    sus = p[:, 0].sum()  # estimate_sustainable_power: every actor at its lowest OPP
    assert ipa.sustainable_w == pytest.approx(sus)
    assert ipa.max_power_w == pytest.approx(p[:, -1].sum())
    # estimate_pid_constants with control 85, switch-on 75: a 10 degC window.
    assert ipa.gains["k_po"] == pytest.approx(sus / 10)
    assert ipa.gains["k_pu"] == pytest.approx(2 * sus / 10)
    assert ipa.gains["k_i"] == pytest.approx(2 * sus / 100)
    scaled = make("power_allocator", env, target, sustainable_scale=2.0, control_c=95.0)
    assert scaled.gains["k_po"] == pytest.approx(2 * sus / 20)
    fixed = make("power_allocator", env, target, sustainable_power_w=100.0, k_i=0.0)
    assert fixed.sustainable_w == 100.0 and fixed.gains["k_pu"] == pytest.approx(20.0) and fixed.gains["k_i"] == 0.0


def test_ipa_budget_falls_with_temperature(env, target):
    ipa = make("power_allocator", env, target)
    sus, mx = ipa.sustainable_w, ipa.max_power_w
    budgets = []
    for temp in (76.0, 80.0, 84.0, 85.0, 86.0, 88.0, 95.0):
        ipa.reset(batch=1)
        budgets.append(float(ipa.power_budget(np.array([temp]))[0]))
    assert all(a >= b for a, b in zip(budgets, budgets[1:], strict=False))
    assert budgets[0] == pytest.approx(mx)  # far below control: clamped at the max allocatable power
    assert budgets[2] == pytest.approx(min(mx, sus + 0.2 * sus * 1.0))  # k_pu * err, err = +1
    assert budgets[3] == pytest.approx(sus)  # at the control temperature: the sustainable power
    # 88: err = -3 -> p = k_po * -3 = -0.3 sus; the integral (err < cutoff 0) adds k_i * -3 = -0.06 sus.
    assert budgets[5] == pytest.approx(0.64 * sus)
    assert budgets[6] == 0.0  # err = -10: p = -sus, clamped at 0


def test_ipa_integrator(env, target):
    ipa = make("power_allocator", env, target)
    ipa.reset(batch=1)
    sus = ipa.sustainable_w
    hot = obs_of(target, 88.0)
    first = None
    for n in range(1, 5):
        ipa.act_batch(hot)
        assert ipa.err_integral[0] == pytest.approx(-3.0 * n)
        budget = float(ipa.budget_w[0])
        assert budget == pytest.approx(sus * (1 - 0.3 - 0.06 * n))  # the integral keeps cutting
        first = budget if first is None else first
    # Between switch-on and control (err > 0): no integration (integral_cutoff 0), the term stays.
    ipa.act_batch(obs_of(target, 80.0))
    assert ipa.err_integral[0] == pytest.approx(-12.0)
    # Below switch-on: PID reset, zone unthrottled.
    assert ipa.act_batch(obs_of(target, 70.0, util=1.0)).tolist() == [[10, 10]]
    assert ipa.err_integral[0] == 0.0 and ipa.prev_err[0] == 0.0 and np.isinf(ipa.budget_w[0])
    ipa.act_batch(hot)
    assert float(ipa.budget_w[0]) == pytest.approx(first)


def test_ipa_ceiling(env, target):
    p = np.asarray(target.busy_w_at_pstate)
    ipa = make("power_allocator", env, target, governor="performance")
    ipa.reset(batch=1)
    # 88 degC, fully busy at f_max: budget 0.64 * sustainable, split evenly = 0.32 * sus each,
    # below every OPP's full-load power -> f_min.
    assert ipa.act_batch(obs_of(target, 88.0, util=1.0)).tolist() == [[0, 0]]
    # Half busy: grant / load = 0.64 * sus per domain -> the highest P-state within it.
    ipa.reset(batch=1)
    norm = 0.64 * ipa.sustainable_w
    want = int(np.flatnonzero(p[0] <= norm + 1e-9).max())
    assert 0 < want < 10
    assert ipa.act_batch(obs_of(target, 88.0, util=0.5)).tolist() == [[want, want]]
    # A copy below switch-on is unthrottled even where its PID would ask for little power.
    weak = make("power_allocator", env, target, governor="performance", sustainable_power_w=50.0, k_pu=0.0, k_i=0.0)
    weak.reset(batch=2)
    assert weak.act_batch(obs_of(target, np.array([[70.0, 70.0], [88.0, 88.0]]), util=1.0, batch=2)).tolist() == [
        [10, 10], [0, 0]]
    # Zone temperature is the hottest domain: one hot domain throttles both.
    ipa.reset(batch=1)
    assert ipa.act_batch(obs_of(target, np.array([[88.0, 60.0]]), util=1.0)).tolist() == [[0, 0]]


def test_ipa_divvy(env, target):
    ipa = make("power_allocator", env, target)
    mx = np.asarray(target.busy_w_at_pstate)[:, -1]
    req = np.array([[10.0, 100.0], [10.0, 30.0]])
    granted = ipa.divvy(req, np.array([300.0, 20.0]))
    # Row 1: in proportion to the requests.
    np.testing.assert_allclose(granted[1], [5.0, 15.0])
    # Row 0: 27.3 / 272.7 -> the second capped at its max, the excess to the first by headroom.
    assert granted[0, 1] == pytest.approx(mx[1])
    assert granted[0].sum() == pytest.approx(300.0)
    # Nothing requested: no division by zero.
    assert np.isfinite(ipa.divvy(np.zeros((1, 2)), np.array([50.0]))).all()


def test_ipa_validation(env, target):
    with pytest.raises(ConfigError, match="control_c"):
        make("power_allocator", env, target, switch_on_c=85.0, control_c=85.0)
    with pytest.raises(ConfigError, match="sustainable_power_w"):
        make("power_allocator", env, target, sustainable_power_w=-1.0)
    with pytest.raises(ConfigError, match="sustainable_scale"):
        make("power_allocator", env, target, sustainable_scale=0.0)


# -- both -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "params"), [("step_wise", {"trip_c": 70.0}), ("power_allocator", {}),
                                              ("step_wise", {"governor": "conservative"})])
def test_batch_rows_are_independent(env, target, name, params):
    rng = np.random.default_rng(1)
    b, steps = 3, 60
    base = np.array([45.0, 72.0, 76.0])[None, :, None]  # row 0 stays cool, rows 1 and 2 wander around the trips
    temps = base + np.cumsum(rng.normal(0.0, 1.5, size=(steps, b, target.n_units)), axis=0)
    utils = rng.uniform(0.0, 1.0, size=(steps, b, target.n_units))
    batched = make(name, env, target, **params)
    batched.reset(batch=b)
    singles = [make(name, env, target, **params) for _ in range(b)]
    for s in singles:
        s.reset(batch=1)
    p_b = np.full((b, target.n_units), 10)
    p_s = np.full((b, target.n_units), 10)
    engaged = np.zeros(b, dtype=bool)
    for t in range(steps):
        p_b = batched.act_batch(obs_of(target, temps[t], utils[t], pstate=p_b, batch=b))
        p_s = np.concatenate([s.act_batch(obs_of(target, temps[t, i:i + 1], utils[t, i:i + 1], pstate=p_s[i:i + 1]))
                              for i, s in enumerate(singles)])
        assert (p_b == p_s).all(), t
        engaged |= batched.state.any(axis=1) if name == "step_wise" else np.isfinite(batched.budget_w)
    assert engaged.any() and not engaged.all()  # some rows throttled, some not: the rows really differed
    with pytest.raises(ValueError, match="reset"):
        batched.act_batch(obs_of(target, 70.0, batch=b + 1))


def test_param_grids_build(env, target):
    import itertools

    for name in ("step_wise", "power_allocator"):
        cls = type(make(name, env, target))
        keys = list(cls.param_grid)
        for combo in itertools.product(*(cls.param_grid[k] for k in keys)):
            assert make(name, env, target, **dict(zip(keys, combo, strict=True))).params == dict(
                zip(keys, combo, strict=True))


def test_shielded_hot_episodes():
    # A 45 degC inlet heats the die past both governors' trips within the 30 s episode.
    env = gym.make("powerrl/NodeDVFS-v0", split="heldout", episode_s=30, inlet_c=45.0)
    target = control_target(env)
    senv = ShieldedEnv(env)
    energy, engaged = {}, {}
    for name, params in (("schedutil", {}), ("step_wise", {"trip_c": 75.0}), ("power_allocator", {"control_c": 78.0}),
                         ("performance", {}), ("powersave", {})):
        ctrl = make(name, env, target, **params)
        obs, _ = senv.reset(seed=3, options={"start_s": HELDOUT_2PM_S})
        ctrl.reset(seed=3, batch=1)
        energy[name], engaged[name] = 0.0, False
        for _ in range(300):
            action = ctrl.act(obs)
            assert env.action_space.contains(np.asarray(action)), (name, action)
            obs, _, _, _, info = senv.step(action)
            energy[name] += info["energy_j"]
            if name == "step_wise":
                engaged[name] |= bool(ctrl.state.any())
            if name == "power_allocator":
                engaged[name] |= bool(np.isfinite(ctrl.budget_w).any())
    env.close()
    assert engaged["step_wise"] and engaged["power_allocator"]
    assert energy["powersave"] < energy["performance"]
    assert energy["step_wise"] != energy["schedutil"] and energy["power_allocator"] != energy["schedutil"]
