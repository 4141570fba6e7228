"""Headroom left by the best tuned governor: its energy against the clairvoyant oracle's on NodeDVFS-v0.

Runs ``powerrl compare`` on a NodeDVFS scenario (default ``nodedvfs-day22``: held-out day 22,
10:00-14:00) with every governor (tuned parameters) and the oracle, then prints, from that one run,
the best tuned governor (highest mean env reward), the oracle's energy as a fraction of it, and both
SLA violation rates: the energy any learned policy could still save at the oracle's service level.

Usage: python benchmarks/compare_headroom.py [--scenario nodedvfs-day22] [--seeds 3] [--out out/bench-headroom]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="nodedvfs-day22")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="out/bench-headroom")
    args = p.parse_args()
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "powerrl.cli", "compare", "--scenarios", args.scenario, "--seeds", str(args.seeds),
           "--out", args.out, "--quiet", "--no-plots"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    doc = json.loads((Path(args.out) / "results.json").read_text())
    sc = doc["scenarios"][args.scenario]
    ctrls = sc["controllers"]
    best, oracle = sc["best_baseline"], sc["oracle"]
    if best is None or oracle is None:
        print("needs at least one baseline and the oracle")
        return 1

    def m(label: str, key: str) -> float:
        return float(ctrls[label]["metrics"][key]["mean"])

    e_best, e_or = m(best, "energy_kwh"), m(oracle, "energy_kwh")
    print(f"scenario {args.scenario}, {args.seeds} seeds, wall {wall:.0f} s")
    print(f"best tuned governor: {best} {ctrls[best]['params']}")
    print(f"energy (IT + cooling): {best} {e_best:.4f} kWh, oracle {e_or:.4f} kWh, oracle/best = {e_or / e_best:.4f} "
          f"(headroom {100 * (1 - e_or / e_best):.2f} %)")
    print(f"IT energy oracle/best = {m(oracle, 'energy_it_kwh') / m(best, 'energy_it_kwh'):.4f}")
    print(f"SLA violation rate: {best} {100 * m(best, 'sla_violation_rate'):.3f} %, "
          f"oracle {100 * m(oracle, 'sla_violation_rate'):.3f} %")
    for label, c in ctrls.items():
        if c["kind"] == "baseline":
            print(f"  {label:24s} energy/oracle {m(label, 'energy_kwh') / e_or:.4f}  "
                  f"SLA {100 * m(label, 'sla_violation_rate'):6.3f} %  reward {m(label, 'reward'):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
