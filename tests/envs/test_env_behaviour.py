"""The envs mean what their docstrings say: units, trade-offs, conservation, validation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import powerrl  # noqa: F401
from powerrl.envs.cluster_budget import ClusterBudgetEnv
from powerrl.envs.datacenter import DatacenterEnv
from powerrl.envs.node_dvfs import NodeDVFSEnv
from powerrl.errors import ConfigError


def run_fixed(env: gym.Env, action: np.ndarray, steps: int, seed: int = 0, start_s: float | None = None) -> list:
    env.reset(seed=seed, options={"start_s": start_s} if start_s is not None else None)
    return [env.step(action)[4] for _ in range(steps)]


def test_nodedvfs_lower_pstate_saves_energy_but_costs_latency() -> None:
    env = NodeDVFSEnv(dt_s=1.0, episode_s=3600.0, split="heldout")
    n_p = int(env.action_space.nvec[0])
    start = 21 * 86400.0 + 12 * 3600.0  # noon of day 22
    fast = run_fixed(env, np.full(2, n_p - 1), 1800, start_s=start)
    slow = run_fixed(env, np.zeros(2, dtype=int), 1800, start_s=start)
    e_fast = sum(i["energy_j"] for i in fast)
    e_slow = sum(i["energy_j"] for i in slow)
    assert e_slow < e_fast
    lat_fast = np.median([i["latency_ms"] for i in fast])
    lat_slow = np.median([i["latency_ms"] for i in slow])
    assert lat_slow > lat_fast


def test_nodedvfs_info_units_are_consistent() -> None:
    env = NodeDVFSEnv(dt_s=0.5, episode_s=60.0)
    infos = run_fixed(env, env.action_space.sample(), 10)
    for info in infos:
        assert info["energy_j"] == pytest.approx(info["power_w"] * 0.5)
        assert 0 <= info["sla_violation_rate"] <= 1


def test_nodedvfs_truncates_at_episode_length() -> None:
    env = NodeDVFSEnv(dt_s=1.0, episode_s=10.0)
    env.reset(seed=1)
    flags = [env.step(env.action_space.sample())[3] for _ in range(10)]
    assert flags == [False] * 9 + [True]


def test_bad_kwargs_fail_with_the_key() -> None:
    with pytest.raises(ConfigError, match="n_domains"):
        gym.make("powerrl/NodeDVFS-v0", n_domains=0)
    with pytest.raises(ConfigError, match="dt_s"):
        gym.make("powerrl/ClusterBudget-v0", dt_s=-1)
    with pytest.raises(ConfigError, match="allowed keys"):
        gym.make("powerrl/Datacenter-v0", n_rack=3)


def test_bad_start_is_rejected() -> None:
    env = NodeDVFSEnv(episode_s=60.0)
    with pytest.raises(ValueError, match="start_s"):
        env.reset(seed=0, options={"start_s": 28 * 86400.0})


def test_cluster_budget_full_caps_overshoot_and_low_caps_respect_budget() -> None:
    env = ClusterBudgetEnv(n_nodes=16, nodes_per_rack=4, episode_s=120.0, budget_event_rate_per_h=0.0,
                           load_scale=2.0)
    full = run_fixed(env, np.ones(16, dtype=np.float32), 60)
    assert max(i["budget_overshoot_w"] for i in full) > 0  # at load_scale 2, all-max caps overshoot
    assert max(i["pdu_overshoot_w"] for i in full) > 0
    for i in full:  # PDU overshoot is the excess of each PDU over its limit, summed
        excess = np.maximum(i["pdu_power_w"] - i["pdu_limit_w"], 0.0).sum()
        assert i["pdu_overshoot_w"] == pytest.approx(excess)
    low = run_fixed(env, -np.ones(16, dtype=np.float32), 60)
    assert all(i["budget_overshoot_w"] == 0 and i["pdu_overshoot_w"] == 0 for i in low)
    assert all(i["power_w"] <= i["budget_w"] for i in low)
    caps = low[-1]["caps_w"]
    np.testing.assert_allclose(caps, env.core.idle_w)


def test_cluster_budget_weighted_work_prefers_serving_critical_nodes() -> None:
    env = ClusterBudgetEnv(n_nodes=20, nodes_per_rack=5, episode_s=120.0, budget_event_rate_per_h=0.0)
    prio = env.core.priority
    favour_critical = np.where(prio <= 1, 1.0, -1.0).astype(np.float32)
    favour_background = np.where(prio >= 3, 1.0, -1.0).astype(np.float32)

    def total_reward(action: np.ndarray) -> float:
        env.reset(seed=3)
        return sum(env.step(action)[1] for _ in range(60))

    assert total_reward(favour_critical) > total_reward(favour_background)


def test_datacenter_deferral_conserves_batch_work() -> None:
    env = DatacenterEnv(n_racks=2, nodes_per_rack=5, dt_s=300.0, episode_s=86400.0, defer_window_h=2.0)
    action = np.ones(5, dtype=np.float32)
    action[-3:] = [-1.0, 1.0, -1.0]  # coldest supply, defer everything, release nothing
    infos = run_fixed(env, action, 100)
    # Nothing is released voluntarily, yet deferred work never waits longer than the window.
    pool = [i["deferred_work"] for i in infos]
    assert max(pool) > 0
    assert sum(i["batch_released"] for i in infos) > 0
    window_steps = int(2.0 * 3600 / 300)
    assert env.core.pool.shape[1] == window_steps


def test_datacenter_warmer_supply_cuts_cooling_power() -> None:
    env = DatacenterEnv(n_racks=2, nodes_per_rack=5, dt_s=300.0, episode_s=86400.0)
    cold = np.ones(5, dtype=np.float32)
    cold[-3:] = [-1.0, -1.0, -1.0]
    warm = cold.copy()
    warm[-3] = 1.0
    c = run_fixed(env, cold, 24)
    w = run_fixed(env, warm, 24)
    assert sum(i["cooling_w"] for i in w) < sum(i["cooling_w"] for i in c)
    assert max(i["temp_die_max_c"] for i in w) > max(i["temp_die_max_c"] for i in c)
    for i in c:
        assert i["pue"] > 1.0
        assert i["carbon_kg"] >= 0.0


@pytest.mark.parametrize("shared", [False, True])
def test_nodedvfs_c_and_numpy_backends_agree_step_for_step(shared: bool) -> None:
    from powerrl.envs.node_dvfs import NodeDVFSVectorEnv

    kw = {"dt_s": 0.5, "episode_s": 40.0, "n_domains": 3}
    envs = [NodeDVFSVectorEnv(4, shared_arrivals=shared, **kw) for _ in range(2)]
    envs[1].core.__init__(envs[1].cfg, 4, shared_arrivals=shared, backend="numpy")
    obs = [e.reset(seed=11)[0] for e in envs]
    np.testing.assert_allclose(obs[0], obs[1], rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(200):  # several chunk refills and autoresets
        act = rng.integers(0, envs[0].core.n_pstates, (4, 3))
        out = [e.step(act) for e in envs]
        np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-9)
        np.testing.assert_array_equal(out[0][3], out[1][3])
        for name in ("energy_j", "latency_ms", "work_done"):
            np.testing.assert_allclose(out[0][4][name], out[1][4][name], rtol=1e-9)


@pytest.mark.parametrize("env_cls", [ClusterBudgetEnv, DatacenterEnv])
def test_c_and_numpy_backends_agree_for_cluster_envs(env_cls: type) -> None:
    kw = ({"n_nodes": 12, "nodes_per_rack": 4, "episode_s": 120.0} if env_cls is ClusterBudgetEnv
          else {"n_racks": 3, "nodes_per_rack": 4, "episode_s": 7200.0})
    envs = [env_cls(**kw) for _ in range(2)]
    envs[1].core = type(envs[1].core)(envs[1].cfg, 1, backend="numpy")
    o0, _ = envs[0].reset(seed=4)
    o1, _ = envs[1].reset(seed=4)
    np.testing.assert_allclose(o0, o1, rtol=1e-6)
    envs[0].action_space.seed(1)
    for _ in range(20):
        act = envs[0].action_space.sample()
        r0 = envs[0].step(act)
        r1 = envs[1].step(act)
        np.testing.assert_allclose(r0[0], r1[0], rtol=1e-5, atol=1e-5)
        assert r0[1] == pytest.approx(r1[1], rel=1e-9)
