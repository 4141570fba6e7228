"""Linux cpufreq governors on NodeDVFS-v0: the kernel's formulas by hand, state per copy, a real episode."""

from __future__ import annotations

import numpy as np
import pytest

import powerrl  # noqa: F401 - registers the envs
import powerrl.baselines.governors as gov
from powerrl.envs.shielded import ShieldedEnv
from powerrl.errors import ConfigError

GOVERNORS = ("performance", "powersave", "userspace", "ondemand", "conservative", "schedutil")
from _governor_helpers import HELDOUT_2PM_S, make, observations  # noqa: E402 - tests/baselines is on sys.path


def obs_of(target, util, pstate=10, temp=40.0, batch=1):
    """Observations with every domain at ``util`` (scalar or [B, n]) and P-state index ``pstate``."""
    return observations(target, util, pstate, temp, batch)


def test_table_is_the_epyc_one(target):
    # The hand-computed values below assume the shipped profile: 11 P-states 1.5-2.5 GHz, 2 domains.
    np.testing.assert_allclose(target.freqs_mhz, np.arange(1500, 2501, 100))
    assert target.n_units == 2


def test_relations():
    f = np.arange(1500.0, 2501.0, 100.0)
    assert gov.relation_l(f, np.array([1500.0, 1500.0004, 1501.0, 2600.0])).tolist() == [0, 0, 1, 10]
    assert gov.relation_h(f, np.array([1400.0, 1599.9996, 1599.0, 2500.0])).tolist() == [0, 1, 0, 10]
    # Closest, a tie goes down (cpufreq_table_find_index_ac returns the lower entry unless the upper is closer).
    assert gov.relation_c(f, np.array([2049.0, 2050.0, 2051.0, 1000.0, 9000.0])).tolist() == [5, 5, 6, 0, 10]


def test_fixed_governors(env, target):
    o = obs_of(target, 0.5, batch=3)
    assert (make("performance", env, target).act_batch(o) == 10).all()
    assert (make("powersave", env, target).act_batch(o) == 0).all()
    assert (make("userspace", env, target).act_batch(o) == 10).all()  # default: f_max
    assert (make("userspace", env, target, pstate=3).act_batch(o) == 3).all()
    assert (make("userspace", env, target, pstate=-2).act_batch(o) == 9).all()
    out = make("performance", env, target).act_batch(o)
    assert out.dtype == np.int64 and out.shape == (3, 2)
    ceiling = np.array([[4, 7]] * 3)
    assert make("performance", env, target).decide(o, ceiling).tolist() == ceiling.tolist()
    with pytest.raises(ConfigError, match="pstate"):
        make("userspace", env, target, pstate=11)


@pytest.mark.parametrize(("util", "expected"), [
    (0.50, 5),  # f = 1500 + 50 * 1000 / 100 = 2000 MHz -> P5 exactly
    (0.55, 5),  # 2050 MHz: halfway, RELATION_C keeps the lower entry
    (0.56, 6),  # 2060 MHz -> 2100
    (0.29, 3),  # float32 0.28999999 still counts as 29 %: 1790 MHz -> 1800
    (0.00, 0),
    (0.80, 8),  # 80 % is not above up_threshold = 80: 2300 MHz
    (0.81, 10),  # above: straight to f_max
])
def test_ondemand_formula(env, target, util, expected):
    od = make("ondemand", env, target)
    od.reset(batch=1)
    assert od.act_batch(obs_of(target, util, pstate=5)).tolist() == [[expected, expected]]


