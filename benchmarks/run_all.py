"""Run every benchmark with its recorded settings and print the figures (``make bench``).

Each benchmark is a standalone script that prints ratios measured in one run; this runner only
sequences them. The long ones (the 7-day Datacenter run, the 10-minute jitter run) take their
short settings here; docs/benchmarks.md gives the full commands behind each recorded figure.
Pass ``--full`` to run those at full length as well.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent

QUICK: list[list[str]] = [
    ["sim_kernel.py"],
    ["env_step.py"],
    ["calibration_fit.py"],
    ["forecast_error.py"],
    ["sampler_overhead.py"],
    ["datacenter_week.py", "--days", "0.25"],
    ["sampler_jitter.py", "--duration", "20"],
    ["shield_cost.py"],
    ["shield_budget.py"],
    ["shield_fuzz.py", "--scale", "0.1"],
    ["compare_headroom.py"],
    ["policy_inference.py"],
    ["agent_tick.py", "--quick"],
    ["coordinator_load.py", "--quick"],
    ["train_throughput.py", "--steps", "100000", "--n-envs", "64", "--dummy-steps", "5000"],
]
FULL: list[list[str]] = [
    ["train_throughput.py"],
    ["policy_goals.py"],
    ["datacenter_week.py"],
    ["sampler_jitter.py"],
    ["shield_fuzz.py"],
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also run the long benchmarks at full length")
    args = p.parse_args()
    failed = 0
    for cmd in QUICK + (FULL if args.full else []):
        script = HERE / cmd[0]
        if not script.exists():
            print(f"== {' '.join(cmd)}: missing, skipped")
            continue
        print(f"== python benchmarks/{' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *cmd[1:]])
        print(f"   ({time.perf_counter() - t0:.1f} s, exit {rc})", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
