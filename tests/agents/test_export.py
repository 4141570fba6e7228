"""ONNX export of SB3 policies: parity with predict, the consumer contract, run folders, the CLI."""

import argparse
import json
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sb3_contrib import MaskablePPO  # noqa: E402
from stable_baselines3 import DQN, PPO, SAC  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

from powerrl.agents import export  # noqa: E402
from powerrl.envs.cluster_budget import ClusterBudgetEnv  # noqa: E402
from powerrl.envs.node_dvfs import NodeDVFSEnv  # noqa: E402
from powerrl.envs.shielded import ShieldedEnv  # noqa: E402
from powerrl.errors import ConfigError  # noqa: E402
from powerrl.eval.policy_file import PolicyFileController  # noqa: E402

torch.set_num_threads(1)
NET = {"net_arch": [16, 16]}  # copied per model: SB3 adds keys (use_sde) to the dict it is given
NODE_ID = "powerrl/NodeDVFS-v0"
CLUSTER_ID = "powerrl/ClusterBudget-v0"


class JointDiscrete(gym.ActionWrapper):
    """MultiDiscrete(nvec) env seen as Discrete(prod(nvec)) (joint index, C order), for DQN."""

    def __init__(self, env):
        super().__init__(env)
        self.nvec = tuple(int(n) for n in env.action_space.nvec)
        self.action_space = spaces.Discrete(int(np.prod(self.nvec)))

    def action(self, action):
        return np.array(np.unravel_index(int(action), self.nvec), dtype=np.int64)


def _node():
    return ShieldedEnv(NodeDVFSEnv(episode_s=20.0))


def _cluster():
    return ShieldedEnv(ClusterBudgetEnv(n_nodes=4, nodes_per_rack=2, episode_s=60.0))


def _train(algo):
    """A tiny model with non-trivial VecNormalize statistics: (model, venv, env_id, env action space)."""
    if algo == "ppo_md":
        venv = VecNormalize(DummyVecEnv([_node]))
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=dict(NET), seed=0,
                    device="cpu")
        env_id = NODE_ID
    elif algo == "ppo_box":
        venv = VecNormalize(DummyVecEnv([_cluster]))
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=dict(NET), seed=0,
                    device="cpu")
        env_id = CLUSTER_ID
    elif algo == "sac":
        venv = VecNormalize(DummyVecEnv([_cluster]))
        model = SAC("MlpPolicy", venv, learning_starts=64, batch_size=32, policy_kwargs=dict(NET), seed=0, device="cpu")
        env_id = CLUSTER_ID
    elif algo == "maskable_ppo":
        venv = VecNormalize(DummyVecEnv([_node]))
        model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=dict(NET), seed=0,
                            device="cpu")
        env_id = NODE_ID
    else:
        venv = VecNormalize(DummyVecEnv([lambda: JointDiscrete(_node())]))
        model = DQN("MlpPolicy", venv, learning_starts=64, batch_size=32, buffer_size=1000, train_freq=4,
                    policy_kwargs=dict(NET), seed=0, device="cpu")
        env_id = NODE_ID
    model.learn(128)
    env_space = venv.envs[0].unwrapped.action_space if algo == "dqn" else venv.action_space
    return model, venv, env_id, env_space


