"""``powerrl/Datacenter-v0``: rack P-state ceilings, CRAC supply setpoint and batch deferral under carbon."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.envs import events, sources
from powerrl.envs.arrivals import ArrivalChunks
from powerrl.envs.batched import BatchedVectorEnv, CoreClock, SingleCopyEnv
from powerrl.envs.config import DatacenterConfig, make_config
from powerrl.envs.fleet import build_fleet, pstate_array
from powerrl.model.workload import NODE_LOAD_LOG_SD

ENV_ID = "powerrl/Datacenter-v0"

#: Recirculation of hot exhaust raises rack inlet above the CRAC supply temperature by a base plus
#: a load-dependent part (degC); Moore et al., USENIX ATC 2005 ("Making scheduling cool") observe
#: inlet rises of a few degC from recirculation that grow with rack heat output.
RECIRC_BASE_C = 1.0
RECIRC_LOAD_C = 3.0
#: Die temperature above which the thermal penalty applies (degC); typical server CPU Tcase/Tjmax
#: margins put sustained operation below ~85 degC (e.g. Intel Xeon Scalable thermal guides).
THERMAL_LIMIT_C = 85.0
THERMAL_PENALTY_PER_C = 0.05

RACK_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("util", "mean busy fraction of the rack's nodes", 0.0, 1.0),
    ("power_frac", "rack power / rack busy power", 0.0, 1.5),
    ("temp_die_max_c", "hottest die in the rack, degC", 0.0, 150.0),
    ("ceiling", "P-state ceiling / (n_pstates - 1)", 0.0, 1.0),
    ("latency_slack", "mean of 1 - p99 latency / SLA over interactive nodes, clipped", -1.0, 1.0),
)
GLOBAL_FIELDS: tuple[tuple[str, str, float, float], ...] = (
    ("supply_c", "CRAC supply temperature, degC", 0.0, 40.0),
    ("ambient_c", "outside air temperature, degC", -30.0, 50.0),
    ("carbon_g_per_kwh", "grid carbon intensity now / 1000, gCO2/kWh / 1000", 0.0, 2.0),
    ("carbon_forecast_1h", "same-time-yesterday forecast 1 h ahead / 1000", 0.0, 2.0),
    ("carbon_forecast_3h", "same-time-yesterday forecast 3 h ahead / 1000", 0.0, 2.0),
    ("solar_frac", "on-site solar output / peak kWp", 0.0, 1.2),
    ("deferred_h", "deferred batch work / batch capacity per hour, h", 0.0, 100.0),
    ("oldest_frac", "age of the oldest deferred work / deferral window", 0.0, 1.0),
    ("tod_sin", "sin(2 pi time of day)", -1.0, 1.0),
    ("tod_cos", "cos(2 pi time of day)", -1.0, 1.0),
)


class DatacenterCore(CoreClock):
    """``n_copies`` independent datacenters, all their nodes stepped in one C call.

    Scenario events (``cfg.events``) act at each copy's episode time ``step_count * dt_s``: heat
    waves and cooling failures add to the rack inlets (heat waves to the outside air too; the CRAC
    draws no power while a cooling failure lasts), demand surges scale the drawn load.
    :attr:`inlet_c` views the inlet of every node in the last step (``arrays.inlet_c``). Without
    events no event code runs.
    """

    def __init__(self, cfg: DatacenterConfig, n_copies: int, backend: str = "c", shared_arrivals: bool = False) -> None:
        self.cfg = cfg
        self.b = n_copies
        self.shared_arrivals = shared_arrivals
        self.n_racks = cfg.n_racks
        n = self.n = cfg.n_racks * cfg.nodes_per_rack
        n_batch_per_rack = int(round(cfg.batch_share * cfg.nodes_per_rack))
        slot = np.arange(n) % cfg.nodes_per_rack
        self.is_batch = slot < n_batch_per_rack
        classes = np.where(self.is_batch, "batch", "interactive")
        self.arrays, self.kernel, mem_base = build_fleet(cfg.profile, n * n_copies, 1, list(classes) * n_copies,
                                                         cfg.dt_s, cfg.supply_min_c, backend=backend)
        a = self.arrays
        self.mem_base = mem_base.reshape(n_copies, n)
        self.rack = np.arange(n) // cfg.nodes_per_rack
        self.busy_w = a.busy_w[:n].copy()
        self.rack_busy_w = np.bincount(self.rack, weights=self.busy_w, minlength=self.n_racks)
        self.busy_total_w = float(self.busy_w.sum())
        self.batch_capacity = float(self.is_batch.sum())  # node-seconds of work per second at f_max
        self.service_s = a.service_ms.reshape(n_copies, n) / 1000.0
        self.n_pstates = a.n_pstates
        self.trace = sources.trace_arrays(cfg.trace)
        self.site = sources.site_series(cfg.trace, cfg.carbon, cfg.weather)
        self.row_lo, self.row_hi = self.trace.split_rows(cfg.split)
        self.steps_per_episode = max(1, int(round(cfg.episode_s / cfg.dt_s)))
        self.n_bins = max(1, int(round(cfg.defer_window_h * 3600.0 / cfg.dt_s)))
        self.pool = np.zeros((n_copies, self.n_bins))
        self.start_s = np.zeros(n_copies)
        self.step_count = np.zeros(n_copies, dtype=np.int64)
        self.scale = np.ones((n_copies, n))
        self.supply_c = np.full(n_copies, cfg.supply_min_c)
        self.ceiling = np.full((n_copies, self.n_racks), self.n_pstates - 1, dtype=np.int64)
        self._events = cfg.events
        events.check_events(self._events, events.SITE_KINDS, ENV_ID)
        self.chunks = ArrivalChunks(self.trace, self.service_s, self.mem_base, cfg.dt_s, self.steps_per_episode,
                                    shared=shared_arrivals, events=self._events)
        self._inlet = a.inlet_c.reshape(n_copies, n)  # view: writes reach the kernel
        #: Standing P-state ceiling per node, integer ``[n_copies, n]``, applied under the rack
        #: ceilings by every step that is not given one (a wrapper around ``env.step``, e.g. the
        #: shield, sets it); None = the rack ceilings alone.
        self.node_ceiling: np.ndarray | None = None
        self._interactive = (~self.is_batch).astype(np.float64)
        self._n_interactive_rack = np.maximum(self._interactive.reshape(self.n_racks, -1).sum(axis=1), 1.0)
        #: The most conservative action: full frequency, coldest supply, no deferral, no release (NaN reads as it).
        self.conservative_action = np.array([1.0] * self.n_racks + [-1.0, -1.0, -1.0])
        n_obs = self.n_racks * len(RACK_FIELDS) + len(GLOBAL_FIELDS)
        self.obs = np.zeros((n_copies, n_obs), dtype=np.float32)
        # Normaliser of the cost term: all nodes at busy power with PUE 1.5 at 300 gCO2/kWh for one step.
        kwh = self.busy_total_w * 1.5 * cfg.dt_s / 3.6e6
        self.cost_scale = kwh * (cfg.reward.energy_price_per_kwh + cfg.reward.carbon_price_per_kg * 0.3)

    def reset_copies(self, which: np.ndarray, rng: np.random.Generator, start_s: float | None = None) -> None:
        """Start new episodes for the copies in mask ``which``.

        Episodes start at midnight of a random day of the split, or at trace time ``start_s``.
        """
        idx = np.flatnonzero(which)
        if idx.size == 0:
            return
        cfg, a, n = self.cfg, self.arrays, self.n
        episode_rows = int(np.ceil(self.steps_per_episode * cfg.dt_s / self.trace.interval_s))
        first_day = self.row_lo // self.trace.rows_per_day
        last_day = max(first_day, (self.row_hi - episode_rows) // self.trace.rows_per_day)
        # Shared arrivals draw for one copy, so a copy's episode does not depend on how many run.
        m = 1 if self.shared_arrivals else idx.size
        days = rng.integers(first_day, last_day + 1, size=m)
        self.start_s[idx] = days * 86400.0 if start_s is None else self.trace.check_start_s(start_s, cfg.episode_s)
        self.step_count[idx] = 0
        self.scale[idx] = cfg.load_scale * rng.lognormal(0.0, NODE_LOAD_LOG_SD, (m, n))
        self.chunks.refill(idx, self.start_s, self.step_count, self.scale, rng)
        self.pool[idx] = 0.0
        self.supply_c[idx] = cfg.supply_min_c
        self.ceiling[idx] = self.n_pstates - 1
        units = (idx[:, None] * n + np.arange(n)[None, :]).ravel()
        a.reset_units(units, cfg.supply_min_c + RECIRC_BASE_C)
        self._fill_obs()

    def decode(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Action ``[n_copies, n_racks + 3]`` in [-1, 1] -> (ceilings, supply_c, defer, release).

        NaN entries count as the most conservative value: full frequency, coldest supply, no
        deferral, no release.
        """
        cfg = self.cfg
        x = np.asarray(action, dtype=np.float64).reshape(self.b, self.n_racks + 3)
        x = np.clip(np.where(np.isnan(x), self.conservative_action, x), -1.0, 1.0)
        ceilings = np.rint((x[:, : self.n_racks] + 1.0) * 0.5 * (self.n_pstates - 1)).astype(np.int64)
        supply_c = cfg.supply_min_c + (x[:, -3] + 1.0) * 0.5 * (cfg.supply_max_c - cfg.supply_min_c)
        defer = (x[:, -2] + 1.0) * 0.5
        release = (x[:, -1] + 1.0) * 0.5
        return ceilings, supply_c, defer, release

    def step(self, action: np.ndarray, rng: np.random.Generator, node_ceiling: np.ndarray | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Apply the action of every copy and advance ``dt_s``; returns rewards and telemetry.

        ``node_ceiling`` (optional, integer ``[n_copies, n]``, ``n = n_racks * nodes_per_rack``):
        a P-state ceiling per node on top of the rack ceilings of ``action``; each node runs at
        most ``min(rack ceiling, node ceiling)``. By default the standing :attr:`node_ceiling`
        applies, if any. The observed rack ceiling stays the action's.
        """
        cfg, a, b, n = self.cfg, self.arrays, self.b, self.n
        dt = cfg.dt_s
        t_ep = self.step_count * dt if self._events else None
        ceilings, supply_c, defer, release = self.decode(action)
        rows = self.trace.rows_at(self.time_s)
        # Interactive: Poisson requests. Batch: new work arrives at the trace rate; part is deferred.
        if self.chunks.steps_left <= 0:
            self.chunks.refill(self.chunks.due(), self.start_s, self.step_count, self.scale, rng)
        offered, mem = self.chunks.take()
        batch_new = np.where(self.is_batch, offered, 0.0).sum(axis=1) * dt  # node-seconds
        forced = self.pool[:, 0].copy()
        self.pool[:, :-1] = self.pool[:, 1:]
        self.pool[:, -1] = 0.0
        if release.any():
            released = release * self.pool.sum(axis=1)
            self.pool *= (1.0 - release)[:, None]
        else:
            released = np.zeros(b)
        self.pool[:, -1] += defer * batch_new
        batch_run = (1.0 - defer) * batch_new + released + forced
        share = np.where(self.is_batch, self.scale, 0.0)
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
        demand = np.where(self.is_batch, share * batch_run[:, None] / dt, offered)

        self.supply_c[:] = supply_c
        self.ceiling[:] = ceilings
        rack_power_frac = a.power_w.reshape(b, self.n_racks, -1).sum(axis=2) / self.rack_busy_w
        inlet = supply_c[:, None] + RECIRC_BASE_C + RECIRC_LOAD_C * np.minimum(rack_power_frac, 1.5)
        if t_ep is not None:
            inlet += events.inlet_offset_c(self._events, t_ep)[:, None]
        a.inlet_c[:] = inlet[:, self.rack].ravel()
        if node_ceiling is None:
            node_ceiling = self.node_ceiling
        if node_ceiling is None:
            a.pstate[:] = ceilings[:, self.rack].ravel()
        else:
            node = pstate_array(node_ceiling, (b, n), self.n_pstates, "node_ceiling")
            a.pstate[:] = np.minimum(ceilings[:, self.rack], node).ravel()
        a.demand[:] = demand.ravel()
        a.mem_bound[:] = mem.ravel()
        self.kernel.step(dt)
        self.step_count += 1

        it_w = a.power_w.reshape(b, n).sum(axis=1)
        site = self.site
        ambient_c = site.ambient_c[rows]
        if t_ep is not None:
            ambient_c = ambient_c + events.ambient_offset_c(self._events, t_ep)
        cooling_w = sources.cooling_power_w(it_w, supply_c, ambient_c)
        if t_ep is not None:
            cooling_w = np.where(events.cooling_down(self._events, t_ep), 0.0, cooling_w)
        facility_w = it_w * (1.0 + sources.DATACENTER_COOLING.overhead_frac) + cooling_w
        solar_w = cfg.solar_kwp * 1000.0 * site.solar_frac[rows]
        grid_w = np.maximum(facility_w - solar_w, 0.0)
        intensity = site.carbon_g_per_kwh[rows]
        grid_kwh = grid_w * dt / 3.6e6
        carbon_kg = grid_kwh * intensity / 1000.0
        w = cfg.reward
        cost = grid_kwh * w.energy_price_per_kwh + carbon_kg * w.carbon_price_per_kg
        viol = a.sla_violation.reshape(b, n)
        viol_rate = (viol * self._interactive).sum(axis=1) / max(1.0, float(self._interactive.sum()))
        hot = np.maximum(a.temp_die_c.reshape(b, n).max(axis=1) - THERMAL_LIMIT_C, 0.0)
        reward = -w.energy * cost / self.cost_scale - w.sla * viol_rate - THERMAL_PENALTY_PER_C * hot
        tel = {
            "it_power_w": it_w, "cooling_w": cooling_w, "facility_w": facility_w, "solar_w": solar_w,
            "grid_w": grid_w, "pue": facility_w / np.maximum(it_w, 1e-9), "carbon_kg": carbon_kg,
            "energy_kwh": facility_w * dt / 3.6e6, "carbon_g_per_kwh": intensity,
            "sla_violation_rate": viol_rate, "temp_die_max_c": a.temp_die_c.reshape(b, n).max(axis=1),
            "work_done": a.served.reshape(b, n).sum(axis=1), "deferred_work": self.pool.sum(axis=1),
            "batch_released": released + forced, "supply_c": supply_c.copy(),
            "inlet_c": inlet.sum(axis=1) / self.n_racks,
            "latency_ms": a.latency_ms.reshape(b, n)[:, ~self.is_batch].max(axis=1, initial=0.0),
            "freq_ratio_mean": a.freq_ratio_applied.reshape(b, n).mean(axis=1),
        }
        self._fill_obs()
        return reward, tel

    def truncated(self) -> np.ndarray:
        """Copies whose episode reached its length."""
        return self.step_count >= self.steps_per_episode

    def deferred_charge(self, left_node_s: np.ndarray, facility_ratio: np.ndarray, end_s: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """IT energy (J) and carbon (kg) of batch work still deferred when an episode ends.

        The env would force that work to run within ``defer_window_h`` after the end; it is charged
        its marginal IT energy (busy minus idle power of an average node at f_max, per node-second),
        times ``facility_ratio`` (facility / IT energy of the episode) for the carbon, at the mean
        recorded intensity of that window. Per copy: ``left_node_s``, ``facility_ratio`` and
        ``end_s`` (trace time of the episode end) are ``[n]`` arrays.
        """
        a = self.arrays
        marginal_w = float(a.busy_w[: self.n].mean() - a.idle_w[: self.n].mean())
        n_rows = max(1, int(round(self.cfg.defer_window_h * 3600.0 / self.trace.interval_s)))
        offsets = np.arange(n_rows) * self.trace.interval_s
        rows = self.trace.rows_at(np.asarray(end_s, dtype=np.float64)[:, None] + offsets[None, :])
        intensity = self.site.carbon_g_per_kwh[rows].mean(axis=1)
        it_j = np.asarray(left_node_s, dtype=np.float64) * marginal_w
        return it_j, it_j * facility_ratio / 3.6e6 * intensity / 1000.0

    def _fill_obs(self) -> None:
        cfg, a, b, n, r = self.cfg, self.arrays, self.b, self.n, self.n_racks
        shape = (b, r, cfg.nodes_per_rack)
        util = a.util.reshape(shape).mean(axis=2)
        power = a.power_w.reshape(shape).sum(axis=2) / self.rack_busy_w
        temp = a.temp_die_c.reshape(shape).max(axis=2)
        slack = np.clip(1.0 - a.latency_ms / a.sla_ms, -1.0, 1.0).reshape(b, n)
        slack *= self._interactive
        slack_rack = slack.reshape(shape).sum(axis=2) / self._n_interactive_rack
        rack_obs = np.stack([util, np.minimum(power, 1.5), np.clip(temp, 0, 150),
                             self.ceiling / max(1, self.n_pstates - 1), slack_rack], axis=2)
        self.obs[:, : r * len(RACK_FIELDS)] = rack_obs.reshape(b, -1)
        rows = self.trace.rows_at(self.time_s)
        site = self.site
        ci = site.carbon_g_per_kwh
        # Honest forecast: the value observed 24 h before the target time (seasonal naive).
        per_h = int(round(3600.0 / self.trace.interval_s))
        f1 = ci[np.clip(rows + per_h - self.trace.rows_per_day, 0, len(ci) - 1)]
        f3 = ci[np.clip(rows + 3 * per_h - self.trace.rows_per_day, 0, len(ci) - 1)]
        oldest = np.argmax(self.pool > 0, axis=1)
        has = (self.pool > 0).any(axis=1)
        g = self.obs[:, r * len(RACK_FIELDS):]
        g[:, 0] = self.supply_c
        ambient_c = site.ambient_c[rows]
        if self._events:
            ambient_c = ambient_c + events.ambient_offset_c(self._events, self.step_count * cfg.dt_s)
        g[:, 1] = np.clip(ambient_c, -30, 50)
        g[:, 2] = np.minimum(ci[rows] / 1000.0, 2.0)
        g[:, 3] = np.minimum(f1 / 1000.0, 2.0)
        g[:, 4] = np.minimum(f3 / 1000.0, 2.0)
        g[:, 5] = np.minimum(site.solar_frac[rows], 1.2)
        g[:, 6] = np.minimum(self.pool.sum(axis=1) / max(self.batch_capacity * 3600.0, 1e-9), 100.0)
        g[:, 7] = np.where(has, 1.0 - oldest / self.n_bins, 0.0)
        tod = 2.0 * np.pi * (self.time_s % 86400.0) / 86400.0
        g[:, 8] = np.sin(tod)
        g[:, 9] = np.cos(tod)


def _spaces(cfg: DatacenterConfig) -> tuple[spaces.Box, spaces.Box]:
    lo = [f[2] for f in RACK_FIELDS] * cfg.n_racks + [f[2] for f in GLOBAL_FIELDS]
    hi = [f[3] for f in RACK_FIELDS] * cfg.n_racks + [f[3] for f in GLOBAL_FIELDS]
    return (spaces.Box(-1.0, 1.0, (cfg.n_racks + 3,), dtype=np.float32),
            spaces.Box(np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32), dtype=np.float32))


class DatacenterEnv(SingleCopyEnv):
    """A datacenter's racks, cooling and deferrable batch work under hourly grid carbon and on-site solar.

    ## Description
    ``n_racks`` racks of ``nodes_per_rack`` servers; in each rack a ``batch_share`` of the nodes
    run deferrable batch work and the rest serve interactive requests, both following the Google
    2019 trace. CRAC units supply air at a setpoint; rack inlets are the supply plus recirculation;
    cooling power is IT heat / COP(supply) (Moore et al., USENIX ATC 2005). Grid carbon intensity is
    CAISO 2023 (Electricity Maps), weather and solar come from San Jose 2023 (Open-Meteo); see
    ``docs/data.md`` for the time alignment. Batch work may be deferred for up to
    ``defer_window_h`` hours, then it is forced to run.

    ## Action Space
    ``Box(-1, 1, (n_racks + 3,), float32)``: per rack a P-state ceiling (-1 = lowest, +1 = f_max,
    rounded to a P-state), then the CRAC supply setpoint (-1 = ``supply_min_c``, +1 =
    ``supply_max_c``), the share of newly arriving batch work to defer (-1 = 0, +1 = all), and the
    share of the deferred pool to release now (-1 = none, +1 = all).

    ## Observation Space
    ``Box(float32)`` of ``5 * n_racks + 10`` values: per rack

    | field | unit / meaning | min | max |
    |---|---|---|---|
    | util | mean busy fraction of the rack's nodes | 0 | 1 |
    | power_frac | rack power / rack busy power | 0 | 1.5 |
    | temp_die_max_c | hottest die, degC | 0 | 150 |
    | ceiling | P-state ceiling / (n_pstates - 1) | 0 | 1 |
    | latency_slack | mean 1 - p99/SLA over interactive nodes | -1 | 1 |

    then ``supply_c`` (degC, 0-40), ``ambient_c`` (degC, -30-50), ``carbon_g_per_kwh`` (/1000, 0-2),
    ``carbon_forecast_1h`` and ``carbon_forecast_3h`` (same time yesterday, /1000, 0-2),
    ``solar_frac`` (output / kWp, 0-1.2), ``deferred_h`` (pool / batch capacity, h, 0-100),
    ``oldest_frac`` (age of oldest deferred work / window, 0-1), ``tod_sin``, ``tod_cos``.

    ## Rewards
    ``-(grid kWh * energy price + kg CO2 * carbon price) / c0 - reward.sla * (interactive SLA
    violation share) - 0.05 * max(0, hottest die - 85 degC)``, with ``c0`` the cost of the whole
    fleet at busy power, PUE 1.5 and 300 gCO2/kWh for one step (keeps rewards near 1).

    ## Starting State
    Midnight of a random day of the split, every rack at f_max, coldest supply, empty pool.
    ``reset(options={"start_s": t})`` starts at trace time ``t`` instead (s since trace row 0, i.e.
    local midnight of day 1; day ``d`` starts at ``(d - 1) * 86400``), for evaluation on a chosen day.

    ## Episode End
    No termination; truncation after ``episode_s / dt_s`` steps (one day by default).

    ## Info
    ``it_power_w``, ``cooling_w``, ``facility_w``, ``solar_w``, ``grid_w``, ``pue``, ``carbon_kg``,
    ``energy_kwh`` (facility, this step), ``carbon_g_per_kwh``, ``sla_violation_rate``,
    ``temp_die_max_c``, ``work_done``, ``deferred_work``, ``batch_released``, ``supply_c``,
    ``inlet_c`` (mean rack inlet during the step, degC), ``latency_ms`` (worst p99 of the interactive
    nodes, ms), ``freq_ratio_mean`` (mean applied f / f_max), ``events_active`` (kinds of the scenario
    events active during the step).

    ## Events
    ``events`` (YAML list of :class:`powerrl.envs.events.EventSpec`, none by default) places
    scenario events in episode time: s after the episode start, so each copy of a vector env
    meets them at its own episode time. A step is affected when its start time falls in
    ``[start_s, start_s + duration_s)``; overlapping events add (temperatures) or multiply
    (factors). Keys of another kind are rejected.

    * ``heat_wave``: rack inlets and the outside air (observed ``ambient_c``, and the economiser's
      input) are ``delta_c`` (default 10) degC warmer.
    * ``cooling_failure``: the CRAC is down (cooling power 0) and the rack inlets rise by
      ``rise_c * (1 - exp(-(t - start_s) / tau_s))`` (``rise_c`` default 20 degC, ``tau_s``
      default 120 s); after the event the excess decays back with the same time constant.
    * ``demand_surge``: the offered load (the work arriving in each step) is multiplied by
      ``factor`` (default 2, at most 10); the draws are those of the same seed without the surge.

    ``grid_cut`` is rejected at config load: this env has no facility budget (ClusterBudget-v0 has).

    ## Arguments
    Fields of :class:`powerrl.envs.config.DatacenterConfig` as keywords, or ``config=``.

    ## Version History
    * v0: initial version. Later added the opt-in ``events``; the default (none) leaves every
      episode bitwise as before.
    """

    def __init__(self, config: DatacenterConfig | None = None, **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        self.core = DatacenterCore(self.cfg, 1)
        self.action_space, self.observation_space = _spaces(self.cfg)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at midnight of a random day of the split."""
        return self._reset_core(seed, options), {"time_s": float(self.core.time_s[0])}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ceilings, setpoint and deferral; advance ``dt_s`` seconds."""
        result = self._result(*self.core.step(np.asarray(action, dtype=np.float64).reshape(1, -1), self.np_random))
        result[4]["events_active"] = self.core.events_active(0)
        return result


class DatacenterVectorEnv(BatchedVectorEnv):
    """``num_envs`` datacenters stepped in one C call (same-step autoreset).

    ``shared_arrivals=True`` gives every copy the same load and arrivals (common random numbers).
    """

    def __init__(self, num_envs: int = 1, config: DatacenterConfig | None = None, shared_arrivals: bool = False,
                 **overrides: Any) -> None:
        self.cfg = config if config is not None else make_config(ENV_ID, overrides)
        super().__init__(num_envs, DatacenterCore(self.cfg, num_envs, shared_arrivals=shared_arrivals),
                         *_spaces(self.cfg))

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        reward, tel = self.core.step(actions, self.np_random)
        return reward, {k: v.copy() for k, v in tel.items()}
