import json

import numpy as np
import pytest

from powerrl.errors import ConfigError
from powerrl.eval.policy_file import PolicyFileController
from powerrl.eval.runner import ControllerSpec, run_group
from powerrl.eval.scenario import load_scenario

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter


class _Fixed(torch.nn.Module):
    """Observation -> P-states: domain i gets P-state round(10 * util_i) (a simple, checkable policy)."""

    def forward(self, obs):
        util = torch.stack([obs[:, 0], obs[:, 8]], dim=1)
        return torch.round(util * 10.0)


def _export(tmp_path, env_id="powerrl/NodeDVFS-v0", obs_dim=18, name="pol"):
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(_Fixed(), (torch.zeros(1, obs_dim),), str(path), input_names=["obs"], output_names=["action"],
                      dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, dynamo=False)
    path.with_suffix(".json").write_text(json.dumps({"env_id": env_id, "observation_dim": obs_dim,
                                                     "action": {"type": "multidiscrete"}}))
    return path


def test_policy_file_runs_in_the_harness(tmp_path, scenario_file):
    path = _export(tmp_path)
    sc = load_scenario(scenario_file("env: powerrl/NodeDVFS-v0\ndays: [22]\nstart_h: 10\nduration_h: 0.005\n"))
    spec = ControllerSpec(str(path), label="pol", kind="policy")
    assert spec.drives("powerrl/NodeDVFS-v0") and not spec.drives("powerrl/Datacenter-v0")
    out = run_group(sc, 0, [spec])["pol"]["days"][0]
    assert out["work_done"] > 0


def test_policy_file_actions_and_mismatches(tmp_path):
    import gymnasium as gym

    import powerrl  # noqa: F401
    from powerrl.envs.target import control_target

    env = gym.make("powerrl/NodeDVFS-v0")
    path = _export(tmp_path)
    ctrl = PolicyFileController(path, env.action_space, env.observation_space, target=control_target(env))
    obs = np.zeros((3, 18), dtype=np.float32)
    obs[:, 0] = [0.0, 0.5, 1.0]
    obs[:, 8] = [0.31, 0.2, 2.0]
    np.testing.assert_array_equal(ctrl.act_batch(obs), [[0, 3], [5, 2], [10, 10]])  # clipped into the space
    wrong = _export(tmp_path, obs_dim=18, env_id="powerrl/Datacenter-v0", name="dc")
    with pytest.raises(ConfigError, match="Datacenter"):
        PolicyFileController(wrong, env.action_space, env.observation_space, target=control_target(env))


def test_non_finite_discrete_output_is_not_clipped_into_a_valid_action(tmp_path):
    """A NaN from a broken graph must reach the watchdog as invalid, not become P-state 0."""
    import gymnasium as gym

    import powerrl  # noqa: F401
    from powerrl.shield.watchdog import action_is_valid

    env = gym.make("powerrl/NodeDVFS-v0")
    ctrl = PolicyFileController(_export(tmp_path), env.action_space, env.observation_space)

    class NaNSession:
        def run(self, outputs, feeds):
            return [np.full((len(next(iter(feeds.values()))), 2), np.nan, dtype=np.float32)]

    ctrl.session = NaNSession()
    out = ctrl.act_batch(np.zeros((2, 18), dtype=np.float32))
    assert np.isnan(out).all() and out.shape == (2, 2)
    assert not action_is_valid(out[0], env.action_space)
