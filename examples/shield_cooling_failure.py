"""A controller that always asks for f_max, through a CRAC failure, with and without the safety shield.

Top to bottom: build NodeDVFS-v0 with a compute-bound workload at twice the trace's load and a
cooling failure two minutes into a ten-minute episode, run the greedy "always f_max" controller on
the bare env and on the shielded env, and print the hottest die, how long each stayed above the
hot trip, and what the shield did. Run: python examples/shield_cooling_failure.py
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import powerrl  # noqa: F401  (registers the envs)
from powerrl.envs.shielded import ShieldedEnv

EVENTS = ({"kind": "cooling_failure", "start_s": 120.0, "duration_s": 420.0, "rise_c": 20.0, "tau_s": 120.0},)
CONFIG = {"workload_class": "compute", "load_scale": 2.0, "episode_s": 600.0, "events": EVENTS}
HOT_TRIP_C = 95.0  # configs/shields/default.yaml


def run(shielded: bool) -> None:
    env: gym.Env = gym.make("powerrl/NodeDVFS-v0", **CONFIG)
    if shielded:
        env = ShieldedEnv(env, shield="default")
    env.reset(seed=0)
    greedy = np.full(env.action_space.shape, env.action_space.nvec - 1)  # always f_max
    temps, energy_j, events = [], 0.0, {}
    for _ in range(int(600 / 0.1)):
        _, _, _, truncated, info = env.step(greedy)
        temps.append(info["temp_die_c"])
        energy_j += info["energy_j"]
        for reason, count in info.get("shield", {}).get("events", {}).items():
            events[reason] = events.get(reason, 0) + count
        if truncated:
            break
    temps_c = np.array(temps)
    name = "shielded" if shielded else "bare    "
    print(f"{name}: hottest die {temps_c.max():5.1f} degC, {0.1 * np.sum(temps_c > HOT_TRIP_C):5.1f} s above the "
          f"{HOT_TRIP_C:.0f} degC hot trip, energy {energy_j / 3.6e3:.1f} Wh")
    if shielded:
        top = sorted(events.items(), key=lambda kv: -kv[1])[:5]
        print("          shield events (domain-steps): " + ", ".join(f"{k} {v}" for k, v in top))


if __name__ == "__main__":
    run(shielded=False)
    run(shielded=True)
