"""Cost of a shield decision: one node (thermal filter, events, mask) and a 1,000-node cap shield.

One node: the shipped EPYC 7502 profile with 2 frequency domains, the default shield, telemetry
that keeps the trips quiet except a passive band now and then (the common case), timed over
``--calls`` decisions of ``Shield.filter`` and of ``Shield.bounds`` (the action mask); the C unit
filter is also timed against its NumPy twin on 1,024 units. Cluster: ``CapShield.filter`` on 1,000
nodes (64 racks of 16, 32 PDUs at 85 % of their busy power) with a binding budget, rate limits on,
fresh requests each call. Every figure is printed next to its goal and as a share of the control
period it must fit in (100 ms node, 1 s cluster). Last, the 1,024-copy NodeDVFS vector env is
stepped bare and behind ``ShieldedVectorEnv`` (what training through the shield costs).

Usage: python benchmarks/shield_cost.py [--calls 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from powerrl._core import _reference as ref  # noqa: E402
from powerrl._core.shield import ShieldUnitsKernel  # noqa: E402
from powerrl._core.shield_buffers import ShieldBuffers  # noqa: E402
from powerrl.model.profiles import get_profile  # noqa: E402
from powerrl.shield.budget import GroupLevel  # noqa: E402
from powerrl.shield.caps import CapShield  # noqa: E402
from powerrl.shield.config import make_shield_config  # noqa: E402
from powerrl.shield.shield import Shield, Telemetry  # noqa: E402
from powerrl.shield.thermal import ThermalShield, UnitModel  # noqa: E402

NODE_GOAL_US = 20.0  # issue 3: one node's decision
CLUSTER_GOAL_US = 1000.0  # issue 3: a 1,000-node budget projection
NODE_PERIOD_US = 100_000.0
CLUSTER_PERIOD_US = 1_000_000.0


def _time_us(fn, calls: int) -> np.ndarray:
    for _ in range(min(calls, 200)):
        fn()
    out = np.empty(calls)
    for k in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        out[k] = (time.perf_counter_ns() - t0) / 1e3
    return out


def _line(name: str, t_us: np.ndarray, goal_us: float | None, period_us: float) -> None:
    med, p99 = float(np.median(t_us)), float(np.percentile(t_us, 99))
    goal = f"goal <= {goal_us:.0f} us: {'met' if med <= goal_us else 'MISSED'}; " if goal_us else ""
    print(f"{name:46s} median {med:9.2f} us  p99 {p99:9.2f} us  ({goal}{100 * med / period_us:.4f} % of the period)")


def node(calls: int, rng: np.random.Generator) -> None:
    profile = get_profile("epyc7502")
    cfg = make_shield_config({"rate_limits": {"pstate_up": 2}})
    shield = Shield(cfg, ThermalShield(cfg, UnitModel.from_profile(profile, 2, 2)))
    temps = rng.uniform(55.0, 88.0, (4096, 2))
    k = len(profile.pstates_mhz)
    proposals = rng.integers(0, k, (4096, 2)).astype(np.int32)
    power = np.full(2, 120.0)
    inlet = np.full(2, 24.0)
    i = [0]

    def decide() -> None:
        j = i[0] = (i[0] + 1) % 4096
        shield.filter(Telemetry(temp_c=temps[j], unit_power_w=power, inlet_c=inlet), proposals[j])

    def mask() -> None:
        j = i[0] = (i[0] + 1) % 4096
        shield.bounds(Telemetry(temp_c=temps[j], unit_power_w=power, inlet_c=inlet))

    _line("node decision (Shield.filter, 2 domains)", _time_us(decide, calls), NODE_GOAL_US, NODE_PERIOD_US)
    _line("node action mask (Shield.bounds, 2 domains)", _time_us(mask, calls), NODE_GOAL_US, NODE_PERIOD_US)

    n = 1024
    b = ShieldBuffers.allocate(n, k, [(t.type, t.temp_c, t.hyst_c) for t in cfg.zones["package"].trips],
                               predict_limit_c=85.0)
    b.full_power_w[:] = UnitModel.from_profile(profile, n, 2).full_power_w
    b.r_die_c_per_w[:] = profile.r_die_c_per_w * 2
    b.r_sink_c_per_w[:] = profile.r_sink_c_per_w * 2
    b.sink_decay[:] = np.exp(-3.0 / profile.tau_sink_s)
    b.temp_c[:] = rng.uniform(55.0, 90.0, n)
    b.proposed[:] = rng.integers(0, k, n)
    b.power_w[:] = 120.0
    b.inlet_c[:] = 24.0
    kernel = ShieldUnitsKernel(b)
    twin = b.copy()
    t_c = _time_us(lambda: kernel.run(True), max(calls // 10, 100))
    t_np = _time_us(lambda: ref.shield_units_reference(twin, True), max(calls // 100, 20))
    print(f"{'unit filter, 1,024 units: C vs NumPy twin':46s} C {np.median(t_c):7.2f} us  NumPy "
          f"{np.median(t_np):8.2f} us  ({np.median(t_np) / np.median(t_c):.1f}x)")


def cluster(calls: int, rng: np.random.Generator) -> None:
    n = 1000
    profile = get_profile("epyc7502")
    idle = np.full(n, profile.idle_w)
    busy = np.full(n, profile.busy_w)
    priority = rng.integers(0, 5, n)
    rack = np.arange(n) // 16
    pdu = rack // 2
    n_pdus = int(pdu.max()) + 1
    pdu_limit = 0.85 * np.bincount(pdu, weights=busy, minlength=n_pdus)
    cfg = make_shield_config({"rate_limits": {"cap_frac": 0.2}, "budget": {"critical_reserve_frac": 0.05}})
    caps = CapShield(cfg, idle, busy, priority, (GroupLevel("pdu", pdu.astype(np.int64), pdu_limit),))
    budget = 0.6 * float(busy.sum())
    requests = idle + rng.uniform(0.3, 1.0, (64, n)) * (busy - idle)
    measured = idle + 0.5 * (busy - idle)
    i = [0]

    def decide() -> None:
        j = i[0] = (i[0] + 1) % 64
        caps.filter(requests[j], measured, budget, time_s=float(j))

    _line("cluster caps (CapShield.filter, 1,000 nodes)", _time_us(decide, max(calls // 10, 200)), CLUSTER_GOAL_US,
          CLUSTER_PERIOD_US)


def vector_env(steps: int) -> None:
    """Env-steps/s of the 1,024-copy NodeDVFS vector env, bare and behind the shield, in one run."""
    import gymnasium as gym

    import powerrl  # noqa: F401  (registers the envs)
    from powerrl.envs.shielded import ShieldedVectorEnv

    rates = []
    for shielded in (False, True):
        env = gym.make_vec("powerrl/NodeDVFS-v0", num_envs=1024, vectorization_mode="vector_entry_point")
        if shielded:
            env = ShieldedVectorEnv(env)
        env.reset(seed=0)
        actions = np.random.default_rng(0).integers(0, 11, (steps, 1024, 2))
        t0 = time.perf_counter()
        for k in range(steps):
            env.step(actions[k])
        rates.append(steps * 1024 / (time.perf_counter() - t0))
    print(f"{'NodeDVFS vector, 1,024 copies, random P-states':46s} bare {rates[0] / 1e6:5.2f} M env-steps/s  "
          f"shielded {rates[1] / 1e6:5.2f} M env-steps/s  ({rates[0] / rates[1]:.1f}x the bare cost)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20000, help="node decisions timed (a tenth for the cluster)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    node(args.calls, rng)
    cluster(args.calls, rng)
    vector_env(max(args.calls // 20, 50))


if __name__ == "__main__":
    main()