ALGO_CASES = ["ppo_md", "ppo_box", "sac", "maskable_ppo", "dqn"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each tiny model trained and exported once for the module."""
    out = {}
    folder = tmp_path_factory.mktemp("exported")

    def get(algo):
        if algo not in out:
            model, venv, env_id, env_space = _train(algo)
            path = export.export_policy(model, folder / algo / "policy.onnx", env_id=env_id,
                                        observation_space=venv.observation_space, action_space=env_space,
                                        obs_rms=venv.obs_rms, clip_obs=venv.clip_obs, epsilon=venv.epsilon,
                                        metadata={"seed": 0, "run": "test"})
            out[algo] = (model, venv, env_space, path)
        return out[algo]

    return get


@pytest.mark.parametrize("algo", ALGO_CASES)
def test_parity_and_consumer(exported, algo):
    model, venv, env_space, path = exported(algo)
    assert not np.allclose(venv.obs_rms.var, 1.0)  # the normaliser learned something: it is really in the graph
    diff = export.check_parity(model, path, venv.obs_rms, venv.clip_obs, venv.epsilon, n=1000, seed=0)
    discrete = not isinstance(env_space, spaces.Box)
    assert diff == 0.0 if discrete else diff <= 1e-5
    assert export.parity_ok(diff, discrete)

    obs = export.sample_observations(venv.observation_space, 257, seed=1)
    ref = export.reference_actions(model, obs, venv.obs_rms, venv.clip_obs, venv.epsilon, env_space)
    ctrl = PolicyFileController(path, env_space, venv.observation_space)
    got = ctrl.act_batch(obs)
    assert got.shape == (257, *env_space.shape)
    if discrete:
        np.testing.assert_array_equal(got, ref.astype(np.int64))
        assert len(np.unique(got.reshape(len(got), -1), axis=0)) > 1  # not a constant policy: decoding is tested
    else:
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)

    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["observation_dim"] == venv.observation_space.shape[0]
    assert meta["algo"] == {"ppo_md": "ppo", "ppo_box": "ppo"}.get(algo, algo)
    assert meta["env_version"] == 0 and meta["seed"] == 0 and meta["run"] == "test"
    assert meta["input_name"] == "obs" and meta["output_name"] == "action" and meta["onnx_opset"] == 17
    assert meta["normalisation"]["clip_obs"] == venv.clip_obs
    np.testing.assert_allclose(meta["normalisation"]["mean"], venv.obs_rms.mean)
    if discrete:
        assert meta["action"] == {"type": "multidiscrete", "nvec": [int(n) for n in env_space.nvec]}
    else:
        assert meta["action"]["type"] == "box" and meta["action"]["low"] == [-1.0] * 4


def test_graph_batch_axis_and_normalisation_clip(exported):
    model, venv, env_space, path = exported("ppo_md")
    import onnx

    proto = onnx.load(str(path))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value  # dynamic batch
    # Far outside the bounds: normalised inputs saturate at clip_obs, exactly as VecNormalize does.
    obs = np.full((3, venv.observation_space.shape[0]), 1e6, dtype=np.float32)
    obs[1] = -1e6
    ref = export.reference_actions(model, obs, venv.obs_rms, venv.clip_obs, venv.epsilon, env_space)
    np.testing.assert_array_equal(export.onnx_actions(path, obs), ref)
    assert export.onnx_actions(path, obs[:1]).shape == (1, 2)


def test_no_normalisation(tmp_path, exported):
    model, venv, env_space, _ = exported("ppo_box")
    path = export.export_policy(model, tmp_path / "raw.onnx", env_id=CLUSTER_ID,
                                observation_space=venv.observation_space, action_space=env_space)
    assert json.loads(path.with_suffix(".json").read_text())["normalisation"] is None
    assert export.check_parity(model, path, None, 10.0, 1e-8, n=200) <= 1e-5


def test_inference_without_torch(exported):
    _, venv, env_space, path = exported("ppo_md")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # `import torch` raises ImportError from here on
        import numpy as np
        from gymnasium import spaces
        from powerrl.eval.policy_file import PolicyFileController
        obs_space = spaces.Box(np.array({venv.observation_space.low.tolist()}, dtype=np.float32),
                               np.array({venv.observation_space.high.tolist()}, dtype=np.float32))
        ctrl = PolicyFileController(__import__("pathlib").Path({str(path)!r}),
                                    spaces.MultiDiscrete({env_space.nvec.tolist()}), obs_space)
        obs = np.random.default_rng(0).uniform(obs_space.low, obs_space.high, (5, 18)).astype(np.float32)
        print(ctrl.act_batch(obs).tolist())
        loaded = [m for m, mod in sys.modules.items() if (m == "torch" or m.startswith("torch.")) and mod is not None]
        assert not loaded, loaded
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = np.array(json.loads(res.stdout.strip().splitlines()[-1]))
    obs = np.random.default_rng(0).uniform(venv.observation_space.low, venv.observation_space.high,
                                           (5, 18)).astype(np.float32)
    np.testing.assert_array_equal(got, PolicyFileController(path, env_space, venv.observation_space).act_batch(obs))


# ---------------------------------------------------------------------------------------------- run folders


def _save(model, venv, folder, model_name="model", vn_name="vecnormalize"):
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"{model_name}.zip")
    venv.save(str(folder / f"{vn_name}.pkl"))


@pytest.fixture(scope="module")
def run_dir(exported, tmp_path_factory):
    """A hand-made run folder (final model + one checkpoint, no best/) of the PPO MultiDiscrete model."""
    model, venv, _, _ = exported("ppo_md")
    d = tmp_path_factory.mktemp("run")
    _save(model, venv, d)
    _save(model, venv, d / "checkpoints", "model_128_steps", "vecnormalize_128_steps")
    (d / "run.yaml").write_text(yaml.safe_dump({
        "env_id": NODE_ID, "algo": "ppo", "env_config": {"episode_s": 20.0}, "shield": "default",
        "command": "powerrl train --env powerrl/NodeDVFS-v0", "git_revision": "abc123", "seed": 0,
        "total_timesteps": 128}))
    return d


def test_export_run_best_falls_back_to_final(run_dir, tmp_path, capsys):
    out = export.export_run(run_dir, tmp_path / "deep" / "pol.onnx")
    assert "no best model" in capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["checkpoint"] == "model.zip" and meta["training_command"].startswith("powerrl train")
    assert meta["git_revision"] == "abc123" and meta["total_timesteps"] == 128 and meta["shield"] == "default"
    assert meta["env_config"] == {"episode_s": 20.0} and meta["algo"] == "ppo"
    run = export.load_run(run_dir, "final")
    assert run.obs_rms is not None and run.clip_obs == 10.0
    assert export.check_parity(run.model, out, run.obs_rms, run.clip_obs, run.epsilon, n=300) == 0.0
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_export_run_best_and_checkpoint(run_dir, exported, tmp_path, capsys):
    model, venv, _, _ = exported("ppo_md")
    _save(model, venv, run_dir / "best")
    try:
        out = export.export_run(run_dir, tmp_path / "best.onnx", "best")
        assert "no best" not in capsys.readouterr().err
        assert json.loads(out.with_suffix(".json").read_text())["checkpoint"] == "best/model.zip"
    finally:
        for f in (run_dir / "best").iterdir():
            f.unlink()
        (run_dir / "best").rmdir()
    out = export.export_run(run_dir, tmp_path / "ck.onnx", "checkpoints/model_128_steps.zip")  # relative to run
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["checkpoint"] == "checkpoints/model_128_steps.zip" and meta["normalisation"] is not None


def test_export_run_dqn_joint_action(exported, tmp_path):
    model, venv, env_space, _ = exported("dqn")
    _save(model, venv, tmp_path / "run")
    cfg = {"env_id": NODE_ID, "algo": "dqn", "env_config": {}, "shield": "default", "command": "x",
           "git_revision": None, "seed": 0, "total_timesteps": 128, "action_nvec": env_space.nvec.tolist()}
    (tmp_path / "run" / "run.yaml").write_text(yaml.safe_dump(cfg))
    run = export.load_run(tmp_path / "run", "final")
    assert run.action_space == env_space
    out = export.export_loaded(run, tmp_path / "dqn.onnx")
    assert export.check_parity(run.model, out, run.obs_rms, run.clip_obs, run.epsilon, n=300) == 0.0
    cfg["action_nvec"] = [3, 3]
    (tmp_path / "run" / "run.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="action_nvec"):
        export.load_run(tmp_path / "run", "final")


def test_norm_obs_false_means_no_normalisation(exported, tmp_path):
    model, venv, _, _ = exported("ppo_box")
    d = tmp_path / "run"
    venv.norm_obs = False
    try:
        _save(model, venv, d)
    finally:
        venv.norm_obs = True
    (d / "run.yaml").write_text(yaml.safe_dump({"env_id": CLUSTER_ID, "algo": "ppo"}))
    assert export.load_run(d, "final").obs_rms is None


@pytest.mark.parametrize("case, match", [
    ("missing_dir", "does not exist"),
    ("no_yaml", "no run.yaml"),
    ("bad_yaml", "valid YAML"),
    ("unknown_algo", "one of ppo, maskable_ppo, sac, dqn"),
    ("no_model", "missing"),
    ("corrupt_model", "loading failed"),
    ("wrong_algo", "algo 'sac' right"),
    ("corrupt_vecnormalize", "VecNormalize saved by powerrl train"),
    ("bad_checkpoint", "best, final, or the path"),
])
def test_export_run_errors(run_dir, tmp_path, case, match):
    d = tmp_path / "run"
    d.mkdir()
    cfg = {"env_id": NODE_ID, "algo": "ppo"}
    checkpoint = "final"
    if case == "missing_dir":
        d = tmp_path / "nope"
    elif case == "no_yaml":
        pass
    elif case == "bad_yaml":
        (d / "run.yaml").write_text("env_id: [unclosed\n")
    else:
        if case == "unknown_algo":
            cfg["algo"] = "a2c"
        if case == "wrong_algo":
            cfg["algo"] = "sac"
        (d / "run.yaml").write_text(yaml.safe_dump(cfg))
        if case == "corrupt_model":
            (d / "model.zip").write_bytes(b"not a zip")
        elif case != "no_model":
            (d / "model.zip").write_bytes((run_dir / "model.zip").read_bytes())
        if case == "corrupt_vecnormalize":
            (d / "vecnormalize.pkl").write_bytes(b"garbage")
        if case == "bad_checkpoint":
            checkpoint = "latest"
    with pytest.raises(ConfigError, match=match) as info:
        export.export_run(d, tmp_path / "out.onnx", checkpoint)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "out.onnx").exists()


def test_cli(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="powerrl")
    export.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli" / "p.onnx"
    args = parser.parse_args(["export", str(run_dir), "--out", str(out), "--checkpoint", "final", "--opset", "17"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "max |diff| = 0" in text
    assert out.is_file() and out.with_suffix(".json").is_file()
    for argv, match in ([["--out", str(tmp_path / "p.txt")], r"\.onnx"], [["--opset", "21"], "from 9 to 20"]):
        args = parser.parse_args(["export", str(run_dir), "--checkpoint", "final", *argv])
        with pytest.raises(ConfigError, match=match):
            args.func(args)


def test_wrong_action_space_is_refused(exported, tmp_path):
    model, venv, _, _ = exported("ppo_md")
    with pytest.raises(ConfigError, match="another env configuration"):
        export.export_policy(model, tmp_path / "x.onnx", env_id=NODE_ID, observation_space=venv.observation_space,
                             action_space=spaces.MultiDiscrete([5, 5]))
    assert not list(tmp_path.iterdir())


def test_cli_refuses_a_parity_mismatch(run_dir, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser(prog="powerrl")
    export.register(parser.add_subparsers(dest="command"))
    monkeypatch.setattr(export, "parity_report", lambda *a, **k: (1.0, 0))
    args = parser.parse_args(["export", str(run_dir), "--out", str(tmp_path / "p.onnx"), "--checkpoint", "final"])
    with pytest.raises(export.ParityError, match="differs from the SB3 model"):
        args.func(args)
    assert not list(tmp_path.glob("*p.*")), "a policy that failed the check must not be left on disk"


def test_action_head_inside_the_graph(exported, tmp_path):
    from powerrl.agents.heads import make_head

    model, venv, env_space, _ = exported("ppo_box")
    senv = _cluster()
    head = make_head("budget_allocation", senv.unwrapped.core, senv.shield_config)
    path = export.export_policy(model, tmp_path / "head.onnx", env_id=CLUSTER_ID,
                                observation_space=venv.observation_space, action_space=env_space,
                                obs_rms=venv.obs_rms, clip_obs=venv.clip_obs, epsilon=venv.epsilon, action_head=head)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["action_head"]["name"] == "budget_allocation"
    assert export.check_parity(model, path, venv.obs_rms, venv.clip_obs, venv.epsilon, n=1000) <= 1e-5
    obs = export.sample_observations(venv.observation_space, 64, seed=2)
    got = PolicyFileController(path, env_space, venv.observation_space).act_batch(obs)
    plain = export.reference_actions(model, obs, venv.obs_rms, venv.clip_obs, venv.epsilon)
    np.testing.assert_allclose(got, head(obs, plain), atol=1e-5, rtol=0)
    assert np.abs(got - plain).max() > 1e-3  # the head really changed the actions

    d = tmp_path / "run"
    _save(model, venv, d)
    (d / "run.yaml").write_text(yaml.safe_dump({"env_id": CLUSTER_ID, "algo": "ppo", "action_head": "budget_allocation",
                                                "action_head_params": head.params}))
    out = export.export_run(d, tmp_path / "run.onnx", "final")
    assert json.loads(out.with_suffix(".json").read_text())["action_head"]["params"] == head.params
    (d / "run.yaml").write_text(yaml.safe_dump({"env_id": CLUSTER_ID, "algo": "ppo",
                                                "action_head": "budget_allocation"}))
    with pytest.raises(ConfigError, match="action_head_params"):
        export.load_run(d, "final")


def test_numerical_ties_are_not_mismatches(tmp_path):
    # Logits 0 and 1e-8: the graph's argmax picks the larger; SB3 takes the argmax of softmax probabilities,
    # which round to equal values, so it picks the first. Both are right; a real mismatch still counts.
    env = DummyVecEnv([_node])
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, policy_kwargs=dict(NET), seed=0, device="cpu")
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
        model.policy.action_net.bias[2] = 1e-8  # dimension 0: P-states 0 and 2 tie
        model.policy.action_net.bias[11 + 4] = 1.0  # dimension 1: P-state 4, no tie
    path = export.export_policy(model, tmp_path / "tie.onnx", env_id=NODE_ID, observation_space=env.observation_space,
                                action_space=env.action_space)
    obs = export.sample_observations(env.observation_space, 50)
    np.testing.assert_array_equal(export.onnx_actions(path, obs), [[2, 4]] * 50)
    np.testing.assert_array_equal(export.reference_actions(model, obs, None, 10.0, 1e-8), [[0, 4]] * 50)
    assert export.parity_report(model, path, None, 10.0, 1e-8, n=50) == (0.0, 50)
    with torch.no_grad():
        model.policy.action_net.bias[11 + 5] = 2.0  # SB3 now says 5, the exported graph still 4
    assert export.parity_report(model, path, None, 10.0, 1e-8, n=50) == (1.0, 50)
