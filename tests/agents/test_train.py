"""powerrl train: experiment configs, the batched SB3 VecEnv, the allocation head and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from powerrl.agents.config import load_experiment, schedule
from powerrl.agents.heads import BudgetAllocationHead, make_head
from powerrl.agents.vec_env import PowerrlVecEnv
from powerrl.cli import main
from powerrl.envs.config import make_config
from powerrl.errors import ConfigError
from powerrl.shield.config import resolve_shield_config

torch.set_num_threads(1)

TINY = {
    "kind": "experiment",
    "env": "powerrl/NodeDVFS-v0",
    "env_config": {"episode_s": 3.0},
    "algo": "ppo",
    "hyperparams": "ppo",
    "overrides": {"n_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]}},
    "total_timesteps": 256,
    "eval": {"scenario": "nodedvfs-day22", "days": [20], "start_h": 10.0, "duration_h": 0.005, "every_steps": 128},
    "checkpoint_every_steps": 128,
}


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


# -- configs ---------------------------------------------------------------------------------------
def test_shipped_experiments_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs" / "experiments"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    assert {"nodedvfs-ppo", "clusterbudget-ppo", "datacenter-ppo"} <= set(names)
    for name in names:
        exp = load_experiment(name)
        assert exp.total_timesteps > 0 and exp.n_envs >= 1
        assert exp.eval is None or not set(exp.eval.days) & set(range(22, 29)), "never select on held-out days"


def test_zoo_blocks_merge_env_over_default(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, TINY))
    assert exp.n_envs == 4 and exp.hyperparams["n_steps"] == 32
    assert exp.hyperparams["gae_lambda"] == 0.95  # from the default block
    assert exp.hyperparams["ent_coef"] == 0.001  # from the NodeDVFS block
    assert exp.total_timesteps == 256 and exp.seed == 0
    assert load_experiment(write(tmp_path, TINY), total_timesteps=10, seed=3).total_timesteps == 10


def test_numeric_strings_are_read_as_numbers(tmp_path: Path) -> None:
    # PyYAML reads 1e-3 (no dot) as a string; SB3 would only fail on it after the first rollout.
    exp = load_experiment(write(tmp_path, {**TINY, "overrides": {**TINY["overrides"], "ent_coef": "1e-3"}}))
    from powerrl.agents.config import algo_kwargs

    assert algo_kwargs("ppo", exp.hyperparams, None)["ent_coef"] == 1e-3


def test_misspelled_env_block_in_hyperparameters_is_refused(tmp_path: Path) -> None:
    hp = tmp_path / "hp.yaml"
    hp.write_text("default: {n_envs: 2}\npowerrl/NodeDvfs-v0: {n_steps: 8}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="NodeDvfs"):
        load_experiment(write(tmp_path, {**TINY, "hyperparams": str(hp)}))


def test_reward_normaliser_discounts_with_the_algorithms_gamma(tmp_path: Path) -> None:
    hp = tmp_path / "hp.yaml"
    hp.write_text("default: {n_envs: 2, gamma: 0.9, normalize: {norm_obs: true, norm_reward: true}}\n",
                  encoding="utf-8")
    exp = load_experiment(write(tmp_path, {**TINY, "hyperparams": str(hp), "overrides": {}}))
    assert exp.normalize["gamma"] == 0.9


def test_schedules_are_explicit() -> None:
    lin = schedule({"schedule": "linear", "start": 1.0, "end": 0.0}, "lr", None)
    assert lin(1.0) == 1.0 and lin(0.5) == 0.5 and lin(0.0) == 0.0
    assert schedule({"schedule": "constant", "value": 0.2}, "lr", None)(0.3) == 0.2
    assert schedule(3e-4, "lr", None) == 3e-4
    with pytest.raises(ConfigError, match="schedule"):
        schedule("lin_3e-4", "learning_rate", None)  # zoo's string form would need eval: refused


@pytest.mark.parametrize(("change", "match"), [
    ({"algo": "a2c"}, "algo"),
    ({"env": "powerrl/Nope-v0"}, "env"),
    ({"overrides": {"n_step": 32}}, "n_step"),
    ({"overrides": {"policy_kwargs": {"activation_fn": "swish"}}}, "activation_fn"),
    ({"eval": {"scenario": "nodedvfs-day22", "days": [22]}}, "held-out"),
    ({"eval": {"scenario": "clusterbudget-day22"}}, "eval.scenario"),
    ({"eval": {"scenario": "nodedvfs-day22", "select": "deferred_left"}}, "eval.select"),
    ({"total_timesteps": -5}, "total_timesteps"),
    ({"env_config": {"n_domains": 0}}, "n_domains"),
    ({"action_head": "budget_allocation"}, "action_head"),
    ({"learning_rate": 1e-3}, "learning_rate"),
    ({"algo": "sac", "hyperparams": "sac"}, "algo"),
    ({"env": ["powerrl/NodeDVFS-v0"]}, "env"),
    ({"overrides": {"policy": "NodeSharedPolicy"}}, "policy"),
    ({"overrides": {"policy": "MlpPolcy"}}, "policy"),
    ({"overrides": {"ent_coef": "lots"}}, "ent_coef"),
    ({"eval": {"scenario": "nodedvfs-day22", "days": [22], "allow_heldout": "false"}}, "allow_heldout"),
    ({"eval": {"scenario": "nodedvfs-day22", "days": [20, 20]}}, "eval"),
    ({"eval": {"scenario": "nodedvfs-day22", "select": ["reward"]}}, "eval.select"),
    ({"initial_action": [1, 1]}, "initial_action"),  # NodeDVFS actions are discrete
    ({"eval": {"scenario": "nodedvfs-day22", "max_shield_rate": 2}}, "max_shield_rate"),
    ({"action_head": "cooling_deferral"}, "action_head"),  # a Datacenter-v0 head
])
def test_bad_experiments_name_the_key(tmp_path: Path, change: dict, match: str) -> None:
    data = {**TINY, **change}
    with pytest.raises(ConfigError, match=match) as info:
        load_experiment(write(tmp_path, data))
    assert "exp.yaml" in str(info.value) or "ppo.yaml" in str(info.value)


def test_checkpoint_selection_follows_the_metric_direction() -> None:
    from powerrl.agents.train import selection_score

    assert selection_score({"priority_weighted_work": 5.0}, "priority_weighted_work") == 5.0
    assert selection_score({"carbon_kg": 5.0}, "carbon_kg") == -5.0  # lower is better
    assert selection_score({"carbon_kg": float("nan")}, "carbon_kg") == float("-inf")
    assert selection_score({}, "reward") == float("-inf")
    # A checkpoint that leans on the shield is never the best when a limit is set.
    m = {"reward": -0.5, "shield_intervention_rate": 0.02}
    assert selection_score(m, "reward") == -0.5
    assert selection_score(m, "reward", max_shield_rate=0.01) == float("-inf")
    assert selection_score({**m, "shield_intervention_rate": 0.0}, "reward", max_shield_rate=0.0) == -0.5


def test_unknown_experiment_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="nodedvfs-ppo"):
        load_experiment("no-such-experiment")


# -- the VecEnv adapter ------------------------------------------------------------------------------
def test_vec_env_autoreset_and_episode_info() -> None:
    cfg = make_config("powerrl/NodeDVFS-v0", {"episode_s": 1.0, "dt_s": 0.2})  # 5 steps
    env = PowerrlVecEnv("powerrl/NodeDVFS-v0", 3, cfg, "default", seed=1)
    obs = env.reset()
    assert obs.shape == (3, env.observation_space.shape[0])
    top = np.full((3, 2), 10)
    for _ in range(4):
        obs, rew, done, infos = env.step(top)
        assert not done.any() and infos == [{}, {}, {}]
    obs, rew, done, infos = env.step(top)
    assert done.all() and rew.dtype == np.float32
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == obs.shape[1:]
        assert info["episode"]["l"] == 5
    stats = env.pop_stats()
    assert stats["shield/intervention_rate"] == 0.0 and stats["env/power_w"] > 0.0
    assert env.pop_stats() == {}


def test_vec_env_same_seed_same_episodes() -> None:
    cfg = make_config("powerrl/NodeDVFS-v0", {"episode_s": 1.0})
    runs = []
    for _ in range(2):
        env = PowerrlVecEnv("powerrl/NodeDVFS-v0", 2, cfg, "default", seed=7)
        out = [env.reset()]
        for _ in range(15):
            out.append(env.step(np.zeros((2, 2), dtype=np.int64))[0])
        runs.append(np.stack(out))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_joint_discrete_decodes_c_order_and_masks_are_per_copy() -> None:
    cfg = make_config("powerrl/NodeDVFS-v0", {"episode_s": 1.0})
    env = PowerrlVecEnv("powerrl/NodeDVFS-v0", 2, cfg, "default", seed=0, joint_discrete=True)
    n = int(env.env_action_space.nvec[0])
    assert env.action_space == spaces.Discrete(n * n)
    np.testing.assert_array_equal(env.decode(np.array([0, n * 3 + 2])), [[0, 0], [3, 2]])
    env.reset()
    masks = env.env_method("action_masks")
    assert len(masks) == 2 and masks[0].shape == (2 * n,) and masks[0].dtype == bool
    assert env.has_attr("action_masks")
    cb = PowerrlVecEnv("powerrl/ClusterBudget-v0", 1, make_config("powerrl/ClusterBudget-v0", {}), "default")
    assert not cb.has_attr("action_masks")


# -- the allocation head -----------------------------------------------------------------------------
def _cluster(n_envs: int = 4) -> PowerrlVecEnv:
    cfg = make_config("powerrl/ClusterBudget-v0", {"episode_s": 60.0})
    return PowerrlVecEnv("powerrl/ClusterBudget-v0", n_envs, cfg, "default", seed=0, action_head="budget_allocation")


def test_head_caps_respect_bases_maxima_pdus_and_budget() -> None:
    env = _cluster()
    head = env.head
    assert isinstance(head, BudgetAllocationHead)
    rng = np.random.default_rng(0)
    obs = env.reset()
    core = env.core
    b = resolve_shield_config("default").budget
    base_w = core.idle_w + np.asarray(b.base_frac)[core.priority] * (core.busy_w - core.idle_w)
    for _ in range(40):
        z = np.clip(rng.normal(0.3, 1.0, (4, core.n)), -2, 2)
        a = head(obs, z)
        caps = core.idle_w + 0.5 * (a.astype(np.float64) + 1.0) * (core.busy_w - core.idle_w)
        assert (caps >= base_w).all() and (caps <= core.busy_w).all()
        budget = obs[:, -4].astype(np.float64) * core.busy_total_w
        assert (caps.sum(axis=1) <= budget * (1 - b.reserve_frac)).all()
        pdu_w = np.stack([np.bincount(core.pdu, weights=c) for c in caps])
        assert (pdu_w <= core.pdu_limit_w).all()
        obs, _, _, _ = env.step(z)
    assert env.pop_stats()["shield/intervention_rate"] == 0.0  # nothing left for the shield to correct


def test_head_torch_twin_matches_numpy() -> None:
    env = _cluster(2)
    obs = env.reset()
    rng = np.random.default_rng(1)
    z = rng.uniform(-1.5, 1.5, (64, env.core.n)).astype(np.float32)
    o = np.repeat(obs[:1], 64, axis=0)
    o[:, -4] = rng.uniform(0.3, 1.0, 64)
    want = env.head(o, z)
    got = env.head.torch_module()(torch.from_numpy(o), torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_head_with_base_equal_to_max_asks_for_exactly_that_cap() -> None:
    cfg = make_config("powerrl/ClusterBudget-v0", {"episode_s": 60.0})
    shield = {"budget": {"max_frac": 0.5, "base_frac": [0.5, 0.3, 0.1, 0.0, 0.0]}}
    env = PowerrlVecEnv("powerrl/ClusterBudget-v0", 2, cfg, shield, seed=0, action_head="budget_allocation")
    obs = env.reset()
    for _ in range(5):
        obs, _, _, _ = env.step(np.ones((2, env.core.n)))
    assert env.pop_stats()["shield/intervention_rate"] == 0.0


def test_head_only_for_cluster_budget() -> None:
    nd = PowerrlVecEnv("powerrl/NodeDVFS-v0", 1, make_config("powerrl/NodeDVFS-v0", {}), "default")
    with pytest.raises(ValueError, match="ClusterBudget"):
        make_head("budget_allocation", nd.core, nd.senv.shield_config)


# -- end to end ------------------------------------------------------------------------------------
def test_train_tiny_run_records_everything_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = write(tmp_path, TINY)
    out = tmp_path / "run"
    assert main(["train", str(exp), "--out", str(out), "--seed", "2"]) == 0
    for f in ("run.yaml", "model.zip", "vecnormalize.pkl", "best/model.zip", "best/vecnormalize.pkl", "eval.csv",
              "checkpoints/model_128_steps.zip", "checkpoints/vecnormalize_128_steps.pkl"):
        assert (out / f).is_file(), f
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    docs = list(yaml.safe_load_all((out / "run.yaml").read_text()))
    rec = {k: v for d in docs for k, v in d.items()} if len(docs) > 1 else docs[0]
    assert rec["env_id"] == "powerrl/NodeDVFS-v0" and rec["seed"] == 2 and rec["algo"] == "ppo"
    assert rec["command"].startswith("powerrl train") and "--seed 2" in rec["command"]
    assert rec["git_revision"] and rec["versions"]["stable-baselines3"]
    assert rec["hyperparams"]["n_steps"] == 32 and rec["action_nvec"] == [11, 11]
    assert rec["timesteps"] >= 256
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert len(rows) >= 2 and "energy_kwh" in rows[0] and "shield_intervention_rate" in rows[0]
    # Same folder again without --resume: refused, nothing overwritten.
    mtime = (out / "model.zip").stat().st_mtime
    assert main(["train", str(exp), "--out", str(out)]) == 2
    assert (out / "model.zip").stat().st_mtime == mtime
    assert "--resume" in capsys.readouterr().err
    # Resume from the checkpoint into a new folder, to a larger budget.
    out2 = tmp_path / "run2"
    ckpt = out / "checkpoints" / "model_128_steps.zip"
    assert main(["train", str(exp), "--out", str(out2), "--resume", str(ckpt), "--total-timesteps", "384",
                 "--no-eval", "--quiet"]) == 0
    rec2 = {k: v for d in yaml.safe_load_all((out2 / "run.yaml").read_text()) for k, v in d.items()}
    assert rec2["resumed_from"] == str(ckpt) and rec2["timesteps"] >= 384
    vn = VecNormalize.load(str(out2 / "vecnormalize.pkl"), PowerrlVecEnv(
        "powerrl/NodeDVFS-v0", 1, make_config("powerrl/NodeDVFS-v0", {}), "default"))
    assert vn.obs_rms.count > 384  # the resumed normaliser kept the checkpoint's statistics


def test_train_bad_resume_is_a_clean_error_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    exp = write(tmp_path, TINY)
    assert main(["train", str(exp), "--out", str(tmp_path / "r"), "--resume", str(tmp_path / "none.zip")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["train", str(exp), "--n-envs", "0"]) == 2
    assert "--n-envs" in capsys.readouterr().err


def test_resume_in_the_same_folder_keeps_the_record_and_the_best_model(tmp_path: Path) -> None:
    exp = write(tmp_path, TINY)
    out = tmp_path / "run"
    assert main(["train", str(exp), "--out", str(out), "--quiet"]) == 0
    first = (out / "run.yaml").read_text()
    best = (out / "best" / "model.zip").read_bytes()
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert main(["train", str(exp), "--out", str(out), "--resume", str(out), "--total-timesteps", "384",
                 "--quiet"]) == 0
    assert (out / "run.yaml").read_text() == first  # the original record stays as it was
    rec = yaml.safe_load((out / "run-resume1.yaml").read_text())
    assert rec["resumed_at_timesteps"] >= 256 and rec["timesteps"] >= 384
    rows2 = list(csv.DictReader((out / "eval.csv").open()))
    assert len(rows2) > len(rows) and list(rows2[-1]) == list(rows[0])  # same columns
    best_before = max(float(r["reward"]) for r in rows)
    if max(float(r["reward"]) for r in rows2[len(rows):]) <= best_before:
        assert (out / "best" / "model.zip").read_bytes() == best  # a worse evaluation keeps the old best


def test_checkpoints_follow_the_interval_with_more_copies_than_steps(tmp_path: Path) -> None:
    data = {**TINY, "checkpoint_every_steps": 6, "eval": None}  # 4 copies: 4 steps per env step
    out = tmp_path / "run"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out), "--quiet", "--total-timesteps", "64"]) == 0
    steps = sorted(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("model_*_steps.zip"))
    # One save per multiple of 6 passed: 8 (6), 12 (12), 20 (18), 24 (24), ...
    assert steps[:4] == [8, 12, 20, 24]
    assert len(steps) == len({s // 6 for s in steps})


def test_train_dqn_and_maskable_ppo_run(tmp_path: Path) -> None:
    for algo, over in (("dqn", {"n_envs": 2, "learning_starts": 32, "batch_size": 16, "train_freq": 4,
                                "buffer_size": 1000, "policy_kwargs": {"net_arch": [8]}}),
                       ("maskable_ppo", {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1,
                                         "policy_kwargs": {"net_arch": [8]}})):
        data = {**TINY, "algo": algo, "hyperparams": algo, "overrides": over, "total_timesteps": 96, "eval": None}
        out = tmp_path / algo
        assert main(["train", str(write(tmp_path, data, f"{algo}.yaml")), "--out", str(out), "--quiet"]) == 0
        assert (out / "model.zip").is_file()


def test_initial_action_sets_the_starting_mean(tmp_path: Path) -> None:
    init = [1.0, 1.0, -0.5, -1.0, -1.0]  # 2 racks, supply, defer, release
    data = {**TINY, "env": "powerrl/Datacenter-v0", "env_config": {"n_racks": 2, "nodes_per_rack": 4,
                                                                  "episode_s": 3600.0},
            "initial_action": init, "total_timesteps": 8, "eval": None,
            "overrides": {"n_envs": 2, "n_steps": 4, "batch_size": 8, "n_epochs": 1, "learning_rate": 0.0,
                          "policy_kwargs": {"net_arch": [8]}}}
    out = tmp_path / "dc"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out), "--quiet"]) == 0
    from stable_baselines3 import PPO

    model = PPO.load(str(out / "model.zip"), device="cpu")
    obs = np.zeros((1, model.observation_space.shape[0]), dtype=np.float32)
    mean, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(mean[0], init, atol=0.05)  # weights start near 0: the mean is the bias
    with pytest.raises(ConfigError, match="initial_action"):
        load_experiment(write(tmp_path, {**data, "initial_action": init[:3]}, "bad.yaml"))


def test_cooling_deferral_head_trains_exports_and_keeps_ceilings_at_fmax(tmp_path: Path) -> None:
    data = {**TINY, "env": "powerrl/Datacenter-v0", "env_config": {"n_racks": 2, "nodes_per_rack": 4,
                                                                  "episode_s": 3600.0},
            "action_head": "cooling_deferral", "initial_action": [-0.5, -1.0, -1.0], "total_timesteps": 16,
            "eval": None, "overrides": {"n_envs": 2, "n_steps": 8, "batch_size": 16, "n_epochs": 1,
                                        "policy_kwargs": {"net_arch": [8]}}}
    out = tmp_path / "dc"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out), "--quiet"]) == 0
    assert main(["export", str(out), "--out", str(tmp_path / "dc.onnx"), "--checkpoint", "final"]) == 0
    meta = json.loads((tmp_path / "dc.json").read_text())
    assert meta["action"]["type"] == "box" and len(meta["action"]["low"]) == 5  # the env's action, not the head's
    from powerrl.envs.datacenter import DatacenterVectorEnv
    from powerrl.eval.policy_file import PolicyFileController

    venv = DatacenterVectorEnv(3, n_racks=2, nodes_per_rack=4)
    obs, _ = venv.reset(seed=0)
    ctrl = PolicyFileController(tmp_path / "dc.onnx", venv.single_action_space, venv.single_observation_space)
    acts = ctrl.act_batch(obs)
    assert acts.shape == (3, 5) and (acts[:, :2] == 1.0).all()
    head = make_head("cooling_deferral", venv.core, None)
    z = np.random.default_rng(0).uniform(-2, 2, (16, 3)).astype(np.float32)
    got = head.torch_module()(torch.zeros(16, 20), torch.from_numpy(z)).numpy()
    np.testing.assert_array_equal(got, head(np.zeros((16, 20)), z))


def test_train_sac_with_head_runs(tmp_path: Path) -> None:
    data = {**TINY, "env": "powerrl/ClusterBudget-v0", "env_config": {"episode_s": 20.0, "n_nodes": 8,
                                                                     "nodes_per_rack": 4},
            "algo": "sac", "hyperparams": "sac", "action_head": "budget_allocation", "total_timesteps": 64,
            "overrides": {"n_envs": 2, "learning_starts": 16, "batch_size": 16, "buffer_size": 500,
                          "policy_kwargs": {"net_arch": [8]}},
            "eval": {"scenario": "clusterbudget-day22", "days": [20], "start_h": 10.0, "duration_h": 0.005,
                     "every_steps": 0}}
    out = tmp_path / "sac"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out), "--quiet"]) == 0
    rec = {k: v for d in yaml.safe_load_all((out / "run.yaml").read_text()) for k, v in d.items()}
    assert rec["action_head"] == "budget_allocation" and len(rec["action_head_params"]["idle_w"]) == 8
    assert rec["final_eval"]["shield_intervention_rate"] == 0.0


# -- the node-shared policy ---------------------------------------------------------------------------
def test_node_shared_policy_is_permutation_equivariant_and_exports(tmp_path: Path) -> None:
    from powerrl.agents.policies import NodeSharedPolicy

    data = {**TINY, "env": "powerrl/ClusterBudget-v0", "env_config": {"episode_s": 20.0},
            "action_head": "budget_allocation", "total_timesteps": 64, "eval": None,
            "overrides": {"n_envs": 2, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "policy": "NodeSharedPolicy",
                          "policy_kwargs": {"hidden": [8, 8], "log_std_init": -1.0}}}
    out = tmp_path / "ns"
    assert main(["train", str(write(tmp_path, data)), "--out", str(out), "--quiet", "--n-envs", "2"]) == 0
    from stable_baselines3 import PPO

    model = PPO.load(str(out / "model.zip"), device="cpu")
    assert isinstance(model.policy, NodeSharedPolicy)
    n, f = 64, 6
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (3, n * f + 4)).astype(np.float32)
    perm = rng.permutation(n)
    permuted = obs.copy()
    permuted[:, : n * f] = obs[:, : n * f].reshape(3, n, f)[:, perm].reshape(3, n * f)
    with torch.no_grad():
        a = model.policy.mlp_extractor.forward_actor(torch.from_numpy(obs)).numpy()
        b = model.policy.mlp_extractor.forward_actor(torch.from_numpy(permuted)).numpy()
        va = model.policy.predict_values(torch.from_numpy(obs)).numpy()
        vb = model.policy.predict_values(torch.from_numpy(permuted)).numpy()
    np.testing.assert_allclose(b, a[:, perm], atol=1e-6)  # a node's score follows the node
    np.testing.assert_allclose(va, vb, atol=1e-5)  # the value ignores node order
    assert main(["export", str(out), "--out", str(tmp_path / "p.onnx")]) == 0
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["action_head"] is not None


def test_node_shared_policy_rejects_a_mismatched_layout() -> None:
    from gymnasium import spaces as sp

    from powerrl.agents.policies import NodeSharedPolicy

    with pytest.raises(ValueError, match="NodeSharedPolicy"):
        NodeSharedPolicy(sp.Box(-1, 1, (19,)), sp.Box(-1, 1, (3,)), lambda _: 1e-3)


def test_deferral_head_holds_ceilings_and_the_baselines_supply() -> None:
    from powerrl.envs.datacenter import DatacenterVectorEnv

    venv = DatacenterVectorEnv(1, n_racks=2, nodes_per_rack=4)
    head = make_head("deferral", venv.core, None)
    assert head.input_space.shape == (2,) and head.env_action_space.shape == (5,)
    z = np.random.default_rng(1).uniform(-2, 2, (8, 2)).astype(np.float32)
    out = head(np.zeros((8, 20)), z)
    np.testing.assert_array_equal(out[:, :2], 1.0)  # f_max
    np.testing.assert_allclose(out[:, 2], -0.5)  # 18 degC on the 15-27 degC range
    np.testing.assert_array_equal(out[:, 3:], np.clip(z, -1, 1))
    got = head.torch_module()(torch.zeros(8, 20), torch.from_numpy(z)).numpy()
    np.testing.assert_array_equal(got, out)
