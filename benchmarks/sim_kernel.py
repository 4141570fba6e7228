"""C node kernel vs its NumPy twin: node-steps per second on one core, 1,000 nodes.

Usage: python benchmarks/sim_kernel.py [--nodes 1000] [--seconds 2]
Prints both throughputs and their ratio, measured in the same run (goals: ratio >= 5x and
>= 20 M node-steps/s for the C kernel).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from powerrl._core import _reference as ref  # noqa: E402
from powerrl._core.sim import NodeKernel  # noqa: E402
from powerrl.envs.fleet import build_fleet  # noqa: E402


def fleet(n: int, seed: int = 0):
    arrays, _, _ = build_fleet("epyc7502", n, 1, ["interactive"] * n, 0.1, 24.0)
    rng = np.random.default_rng(seed)
    arrays.demand[:] = rng.uniform(0.1, 1.2, n)
    arrays.mem_bound[:] = rng.uniform(0, 1, n)
    arrays.pstate[:] = rng.integers(0, arrays.n_pstates, n)
    arrays.cap_w[:] = np.where(rng.random(n) < 0.3, arrays.idle_w + 0.5 * (arrays.busy_w - arrays.idle_w), np.inf)
    return arrays


def rate(step, n_nodes: int, seconds: float, batch: int) -> float:
    step(batch)  # warm up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(batch)
        done += batch
    return done * n_nodes / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    a = fleet(args.nodes)
    b = a.copy()
    kernel = NodeKernel(a)
    c_rate = rate(lambda k: kernel.step(0.1, k), args.nodes, args.seconds, 200)

    def numpy_steps(k: int) -> None:
        for _ in range(k):
            ref.nodes_step(b, 0.1)

    np_rate = rate(numpy_steps, args.nodes, args.seconds, 5)
    print(f"nodes={args.nodes}  C kernel: {c_rate / 1e6:.1f} M node-steps/s  NumPy twin: {np_rate / 1e6:.2f} M "
          f"node-steps/s  ratio: {c_rate / np_rate:.1f}x")


if __name__ == "__main__":
    main()
