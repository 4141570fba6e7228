"""PPO training throughput on NodeDVFS-v0 with the batched env behind the shield (goal >= 20k env-steps/s).

Measures, in one run on this machine:

* the env alone: :class:`powerrl.agents.vec_env.PowerrlVecEnv` (native vector env + shield, one C
  call and one shield call per batch) stepped with random actions, env-steps/s;
* PPO end to end: ``model.learn`` (rollouts through VecNormalize + the shield, and the updates) with
  the shipped NodeDVFS hyperparameters (configs/agents/ppo.yaml) at the given copy counts, env-steps/s;
* for reference, SB3's ``DummyVecEnv`` over single shielded envs at the same copy count (what one
  would do without the batched adapter), env-steps/s.

Usage: ``python benchmarks/train_throughput.py [--steps 400000] [--n-envs 64 256]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from powerrl.agents.config import Experiment, algo_kwargs, load_experiment
from powerrl.agents.vec_env import PowerrlVecEnv

GOAL = 20_000.0


def env_only(exp: Experiment, n_envs: int, steps: int) -> float:
    """Env-steps/s of the batched env + shield alone."""
    venv = PowerrlVecEnv(exp.env_id, n_envs, exp.env_config_object(), exp.shield, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    nvec = venv.action_space.nvec
    acts = [rng.integers(0, nvec, size=(n_envs, len(nvec))) for _ in range(16)]
    t = time.perf_counter()
    n = max(1, steps // n_envs)
    for i in range(n):
        venv.step(acts[i % 16])
    return n * n_envs / (time.perf_counter() - t)


def ppo(exp: Experiment, n_envs: int, steps: int, dummy: bool = False) -> float:
    """Env-steps/s of ``PPO.learn`` (batched adapter, or SB3's DummyVecEnv with ``dummy``)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    kwargs = algo_kwargs("ppo", exp.hyperparams, exp.hyperparams_file)
    if dummy:
        from powerrl.envs.node_dvfs import NodeDVFSEnv
        from powerrl.envs.shielded import ShieldedEnv

        cfg = exp.env_config_object()
        venv = DummyVecEnv([lambda: ShieldedEnv(NodeDVFSEnv(config=cfg), exp.shield) for _ in range(n_envs)])
    else:
        venv = PowerrlVecEnv(exp.env_id, n_envs, exp.env_config_object(), exp.shield, seed=0)
    env = VecNormalize(venv, **exp.normalize)
    kwargs["batch_size"] = min(kwargs.get("batch_size", 64), kwargs.get("n_steps", 256) * n_envs)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0, **kwargs)
    rollout = kwargs.get("n_steps", 256) * n_envs
    total = max(rollout, steps // rollout * rollout)
    t = time.perf_counter()
    model.learn(total)
    return total / (time.perf_counter() - t)


def main() -> None:
    """Print the throughput table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400_000, help="env steps per PPO measurement")
    p.add_argument("--n-envs", type=int, nargs="+", default=[64, 256], help="copy counts to measure")
    p.add_argument("--dummy-steps", type=int, default=20_000, help="env steps of the DummyVecEnv reference")
    args = p.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment("nodedvfs-ppo")
    print(f"PPO on {exp.env_id}, shield '{exp.shield}', hyperparameters {exp.hyperparams_file} "
          f"(n_steps {exp.hyperparams.get('n_steps')}, batch {exp.hyperparams.get('batch_size')}, "
          f"epochs {exp.hyperparams.get('n_epochs')}, net {exp.hyperparams.get('policy_kwargs')})")
    print(f"{'setting':<44} {'env-steps/s':>12}")
    rates: dict[int, float] = {}
    for n in args.n_envs:
        e = env_only(exp, n, args.steps)
        print(f"{f'env + shield only, {n} copies (random actions)':<44} {e:>12,.0f}")
        r = rates[n] = ppo(exp, n, args.steps)
        print(f"{f'PPO learn, batched adapter, {n} copies':<44} {r:>12,.0f}")
    n0 = args.n_envs[0]
    d = ppo(exp, n0, args.dummy_steps, dummy=True)
    print(f"{f'PPO learn, SB3 DummyVecEnv, {n0} copies':<44} {d:>12,.0f}")
    best = max(rates.values())
    print(f"\nbest PPO throughput {best:,.0f} env-steps/s (goal >= {GOAL:,.0f}): {'PASS' if best >= GOAL else 'MISS'}; "
          f"batched adapter / DummyVecEnv at {n0} copies: {rates[n0] / d:.1f}x")


if __name__ == "__main__":
    main()
