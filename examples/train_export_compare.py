"""Train a small PPO policy on NodeDVFS-v0, export it to ONNX, and compare it with a governor and the oracle.

The whole loop a user runs, top to bottom and from Python, on a budget that finishes in well under a
minute: ``powerrl train`` (here through :func:`powerrl.agents.train.train`), ``powerrl export``, and
``powerrl compare`` on a 6-minute window of held-out day 22. A policy trained this briefly is not
good; ``powerrl train nodedvfs-ppo`` (6 M steps, about 17 minutes on 2 cores) gives the shipped one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from powerrl.agents.config import load_experiment
from powerrl.agents.export import export_run
from powerrl.agents.train import train
from powerrl.eval.compare import run_comparison
from powerrl.eval.controllers import controllers_for, load_tuned
from powerrl.eval.scenario import load_scenario


def main() -> None:
    """Train, export, compare; print the comparison."""
    exp = load_experiment("nodedvfs-ppo", total_timesteps=16_384)
    exp = dataclasses.replace(exp, n_envs=16, eval=None, checkpoint_every_steps=0)
    with tempfile.TemporaryDirectory() as tmp:
        run = train(exp, Path(tmp) / "run", command="examples/train_export_compare.py", argv=[], quiet=True)
        policy = export_run(run, Path(tmp) / "tiny-ppo.onnx", checkpoint="final")
        print(f"trained {exp.total_timesteps:,} steps and exported {policy.name}")

        # A 6-minute window of held-out day 22: the policy, the best tuned governor and the oracle.
        scenario = dataclasses.replace(load_scenario("nodedvfs-day22"), duration_h=0.1)
        specs = controllers_for(scenario.env_id, ["conservative", "oracle", str(policy)], load_tuned(None))
        doc = run_comparison([scenario], {scenario.name: specs}, [0], command="examples/train_export_compare.py",
                             jobs=1, progress=False)
    for label, c in doc["scenarios"][scenario.name]["controllers"].items():
        m = c["metrics"]
        print(f"{label:>14}: energy {m['energy_kwh']['mean']:.4f} kWh, "
              f"SLA violations {100 * m['sla_violation_rate']['mean']:.2f} %, "
              f"shield interventions {100 * m['shield_intervention_rate']['mean']:.2f} %")


if __name__ == "__main__":
    main()
