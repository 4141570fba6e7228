"""Compare Linux governors and the clairvoyant oracle on 15 minutes of held-out day 22, in Python.

The same harness as `powerrl compare`, called directly: a scenario, controller specs with
parameters, one rollout per seed on identical arrivals (common random numbers), metrics per seed.
"""

import dataclasses

from powerrl.eval.metrics import summarise
from powerrl.eval.runner import ControllerSpec, run_group
from powerrl.eval.scenario import load_scenario

# The shipped NodeDVFS scenario, shortened to 15 minutes so the example runs in seconds.
scenario = dataclasses.replace(load_scenario("nodedvfs-day22"), duration_h=0.25)

controllers = [
    ControllerSpec("performance", label="performance"),
    ControllerSpec("schedutil", label="schedutil"),
    ControllerSpec("ondemand", {"up_threshold": 80}, label="ondemand"),
    ControllerSpec("oracle", label="oracle", kind="oracle"),
]

per_seed = {c.label: [] for c in controllers}
for seed in (0, 1):
    result = run_group(scenario, seed, controllers)  # every controller behind the shield, same arrivals
    for label, r in result.items():
        per_seed[label].append(r["days"][0])

print(f"{scenario.description}: first 15 minutes, 2 seeds")
print(f"{'controller':12s} {'energy kWh':>11s} {'SLA viol %':>11s} {'p99 ms':>8s}")
for label, seeds in per_seed.items():
    s = summarise(seeds)
    print(f"{label:12s} {s['energy_kwh']['mean']:11.4f} {100 * s['sla_violation_rate']['mean']:11.3f} "
          f"{s['p99_latency_ms']['mean']:8.1f}")
