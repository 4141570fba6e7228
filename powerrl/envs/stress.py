"""Stress runs of the shield: random and adversarial controllers across emergency scenarios.

:func:`run_stress` drives a shielded vector env with a stress controller through a scenario and
counts every violation of the shield's guarantees (docs/shield.md):

* ``hot_exceedances``: copy-steps whose hottest die ends the step above the hot trip plus ``tolerance_c``;
* ``budget_violations``: copy-steps where measured power exceeded the facility budget or a PDU
  limit for a second consecutive control period (one period is the shield's reaction time);
* ``priority_inversions``: throttled nodes while a less important node in the same binding scope
  kept spare power (:func:`powerrl.shield.budget.count_priority_inversions`).

``benchmarks/shield_fuzz.py`` runs the whole matrix (>= 10^6 env steps) and ``tests/envs`` a small one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from powerrl.control import make_controller
from powerrl.envs.cluster_budget import over_limits
from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.shield.config import ShieldConfig

#: Env settings of the stress runs: the envs' control periods, episodes long enough to hold the events,
#: and the hottest workload (compute-bound, twice the trace's load) where the env lets us choose.
STRESS_ENVS: dict[str, dict[str, Any]] = {
    "powerrl/NodeDVFS-v0": {"dt_s": 0.1, "episode_s": 300.0, "workload_class": "compute", "load_scale": 2.0},
    "powerrl/ClusterBudget-v0": {"dt_s": 1.0, "episode_s": 1800.0, "n_nodes": 64},
    "powerrl/Datacenter-v0": {"dt_s": 60.0, "episode_s": 6 * 3600.0, "n_racks": 8},
}
SCENARIOS = ("normal", "heat_wave", "cooling_failure", "grid_cut", "demand_surge")
CONTROLLERS = ("random", "all_max", "oscillate", "invalid")


def check_binds(env_id: str, shield: ShieldConfig | str | None) -> None:
    """Raise :class:`~powerrl.errors.ConfigError` if ``shield`` cannot guard ``env_id`` (zones, floor P-state)."""
    env = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point", **STRESS_ENVS[env_id])
    ShieldedVectorEnv(env, shield).close()


def scenario_events(name: str, env_id: str, episode_s: float) -> tuple[dict[str, Any], ...] | None:
    """Env ``events`` of stress scenario ``name`` (None when the env has no such event, e.g. grid cuts).

    Heat wave: +10 degC inlet all episode. Cooling failure: the CRAC down from 10 % to 70 % of the
    episode, inlet rising toward +20 degC. Grid cut: the budget cut by 30 % with 5 s notice from 10 % to
    70 % of the episode. Demand surge: twice the offered load over the same window.
    """
    start, duration = 0.1 * episode_s, 0.6 * episode_s
    if name == "normal":
        return ()
    if name == "heat_wave":
        return ({"kind": "heat_wave", "start_s": 0.0, "duration_s": episode_s, "delta_c": 10.0},)
    if name == "cooling_failure":
        return ({"kind": "cooling_failure", "start_s": start, "duration_s": duration, "rise_c": 20.0,
                 "tau_s": min(120.0, duration / 4)},)
    if name == "grid_cut":
        if env_id != "powerrl/ClusterBudget-v0":
            return None
        return ({"kind": "grid_cut", "start_s": start, "duration_s": duration, "percent": 30.0, "within_s": 5.0},)
    if name == "demand_surge":
        return ({"kind": "demand_surge", "start_s": start, "duration_s": duration, "factor": 2.0},)
    raise ValueError(f"scenario {name!r}: use one of {', '.join(SCENARIOS)}")


def stress_actions(name: str, space: gym.spaces.Space, n_copies: int, rng: np.random.Generator, step: int
                   ) -> np.ndarray:
    """A ``[n_copies, ...]`` batch of actions from stress controller ``name`` for the single action ``space``.

    ``random``: uniform over the space; ``all_max``: every P-state, cap, ceiling and setpoint at its
    maximum (the hottest, hungriest request); ``oscillate``: all-min and all-max in turn (hysteresis and
    rate limits); ``invalid``: NaN, +-inf and out-of-range values mixed with valid ones.
    """
    if isinstance(space, gym.spaces.MultiDiscrete):
        lo, hi = np.zeros(space.shape), (space.nvec - 1).astype(np.float64)
    elif isinstance(space, gym.spaces.Box):
        lo, hi = space.low.astype(np.float64), space.high.astype(np.float64)
    else:
        raise TypeError(f"unsupported action space {space}")
    lo, hi = np.broadcast_to(lo, (n_copies, *lo.shape)), np.broadcast_to(hi, (n_copies, *hi.shape))
    if name == "random":
        x = rng.uniform(lo, hi + (1.0 if isinstance(space, gym.spaces.MultiDiscrete) else 0.0))
        return np.floor(x).clip(lo, hi) if isinstance(space, gym.spaces.MultiDiscrete) else x
    if name == "all_max":
        return hi.copy()
    if name == "oscillate":
        return hi.copy() if step % 2 else lo.copy()
    if name == "invalid":
        x = rng.uniform(lo - 5.0 * (hi - lo + 1), hi + 5.0 * (hi - lo + 1))
        pick = rng.random(x.shape)
        x = np.where(pick < 0.2, np.nan, x)
        x = np.where((pick >= 0.2) & (pick < 0.3), np.inf, x)
        x = np.where((pick >= 0.3) & (pick < 0.4), -np.inf, x)
        return np.where(pick > 0.9, hi, x)
    raise ValueError(f"stress controller {name!r}: use one of {', '.join(CONTROLLERS)}")


@dataclass
class StressResult:
    """Counts of one stress run (``steps`` are env steps: copies x periods)."""

    env_id: str
    scenario: str
    controller: str
    steps: int = 0
    interventions: int = 0
    hot_exceedances: int = 0
    max_temp_c: float = -np.inf
    hot_trip_c: float = np.nan
    budget_overshoot_steps: int = 0
    budget_violations: int = 0
    priority_inversions: int = 0
    events: Counter[str] = field(default_factory=Counter)

    @property
    def violations(self) -> int:
        """Every guarantee violation counted."""
        return self.hot_exceedances + self.budget_violations + self.priority_inversions


def run_stress(env_id: str, scenario: str, controller: str, n_copies: int, n_steps: int, seed: int = 0,
               shield: ShieldConfig | str | None = None, tolerance_c: float = 0.0, shielded: bool = True,
               thermal_model_error: float = 0.0) -> StressResult | None:
    """Run ``controller`` on ``n_copies`` shielded copies of ``env_id`` for ``n_steps`` periods.

    ``shielded=False`` runs the same controller on the bare env (the comparison that shows what the
    shield prevents; NaN actions then reach the env's own NaN handling). ``thermal_model_error``
    makes the simulated servers' thermal resistances that much larger than the profile the shield
    models them with (0.1 = 10 % hotter per watt), to measure the guarantee's model tolerance.
    Returns None when the scenario does not apply to the env (a grid cut without a budget).
    """
    overrides = dict(STRESS_ENVS[env_id])
    events = scenario_events(scenario, env_id, overrides["episode_s"])
    if events is None:
        return None
    overrides["events"] = events
    bare = gym.make_vec(env_id, num_envs=n_copies, vectorization_mode="vector_entry_point", **overrides)
    venv = ShieldedVectorEnv(bare, shield)
    env: gym.vector.VectorEnv = venv if shielded else bare
    if thermal_model_error:
        sim = venv.adapter.core.arrays  # the simulator's own parameters; the shield keeps the profile's
        sim.r_die_c_per_w *= 1.0 + thermal_model_error
        sim.r_sink_c_per_w *= 1.0 + thermal_model_error
    hot_c = min(z.temp_of("hot") or z.temp_of("critical") or np.inf for z in venv.shield_config.zones.values())
    label = controller if shielded else f"{controller} (no shield)"
    if thermal_model_error:
        label += f" R{thermal_model_error:+.0%}"
    result = StressResult(env_id, scenario, label, hot_trip_c=float(hot_c))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    # "random" is the registered controller (uniform over the batched action space), seeded here.
    random_controller = make_controller("random", venv.action_space) if controller == "random" else None
    if random_controller is not None:
        random_controller.reset(seed)
    over_last = np.zeros(n_copies, dtype=bool)
    caps = venv.shield.caps if shielded else []
    for step in range(n_steps):
        actions = (random_controller.act(obs) if random_controller is not None
                   else stress_actions(controller, venv.single_space, n_copies, rng, step))
        if not shielded and isinstance(venv.single_space, gym.spaces.MultiDiscrete):
            actions = np.nan_to_num(actions, posinf=0.0, neginf=0.0).astype(np.int64)
        obs, _, terminated, truncated, infos = env.step(actions)
        result.steps += n_copies
        if shielded:
            result.interventions += int(np.count_nonzero(infos["shield_intervened"]))
            result.events.update(infos["shield_events"])
        # The hottest die of each copy at the end of the step, taken before the same-step autoreset.
        temps = np.asarray(infos["temp_die_c"] if "temp_die_c" in infos else infos["temp_die_max_c"])
        result.max_temp_c = max(result.max_temp_c, float(temps.max()))
        result.hot_exceedances += int(np.count_nonzero(temps > hot_c + tolerance_c))
        if "budget_overshoot_w" in infos:
            over = over_limits(infos["budget_overshoot_w"], infos["pdu_overshoot_w"], infos["budget_w"])
            result.budget_overshoot_steps += int(over.sum())
            result.budget_violations += int(np.count_nonzero(over & over_last))
            over_last = over & ~(terminated | truncated)
        if caps:
            result.priority_inversions += sum(c.priority_inversions() for c in caps)
    env.close()
    return result


#: Copies and periods per (scenario, controller) cell of the full matrix: 16 NodeDVFS cells of 64 x 3,000,
#: 20 ClusterBudget cells of 8 x 1,800 and 16 Datacenter cells of 4 x 360 -- about 3.4 million env steps.
FULL_MATRIX: dict[str, tuple[int, int]] = {
    "powerrl/NodeDVFS-v0": (64, 3000),
    "powerrl/ClusterBudget-v0": (8, 1800),
    "powerrl/Datacenter-v0": (4, 360),
}


def run_matrix(sizes: dict[str, tuple[int, int]] | None = None, seed: int = 0,
               shield: ShieldConfig | str | None = None, progress: bool = False,
               scenarios: tuple[str, ...] = SCENARIOS, controllers: tuple[str, ...] = CONTROLLERS
               ) -> list[StressResult]:
    """Every (env, scenario, controller) cell that applies, with ``sizes[env] = (copies, periods)``."""
    results = []
    for env_id, (copies, steps) in (sizes or FULL_MATRIX).items():
        for scenario in scenarios:
            for controller in controllers:
                r = run_stress(env_id, scenario, controller, copies, steps, seed=seed, shield=shield)
                if r is None:
                    continue
                results.append(r)
                if progress:
                    print(f"  {env_id:26s} {scenario:16s} {controller:10s} {r.steps:>9,d} steps  "
                          f"violations {r.violations}", flush=True)
    return results


TABLE_HEADER = (f"{'env':17s} {'scenario':16s} {'controller':22s} {'steps':>10s} {'shielded':>8s} {'max degC':>8s} "
                f"{'hot exc.':>9s} {'over':>9s} {'over>1':>9s} {'inversions':>10s}")


def table_row(r: StressResult) -> str:
    """One line of the stress table: steps, share of steps shielded, hottest die and violation counts."""
    return (f"{r.env_id.removeprefix('powerrl/'):17s} {r.scenario:16s} {r.controller:22s} {r.steps:>10,d} "
            f"{r.interventions / max(r.steps, 1):>8.1%} {r.max_temp_c:>8.1f} {r.hot_exceedances:>9,d} "
            f"{r.budget_overshoot_steps:>9,d} {r.budget_violations:>9,d} {r.priority_inversions:>10,d}")


def summary(results: list[StressResult], wall_s: float) -> str:
    """Totals over a matrix: env steps, hottest die and every violation count."""
    steps = sum(r.steps for r in results)
    return (f"total: {steps:,d} env steps in {wall_s:.0f} s; hottest die {max(r.max_temp_c for r in results):.1f} "
            f"degC (hot trip {results[0].hot_trip_c:.0f} degC); hot-trip exceedances "
            f"{sum(r.hot_exceedances for r in results)}; budget over for more than one period "
            f"{sum(r.budget_violations for r in results)}; priority inversions "
            f"{sum(r.priority_inversions for r in results)}")
