"""Carbon-deferral baselines and the carbon oracle on Datacenter-v0.

Rule decisions are checked on hand-built observations and forecasts; a shielded held-out day
checks that deferral emits no more than never deferring.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import powerrl  # noqa: F401 - registers the envs
from powerrl.baselines.carbon import CarbonForecast, CarbonThreshold, NoDeferral
from powerrl.baselines.oracle_carbon import CarbonOracle
from powerrl.control import controller_class, make_controller
from powerrl.envs.datacenter import DatacenterVectorEnv
from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.envs.target import control_target
from powerrl.errors import ConfigError

DAY_S = 86400.0
DRAIN_S = 8 * 3600.0


@pytest.fixture(scope="module")
def dc():
    env = DatacenterVectorEnv(1, split="heldout")
    return env, control_target(env)


def _obs(target, b=1, **glob):
    """Observations [b, obs_dim] with the given global fields (carbon in gCO2/kWh, scaled as the env does)."""
    obs = np.zeros((b, target.n_units * len(target.unit_fields) + len(target.global_fields)), dtype=np.float32)
    base = target.n_units * len(target.unit_fields)
    for name, v in glob.items():
        scale = 1000.0 if name.startswith("carbon") else 1.0
        obs[:, base + target.global_fields.index(name)] = np.asarray(v, dtype=np.float64) / scale
    return obs


def _with_series(target, series, dt_s, t0=0.0, actual=False):
    """A target whose forecast (or recorded intensity) at absolute time T is series[(T - t0) / dt] (g/kWh)."""
    series = np.asarray(series, dtype=np.float64)

    def look(time_s, offsets_s):
        t = np.asarray(time_s, dtype=np.float64)[:, None] + np.asarray(offsets_s, dtype=np.float64)[None, :]
        return series[np.clip(np.rint((t - t0) / dt_s).astype(int), 0, len(series) - 1)]

    return dataclasses.replace(target, **{"carbon_actual" if actual else "carbon_forecast": look})


def _split(a):
    """(defer share, release share) in [0, 1] from actions."""
    return (a[:, -2] + 1.0) / 2.0, (a[:, -1] + 1.0) / 2.0


def test_registered_and_fixed_part_of_the_action(dc):
    env, t = dc
    for name in ("no_deferral", "carbon_threshold", "carbon_forecast"):
        assert controller_class(name).env_ids == ("powerrl/Datacenter-v0",)
    c = make_controller("no_deferral", env.single_action_space, env.single_observation_space, target=t,
                        supply_c=18.0, ceiling_frac=0.75)
    a = c.act_batch(_obs(t, 2, carbon_g_per_kwh=300.0))
    assert a.shape == (2, t.n_units + 3) and a.dtype == np.float32
    assert all(env.single_action_space.contains(row) for row in a)
    ceilings, supply, defer, release = env.core.decode(a[:1])
    # 0.75 * 2500 MHz = 1875 MHz -> the lowest P-state at or above it: 1900 MHz = P-state 4.
    assert (ceilings == 4).all() and supply[0] == pytest.approx(18.0)
    assert defer[0] == 0.0 and release[0] == 0.0
    full = NoDeferral(env.single_action_space, target=t, supply_c=27.0)
    ceilings, supply, _, _ = env.core.decode(full.act_batch(_obs(t)))
    assert (ceilings == len(t.freqs_mhz) - 1).all() and supply[0] == pytest.approx(27.0)
    assert set(CarbonThreshold.param_grid) == {"threshold_g_per_kwh", "window_h", "supply_c", "ceiling_frac"}
    assert min(CarbonThreshold.param_grid["threshold_g_per_kwh"]) <= 150.0  # CAISO 2023 is mostly below 400
    assert full.params == {"supply_c": 27.0, "ceiling_frac": 1.0}


@pytest.mark.parametrize(("cls", "kw", "key"), [
    (NoDeferral, {"supply_c": 30.0}, "supply_c"), (NoDeferral, {"supply_c": 14.0}, "supply_c"),
    (NoDeferral, {"ceiling_frac": 0.0}, "ceiling_frac"), (NoDeferral, {"ceiling_frac": 1.2}, "ceiling_frac"),
    (CarbonThreshold, {"threshold_g_per_kwh": -1.0}, "threshold_g_per_kwh"),
    (CarbonThreshold, {"window_h": 0.0}, "window_h"), (CarbonForecast, {"margin": 1.0}, "margin"),
    (CarbonForecast, {"window_h": -2.0}, "window_h"),
])
def test_bad_parameters_name_the_key(dc, cls, kw, key):
    env, t = dc
    with pytest.raises(ConfigError, match=key):
        cls(env.single_action_space, target=t, **kw)


def test_threshold_defers_above_and_releases_at_the_cleanest_step(dc):
    env, t = dc
    dt = t.dt_s
    series = np.full(200, 300.0)
    series[10] = 100.0  # cleanest step 10 steps after t0
    c = CarbonThreshold(env.single_action_space, target=_with_series(t, series, dt), threshold_g_per_kwh=250.0)
    c.reset(batch=1)
    for j in range(11):
        now = series[j]
        a = c.act_batch(_obs(t, carbon_g_per_kwh=now, deferred_h=0.5 if j else 0.0), np.array([j * dt]))
        assert env.single_action_space.contains(a[0])
        defer, release = _split(a)
        assert defer[0] == (1.0 if now > 250.0 else 0.0), j  # steps 0-9 at 300 g: defer; step 10 at 100 g: not
        assert release[0] == (1.0 if j == 10 else 0.0), j
    # Step 11: above the threshold again, but nothing cleaner ahead: run now.
    defer, release = _split(c.act_batch(_obs(t, carbon_g_per_kwh=300.0), np.array([11 * dt])))
    assert defer[0] == 0.0 and release[0] == 0.0
    # Below the threshold nothing is deferred, however clean the future.
    c.reset(batch=1)
    defer, _ = _split(c.act_batch(_obs(t, carbon_g_per_kwh=240.0), np.array([0.0])))
    assert defer[0] == 0.0


def test_threshold_state_is_per_copy_and_reset_by_batch(dc):
    env, t = dc
    dt = t.dt_s
    series = np.full(200, 300.0)
    series[8] = 100.0
    c = CarbonThreshold(env.single_action_space, target=_with_series(t, series, dt), threshold_g_per_kwh=250.0)
    c.reset(batch=3)
    releases = []
    for j in range(10):
        # Copy 0 sees 300 g from step 0, copy 1 never crosses the threshold, copy 2 crosses at step 3 only.
        now = np.array([300.0, 200.0, 300.0 if j == 3 else 200.0])
        time_s = np.full(3, j * dt)
        a = c.act_batch(_obs(t, 3, carbon_g_per_kwh=now, deferred_h=np.array([1.0, 0.0, 1.0])), time_s)
        releases.append(_split(a)[1])
    rel = np.array(releases)  # [step, copy]
    assert rel[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]  # deferred at 0 towards step 8
    assert rel[:, 1].sum() == 0
    assert rel[:, 2].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]  # deferred at 3, same cleanest step 8
    # A new batch forgets pending releases; acting on another batch size is refused.
    c.reset(batch=3)
    c.act_batch(_obs(t, 3, carbon_g_per_kwh=300.0), np.zeros(3))  # schedules step 8 again
    c.reset(batch=2)
    for j in range(10):
        a = c.act_batch(_obs(t, 2, carbon_g_per_kwh=200.0), np.full(2, j * dt))
        assert _split(a)[1].sum() == 0
    with pytest.raises(ValueError, match="reset"):
        c.act_batch(_obs(t, 3), np.zeros(3))


def test_threshold_schedules_a_pool_it_did_not_defer(dc):
    """A pool with no release pending (e.g. the controller was reset mid-episode) is released in its window."""
    env, t = dc
    dt = t.dt_s
    series = np.full(200, 300.0)
    series[3], series[8] = 120.0, 100.0  # the cleaner step 8 is beyond the oldest work's 5 remaining steps
    c = CarbonThreshold(env.single_action_space, target=_with_series(t, series, dt), threshold_g_per_kwh=400.0)
    c.reset(batch=1)
    frac = 1.0 - 5 / t.extras["defer_bins"]
    rel = [_split(c.act_batch(_obs(t, carbon_g_per_kwh=300.0, deferred_h=1.0, oldest_frac=frac),
                              np.array([j * dt])))[1][0] for j in range(6)]
    assert rel == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_threshold_falls_back_to_observed_forecasts(dc):
    env, t = dc
    c = CarbonThreshold(env.single_action_space, target=t, threshold_g_per_kwh=250.0)
    c.reset(batch=1)
    out = [_split(c.act_batch(_obs(t, carbon_g_per_kwh=300.0, carbon_forecast_1h=100.0, carbon_forecast_3h=200.0,
                                     deferred_h=0.2)))
           for _ in range(13)]
    assert out[0][0][0] == 1.0  # the 1 h forecast is cleaner: defer
    # Release 1 h = 12 steps after the first deferral (later deferrals keep the earlier release).
    assert [r[1][0] for r in out] == [0.0] * 12 + [1.0]


def test_forecast_rule_margin_and_oldest_window(dc):
    env, t = dc
    dt = t.dt_s
    series = np.full(200, 200.0)
    series[20] = 150.0  # 25 % cleaner, 20 steps ahead
    tgt = _with_series(t, series, dt)
    n_bins = t.extras["defer_bins"]
    c = CarbonForecast(env.single_action_space, target=tgt, margin=0.1)
    defer, release = _split(c.act_batch(_obs(t, carbon_g_per_kwh=200.0), np.array([0.0])))
    assert defer[0] == 1.0 and release[0] == 0.0  # 150 < 0.9 * 200; empty pool: nothing to release
    strict = CarbonForecast(env.single_action_space, target=tgt, margin=0.3)
    assert _split(strict.act_batch(_obs(t, carbon_g_per_kwh=200.0), np.array([0.0])))[0][0] == 0.0
    # Oldest work may wait 30 more steps: the clean step 20 is inside its window -> hold.
    frac_30 = 1.0 - 30 / n_bins
    _, release = _split(c.act_batch(_obs(t, carbon_g_per_kwh=200.0, deferred_h=1.0, oldest_frac=frac_30),
                                    np.array([0.0])))
    assert release[0] == 0.0
    # Only 10 more steps: the clean step is out of its reach -> release now (and still defer new work).
    frac_10 = 1.0 - 10 / n_bins
    defer, release = _split(c.act_batch(_obs(t, carbon_g_per_kwh=200.0, deferred_h=1.0, oldest_frac=frac_10),
                                        np.array([0.0])))
    assert release[0] == 1.0 and defer[0] == 1.0
    # Batches are independent rows (stateless rule).
    a = c.act_batch(_obs(t, 2, carbon_g_per_kwh=np.array([200.0, 140.0])), np.zeros(2))
    assert _split(a)[0].tolist() == [1.0, 0.0]


def test_oracle_reads_the_recorded_future(dc):
    env, t = dc
    dt = t.dt_s
    series = np.full(200, 200.0)
    series[30] = 199.0  # any cleaner step counts (no margin)
    o = CarbonOracle(env.single_action_space, env.single_observation_space,
                     target=_with_series(t, series, dt, actual=True))
    assert o.clairvoyant and o.name == ""  # not registered
    o.reset(batch=1)
    n_bins = t.extras["defer_bins"]
    defer, release = _split(o.act_batch(_obs(t, carbon_g_per_kwh=200.0), np.array([0.0])))
    assert defer[0] == 1.0 and release[0] == 0.0
    # At step 30 (the cleanest of its window) with a pool whose oldest work reaches step 40: release.
    frac = 1.0 - 10 / n_bins
    defer, release = _split(o.act_batch(_obs(t, carbon_g_per_kwh=199.0, deferred_h=2.0, oldest_frac=frac),
                                        np.array([30 * dt])))
    assert defer[0] == 0.0 and release[0] == 1.0
    # One step earlier the pool waits for step 30.
    _, release = _split(o.act_batch(_obs(t, deferred_h=2.0, oldest_frac=frac), np.array([29 * dt])))
    assert release[0] == 0.0
    with pytest.raises(ValueError, match="time_s"):
        o.act_batch(_obs(t))
    with pytest.raises(ConfigError, match=r"controller\.oracle\.supply_c"):
        CarbonOracle(env.single_action_space, target=t, supply_c=40.0)


def test_shielded_heldout_day_deferral_emits_no_more_than_no_deferral():
    """Day 22 (held out), shared arrivals, behind the shield: 24 h of control, then 8 h that drain every pool.

    Without the drain, work still deferred at the end of the day would never run and its carbon
    would be missing; the oracle's evening pool takes ~6 h to run at batch capacity.
    """
    names = ("no_deferral", "carbon_threshold", "carbon_forecast", "oracle")
    venv = DatacenterVectorEnv(len(names), shared_arrivals=True, split="heldout", episode_s=DAY_S + DRAIN_S)
    env = ShieldedVectorEnv(venv)
    t = control_target(venv)
    a_sp, o_sp = venv.single_action_space, venv.single_observation_space
    ctrls = [NoDeferral(a_sp, o_sp, target=t), CarbonThreshold(a_sp, o_sp, target=t, threshold_g_per_kwh=100.0),
             CarbonForecast(a_sp, o_sp, target=t), CarbonOracle(a_sp, o_sp, target=t)]
    obs, _ = env.reset(seed=22, options={"start_s": 21 * DAY_S})
    for i, c in enumerate(ctrls):
        c.reset(batch=1)
        c.bind(venv, np.array([i]))
    carbon, work = np.zeros(len(names)), np.zeros(len(names))
    steps_day = int(DAY_S / t.dt_s)
    deferred_any = np.zeros(len(names), dtype=bool)
    drain = int(DRAIN_S / t.dt_s)
    for step in range(steps_day + drain):
        time_s = venv.core.time_s.copy()
        if step < steps_day:
            acts = np.concatenate([c.act_batch(obs[i:i + 1], time_s[i:i + 1]) for i, c in enumerate(ctrls)])
        else:  # drain: nothing new deferred, every pool released
            acts = np.repeat(ctrls[0].act_batch(obs[:1]), len(names), axis=0)
            acts[:, -1] = 1.0
        deferred_any |= acts[:, -2] > -1.0
        obs, _, _, trunc, info = env.step(acts)
        assert trunc.all() == (step == steps_day + drain - 1)
        carbon += info["carbon_kg"]
        work += info["work_done"]
    assert venv.core.pool.sum() == 0.0
    assert deferred_any.tolist() == [False, True, True, True]
    # Every controller served the same work, up to what is still queued on the most loaded batch
    # nodes (the oracle: ~0.16 %, about 0.05 kg of carbon against its ~13 kg saving).
    assert np.abs(work - work[0]).max() <= 5e-3 * work[0]
    none = carbon[0]
    for i, name in enumerate(names[1:], start=1):
        assert carbon[i] <= none, f"{name} emitted {carbon[i]:.2f} kg > no_deferral's {none:.2f} kg"
    # The oracle saves more than 5 % on this day (8.1 %; the threshold rule 6.6 %, the forecast rule 7.0 %).
    assert carbon[3] < 0.95 * none
