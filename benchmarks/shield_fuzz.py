"""Fuzz the shield: random and adversarial controllers across five scenarios, every guarantee counted.

Runs the matrix of :mod:`powerrl.envs.stress` (NodeDVFS-v0, ClusterBudget-v0 and Datacenter-v0;
normal day, heat wave +10 degC, cooling failure, grid cut of 30 % within 5 s, demand surge x2;
controllers random, all_max, oscillate, invalid) through the shielded vector envs and prints, per
cell and in total: env steps, shield intervention rate, the hottest die, hot-trip exceedances,
budget overshoot steps and violations (over for a second consecutive period) and priority
inversions. Then the all_max adversary runs once more without the shield in every scenario, to
show what the shield prevented, and all_max and random run with the simulated servers' thermal
resistances 10 % and 20 % above the profile the shield models (its model tolerance).

Usage: python benchmarks/shield_fuzz.py [--scale 1.0] [--seed 0] [--shield default]
``--scale`` multiplies the copies per cell (1.0 = about 3.4 million env steps, a minute or two).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from powerrl.envs.stress import (  # noqa: E402
    FULL_MATRIX,
    SCENARIOS,
    TABLE_HEADER,
    run_matrix,
    run_stress,
    summary,
    table_row,
)

#: Thermal model errors tried for the tolerance figure (fractions of R_die and R_sink).
MODEL_ERRORS = (0.1, 0.2)


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
    print(TABLE_HEADER)
    for r in results:
        print(table_row(r))
    print("\n" + summary(results, wall))
    print("\nthe all_max adversary without the shield:")
    print(TABLE_HEADER)
    for env_id, (copies, n_steps) in sizes.items():
        for scenario in SCENARIOS:
            r = run_stress(env_id, scenario, "all_max", max(1, copies // 4), n_steps, seed=args.seed, shielded=False)
            if r is not None:
                print(table_row(r))
    print("\nmodel tolerance: the simulated servers' thermal resistances above what the shield models:")
    print(TABLE_HEADER)
    worst: dict[float, float] = {}
    for error in MODEL_ERRORS:
        for env_id, (copies, n_steps) in sizes.items():
            for scenario in ("heat_wave", "cooling_failure"):
                for controller in ("all_max", "random"):
                    r = run_stress(env_id, scenario, controller, max(1, copies // 4), n_steps, seed=args.seed,
                                   shield=args.shield, thermal_model_error=error)
                    if r is not None:
                        print(table_row(r))
                        worst[error] = max(worst.get(error, -1e9), r.max_temp_c - r.hot_trip_c)
    for error, excess in worst.items():
        print(f"thermal resistances {error:+.0%}: hottest die {excess:+.1f} degC from the hot trip")
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
