"""Fuzz the shield: random and adversarial controllers across five scenarios, every guarantee counted.

Runs the matrix of :mod:`powerrl.envs.stress` (NodeDVFS-v0, ClusterBudget-v0 and Datacenter-v0;
normal day, heat wave +10 degC, cooling failure, grid cut of 30 % within 5 s, demand surge x2;
controllers random, all_max, oscillate, invalid) through the shielded vector envs and prints, per
cell and in total: env steps, shield intervention rate, the hottest die, hot-trip exceedances,
budget overshoot steps and violations (over for a second consecutive period) and priority
inversions. Then the all_max adversary runs once more without the shield in every scenario, to
show what the shield prevented.

Usage: python benchmarks/shield_fuzz.py [--scale 1.0] [--seed 0] [--shield default]
``--scale`` multiplies the copies per cell (1.0 = about 4.2 million env steps, a few minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from powerrl.envs.stress import FULL_MATRIX, SCENARIOS, StressResult, run_matrix, run_stress  # noqa: E402


def _row(r: StressResult) -> str:
    return (f"{r.env_id.removeprefix('powerrl/'):17s} {r.scenario:16s} {r.controller:22s} {r.steps:>10,d} "
            f"{r.interventions / max(r.steps, 1):>8.1%} {r.max_temp_c:>8.1f} {r.hot_exceedances:>9,d} "
            f"{r.budget_overshoot_steps:>9,d} {r.budget_violations:>9,d} {r.priority_inversions:>9,d}")


HEADER = (f"{'env':17s} {'scenario':16s} {'controller':22s} {'steps':>10s} {'shielded':>8s} {'max degC':>8s} "
          f"{'hot exc.':>9s} {'over':>9s} {'over>1':>9s} {'inversions':>9s}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="copies per cell relative to the full matrix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shield", default="default", help="shipped shield config name or YAML path")
    args = p.parse_args()
    if args.scale <= 0:
        p.error(f"--scale must be > 0, got {args.scale}")
    sizes = {env: (max(1, round(copies * args.scale)), steps) for env, (copies, steps) in FULL_MATRIX.items()}
    t0 = time.perf_counter()
    results = run_matrix(sizes, seed=args.seed, shield=args.shield)
    wall = time.perf_counter() - t0
    print(HEADER)
    for r in results:
        print(_row(r))
    steps = sum(r.steps for r in results)
    hot = sum(r.hot_exceedances for r in results)
    over = sum(r.budget_violations for r in results)
    inv = sum(r.priority_inversions for r in results)
    max_t = max(r.max_temp_c for r in results)
    print(f"\ntotal: {steps:,d} env steps in {wall:.0f} s; hottest die {max_t:.1f} degC (hot trip "
          f"{results[0].hot_trip_c:.0f} degC); hot-trip exceedances {hot}; budget over for more than one period "
          f"{over}; priority inversions {inv}")
    print("\nthe all_max adversary without the shield:")
    print(HEADER)
    for env_id, (copies, n_steps) in sizes.items():
        for scenario in SCENARIOS:
            r = run_stress(env_id, scenario, "all_max", max(1, copies // 4), n_steps, seed=args.seed, shielded=False)
            if r is not None:
                print(_row(r))
    return 1 if hot or over or inv else 0


if __name__ == "__main__":
    sys.exit(main())
