"""``powerrl tune-baseline``: grid-search a baseline's parameters on training days only.

The objective is the env's own reward (mean per step over days and seeds, shield penalty excluded),
the quantity RL policies maximise, so a tuned baseline is the fair opponent. Held-out days are
refused: tuning on them would leak the evaluation data.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy as np

from powerrl.baselines.base import Baseline
from powerrl.control import controller_class
from powerrl.envs.sources import trace_arrays
from powerrl.errors import ConfigError
from powerrl.eval.compare import Cell, run_cells
from powerrl.eval.metrics import combine_days
from powerrl.eval.runner import ControllerSpec, preflight
from powerrl.eval.scenario import Scenario

#: Grid points per process cell (copies of one vector env).
POINTS_PER_CELL = 16
#: Largest grid searched without an explicit ``--grid``.
MAX_POINTS = 256
#: Highest shield intervention rate a tuned point may have (the same 1 % the RL goals allow).
MAX_SHIELD_RATE = 0.01


def training_days(scenario: Scenario, n: int = 3) -> tuple[int, ...]:
    """The last ``n`` training days of the scenario's trace (the most recent history a user would tune on)."""
    train = trace_arrays(scenario.env_config.trace).trace.day_numbers("train")
    return tuple(train[-n:])


def grid_points(name: str, overrides: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Every combination of the baseline's ``param_grid`` (with ``overrides`` replacing whole axes)."""
    cls = controller_class(name)
    if not issubclass(cls, Baseline):
        raise ConfigError("controller", name, "a rule-based baseline (the oracle and stress controllers have no "
                          "parameters to tune)")
    grid = dict(cls.param_grid)
    accepted = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "action_space", "observation_space", "target")]
    for key, values in (overrides or {}).items():
        if key not in grid and key not in accepted:
            raise ConfigError(f"--grid {key}", values, f"a parameter of {name}: " + ", ".join(accepted) if accepted
                              else f"nothing: {name} has no parameters")
        grid[key] = tuple(values)
    if not grid:
        return [{}]
    keys = list(grid)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]
    if len(points) > MAX_POINTS:
        raise ConfigError("--grid", {k: list(v) for k, v in grid.items()},
                          f"at most {MAX_POINTS} combinations ({len(points)} here): fix some axes with --grid")
    return points


def tune(name: str, scenario: Scenario, days: tuple[int, ...], seeds: list[int], jobs: int = 0,
         overrides: dict[str, list[Any]] | None = None, progress: bool = True) -> dict[str, Any]:
    """Search the grid; returns the tuned entry (best params, its reward, the default's, every point)."""
    held = set(trace_arrays(scenario.env_config.trace).trace.day_numbers("heldout"))
    leaked = sorted(set(days) & held)
    if leaked:
        raise ConfigError("--days", list(days), f"training days only (held-out days {leaked} are for evaluation)")
    sc = scenario.with_days(days)
    cls = controller_class(name)
    if cls.env_ids and sc.env_id not in cls.env_ids:
        raise ConfigError("controller", name, f"a baseline for {sc.env_id} (it drives {', '.join(cls.env_ids)})")
    points = grid_points(name, overrides)
    specs = [ControllerSpec(ref=name, params=p, label=f"{name}[{i}]") for i, p in enumerate(points)]
    specs.append(ControllerSpec(ref=name, params={}, label=f"{name}[default]"))
    preflight(sc, specs, "--grid")  # every grid point builds before any simulation starts
    cells = [Cell(sc, seed, tuple(specs[j:j + POINTS_PER_CELL]), record_series=False)
             for seed in seeds for j in range(0, len(specs), POINTS_PER_CELL)]
    raw = run_cells(cells, jobs=jobs, progress=progress, label=f"tune {name}")
    scores = []
    for spec in specs:
        per_seed = [combine_days(raw[(sc.name, s)][spec.label]["days"], raw[(sc.name, s)][spec.label]["hists"])
                    for s in seeds]
        reward = float(np.mean([p["reward"] for p in per_seed]))
        hot = float(np.sum([p["hot_trip_exceedances"] or 0.0 for p in per_seed]))
        shield = float(np.mean([p["shield_intervention_rate"] or 0.0 for p in per_seed]))
        scores.append((spec, reward, hot, per_seed, shield))
    # A tuned baseline must stand on its own: no hot-trip exceedance and the shield acting on at most
    # MAX_SHIELD_RATE of the steps (else the "baseline" is partly the shield).
    feasible = [s for s in scores[:-1] if s[2] == 0 and s[4] <= MAX_SHIELD_RATE] or scores[:-1]
    best = max(feasible, key=lambda s: s[1])
    return {
        "params": best[0].params, "reward": best[1], "default_reward": scores[-1][1],
        "scenario": scenario.name, "days": list(days), "seeds": seeds,
        "shield_intervention_rate": best[4],
        "grid": [{"params": s[0].params, "reward": s[1], "shield_intervention_rate": s[4]} for s in scores[:-1]],
    }
