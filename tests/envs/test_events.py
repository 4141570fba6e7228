"""Scenario events change what they say, only while active, at each copy's own episode time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import powerrl  # noqa: F401
from powerrl.envs import events as ev
from powerrl.envs.cluster_budget import ClusterBudgetCore, ClusterBudgetEnv
from powerrl.envs.config import ClusterBudgetConfig, NodeDVFSConfig, load_env_config, make_config
from powerrl.envs.datacenter import DatacenterCore, DatacenterEnv
from powerrl.envs.events import EventSpec
from powerrl.envs.node_dvfs import NodeDVFSCore, NodeDVFSEnv
from powerrl.errors import ConfigError

NOON_DAY_2 = 86400.0 + 12 * 3600.0
# ClusterBudget without its random (unannounced) budget events, so only the grid cuts move the budget.
CLUSTER = {"n_nodes": 8, "nodes_per_rack": 4, "dt_s": 1.0, "episode_s": 120.0, "budget_event_rate_per_h": 0.0}
DATACENTER = {"n_racks": 2, "nodes_per_rack": 4, "dt_s": 60.0, "episode_s": 3600.0}


def rollout(env: gym.Env, action: Any, steps: int, seed: int = 0, start_s: float = NOON_DAY_2) -> list[tuple]:
    """(obs, reward, info) of every step from a seeded reset at trace time ``start_s``."""
    env.reset(seed=seed, options={"start_s": start_s})
    out = []
    for _ in range(steps):
        obs, reward, _, _, info = env.step(action)
        out.append((obs, reward, info))
    return out


def excess_c(t: float, t0: float, dur: float, rise: float, tau: float) -> float:
    """The cooling-failure closed form, written out independently of powerrl.envs.events."""
    if t < t0:
        return 0.0
    if t < t0 + dur:
        return rise * (1.0 - math.exp(-(t - t0) / tau))
    return rise * (1.0 - math.exp(-dur / tau)) * math.exp(-(t - t0 - dur) / tau)


# -- the helpers ---------------------------------------------------------------------------------

def test_overlapping_events_add_offsets_and_multiply_factors() -> None:
    evs = (EventSpec("heat_wave", 10.0, 20.0, delta_c=5.0), EventSpec("heat_wave", 20.0, 20.0, delta_c=3.0),
           EventSpec("demand_surge", 0.0, 30.0, factor=2.0), EventSpec("demand_surge", 25.0, 10.0, factor=1.5),
           EventSpec("grid_cut", 10.0, 30.0, percent=50.0, within_s=10.0),
           EventSpec("grid_cut", 15.0, 30.0, percent=20.0, within_s=2.0))
    t = np.array([0.0, 9.9, 10.0, 16.0, 19.0, 20.0, 25.0, 29.9, 30.0, 40.0, 45.0])
    np.testing.assert_allclose(ev.inlet_offset_c(evs, t), [0, 0, 5, 5, 5, 8, 8, 8, 3, 0, 0])
    np.testing.assert_allclose(ev.demand_factor(evs, t), [2, 2, 2, 2, 2, 2, 3, 3, 1.5, 1, 1])
    np.testing.assert_allclose(ev.budget_factor(evs, t), [1, 1, 1, 1, 0.8, 0.4, 0.4, 0.4, 0.4, 0.8, 1])
    np.testing.assert_allclose(ev.announced_budget_factor(evs, t), [1, 1, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.8, 1])
    # Two cuts pending at t = 16: the announced budget has both, the deadline is the earlier one.
    np.testing.assert_array_equal(ev.budget_deadline_s(evs, t), [np.inf, np.inf, 20, 17, 20] + [np.inf] * 6)
    assert ev.active_kinds(evs, 25.0) == ("heat_wave", "demand_surge", "grid_cut")
    assert ev.active_kinds(evs, 50.0) == ()


def test_cooling_excess_matches_the_closed_form_before_during_and_after() -> None:
    cf = EventSpec("cooling_failure", 100.0, 300.0, rise_c=15.0, tau_s=90.0)
    t = np.array([0.0, 99.0, 100.0, 150.0, 399.0, 400.0, 500.0, 2000.0])
    expected = [excess_c(x, 100.0, 300.0, 15.0, 90.0) for x in t]
    np.testing.assert_allclose(ev.cooling_excess_c(cf, t), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ev.cooling_down((cf,), t), [False, False, True, True, True, False, False, False])


# -- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["powerrl/NodeDVFS-v0", "powerrl/Datacenter-v0"])
def test_grid_cut_is_rejected_where_there_is_no_budget(env_id: str) -> None:
    events = [{"kind": "heat_wave", "start_s": 0, "duration_s": 10},
              {"kind": "grid_cut", "start_s": 0, "duration_s": 60}]
    with pytest.raises(ConfigError, match=r"events\[1\]\.kind = 'grid_cut'.*ClusterBudget-v0"):
        gym.make(env_id, events=events)


def test_grid_cut_in_a_config_built_in_code_is_rejected_too() -> None:
    cfg = NodeDVFSConfig(events=(EventSpec("grid_cut", 0.0, 60.0),))
    with pytest.raises(ConfigError, match=r"events\[0\]\.kind"):
        NodeDVFSEnv(config=cfg)


@pytest.mark.parametrize(("event", "key", "hint"), [
    ({"kind": "heat_wave", "start_s": 0, "duration_s": 60, "percent": 50}, "percent", "belongs to grid_cut"),
    ({"kind": "demand_surge", "start_s": 0, "duration_s": 60, "tau_s": 10}, "tau_s", "belongs to cooling_failure"),
    ({"kind": "grid_cut", "start_s": 0, "duration_s": 60, "factor": 3}, "factor", "belongs to demand_surge"),
    ({"kind": "grid_cut", "start_s": 0, "duration_s": 60, "within_s": 60}, "within_s", "below duration_s"),
    ({"kind": "demand_surge", "start_s": 0, "duration_s": 60, "factor": 11}, "factor", r"\(0.0, 10.0\]"),
    ({"kind": "heat_wave", "start_s": -1, "duration_s": 60}, "start_s", "inf"),
    ({"kind": "heat_wave", "start_s": 0, "duration_s": 0}, "duration_s", r"\(0.0"),
    ({"kind": "blizzard", "start_s": 0, "duration_s": 60}, "kind", "heat_wave"),
    ({"kind": "heat_wave", "start_s": 0, "duration_s": 60, "delta": 5}, "delta", "allowed keys"),
    ({"kind": "heat_wave", "duration_s": 60}, "start_s", "missing"),
])
def test_bad_event_keys_are_rejected_with_their_path(event: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"events\[0\]\.{key} = .*{hint}"):
        make_config("powerrl/ClusterBudget-v0", {"events": [event]})


def test_events_load_from_an_env_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cut.yaml"
    path.write_text("kind: env\nid: powerrl/ClusterBudget-v0\nn_nodes: 8\nevents:\n"
                    "  - {kind: grid_cut, start_s: 600, duration_s: 900, percent: 40, within_s: 60}\n"
                    "  - kind: heat_wave\n    start_s: 0\n    duration_s: 300\n    delta_c: 6\n", encoding="utf-8")
    env_id, cfg = load_env_config(path)
    assert env_id == "powerrl/ClusterBudget-v0"
    assert cfg.events == (EventSpec("grid_cut", 600.0, 900.0, percent=40.0, within_s=60.0),
                          EventSpec("heat_wave", 0.0, 300.0, delta_c=6.0))
    path.write_text("kind: env\nid: powerrl/ClusterBudget-v0\nevents:\n"
                    "  - {kind: heat_wave, start_s: 0, duration_s: 300, within_s: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}: events\[0\]\.within_s"):
        load_env_config(path)


# -- each kind changes what it should, only while active ------------------------------------------

def test_heat_wave_heats_the_die_only_from_its_start() -> None:
    heat = [{"kind": "heat_wave", "start_s": 30, "duration_s": 30, "delta_c": 10}]
    kw = {"dt_s": 1.0, "episode_s": 120.0}
    base = rollout(NodeDVFSEnv(**kw), np.array([5, 5]), 100)
    hot = rollout(NodeDVFSEnv(events=heat, **kw), np.array([5, 5]), 100)
    temp = np.array([[b[2]["temp_die_c"], h[2]["temp_die_c"]] for b, h in zip(base, hot, strict=True)])
    np.testing.assert_array_equal(temp[:30, 0], temp[:30, 1])
    assert np.all(temp[30:60, 1] > temp[30:60, 0])
    rise = temp[:, 1] - temp[:, 0]
    assert rise[59] > 5.0 and rise[99] < 0.5 * rise[59]  # back towards the base run after the wave
    assert [h[2]["inlet_c"] for h in hot[28:62]] == [24.0] * 2 + [34.0] * 30 + [24.0] * 2
    assert hot[29][2]["events_active"] == () and hot[30][2]["events_active"] == ("heat_wave",)
    # The wave changes temperatures only: the work is the same draws.
    assert [b[2]["work_done"] for b in base] == [h[2]["work_done"] for h in hot]


def test_cooling_failure_inlet_follows_the_closed_form() -> None:
    env = NodeDVFSEnv(dt_s=1.0, episode_s=300.0,
                      events=[{"kind": "cooling_failure", "start_s": 20, "duration_s": 60, "rise_c": 12, "tau_s": 30}])
    env.reset(seed=3, options={"start_s": NOON_DAY_2})
    for j in range(200):
        info = env.step(np.array([5, 5]))[4]
        expected = 24.0 + excess_c(j * 1.0, 20.0, 60.0, 12.0, 30.0)
        np.testing.assert_allclose(env.unwrapped.core.inlet_c[0], expected, rtol=1e-12)
        assert info["inlet_c"] == pytest.approx(expected, rel=1e-12)
        assert info["events_active"] == (("cooling_failure",) if 20 <= j < 80 else ())


def test_grid_cut_is_announced_at_start_and_in_force_at_start_plus_within() -> None:
    cut = [{"kind": "grid_cut", "start_s": 10, "duration_s": 20, "percent": 40, "within_s": 5}]
    env = ClusterBudgetEnv(events=cut, **CLUSTER)
    _, info0 = env.reset(seed=0, options={"start_s": NOON_DAY_2})
    base = env.unwrapped.core.cfg.budget_fraction * env.unwrapped.core.busy_total_w
    assert info0["budget_w"] == info0["announced_budget_w"] == pytest.approx(base)
    assert info0["budget_deadline_s"] == math.inf
    caps = env.unwrapped.core.busy_w
    for j in range(40):  # step j runs from episode time j to j + 1
        info = env.step_caps(caps)[4]
        in_force = 15 <= j < 30
        announced = 10 <= j < 30
        assert info["budget_w"] == pytest.approx(base * (0.6 if in_force else 1.0)), j
        assert info["announced_budget_w"] == pytest.approx(base * (0.6 if announced else 1.0)), j
        assert info["budget_deadline_s"] == (NOON_DAY_2 + 15.0 if 10 <= j < 15 else math.inf), j
        assert info["events_active"] == (("grid_cut",) if announced else ())
        # The properties already tell the next step's values.
        assert env.announced_budget_w == pytest.approx(base * (0.6 if 10 <= j + 1 < 30 else 1.0)), j
        assert env.budget_deadline_s == (NOON_DAY_2 + 15.0 if 10 <= j + 1 < 15 else math.inf), j


@pytest.mark.parametrize("env_cls", [NodeDVFSEnv, ClusterBudgetEnv])
def test_demand_surge_multiplies_the_offered_load_by_its_factor(env_cls: type) -> None:
    surge = [{"kind": "demand_surge", "start_s": 10, "duration_s": 5, "factor": 3.0}]
    kw: dict[str, Any] = {"dt_s": 1.0, "episode_s": 60.0} if env_cls is NodeDVFSEnv else dict(CLUSTER)
    loads = []
    for events in ([], surge):
        env = env_cls(events=events, **kw)
        env.reset(seed=5, options={"start_s": NOON_DAY_2})
        action = np.full(env.action_space.shape, 1, dtype=env.action_space.dtype)
        run = []
        for _ in range(30):
            env.step(action)
            run.append(env.unwrapped.core.arrays.demand.copy())
        loads.append(np.array(run))
    base, surged = loads
    assert base[10:15].sum() > 0
    np.testing.assert_array_equal(surged[10:15], base[10:15] * 3.0)
    np.testing.assert_array_equal(surged[:10], base[:10])
    np.testing.assert_array_equal(surged[15:], base[15:])


def test_datacenter_heat_wave_and_cooling_failure() -> None:
    events = [{"kind": "heat_wave", "start_s": 600, "duration_s": 600, "delta_c": 8},
              {"kind": "cooling_failure", "start_s": 1800, "duration_s": 600, "rise_c": 10, "tau_s": 300}]
    action = np.zeros(DATACENTER["n_racks"] + 3)
    base = rollout(DatacenterEnv(**DATACENTER), action, 50, start_s=86400.0)
    hit = rollout(DatacenterEnv(events=events, **DATACENTER), action, 50, start_s=86400.0)
    for j, (b, h) in enumerate(zip(base, hit, strict=True)):
        t = j * DATACENTER["dt_s"]
        offset = (8.0 if 600 <= t < 1200 else 0.0) + excess_c(t, 1800.0, 600.0, 10.0, 300.0)
        assert h[2]["inlet_c"] - b[2]["inlet_c"] == pytest.approx(offset, abs=1e-9), j
        if 1800 <= t < 2400:
            assert h[2]["cooling_w"] == 0.0 and b[2]["cooling_w"] > 0.0
        elif not 600 <= t < 1200:
            assert h[2]["cooling_w"] == b[2]["cooling_w"]
    # Hotter outside air during the wave: the observed ambient is 8 degC up (index: after the rack fields).
    ambient = 5 * DATACENTER["n_racks"] + 1
    assert hit[10][0][ambient] - base[10][0][ambient] == pytest.approx(8.0, abs=1e-4)  # obs for t = 660 s
    assert sum(h[2]["temp_die_max_c"] for h in hit[10:20]) > sum(b[2]["temp_die_max_c"] for b in base[10:20])


# -- the shield's hooks ----------------------------------------------------------------------------

def test_cluster_pstate_ceiling_lowers_the_applied_pstate() -> None:
    core = ClusterBudgetCore(ClusterBudgetConfig(**CLUSTER), 2)
    rng = np.random.default_rng(0)
    core.reset_copies(np.ones(2, dtype=bool), rng, NOON_DAY_2)
    caps = np.tile(core.busy_w, (2, 1)) * 2.0  # caps never bind
    top = core.arrays.n_pstates - 1
    core.step_caps(caps, rng)
    assert np.all(core.arrays.pstate_applied == top)
    ceiling = np.tile(np.arange(core.n) % 3, (2, 1))
    core.step_caps(caps, rng, pstate_ceiling=ceiling)
    np.testing.assert_array_equal(core.arrays.pstate_applied, ceiling.ravel())
    core.step_caps(caps, rng, pstate_ceiling=np.full((2, core.n), 99))  # clipped to the table
    assert np.all(core.arrays.pstate_applied == top)
    with pytest.raises(ValueError, match="pstate_ceiling"):
        core.step_caps(caps, rng, pstate_ceiling=np.zeros((2, core.n)))  # floats
    with pytest.raises(ValueError, match="pstate_ceiling"):
        core.step_caps(caps, rng, pstate_ceiling=np.zeros((1, core.n), dtype=int))


def test_cluster_env_step_caps_passes_the_ceiling_through() -> None:
    env = ClusterBudgetEnv(**CLUSTER)
    env.reset(seed=0)
    caps = env.core.busy_w * 2.0
    env.step_caps(caps, pstate_ceiling=np.ones(env.core.n, dtype=np.int64))
    assert np.all(env.core.arrays.pstate_applied == 1)
    # A standing ceiling on the core holds for every plain env.step (how a wrapper constrains it).
    env.core.pstate_ceiling = np.full((1, env.core.n), 2)
    for _ in range(3):
        env.step(np.ones(env.core.n, dtype=np.float32))
        assert np.all(env.core.arrays.pstate_applied <= 2)
    env.core.pstate_ceiling = None
    env.step_caps(caps)
    assert np.all(env.core.arrays.pstate_applied == env.core.arrays.n_pstates - 1)


def test_datacenter_node_ceiling_applies_min_of_rack_and_node() -> None:
    core = DatacenterCore(make_config("powerrl/Datacenter-v0", DATACENTER), 1)
    rng = np.random.default_rng(0)
    core.reset_copies(np.ones(1, dtype=bool), rng, 86400.0)
    top = core.n_pstates - 1
    action = np.ones((1, core.n_racks + 3))
    action[0, 0] = -1.0  # rack 0 at the lowest P-state, rack 1 at f_max
    core.step(action, rng)
    np.testing.assert_array_equal(core.arrays.pstate_applied, [0] * 4 + [top] * 4)
    node = np.array([[top, 2, top, 1, top, 2, top, 1]])
    core.step(action, rng, node_ceiling=node)
    np.testing.assert_array_equal(core.arrays.pstate_applied, [0, 0, 0, 0, top, 2, top, 1])
    assert core.obs[0, 3] == 0.0 and core.obs[0, 5 + 3] == 1.0  # observed ceilings are the racks'
    with pytest.raises(ValueError, match="node_ceiling"):
        core.step(action, rng, node_ceiling=np.zeros(3, dtype=int))
    core.node_ceiling = node  # standing ceiling: every later step applies it
    core.step(action, rng)
    core.step(action, rng)
    np.testing.assert_array_equal(core.arrays.pstate_applied, [0, 0, 0, 0, top, 2, top, 1])


# -- vector copies and determinism -----------------------------------------------------------------

def test_vector_copies_meet_events_at_their_own_episode_time() -> None:
    cfg = make_config("powerrl/NodeDVFS-v0", {"dt_s": 1.0, "episode_s": 60.0, "events": [
        {"kind": "heat_wave", "start_s": 3, "duration_s": 4, "delta_c": 5}]})
    core = NodeDVFSCore(cfg, 3)
    rng = np.random.default_rng(0)
    core.reset_copies(np.ones(3, dtype=bool), rng)
    for _ in range(5):
        core.step(rng)
    core.reset_copies(np.array([False, True, False]), rng)  # copy 1 starts over
    inlets = []
    for _ in range(8):
        t = core.step_count * 1.0
        core.step(rng)
        inlets.append(core.inlet_c[:, 0].copy())
        np.testing.assert_array_equal(core.inlet_c[:, 0], np.where((t >= 3) & (t < 7), 29.0, 24.0))
    assert [x[1] for x in inlets] == [24.0, 24.0, 24.0, 29.0, 29.0, 29.0, 29.0, 24.0]
    assert [x[0] for x in inlets] == [29.0, 29.0, 24.0, 24.0, 24.0, 24.0, 24.0, 24.0]

    cut = make_config("powerrl/ClusterBudget-v0", {**CLUSTER, "events": [
        {"kind": "grid_cut", "start_s": 4, "duration_s": 10, "percent": 50, "within_s": 2}]})
    cb = ClusterBudgetCore(cut, 2)
    cb.reset_copies(np.ones(2, dtype=bool), rng, NOON_DAY_2)
    caps = np.tile(cb.busy_w, (2, 1))
    for _ in range(5):
        cb.step_caps(caps, rng)
    cb.reset_copies(np.array([False, True]), rng, NOON_DAY_2 + 3600.0)
    base = cb.cfg.budget_fraction * cb.busy_total_w
    assert list(cb.step_count) == [5, 0]
    np.testing.assert_allclose(cb.announced_budget_w, [0.5 * base, base])
    np.testing.assert_array_equal(cb.budget_deadline_s, [NOON_DAY_2 + 6.0, np.inf])
    for _ in range(4):
        cb.step_caps(caps, rng)
    np.testing.assert_allclose(cb.budget_w, [0.5 * base, base])  # copy 1 at episode time 4: announced only
    np.testing.assert_array_equal(cb.budget_deadline_s, [np.inf, NOON_DAY_2 + 3600.0 + 6.0])


@pytest.mark.parametrize(("env_id", "kw", "events"), [
    ("powerrl/NodeDVFS-v0", {"episode_s": 20.0},
     [{"kind": "heat_wave", "start_s": 100, "duration_s": 5}, {"kind": "demand_surge", "start_s": 100,
                                                               "duration_s": 5}]),
    ("powerrl/ClusterBudget-v0", {"n_nodes": 8, "nodes_per_rack": 4, "episode_s": 60.0},
     [{"kind": "grid_cut", "start_s": 100, "duration_s": 60}, {"kind": "cooling_failure", "start_s": 100,
                                                                "duration_s": 5}]),
    ("powerrl/Datacenter-v0", {"n_racks": 2, "nodes_per_rack": 4, "episode_s": 7200.0},
     [{"kind": "cooling_failure", "start_s": 9000, "duration_s": 60}, {"kind": "heat_wave", "start_s": 9000,
                                                                        "duration_s": 5}]),
])
def test_events_outside_the_episode_leave_it_bitwise_unchanged(env_id: str, kw: dict[str, Any],
                                                               events: list[dict[str, Any]]) -> None:
    runs = []
    for evs in ([], events):
        venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", events=evs, **kw)
        venv.action_space.seed(1)
        obs, _ = venv.reset(seed=4)
        steps = [obs]
        for _ in range(int(kw["episode_s"] / venv.unwrapped.core.cfg.dt_s) + 3):  # crosses an autoreset
            obs, reward, _, trunc, info = venv.step(venv.action_space.sample())
            steps.append((obs, reward, trunc, info))
        runs.append(steps)
    for a, b in zip(*runs, strict=True):
        if isinstance(a, np.ndarray):
            assert a.tobytes() == b.tobytes()
            continue
        for x, y in zip(a[:3], b[:3], strict=True):
            assert x.tobytes() == y.tobytes()
        assert a[3].keys() == b[3].keys()
        for key in a[3]:
            assert np.asarray(a[3][key]).tobytes() == np.asarray(b[3][key]).tobytes(), key
