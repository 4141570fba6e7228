"""Wall time to simulate the 7 held-out days (22-28) for a 1,000-node Datacenter-v0 at 1 s steps.

Usage: python benchmarks/datacenter_week.py [--days 7] [--racks 50] [--nodes-per-rack 20] [--dt-s 1]
Runs a fixed mid-range action (all racks at f_max, 20 degC supply, no deferral) so the figure is
the simulator's cost, not a controller's.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from powerrl.envs.config import make_config
from powerrl.envs.datacenter import DatacenterEnv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--racks", type=int, default=50)
    p.add_argument("--nodes-per-rack", type=int, default=20)
    p.add_argument("--dt-s", type=float, default=1.0)
    args = p.parse_args()
    cfg = make_config("powerrl/Datacenter-v0", {
        "n_racks": args.racks, "nodes_per_rack": args.nodes_per_rack, "dt_s": args.dt_s,
        "episode_s": args.days * 86400.0, "split": "heldout"})
    env = DatacenterEnv(config=cfg)
    env.reset(seed=0)
    action = np.full(env.action_space.shape, 1.0, dtype=np.float32)
    action[-3], action[-2], action[-1] = -0.2, -1.0, -1.0
    steps = int(round(args.days * 86400.0 / args.dt_s))
    t0 = time.perf_counter()
    energy_kwh = carbon_kg = 0.0
    report_every = max(1, steps // 20)
    for i in range(steps):
        _, _, _, truncated, info = env.step(action)
        energy_kwh += info["energy_kwh"]
        carbon_kg += info["carbon_kg"]
        if (i + 1) % report_every == 0:
            print(f"\r  {100 * (i + 1) / steps:5.1f} %  {time.perf_counter() - t0:7.1f} s", end="", file=sys.stderr)
        if truncated:
            break
    wall = time.perf_counter() - t0
    n_nodes = args.racks * args.nodes_per_rack
    print(file=sys.stderr)
    print(f"Datacenter-v0: {n_nodes} nodes, {args.days:g} held-out days at dt={args.dt_s:g} s: {steps} steps in "
          f"{wall:.1f} s wall ({steps * n_nodes / wall / 1e6:.1f} M node-steps/s; simulated/wall = "
          f"{steps * args.dt_s / wall:.0f}x); facility energy {energy_kwh:.0f} kWh, carbon {carbon_kg:.0f} kg")


if __name__ == "__main__":
    main()
