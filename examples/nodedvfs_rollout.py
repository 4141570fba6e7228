"""Roll out two simple P-state rules on NodeDVFS-v0 over a held-out hour of the real trace.

Top to bottom, no framework: make the env, pin a start time, run each rule, print energy and SLA.
Run: .venv/bin/python examples/nodedvfs_rollout.py
"""

import gymnasium as gym
import numpy as np

import powerrl  # noqa: F401  (registers the powerrl/* envs)

START_S = 22 * 86400.0 + 14 * 3600.0  # 14:00 on trace day 23 (held out)
env = gym.make("powerrl/NodeDVFS-v0", split="heldout", dt_s=0.1, episode_s=3600.0)
n_pstates = int(env.action_space.nvec[0])
n_domains = len(env.action_space.nvec)
FIELDS = 8  # per-domain observation fields (see docs/envs.md)


def always_max(obs):
    return np.full(n_domains, n_pstates - 1)


def slack_rule(obs):
    """Step down while the latency slack is large, up when it gets thin (per domain)."""
    slack = obs[6:FIELDS * n_domains:FIELDS]
    current = np.rint(obs[3:FIELDS * n_domains:FIELDS] * (n_pstates - 1)).astype(int)
    return np.clip(current + np.where(slack > 0.5, -1, np.where(slack < 0.3, 2, 0)), 0, n_pstates - 1)


for name, policy in (("always f_max", always_max), ("latency-slack rule", slack_rule)):
    obs, info = env.reset(seed=0, options={"start_s": START_S})
    energy_j = violations = steps = 0
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        energy_j += info["energy_j"]
        violations += info["sla_violation"]
        steps += 1
    print(f"{name:20s} energy {energy_j / 3.6e6:.4f} kWh   SLA violations {100 * violations / steps:.2f} % of steps")
