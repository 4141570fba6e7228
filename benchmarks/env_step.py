"""Env step cost: NodeDVFS-v0 vs CartPole-v1 (both via gym.make) and the batched vector version.

Usage: python benchmarks/env_step.py [--steps 20000] [--num-envs 1024]
Goals: NodeDVFS step time <= 2x CartPole's; vector version >= 1 M env-steps/s at 1,024 envs.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import powerrl  # noqa: F401


def single_step_us(env_id: str, steps: int, **kw) -> float:
    env = gym.make(env_id, **kw)
    env.reset(seed=0)
    action = env.action_space.sample()
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
    return (time.perf_counter() - t0) / steps * 1e6


def vector_rate(env_id: str, num_envs: int, steps: int, **kw) -> float:
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kw)
    venv.reset(seed=0)
    actions = np.stack([venv.single_action_space.sample() for _ in range(num_envs)])
    venv.step(actions)
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step(actions)
    return steps * num_envs / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--num-envs", type=int, default=1024)
    args = p.parse_args()
    cart = single_step_us("CartPole-v1", args.steps)
    node = single_step_us("powerrl/NodeDVFS-v0", args.steps)
    print(f"CartPole-v1: {cart:.2f} us/step  NodeDVFS-v0: {node:.2f} us/step  ratio: {node / cart:.2f}x")
    rate = vector_rate("powerrl/NodeDVFS-v0", args.num_envs, max(50, args.steps // 100))
    print(f"NodeDVFS-v0 vector, {args.num_envs} envs: {rate / 1e6:.2f} M env-steps/s")
    for env_id, kw in (("powerrl/ClusterBudget-v0", {}), ("powerrl/Datacenter-v0", {})):
        us = single_step_us(env_id, max(200, args.steps // 20), **kw)
        print(f"{env_id} (default size): {us:.1f} us/step")


if __name__ == "__main__":
    main()
