"""Comparison metrics: their definitions and units, per-step accumulation and statistics over seeds.

One :class:`MetricAccumulator` follows every copy of a shielded vector env (one copy per
controller, common random numbers) through an episode and turns the env's per-step telemetry into
the metrics of :data:`METRICS`. NodeDVFS-v0 and ClusterBudget-v0 model IT equipment only; their
cooling energy is the Datacenter-v0 plant (CRAC with the Moore et al. COP curve and economiser,
``powerrl.envs.sources.DATACENTER_COOLING``) removing the IT heat at the step's inlet temperature and
the scenario's outside air, so PUE and carbon are comparable across envs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from powerrl.envs import events as scenario_events
from powerrl.envs import sources
from powerrl.envs.cluster_budget import over_limits
from powerrl.envs.datacenter import RECIRC_BASE_C


@dataclass(frozen=True)
class Metric:
    """One reported metric: key, unit, meaning and which direction is better."""

    key: str
    unit: str
    doc: str
    better: str  # "lower", "higher" or "" (informational)


METRICS: tuple[Metric, ...] = (
    Metric("energy_kwh", "kWh", "facility energy: IT plus cooling", "lower"),
    Metric("energy_it_kwh", "kWh", "IT energy (servers)", "lower"),
    Metric("energy_cooling_kwh", "kWh", "cooling and facility overhead energy", "lower"),
    Metric("pue", "", "power usage effectiveness: facility / IT energy", "lower"),
    Metric("work_done", "node-s", "work served, node-seconds at f_max", "higher"),
    Metric("priority_weighted_work", "node-s", "work served weighted 16/8/4/2/1 by priority (ClusterBudget)",
           "higher"),
    Metric("perf_per_watt", "node-s/kJ", "work served per IT energy", "higher"),
    Metric("sla_violation_rate", "", "mean share of latency-bound units violating their p99 SLA per step", "lower"),
    Metric("p99_latency_ms", "ms", "99th percentile over steps of the worst latency-bound unit's p99", "lower"),
    Metric("max_temp_c", "degC", "hottest die temperature", "lower"),
    Metric("time_above_passive_s", "s", "time with the hottest die above the shield's first passive trip", "lower"),
    Metric("hot_trip_exceedances", "steps", "steps with a die above the hot trip", "lower"),
    Metric("budget_overshoot_ws", "W*s", "power above the facility budget and PDU limits, integrated", "lower"),
    Metric("budget_overshoot_steps", "steps", "steps with power above the facility budget or a PDU limit", "lower"),
    Metric("budget_breach_steps", "steps", "steps over the budget or a PDU limit for a 2nd consecutive period "
           "(the shield may take one period to react)", "lower"),
    Metric("priority_inversions", "", "throttled nodes while a less important node kept spare power", "lower"),
    Metric("carbon_kg", "kgCO2", "grid energy x hourly grid carbon intensity", "lower"),
    Metric("deferred_left", "node-s", "batch work still deferred at the end (charged in energy and carbon)", ""),
    Metric("shield_interventions", "steps", "steps on which the shield changed the controller's action", "lower"),
    Metric("shield_intervention_rate", "", "shield interventions / steps", "lower"),
    Metric("reward", "", "mean per-step env reward (the tuning objective), shield penalty excluded", "higher"),
)
METRIC_KEYS = tuple(m.key for m in METRICS)
BY_KEY = {m.key: m for m in METRICS}
#: Metrics that do not apply to an env are reported as null.
NOT_APPLICABLE: dict[str, tuple[str, ...]] = {
    "powerrl/NodeDVFS-v0": ("budget_overshoot_ws", "budget_overshoot_steps", "budget_breach_steps",
                            "priority_inversions", "priority_weighted_work", "deferred_left"),
    "powerrl/ClusterBudget-v0": ("deferred_left",),
    "powerrl/Datacenter-v0": ("budget_overshoot_ws", "budget_overshoot_steps", "budget_breach_steps",
                              "priority_inversions", "priority_weighted_work"),
}
#: Log-spaced latency histogram (ms) for the p99: 0.01 ms to 1,000 s, 40 bins per decade (~6 % wide).
LAT_EDGES_MS = np.logspace(-2, 6, 8 * 40 + 1)


#: Prices work still deferred at an episode's end: (node-s, facility/IT ratio, end s) -> (IT J, kgCO2), per copy.
LeftoverCharge = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
#: Steps buffered before the vectorised accumulation (bounds memory; amortises NumPy call overhead).
FLUSH_STEPS = 2048
#: Per-step telemetry kept in the buffer: (name in the buffer, info keys tried in order).
_BUFFERED = (("it_w", ("it_power_w", "power_w")), ("temp", ("temp_die_c", "temp_die_max_c")),
             ("inlet", ("inlet_c",)), ("work", ("work_done",)), ("viol", ("sla_violation_rate",)),
             ("lat", ("latency_ms",)), ("fac_kwh", ("energy_kwh",)), ("carbon", ("carbon_kg",)),
             ("pw_work", ("priority_weighted_work",)), ("over_w", ("budget_overshoot_w",)),
             ("pdu_over_w", ("pdu_overshoot_w",)), ("budget_w", ("budget_w",)), ("reward", ()), ("intervened", ()),
             ("inversions", ()), ("t_s", ()), ("step", ()))


class MetricAccumulator:
    """Per-copy running sums of one episode; :meth:`result` gives the metrics of every copy.

    :meth:`add` only copies the step's telemetry into a buffer; every :data:`FLUSH_STEPS` steps the
    buffer is reduced with a few vectorised operations (cooling power, carbon, histograms), which
    keeps the per-step cost to a few microseconds.

    Args:
        scenario: the :class:`powerrl.eval.scenario.Scenario` (env, data, events).
        n_copies: copies followed.
        site: the scenario's :class:`powerrl.envs.sources.SiteSeries` (carbon, ambient air per trace row).
        passive_c, hot_c: the shield's first passive and hot trip temperatures, degC.
    """

    def __init__(self, scenario: Any, n_copies: int, site: Any, passive_c: float, hot_c: float) -> None:
        self.env_id = scenario.env_id
        self.dt = scenario.dt_s
        self.trace = sources.trace_arrays(scenario.env_config.trace)
        self.site = site
        self.events = tuple(scenario.env_config.events)
        self.passive_c = passive_c
        self.hot_c = hot_c
        b = self.b = n_copies
        z = np.zeros
        self.steps = 0
        self.it_j, self.cool_j, self.work, self.pw_work = z(b), z(b), z(b), z(b)
        self.viol, self.max_temp, self.above_s, self.hot = z(b), np.full(b, -np.inf), z(b), z(b)
        self.over_ws, self.inversions, self.carbon, self.interventions, self.reward = z(b), z(b), z(b), z(b), z(b)
        self.over_steps, self.breaches = z(b), z(b)
        self.over_last = np.zeros(b, dtype=bool)  # over the limits on the last accounted step
        self.lat_hist = np.zeros((b, len(LAT_EDGES_MS) + 1), dtype=np.int64)
        self.buf = {name: np.zeros((FLUSH_STEPS, b)) for name, _ in _BUFFERED}
        self.keys: dict[str, str | None] = {}
        self.fill = 0
        self.deferred_left = np.zeros(b)
        self.end_s = np.zeros(b)
        #: Datacenter-v0: ``(left node-s, facility/IT ratio, end s) -> (IT J, kgCO2)`` for work still deferred.
        self.leftover_charge: LeftoverCharge | None = None

    def add(self, step_start_s: np.ndarray, step_in_episode: int, reward: np.ndarray, infos: dict[str, Any],
            intervened: np.ndarray, inversions: np.ndarray | None = None) -> None:
        """Account one step of every copy (``step_start_s``: trace time at the step's start, per copy)."""
        if not self.keys:
            self.keys = {name: next((k for k in keys if k in infos), None) for name, keys in _BUFFERED}
        j = self.fill
        buf = self.buf
        for name, key in self.keys.items():
            if key is not None:
                buf[name][j] = infos[key]
        buf["reward"][j] = reward
        buf["intervened"][j] = intervened
        buf["t_s"][j] = step_start_s
        buf["step"][j] = step_in_episode
        if inversions is not None:
            buf["inversions"][j] = inversions
        if "deferred_work" in infos:
            self.deferred_left = np.asarray(infos["deferred_work"], dtype=np.float64).copy()
        self.end_s = step_start_s + self.dt
        self.fill += 1
        self.steps += 1
        if self.fill == FLUSH_STEPS:
            self.flush()

    def flush(self) -> None:
        """Reduce the buffered steps into the running sums."""
        m = self.fill
        if m == 0:
            return
        self.fill = 0
        buf = {k: v[:m] for k, v in self.buf.items()}
        dt = self.dt
        it_w = buf["it_w"]
        rows = self.trace.rows_at(buf["t_s"])
        if self.env_id == "powerrl/Datacenter-v0":
            fac_j = buf["fac_kwh"] * 3.6e6
            self.carbon += buf["carbon"].sum(axis=0)
        else:
            ambient = self.site.ambient_c[rows]
            t_ep = buf["step"] * dt
            if self.events:
                ambient = ambient + scenario_events.ambient_offset_c(self.events, t_ep[:, 0])[:, None]
            # The CRAC setpoint behind the inlet: event offsets (heat wave, cooling failure) raise the
            # inlet, not the setpoint, so they must not be read as a warmer (more efficient) CRAC.
            inlet = buf["inlet"]
            if self.events:
                inlet = inlet - scenario_events.inlet_offset_c(self.events, t_ep[:, 0])[:, None]
            supply = inlet - RECIRC_BASE_C
            cooling_w = sources.cooling_power_w(it_w, supply, ambient)
            if self.events:
                cooling_w = np.where(scenario_events.cooling_down(self.events, t_ep[:, 0])[:, None], 0.0, cooling_w)
            fac_j = (it_w * (1.0 + sources.DATACENTER_COOLING.overhead_frac) + cooling_w) * dt
            self.carbon += (fac_j / 3.6e6 * self.site.carbon_g_per_kwh[rows] / 1000.0).sum(axis=0)
        self.it_j += it_w.sum(axis=0) * dt
        self.cool_j += fac_j.sum(axis=0) - it_w.sum(axis=0) * dt
        self.work += buf["work"].sum(axis=0)
        self.pw_work += buf["pw_work"].sum(axis=0)
        self.viol += buf["viol"].sum(axis=0)
        temp = buf["temp"]
        self.max_temp = np.maximum(self.max_temp, temp.max(axis=0))
        self.above_s += (temp > self.passive_c).sum(axis=0) * dt
        self.hot += (temp > self.hot_c).sum(axis=0)
        self.over_ws += (buf["over_w"] + buf["pdu_over_w"]).sum(axis=0) * dt
        # A breach is an overshoot on two consecutive steps of the episode (one accumulator per episode).
        over = over_limits(buf["over_w"], buf["pdu_over_w"], buf["budget_w"])
        before = np.vstack([self.over_last[None, :], over[:-1]])
        self.over_steps += over.sum(axis=0)
        self.breaches += (over & before).sum(axis=0)
        self.over_last = over[-1].copy()
        self.inversions += buf["inversions"].sum(axis=0)
        lat = np.nan_to_num(buf["lat"], nan=1e9, posinf=1e9)
        bins = np.searchsorted(LAT_EDGES_MS, lat)  # [m, b]
        for i in range(self.b):
            self.lat_hist[i] += np.bincount(bins[:, i], minlength=self.lat_hist.shape[1])
        self.interventions += buf["intervened"].sum(axis=0)
        self.reward += buf["reward"].sum(axis=0)

    def _charge_leftover(self) -> None:
        """Datacenter-v0: charge batch work still deferred at the end, so deferring past the end is not free.

        :meth:`powerrl.envs.datacenter.DatacenterCore.deferred_charge` (set as :attr:`leftover_charge`
        by the runner) prices it; the facility share is this episode's facility/IT energy ratio.
        """
        if self.leftover_charge is None or not self.deferred_left.any():
            return
        ratio = np.where(self.it_j > 0, (self.it_j + self.cool_j) / np.maximum(self.it_j, 1e-9), 1.0)
        it_j, carbon_kg = self.leftover_charge(self.deferred_left, ratio, self.end_s)
        self.it_j += it_j
        self.cool_j += it_j * (ratio - 1.0)
        self.carbon += carbon_kg

    def histograms(self) -> list[list[int]]:
        """Per-copy latency histograms over :data:`LAT_EDGES_MS` (for combining days exactly)."""
        self.flush()
        return [h.tolist() for h in self.lat_hist]

    def result(self) -> list[dict[str, float | None]]:
        """Metrics of each copy (None where a metric does not apply to the env)."""
        self.flush()
        self._charge_leftover()
        out = []
        na = NOT_APPLICABLE.get(self.env_id, ())
        n = max(self.steps, 1)
        for i in range(self.b):
            it_kwh = self.it_j[i] / 3.6e6
            cool_kwh = self.cool_j[i] / 3.6e6
            p99 = p99_from_histogram(self.lat_hist[i])
            m: dict[str, float | None] = {
                "energy_kwh": it_kwh + cool_kwh, "energy_it_kwh": it_kwh, "energy_cooling_kwh": cool_kwh,
                "pue": (it_kwh + cool_kwh) / it_kwh if it_kwh > 0 else None,
                "work_done": float(self.work[i]), "priority_weighted_work": float(self.pw_work[i]),
                "perf_per_watt": float(self.work[i] / (self.it_j[i] / 1000.0)) if self.it_j[i] > 0 else None,
                "sla_violation_rate": float(self.viol[i] / n), "p99_latency_ms": p99,
                "max_temp_c": float(self.max_temp[i]), "time_above_passive_s": float(self.above_s[i]),
                "hot_trip_exceedances": float(self.hot[i]), "budget_overshoot_ws": float(self.over_ws[i]),
                "budget_overshoot_steps": float(self.over_steps[i]), "budget_breach_steps": float(self.breaches[i]),
                "priority_inversions": float(self.inversions[i]), "carbon_kg": float(self.carbon[i]),
                "deferred_left": float(self.deferred_left[i]), "shield_interventions": float(self.interventions[i]),
                "shield_intervention_rate": float(self.interventions[i] / n), "reward": float(self.reward[i] / n),
            }
            for key in na:
                m[key] = None
            out.append(m)
        return out


def p99_from_histogram(hist: np.ndarray) -> float:
    """The 99th percentile (upper bin edge, ms) of a latency histogram over :data:`LAT_EDGES_MS`."""
    cum = np.cumsum(hist)
    if cum[-1] <= 0:
        return float("nan")
    k = int(np.searchsorted(cum, 0.99 * cum[-1]))
    return float(LAT_EDGES_MS[min(k, len(LAT_EDGES_MS) - 1)])


def combine_days(per_day: list[dict[str, float | None]], histograms: list[list[int]] | None = None
                 ) -> dict[str, float | None]:
    """One seed's metrics over several day-episodes: sums of extensive metrics, means/maxima of the rest.

    Ratios are recomputed from the sums (PUE, perf per watt) and, given the days' latency
    ``histograms``, the p99 is taken over every step of every day (not a mean of daily p99s).
    """
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        vals = [float(v) for d in per_day if (v := d.get(key)) is not None]
        if not vals:
            out[key] = None
        elif key in ("max_temp_c",):
            out[key] = max(vals)
        elif key in ("pue", "perf_per_watt", "sla_violation_rate", "p99_latency_ms", "shield_intervention_rate",
                     "reward"):
            out[key] = float(np.mean(vals))
        else:
            out[key] = float(np.sum(vals))
    it = out.get("energy_it_kwh")
    if it:
        out["pue"] = float(out["energy_kwh"] or 0.0) / it
        if out.get("work_done") is not None:
            out["perf_per_watt"] = float(out["work_done"] or 0.0) / (it * 3600.0)  # kWh -> kJ
    if histograms:
        out["p99_latency_ms"] = p99_from_histogram(np.sum(np.asarray(histograms), axis=0))
    return out


def summarise(per_seed: list[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Mean and 95 % confidence half-width (Student t over seeds; None with one seed) of every metric."""
    out: dict[str, dict[str, float | None]] = {}
    for key in METRIC_KEYS:
        vals = np.array([s[key] for s in per_seed if s.get(key) is not None], dtype=np.float64)
        if vals.size == 0:
            out[key] = {"mean": None, "ci95": None, "n": 0}
            continue
        mean = float(vals.mean())
        ci = None
        if vals.size > 1:
            ci = float(stats.t.ppf(0.975, vals.size - 1) * vals.std(ddof=1) / math.sqrt(vals.size))
        out[key] = {"mean": mean, "ci95": ci, "n": int(vals.size)}
    return out
