"""``powerrl/RealNode-v0`` against a fake sysfs tree stepped in-process by the fake kernel."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import powerrl  # noqa: F401  (registers the envs)
from powerrl.envs.real_node import ENV_ID, RealNodeEnv
from powerrl.errors import ConfigError
from powerrl.hw.fake import STATE_DIR, FakeDriver, FakeKernel, make_fake_sysfs
from powerrl.hw.host import HostConfig
from powerrl.hw.safety import DEFAULT_ALLOWLIST, JOURNAL_REL

REPO = Path(__file__).parents[2]
EXAMPLE_HOST = REPO / "configs" / "hosts" / "example.yaml"
POLICY = REPO / "powerrl" / "data" / "policies" / "nodedvfs-v0.onnx"


class SharedKernel:
    """``advance`` for the env: steps the tree's one fake kernel.

    A tree has one kernel, so copies share it: ``EnvSpec.make`` (check_env's close check) deep-copies
    the spec's kwargs, and the kernel's C state cannot be copied anyway.
    """

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.after: Any = None  # optional hook run after each kernel step (sensor faults)

    def __call__(self, dt_s: float) -> None:
        self.kernel.step(dt_s)
        if self.after is not None:
            self.after()

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedKernel:
        return self


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, SharedKernel]:
    d = tmp_path / "n"
    make_fake_sysfs(d, cpus=8, sockets=2)
    return d, SharedKernel(FakeKernel(d, load=0.5))


@pytest.fixture
def make(tree: tuple[Path, SharedKernel]) -> Iterator[Any]:
    """``make(**kwargs)``: RealNode-v0 over the fake tree (closed at teardown)."""
    d, adv = tree
    made: list[gym.Env] = []

    def _make(**kwargs: Any) -> RealNodeEnv:
        env = gym.make(ENV_ID, root=str(d), advance=adv, **kwargs)
        made.append(env)
        return env.unwrapped  # type: ignore[return-value]

    yield _make
    for env in made:
        env.close()


def writable(d: Path) -> dict[str, str]:
    """Text of every attribute powerrl may write (the allowlist) under tree ``d``."""
    out = {}
    for pattern in DEFAULT_ALLOWLIST:
        for p in d.glob(pattern):
            out[str(p.relative_to(d))] = p.read_text(encoding="ascii")
    return out


def max_freq_khz(env: RealNodeEnv) -> np.ndarray:
    return np.array([env.root.read_int(p.attr("scaling_max_freq")) for p in env.layout.policies])


def test_check_env_passes(make: Any) -> None:
    env = make(episode_s=2.0)
    assert env.spec is not None and env.spec.nondeterministic
    check_env(env, skip_render_check=True)


def test_sb3_check_env_passes(make: Any) -> None:
    sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_env_checker.check_env(make(episode_s=2.0), warn=True)


def test_wall_clock_periods_without_advance(tree: tuple[Path, SharedKernel]) -> None:
    d, _ = tree
    env = RealNodeEnv(root=str(d), period_s=0.02)  # nothing steps the fake kernel: a node at rest
    try:
        t0 = time.monotonic()
        env.reset(seed=0)
        _, reward, _, _, info = env.step(np.array([5, 5]))
        assert time.monotonic() - t0 >= 0.04 - 1e-3  # two periods: priming and the step
        assert info["late_s"] == 0.0 and 0.015 <= info["period_s"] < 0.2
        assert np.isfinite(reward)
        assert "domain0.util" in info["stale_sensors"]  # no /proc/stat tick has elapsed
        time.sleep(0.05)  # a slow caller: the env re-primes, the rates still cover one period
        _, _, _, _, info = env.step(np.array([5, 5]))
        # Without re-priming they would cover the caller's 50 ms as well.
        assert info["late_s"] > 0.02 and 0.015 <= info["period_s"] < 0.07
    finally:
        env.close()


def test_make_from_the_example_host_file(make: Any) -> None:
    env = make(host=str(EXAMPLE_HOST))
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert info["stale_sensors"] == []  # two samples: every rate is primed
    assert env.layout.config.root != "/"  # the root keyword overrides the file's root: /


def test_spaces_equal_nodedvfs_defaults(make: Any) -> None:
    env = make()
    sim = gym.make("powerrl/NodeDVFS-v0")
    assert env.action_space == sim.action_space == gym.spaces.MultiDiscrete([11, 11])
    assert env.observation_space == sim.observation_space
    assert env.observation_space.shape == (18,)


def test_step_writes_the_pstate_frequency_to_every_policy_of_each_domain(make: Any,
                                                                          tree: tuple[Path, SharedKernel]) -> None:
    env = make()
    env.reset(seed=0)
    action = np.array([2, 8])
    obs, reward, terminated, truncated, info = env.step(action)
    assert not info["shield"]["intervened"]
    np.testing.assert_array_equal(info["shield"]["applied"], action)
    np.testing.assert_array_equal(info["pstate_applied"], action)
    assert env.node is not None
    want_khz = np.rint(env.node.freqs_for(action) * 1000).astype(int)
    driver = FakeDriver(env.root.fake_info or {})
    got = max_freq_khz(env)
    for i, p in enumerate(env.layout.policies):
        # The driver may resolve a limit to a table entry; this one stores it as written.
        assert got[i] in (want_khz[i], driver.resolve(int(want_khz[i]))), p.id
    by_domain = [{int(got[i]) for i in range(len(got)) if env.layout.policy_domain[i] == d} for d in range(2)]
    assert all(len(s) == 1 for s in by_domain) and by_domain[0] != by_domain[1]
    np.testing.assert_allclose(obs[[3, 11]], action / 10.0)  # the pstate feature shows what was written
    assert info["written"] and info["write_errors"] == []


def test_pstates_on_the_driver_table_are_written_exactly(tree: tuple[Path, SharedKernel]) -> None:
    d, adv = tree
    table = tuple(float(f) for f in range(1000, 2401, 200))  # 8 entries of the fake acpi-cpufreq table
    host = HostConfig(n_pstates=len(table), pstates_mhz=table)
    env = RealNodeEnv(host, root=str(d), advance=adv)
    try:
        env.reset(seed=0)
        env.step(np.array([1, 6]))
        assert set(max_freq_khz(env)[:4]) == {1_200_000} and set(max_freq_khz(env)[4:]) == {2_200_000}
        assert env.action_space == gym.spaces.MultiDiscrete([8, 8])
    finally:
        env.close()


def test_reward_info_and_truncation(make: Any) -> None:
    env = make(episode_s=0.5, period_s=0.1)
    obs, _ = env.reset(seed=0)
    flags = []
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward) and reward < 0.0
        want = -1.0 * info["power_w"] / env.busy_power_w - 2.0 * info["sla_violation_rate"]
        assert reward == pytest.approx(want)
        assert info["power_w"] > 0 and info["energy_j"] == pytest.approx(info["power_w"] * 0.1)
        assert 0.0 < info["temp_die_c"] < 150.0 and info["latency_ms"] > 0
        assert info["cost"] == float(info["shield"]["intervened"])
        assert info["stale_sensors"] == []
        flags.append((terminated, truncated))
    assert flags == [(False, False)] * 4 + [(False, True)]
    env.reset()
    assert env.step(env.action_space.sample())[3] is False  # a new episode counts from zero


def test_apply_false_writes_nothing(make: Any, tree: tuple[Path, SharedKernel]) -> None:
    d, _ = tree
    before = writable(d)
    env = make(apply=False)
    env.reset(seed=0)
    for _ in range(3):
        _, reward, _, _, info = env.step(np.array([0, 0]))
        assert not info["written"] and np.isfinite(reward)
        np.testing.assert_array_equal(info["pstate_applied"], [0, 0])  # what would have been written
    assert writable(d) == before
    assert env.writer is None and not (d / JOURNAL_REL).exists()


def test_close_restores_the_original_limits_and_may_repeat(make: Any, tree: tuple[Path, SharedKernel]) -> None:
    d, _ = tree
    before = writable(d)
    env = make()
    env.reset(seed=0)
    env.step(np.array([0, 1]))
    assert writable(d) != before and (d / JOURNAL_REL).exists()
    env.close()
    env.close()
    assert writable(d) == before and not (d / JOURNAL_REL).exists()
    assert env.restore_failures == []
    env.reset(seed=0)  # reopens
    env.step(np.array([0, 1]))
    env.reset()  # a new episode starts from the node's own settings
    assert writable(d) == before


def test_hot_inlet_makes_the_shield_hold_the_floor(make: Any, tree: tuple[Path, SharedKernel]) -> None:
    d, _ = tree
    before = writable(d)
    env = make(period_s=1.0)
    env.reset(seed=0)
    (d / STATE_DIR / "inlet").write_text("95", encoding="ascii")
    top = np.array([10, 10])
    for _ in range(60):
        obs, reward, _, _, info = env.step(top)
        if "hot" in info["shield"]["events"]:
            break
    else:
        pytest.fail("the die never reached the hot trip with a 95 degC inlet")
    assert info["shield"]["intervened"] and info["cost"] == 1.0
    np.testing.assert_array_equal(info["shield"]["applied"], [0, 0])
    assert info["temp_die_c"] >= 95.0 and np.isfinite(reward)
    floor_khz = round(env.layout.pstates_mhz[0] * 1000)
    obs, _, _, _, info = env.step(top)  # held there while hot
    np.testing.assert_array_equal(info["pstate_applied"], [0, 0])
    assert set(max_freq_khz(env)) == {floor_khz}
    env.close()
    assert writable(d) == before  # P-states and any RAPL limit the thermal cap wrote


def test_failed_sensor_reads_as_its_low_bound_and_is_reported(make: Any, tree: tuple[Path, SharedKernel]) -> None:
    d, adv = tree
    temp = d / "sys/class/thermal/thermal_zone1/temp"  # domain 0's package temperature

    def corrupt() -> None:
        os.chmod(temp, 0o644)
        temp.write_text("garbage\n", encoding="ascii")

    from powerrl.envs.hw_node import SENSOR_HOLD_READS

    env = make()
    env.reset(seed=0)
    adv.after = corrupt
    for _ in range(SENSOR_HOLD_READS):  # a few failed reads keep the last good value, reported as failed
        obs, reward, _, _, info = env.step(np.array([10, 10]))
        assert obs[4] > 0.0 and "domain0.temp_c" in info["stale_sensors"]
        assert "domain0.temp_die_c" not in info["stale_sensors"]
    obs, reward, _, _, info = env.step(np.array([10, 10]))
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    assert obs[4] == 0.0 and obs[12] > 0.0
    assert "domain0.temp_die_c" in info["stale_sensors"]
    _, _, _, _, info = env.step(np.array([10, 10]))
    assert info["shield"]["applied"][0] == 0  # an unreadable temperature reads as hot


def test_shipped_policy_drives_the_node(make: Any) -> None:
    pytest.importorskip("onnxruntime")
    from powerrl.eval.policy_file import PolicyFileController

    env = make()
    ctrl = PolicyFileController(POLICY, env.action_space, env.observation_space)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = ctrl.act(obs)
        assert env.action_space.contains(np.asarray(action, dtype=np.int64))
        obs, reward, _, _, info = env.step(action)
        assert np.isfinite(reward) and env.observation_space.contains(obs)
        assert info["written"]


def test_bad_arguments_name_the_key(tree: tuple[Path, SharedKernel]) -> None:
    d, adv = tree
    with pytest.raises(ConfigError, match="period_s"):
        RealNodeEnv(root=str(d), advance=adv, period_s=0.0)
    with pytest.raises(ConfigError, match="episode_s"):
        RealNodeEnv(root=str(d), advance=adv, period_s=1.0, episode_s=0.5)
    with pytest.raises(ConfigError, match="host"):
        RealNodeEnv(str(d / "missing.yaml"), root=str(d))
    with pytest.raises(gym.error.ResetNeeded):
        RealNodeEnv(root=str(d), advance=adv).step(np.array([0, 0]))