def test_ondemand_threshold_and_validation(env, target):
    od = make("ondemand", env, target, up_threshold=50)
    assert od.act_batch(obs_of(target, 0.51)).tolist() == [[10, 10]]
    assert od.act_batch(obs_of(target, 0.50)).tolist() == [[5, 5]]
    assert od.params == {"up_threshold": 50, "sampling_down_factor": 1, "powersave_bias": 0}
    for bad in ({"up_threshold": 0}, {"up_threshold": 101}, {"sampling_down_factor": 0}, {"powersave_bias": 1001},
                {"up_threshold": 80.5}, {"up_threshold": "80"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            make("ondemand", env, target, **bad)


def test_ondemand_sampling_down_factor(env, target):
    od = make("ondemand", env, target, sampling_down_factor=3)
    od.reset(batch=1)
    seq = [(0.9, 5), (0.1, 10), (0.1, 10), (0.7, 10), (0.9, 10), (0.1, 10)]
    out = [int(od.act_batch(obs_of(target, u, pstate=p))[0, 0]) for u, p in seq]
    # Jump to f_max from P5 sets rate_mult = 3: two held periods, then the 3-period mean load
    # (0.1 + 0.1 + 0.7) / 3 = 30 % -> 1800 MHz = P3; rate_mult back to 1 under the threshold.
    assert out[:4] == [10, 10, 10, 3]
    # Next period: 90 % while already at f_max (pstate field 10): rate_mult is not re-armed, so
    # the following period is evaluated at once: 10 % -> 1600 MHz.
    assert out[4:] == [10, 1]


def test_ondemand_powersave_bias(env, target):
    # bias 100 per mille at 50 % load: f_req = 2000, avg = 1800 = a table entry -> P3 every period.
    od = make("ondemand", env, target, powersave_bias=100)
    od.reset(batch=1)
    assert {int(od.act_batch(obs_of(target, 0.5, pstate=5))[0, 0]) for _ in range(4)} == {3}
    # bias 25: avg = 1950 -> half the time 1900 (P4), half 2000 (P5), alternating.
    od = make("ondemand", env, target, powersave_bias=25)
    od.reset(batch=1)
    out = [int(od.act_batch(obs_of(target, 0.5, pstate=5))[0, 0]) for _ in range(10)]
    assert set(out) == {4, 5} and np.mean(out) == 4.5
    # Sub-sampling (freq_lo != 0) reschedules after one period whatever rate_mult says: with
    # sampling_down_factor 3, the period after a jump to "max" is evaluated at once (10 % -> P0/P1).
    od = make("ondemand", env, target, powersave_bias=25, sampling_down_factor=3)
    od.reset(batch=1)
    assert int(od.act_batch(obs_of(target, 0.95, pstate=5))[0, 0]) in (9, 10)
    assert int(od.act_batch(obs_of(target, 0.1, pstate=10))[0, 0]) in (0, 1)
    # Above the threshold: f_max less 2.5 % = 2437.5 MHz -> 2400 and 2500 for 62.5 / 37.5 % of the time.
    out = [int(od.act_batch(obs_of(target, 0.95, pstate=10))[0, 0]) for _ in range(800)]
    assert abs(np.mean(out) - (9 + 0.375)) < 0.01


def run_closed_loop(ctrl, target, utils, start=10):
    """Feed each decision back as the applied P-state (no shield) and return the decisions of domain 0."""
    p, out = start, []
    for u in utils:
        p = int(ctrl.act_batch(obs_of(target, u, pstate=p))[0, 0])
        out.append(p)
    return out


def test_conservative_stepping(env, target):
    cs = make("conservative", env, target)
    cs.reset(batch=1)
    # freq_step 5 % of 2500 = 125 MHz. Down: 2375 -> 2400 (RELATION_L), 2250 -> 2300, 2125 -> 2200,
    # 2000, 1875 -> 1900, 1750 -> 1800, 1625 -> 1700, 1500; then requested_freq == policy->min: hold.
    assert run_closed_loop(cs, target, [0.1] * 9) == [9, 8, 7, 5, 4, 3, 2, 0, 0]
    # Up from 1500: 1625 -> 1600 (RELATION_H), 1750 -> 1700, 1875 -> 1800, 2000; between the
    # thresholds the applied frequency is kept.
    assert run_closed_loop(cs, target, [0.9] * 4 + [0.5] * 3, start=0) == [1, 2, 3, 5, 5, 5, 5]
    # 80 % is not above up_threshold and 20 % is not below down_threshold.
    assert run_closed_loop(cs, target, [0.8, 0.2], start=5) == [5, 5]


def test_conservative_options(env, target):
    cs = make("conservative", env, target, sampling_down_factor=2)
    cs.reset(batch=1)
    assert run_closed_loop(cs, target, [0.1] * 4) == [10, 9, 9, 8]  # a decrease every second period
    cs = make("conservative", env, target, freq_step=20)  # 500 MHz steps
    cs.reset(batch=1)
    assert run_closed_loop(cs, target, [0.1] * 3 + [0.9] * 3) == [5, 0, 0, 5, 10, 10]
    cs = make("conservative", env, target, freq_step=0)  # frozen at the applied frequency
    cs.reset(batch=1)
    assert run_closed_loop(cs, target, [0.1, 0.9], start=4) == [4, 4]
    with pytest.raises(ConfigError, match="down_threshold"):
        make("conservative", env, target, up_threshold=30, down_threshold=30)
    with pytest.raises(ConfigError, match="sampling_down_factor"):
        make("conservative", env, target, sampling_down_factor=11)


def test_conservative_policy_max(env, target):
    cs = make("conservative", env, target)
    cs.reset(batch=1)
    ceiling = np.array([[6, 6]])
    # A cooling device lowered policy->max to 2100: the request (2500) is out of range, restarts from
    # the applied frequency and is clamped at 2100 on the way up.
    out = [int(cs.decide(obs_of(target, 0.9, pstate=p), ceiling)[0, 0]) for p in (6, 6)]
    assert out == [6, 6]
    assert cs._req[0, 0] == pytest.approx(2100.0)


@pytest.mark.parametrize(("util", "pstate", "headroom", "expected"), [
    (0.6, 5, 1.25, 0),  # util_inv = 0.6 * 2000 / 2500 = 0.48; f = 1.25 * 2500 * 0.48 = 1500 MHz -> P0
    (0.61, 5, 1.25, 1),  # 1525 MHz -> 1600
    (0.6, 10, 1.25, 4),  # 1875 MHz -> 1900
    (0.5, 10, 1.25, 1),  # 1562.5 MHz -> 1600
    (0.8, 10, 1.25, 10),  # the tipping point: 1.25 * 0.8 = 1 -> f_max
    (0.79, 10, 1.25, 10),  # 2468.75 MHz -> 2500
    (0.9, 10, 1.0, 8),  # 2250 MHz -> 2300
    (1.0, 0, 1.6, 9),  # 1.6 * 1500 = 2400 MHz -> P9
])
def test_schedutil_formula(env, target, util, pstate, headroom, expected):
    su = make("schedutil", env, target, headroom=headroom)
    assert su.act_batch(obs_of(target, util, pstate=pstate)).tolist() == [[expected, expected]]


def test_schedutil_per_domain_and_validation(env, target):
    o = obs_of(target, np.array([[0.6, 0.9]]), pstate=np.array([[5, 10]]))
    assert make("schedutil", env, target).act_batch(o).tolist() == [[0, 10]]
    assert make("schedutil", env, target).decide(o, np.array([[3, 7]])).tolist() == [[0, 7]]  # policy->max
    for bad in (0.9, 4.5, float("nan"), "1.25", True):
        with pytest.raises(ConfigError, match="headroom"):
            make("schedutil", env, target, headroom=bad)


def test_param_grids_build(env, target):
    # Every tuning point constructs (the tuner builds them all).
    import itertools

    for name in GOVERNORS:
        cls = type(make(name, env, target))
        keys = list(cls.param_grid)
        for combo in itertools.product(*(cls.param_grid[k] for k in keys)):
            c = make(name, env, target, **dict(zip(keys, combo, strict=True)))
            assert c.params == dict(zip(keys, combo, strict=True))


@pytest.mark.parametrize("name", ["ondemand", "conservative"])
@pytest.mark.parametrize("params", [{}, {"sampling_down_factor": 3}])
def test_batch_rows_are_independent(env, target, name, params):
    if name == "ondemand" and params:
        params = {**params, "powersave_bias": 30}
    rng = np.random.default_rng(0)
    b, steps = 4, 40
    utils = rng.uniform(0, 1, size=(steps, b, target.n_units))
    batched = make(name, env, target, **params)
    batched.reset(seed=1, batch=b)
    singles = [make(name, env, target, **params) for _ in range(b)]
    for s in singles:
        s.reset(seed=1, batch=1)
    p_b = np.full((b, target.n_units), 10)
    p_s = np.full((b, target.n_units), 10)
    for t in range(steps):
        p_b = batched.act_batch(obs_of(target, utils[t], pstate=p_b, batch=b))
        p_s = np.concatenate([s.act_batch(obs_of(target, utils[t, i:i + 1], pstate=p_s[i:i + 1]))
                              for i, s in enumerate(singles)])
        assert (p_b == p_s).all(), t
    # A new episode forgets the old one.
    batched.reset(batch=b)
    fresh = make(name, env, target, **params)
    fresh.reset(batch=b)
    o = obs_of(target, utils[0], pstate=10, batch=b)
    assert (batched.act_batch(o) == fresh.act_batch(o)).all()
    if name == "conservative" or params:  # stateful configurations insist on the reset batch size
        with pytest.raises(ValueError, match="reset"):
            batched.act_batch(obs_of(target, 0.5, batch=b + 1))


def run_episode(env, target, name, steps=300, **params):
    """A shielded held-out episode; returns (energy J, P-states applied)."""
    senv = ShieldedEnv(env)
    ctrl = make(name, env, target, **params)
    obs, _ = senv.reset(seed=3, options={"start_s": HELDOUT_2PM_S})
    ctrl.reset(seed=3, batch=1)
    energy, applied = 0.0, []
    for _ in range(steps):
        action = ctrl.act(obs)
        assert env.action_space.contains(np.asarray(action)), (name, action)
        obs, _, _, _, info = senv.step(action)
        energy += info["energy_j"]
        applied.append(info["shield"]["applied"])
    return energy, np.array(applied)


def test_shielded_episodes(env, target):
    energy = {}
    for name in GOVERNORS:
        energy[name], applied = run_episode(env, target, name)
        assert applied.shape == (300, target.n_units)
    assert energy["powersave"] < energy["performance"]
    for name in ("ondemand", "conservative", "schedutil"):
        assert energy["powersave"] <= energy[name] <= energy["performance"], (name, energy)


def test_conservative_step_follows_the_thermal_ceiling(env, target):
    # get_freq_step: freq_step % of policy->max, which a cooling device lowers (kernel cs_dbs_update).
    cs = make("conservative", env, target, freq_step=20)
    cs.reset(batch=1)
    obs = np.zeros((1, 18), dtype=np.float32)
    obs[0, 0] = obs[0, 8] = 1.0  # fully busy: step up
    obs[0, 3] = obs[0, 11] = 0.0  # at 1500 MHz
    ceiling = np.array([[5, 5]])  # 2000 MHz
    out = cs.decide(obs, ceiling)
    assert out.tolist() == [[4, 4]]  # 1500 + 20 % of 2000 = 1900 MHz (the hardware f_max would give 2000)
