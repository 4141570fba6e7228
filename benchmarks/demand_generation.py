"""Time to generate one day of per-node offered load from the trace (Trace.demand_series).

Usage: python benchmarks/demand_generation.py [--nodes 1000] [--dt-s 1]
Prints the wall time per workload class (the classes differ in request size, hence in how many
elements take the exact Poisson + gamma path rather than the normal approximation).
"""

from __future__ import annotations

import argparse
import time

from powerrl.model.workload import load_shipped_trace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--dt-s", type=float, default=1.0)
    args = p.parse_args()
    trace = load_shipped_trace()
    for cls in ("interactive", "memory", "batch", "compute"):
        t0 = time.perf_counter()
        load = trace.demand_series([22], args.dt_s, args.nodes, seed=0, workload_class=cls)
        print(f"{cls:12s} {args.nodes} nodes x {load.shape[0]} steps of {args.dt_s:g} s: "
              f"{time.perf_counter() - t0:.2f} s (mean load {load.mean():.3f})")


if __name__ == "__main__":
    main()
