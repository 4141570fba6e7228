"""Every registered powerrl/* env passes Gymnasium's and SB3's checkers and is deterministic per seed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import powerrl  # noqa: F401  (registers the envs)
from powerrl.envs import ENV_IDS, HW_ENV_IDS

# Small, fast variants: the checkers only need the API, not a full-size datacenter.
SMALL = {
    "powerrl/NodeDVFS-v0": {"episode_s": 20.0},
    "powerrl/ClusterBudget-v0": {"n_nodes": 8, "nodes_per_rack": 4, "episode_s": 60.0},
    "powerrl/Datacenter-v0": {"n_racks": 2, "nodes_per_rack": 4, "episode_s": 7200.0},
}


def registered_ids() -> list[str]:
    # Hardware envs would bind this machine's /sys when made without arguments (and write to it);
    # tests/envs/test_real_node_env.py checks them against a fake tree.
    return sorted(i for i in gym.registry if i.startswith("powerrl/") and i not in HW_ENV_IDS)


def test_every_env_id_is_registered() -> None:
    assert set(ENV_IDS) <= set(registered_ids())
    assert set(HW_ENV_IDS) <= set(gym.registry)


@pytest.mark.parametrize("env_id", registered_ids())
def test_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id, **SMALL.get(env_id, {}))
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", registered_ids())
def test_sb3_check_env(env_id: str) -> None:
    sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(env_id, **SMALL.get(env_id, {}))
    sb3_env_checker.check_env(env.unwrapped, warn=True)


def rollout(env_id: str, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make(env_id, **SMALL.get(env_id, {}))
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("env_id", registered_ids())
def test_seeded_rollouts_are_deterministic(env_id: str) -> None:
    obs_a, rew_a = rollout(env_id, 123, 60)
    obs_b, rew_b = rollout(env_id, 123, 60)
    obs_c, _ = rollout(env_id, 124, 60)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a, obs_c), "different seeds must give different rollouts"
    assert np.all(np.isfinite(rew_a))


@pytest.mark.parametrize("env_id", registered_ids())
def test_vector_version_steps_all_copies_and_autoresets(env_id: str) -> None:
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **SMALL.get(env_id, {}))
    obs, _ = venv.reset(seed=5)
    assert obs.shape == (3, *venv.single_observation_space.shape)
    venv.action_space.seed(5)
    saw_reset = False
    for _ in range(400):
        obs, reward, terminated, truncated, infos = venv.step(venv.action_space.sample())
        assert obs.shape[0] == 3 and reward.shape == (3,)
        assert venv.single_observation_space.contains(obs[0])
        if truncated.any():
            assert infos["_final_obs"].tolist() == truncated.tolist()
            saw_reset = True
            break
    assert saw_reset


@pytest.mark.parametrize("env_id", registered_ids())
def test_vector_copy_matches_single_env_statistics(env_id: str) -> None:
    """The batched core and the single env are the same model: identical seeds give identical copy 0."""
    single = gym.make(env_id, **SMALL.get(env_id, {})).unwrapped
    venv = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point", **SMALL.get(env_id, {}))
    o1, _ = single.reset(seed=9)
    o2, _ = venv.reset(seed=9)
    np.testing.assert_array_equal(o1, o2[0])
    action = single.action_space.sample()
    for _ in range(5):
        o1, r1, *_ = single.step(action)
        o2, r2, *_ = venv.step(np.asarray(action)[None])
        np.testing.assert_allclose(o1, o2[0], rtol=1e-6)
        assert r1 == pytest.approx(float(r2[0]))


def test_gym_make_with_module_prefix_in_a_fresh_process() -> None:
    import subprocess
    import sys

    code = ("import gymnasium as gym; e = gym.make('powerrl:powerrl/NodeDVFS-v0'); "
            "o, _ = e.reset(seed=0); print(e.spec.id, o.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "powerrl/NodeDVFS-v0" in out.stdout
