"""The shield wrapper over every simulator env: API, determinism, masks, fallbacks, emergencies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import powerrl  # noqa: F401  (registers the envs)
from powerrl.envs.shielded import ShieldedEnv, ShieldedVectorEnv
from powerrl.errors import ConfigError

SMALL = {
    "powerrl/NodeDVFS-v0": {"episode_s": 20.0},
    "powerrl/ClusterBudget-v0": {"n_nodes": 8, "nodes_per_rack": 4, "episode_s": 60.0},
    "powerrl/Datacenter-v0": {"n_racks": 2, "nodes_per_rack": 4, "episode_s": 7200.0},
}
IDS = sorted(SMALL)


def shielded(env_id: str, shield: object = None, **kw: object) -> ShieldedEnv:
    return ShieldedEnv(gym.make(env_id, **{**SMALL[env_id], **kw}), shield)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
@pytest.mark.parametrize("env_id", IDS)
def test_checkers_pass_on_the_shielded_env(env_id: str) -> None:
    env = shielded(env_id)
    gym_check_env(env, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(shielded(env_id), warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_shielded_rollouts_are_deterministic_and_report_the_shield(env_id: str) -> None:
    def run() -> tuple[list[float], list[dict[str, int]]]:
        env = shielded(env_id, "strict")
        env.action_space.seed(7)
        env.reset(seed=7)
        rewards, events = [], []
        for _ in range(40):
            _, r, _, _, info = env.step(env.action_space.sample())
            rewards.append(r)
            events.append(info["shield"]["events"])
            assert set(info["shield"]) == {"proposed", "applied", "events", "intervened", "alerts", "pstate",
                                           "thermal_cap_w", "offline"}
            assert info["cost"] == float(info["shield"]["intervened"])
            assert env.action_space.contains(np.asarray(info["shield"]["applied"], dtype=env.action_space.dtype))
        return rewards, events

    assert run() == run()


def test_penalty_is_charged_on_intervened_steps_only() -> None:
    plain = shielded("powerrl/ClusterBudget-v0", {"penalty": 0.0})
    charged = shielded("powerrl/ClusterBudget-v0", {"penalty": 0.5})
    for env in (plain, charged):
        env.reset(seed=3)
    low = -np.ones(8, dtype=np.float32)  # below every guaranteed base: clipped, an intervention
    _, r0, _, _, i0 = plain.step(low)
    _, r1, _, _, i1 = charged.step(low)
    assert i0["shield"]["intervened"] and i0["shield"]["events"]["cap_clipped"] > 0
    assert r1 == pytest.approx(r0 - 0.5)


def test_invalid_actions_fall_back_to_the_last_applied_action() -> None:
    env = shielded("powerrl/NodeDVFS-v0")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([3, 4]))
    _, _, _, _, info = env.step(np.array([np.nan, 99.0]))
    assert info["shield"]["events"]["invalid_action"] == 1
    assert info["shield"]["applied"].tolist() == [3, 4]
    assert info["shield"]["intervened"]


def _heat(env: ShieldedEnv, temp_c: float, units: slice = slice(None)) -> None:
    a = env.unwrapped.core.arrays  # type: ignore[attr-defined]
    a.temp_die_c[units] = temp_c
    a.temp_sink_c[units] = temp_c - 5.0


def test_masks_follow_the_shield_and_the_filter_has_the_last_word() -> None:
    env = shielded("powerrl/NodeDVFS-v0")
    env.reset(seed=0)
    k = env.unwrapped.core.n_pstates  # type: ignore[attr-defined]
    mask = env.action_masks()
    assert mask.shape == (2 * k,) and mask.all()
    _heat(env, 96.0, slice(0, 1))  # domain 0 over the hot trip
    mask = env.action_masks().reshape(2, k)
    assert mask[0].tolist() == [True] + [False] * (k - 1)
    assert mask[1].any()
    _, _, _, _, info = env.step(np.array([k - 1, k - 1]))  # the mask ignored
    assert info["shield"]["applied"][0] == 0 and info["shield"]["events"]["hot"] == 1
    assert info["shield"]["alerts"] == {"hot": 1}


def test_critical_trip_takes_the_work_offline() -> None:
    env = shielded("powerrl/NodeDVFS-v0")
    env.reset(seed=0)
    _heat(env, 106.0, slice(1, 2))
    _, _, _, _, info = env.step(np.array([5, 5]))
    a = env.unwrapped.core.arrays  # type: ignore[attr-defined]
    assert info["shield"]["events"]["critical"] == 1
    assert a.cap_w.tolist() == [np.inf, 0.0] and a.served[1] == 0.0
    assert a.power_w[1] == pytest.approx(a.idle_w[1])


def test_datacenter_active_trip_lowers_the_supply_setpoint() -> None:
    env = shielded("powerrl/Datacenter-v0")
    env.reset(seed=0)
    _heat(env, 80.0, slice(0, 1))  # over the 75 degC active trip, under passive
    warm = np.ones(env.action_space.shape, dtype=np.float32)  # warmest supply requested
    _, _, _, _, info = env.step(warm)
    assert info["shield"]["events"]["active_cooling"] == 1
    assert info["shield"]["applied"][-3] < 1.0


def test_cluster_caps_fit_an_announced_grid_cut_before_its_deadline() -> None:
    cut = {"kind": "grid_cut", "start_s": 10.0, "duration_s": 30.0, "percent": 30.0, "within_s": 5.0}
    env = shielded("powerrl/ClusterBudget-v0", episode_s=60.0, budget_event_rate_per_h=0.0, events=(cut,))
    env.reset(seed=1)
    core = env.unwrapped.core  # type: ignore[attr-defined]
    full = env.unwrapped.budget_w  # type: ignore[attr-defined]
    seen_phasing = False
    for t in range(40):
        _, _, _, _, info = env.step(np.ones(8, dtype=np.float32))
        seen_phasing |= "grid_cut" in info["shield"]["events"]
        assert info["budget_overshoot_w"] <= 1e-6 * full
        if 15 <= t < 40:  # the cut is in force from t = 15 s
            assert info["budget_w"] == pytest.approx(0.7 * full)
            assert core.arrays.cap_w.sum() <= 0.7 * full * (1 + 1e-9)
    assert seen_phasing


def test_unknown_zone_and_missing_floor_fail_when_binding() -> None:
    with pytest.raises(ConfigError, match="zones.dimm"):
        shielded("powerrl/NodeDVFS-v0", {"zones": {"dimm": {"trips": [{"type": "hot", "temp_c": 90}]}}})
    with pytest.raises(ConfigError, match="floor_pstate = 40"):
        shielded("powerrl/NodeDVFS-v0", {"floor_pstate": 40})


@pytest.mark.parametrize("env_id", IDS)
def test_vector_wrapper_reports_per_copy_and_resets_with_episodes(env_id: str) -> None:
    venv = ShieldedVectorEnv(gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point",
                                          **{**SMALL[env_id], "episode_s": SMALL[env_id]["episode_s"]}))
    venv.reset(seed=0)
    venv.action_space.seed(0)
    steps = int(round(float(SMALL[env_id]["episode_s"]) / venv.adapter.core.cfg.dt_s))  # type: ignore[arg-type]
    for _ in range(steps + 2):
        actions = venv.action_space.sample()
        obs, reward, _, truncated, infos = venv.step(actions)
        assert infos["shield_intervened"].shape == (3,) and infos["cost"].shape == (3,)
        assert reward.shape == (3,)
    if env_id == "powerrl/NodeDVFS-v0":
        masks = venv.action_masks()
        assert masks.shape == (3, 2 * venv.adapter.n_pstates) and masks.any(axis=1).all()


def test_vector_invalid_rows_fall_back_and_valid_rows_pass() -> None:
    venv = ShieldedVectorEnv(gym.make_vec("powerrl/NodeDVFS-v0", num_envs=2, vectorization_mode="vector_entry_point",
                                          episode_s=20.0))
    venv.reset(seed=0)
    venv.step(np.array([[2, 3], [4, 5]]))
    venv.step(np.array([[np.nan, 3], [6, 7]]))
    applied = venv.adapter.core.actions  # type: ignore[attr-defined]
    assert applied.tolist() == [[2, 3], [6, 7]]
    assert venv.counters.units["invalid_action"] == 1 and venv.counters.interventions == 1


def test_thermal_cap_holds_memory_bound_work_under_hot_even_without_prediction() -> None:
    venv = ShieldedVectorEnv(gym.make_vec("powerrl/NodeDVFS-v0", num_envs=4, vectorization_mode="vector_entry_point",
                                          workload_class="memory", inlet_c=50.0, load_scale=2.0, episode_s=300.0),
                             {"predictive": {"horizon_s": 0.0}})
    venv.reset(seed=0)
    top = np.full((4, 2), venv.adapter.n_pstates - 1)
    hottest = 0.0
    for _ in range(1500):
        _, _, _, _, infos = venv.step(top)
        hottest = max(hottest, float(infos["temp_die_c"].max()))
    assert hottest <= 95.0
    assert venv.counters.units["thermal_cap"] > 0


def test_vector_screen_survives_junk_actions() -> None:
    venv = ShieldedVectorEnv(gym.make_vec("powerrl/NodeDVFS-v0", num_envs=2, vectorization_mode="vector_entry_point",
                                          episode_s=20.0))
    venv.reset(seed=0)
    for junk in ([[1, 2], [3]], [["a", "b"], ["c", "d"]], np.zeros((3, 2)), [[1 + 5j, 2], [3, 4]]):
        _, _, _, _, infos = venv.step(junk)
        assert infos["shield_intervened"].all()


def test_cluster_caps_in_force_include_the_thermal_cap() -> None:
    env = shielded("powerrl/ClusterBudget-v0", {"rate_limits": {"cap_frac": 0.1}})
    env.reset(seed=0)
    core = env.unwrapped.core  # type: ignore[attr-defined]
    _heat(env, 94.0, slice(0, 1))  # node 0 near hot: a thermal cap well under its busy power
    core.arrays.inlet_c[:] = 50.0
    env.step(np.ones(8, dtype=np.float32))
    cap0 = float(core.arrays.cap_w[0])
    assert cap0 < core.busy_w[0]
    assert env.shield.caps[0].prev_caps_w[0] == pytest.approx(cap0)
