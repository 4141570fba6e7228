"""Rollouts of controllers through a scenario: one shielded vector env, one copy per controller.

Every controller of a cell drives its own copy of the env; copies share their arrivals (common
random numbers: the same requests, load and budget events, drawn from the episode seed only), so
differences between copies come from the controllers alone, and splitting the controllers over
processes changes nothing. Each episode seed is derived from ``(seed, day)``, so a cell's results
depend on its seed, never on which other cells run or in which order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import powerrl.baselines  # noqa: F401 - registers the baselines and the oracle
from powerrl.control import Controller, ControlTarget, controller_class, make_controller
from powerrl.envs.cluster_budget import ClusterBudgetVectorEnv
from powerrl.envs.datacenter import DatacenterVectorEnv
from powerrl.envs.node_dvfs import NodeDVFSVectorEnv
from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.envs.sources import site_series
from powerrl.envs.target import control_target
from powerrl.errors import ConfigError, PowerrlError
from powerrl.eval.metrics import MetricAccumulator
from powerrl.eval.scenario import Scenario

VECTOR_ENVS: dict[str, Any] = {
    "powerrl/NodeDVFS-v0": NodeDVFSVectorEnv,
    "powerrl/ClusterBudget-v0": ClusterBudgetVectorEnv,
    "powerrl/Datacenter-v0": DatacenterVectorEnv,
}
#: Points per plotted time series (bucket means).
SERIES_POINTS = 480


@dataclass(frozen=True)
class ControllerSpec:
    """A controller to compare: a registered name (with parameters) or a policy file.

    Attributes:
        ref: registered controller name, or the path of a policy file.
        params: keyword parameters (tuned values or the user's).
        label: the name in tables and plots.
        kind: ``baseline``, ``oracle``, ``policy`` or ``other`` (stress controllers).
    """

    ref: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    kind: str = "baseline"
    #: Builds the controller instead of ``ref`` (``factory(action_space, observation_space, target)``):
    #: a live model under training, evaluated by ``powerrl train``. Not picklable across processes.
    factory: Callable[[Any, Any, ControlTarget], Controller] | None = field(default=None, compare=False, repr=False)

    def drives(self, env_id: str) -> bool:
        """Whether this controller can drive ``env_id``."""
        if self.factory is not None:
            return True
        if self.kind == "policy":
            from powerrl.eval.policy_file import policy_env_id

            return policy_env_id(self.ref) == env_id
        ids = controller_class(self.ref).env_ids
        return not ids or env_id in ids

    def build(self, action_space: Any, observation_space: Any, target: ControlTarget) -> Controller:
        """Instantiate for an env's spaces and target."""
        if self.factory is not None:
            return self.factory(action_space, observation_space, target)
        if self.kind == "policy":
            from powerrl.eval.policy_file import PolicyFileController

            return PolicyFileController(Path(self.ref), action_space, observation_space, target=target)
        return make_controller(self.ref, action_space, observation_space, target=target, **self.params)


def preflight(scenario: Scenario, specs: list[ControllerSpec], tuned_source: str | None = None) -> None:
    """Build the scenario's env, shield and every controller once, so bad input fails before any work.

    Raises:
        ConfigError: naming the scenario file (shield, env) or the tuned-parameter file (parameters).
    """
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError("--controllers", dup, "each controller once (two specs share a label)", scenario.source)
    _build(scenario, specs, 1, tuned_source)[1].close()


def _build(scenario: Scenario, specs: list[ControllerSpec], n_copies: int, tuned_source: str | None = None
           ) -> tuple[Any, ShieldedVectorEnv, ControlTarget, list[Controller]]:
    """The scenario's vector env (shared arrivals), its shield wrapper, the target and the controllers.

    Raises:
        ConfigError: naming the scenario file (env, shield) or, for tuned parameters, ``tuned_source``.
    """
    try:
        venv = VECTOR_ENVS[scenario.env_id](n_copies, shared_arrivals=True, **scenario.env_kwargs())
        senv = ShieldedVectorEnv(venv, scenario.shield)
    except PowerrlError as exc:
        raise ConfigError("env_config/shield", scenario.shield_name, f"an env and shield that fit together ({exc})",
                          scenario.source) from None
    target = control_target(venv, scenario.shield)
    ctrls = []
    for spec in specs:
        src = tuned_source if spec.params and spec.kind == "baseline" else scenario.source
        try:
            ctrls.append(spec.build(venv.single_action_space, venv.single_observation_space, target))
        except PowerrlError as exc:
            raise ConfigError(f"controller {spec.label}", spec.params, f"parameters it accepts ({exc})", src) from None
        except Exception as exc:  # a controller that cannot start is the user's input: say which
            raise ConfigError(f"controller {spec.label}", spec.params, f"a controller that starts ({exc})",
                              src) from None
    return venv, senv, target, ctrls


def thermal_trips_c(scenario: Scenario) -> tuple[float, float]:
    """The shield's first passive and first hot trip temperatures of the package zone, degC."""
    zones = scenario.shield.zones
    zone = zones.get("package") or next(iter(zones.values()))
    passive = zone.temp_of("passive")
    hot = zone.temp_of("hot")
    return (float("inf") if passive is None else passive), (float("inf") if hot is None else hot)


def episode_seed(seed: int, day: int) -> int:
    """The env seed of ``day``'s episode under run seed ``seed`` (independent of everything else)."""
    return int(np.random.SeedSequence([int(seed), int(day)]).generate_state(1)[0])


class _Series:
    """Bucket means of power, hottest die, mean frequency and grid intensity over one episode."""

    def __init__(self, n_copies: int, n_steps: int) -> None:
        self.bucket = max(1, n_steps // SERIES_POINTS)
        n_b = -(-n_steps // self.bucket)
        self.sum = np.zeros((4, n_copies, n_b))
        self.count = np.zeros(n_b)
        self.t_s = np.zeros(n_b)

    def add(self, step: int, t_s: float, power_w: np.ndarray, temp_c: np.ndarray, freq_mhz: np.ndarray,
            carbon: float) -> None:
        j = step // self.bucket
        self.sum[0, :, j] += power_w
        self.sum[1, :, j] += temp_c
        self.sum[2, :, j] += freq_mhz
        self.sum[3, :, j] += carbon
        if self.count[j] == 0:
            self.t_s[j] = t_s
        self.count[j] += 1

    def result(self, i: int) -> dict[str, list[float]]:
        mean = self.sum[:, i, :] / np.maximum(self.count, 1)
        return {"time_h": (self.t_s / 3600.0).round(4).tolist(), "power_w": mean[0].round(3).tolist(),
                "temp_c": mean[1].round(3).tolist(), "freq_mhz": mean[2].round(2).tolist(),
                "carbon_g_per_kwh": mean[3].round(2).tolist()}


def run_group(scenario: Scenario, seed: int, specs: list[ControllerSpec], record_series: bool = False,
              progress: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run ``specs`` (one env copy each) through every day of ``scenario`` with run seed ``seed``.

    Returns ``{label: {"days": [metrics per day], "hists": [latency histogram per day], "series":
    {...} or None}}``; the series (bucket means of the first day) only with ``record_series``.
    ``progress(n)`` is called with the number of env steps done since its last call.
    """
    n = len(specs)
    venv, senv, target, ctrls = _build(scenario, specs, n)
    senv.record_inversions = True
    core = venv.core
    cfg = scenario.env_config
    site = site_series(cfg.trace, scenario.carbon, scenario.weather)
    passive_c, hot_c = thermal_trips_c(scenario)
    penalty = senv.shield_config.penalty
    freqs = np.asarray(target.freqs_mhz)
    f_max = float(freqs[-1])
    caps = senv.shield.caps if scenario.env_id == "powerrl/ClusterBudget-v0" else []
    steps = scenario.steps_per_episode
    out: dict[str, dict[str, Any]] = {s.label: {"days": [], "hists": [], "series": None} for s in specs}
    space = venv.single_action_space
    actions = np.zeros((n, *space.shape), dtype=space.dtype)
    for d_idx, day in enumerate(scenario.days):
        ep_seed = episode_seed(seed, day)
        obs, _ = senv.reset(seed=ep_seed, options={"start_s": scenario.start_s(day)})
        for i, c in enumerate(ctrls):
            c.reset(seed=ep_seed, batch=1)
            if c.clairvoyant:
                c.bind(venv, np.array([i]))
        acc = MetricAccumulator(scenario, n, site, passive_c, hot_c)
        if scenario.env_id == "powerrl/Datacenter-v0":
            acc.leftover_charge = core.deferred_charge
        series = _Series(n, steps) if record_series and d_idx == 0 else None
        done_since = 0
        for step in range(steps):
            t_s = core.time_s.copy()
            for i, c in enumerate(ctrls):
                try:
                    actions[i] = c.act_batch(obs[i:i + 1], t_s[i:i + 1])[0]
                except Exception as exc:  # noqa: BLE001 - a crashing controller: the shield's fallback acts
                    raise PowerrlError(f"controller {specs[i].label} failed at step {step} of day {day} in "
                                       f"scenario {scenario.name}: {type(exc).__name__}: {exc}") from exc
            obs, reward, _, _, infos = senv.step(actions)
            intervened = infos["shield_intervened"]
            raw_reward = reward + penalty * intervened
            inv = infos.get("priority_inversions") if caps else None
            acc.add(t_s, step, raw_reward, infos, intervened, inv)
            if series is not None:
                row = int(core.trace.rows_at(t_s[:1])[0])
                if scenario.env_id == "powerrl/NodeDVFS-v0":
                    freq = freqs[np.asarray(infos["shield_applied"], dtype=np.int64)].mean(axis=1)
                    power, temp = infos["power_w"], infos["temp_die_c"]
                else:
                    freq = infos["freq_ratio_mean"] * f_max
                    power = infos["it_power_w"] if "it_power_w" in infos else infos["power_w"]
                    temp = infos["temp_die_max_c"]
                series.add(step, float(t_s[0]), power, temp, freq, float(site.carbon_g_per_kwh[row]))
            done_since += 1
            if progress is not None and done_since >= 2000:
                progress(done_since)
                done_since = 0
        if progress is not None and done_since:
            progress(done_since)
        for i, (m, h) in enumerate(zip(acc.result(), acc.histograms(), strict=True)):
            out[specs[i].label]["days"].append(m)
            out[specs[i].label]["hists"].append(h)
            if series is not None:
                out[specs[i].label]["series"] = series.result(i)
    senv.close()
    return out
