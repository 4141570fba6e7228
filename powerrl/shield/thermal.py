"""Thermal shield: trip points, step_wise passive ceiling, hot floor, critical offline, predictive throttle.

Units are thermal zones bound to P-state actuators (frequency domains or whole nodes). The work per
unit is the C filter ``powerrl/_core/shield_units.h`` (one call for every unit of every copy); this
module owns its buffers, fills the unit model from a server profile and reads out masks and events.

Pitfalls: write inputs in place into :attr:`ThermalShield.buffers` fields only through
:meth:`ThermalShield.filter`; ``applied``/``offline`` returned are views that the next call
overwrites (copy them to keep them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from powerrl._core._reference import shield_units_reference
from powerrl._core.shield import ShieldUnitsKernel
from powerrl._core.shield_buffers import ShieldBuffers
from powerrl.model.power import volt_ratio
from powerrl.model.profiles import ServerProfile
from powerrl.shield.config import ShieldConfig
from powerrl.shield.events import decode_unit_events


@dataclass(frozen=True)
class UnitModel:
    """Thermal and worst-case power model of each unit, for the predictive throttle.

    ``full_power_w``: ``[n_units, n_pstates]`` power at full load of a compute-bound workload at each
    P-state (W), what the predictive P-state throttle plans with; ``max_power_w``: ``[n_units]`` the
    most power any work can draw (busy power: memory-bound work keeps it at low P-states), what the
    thermal power cap guards against; ``r_die_c_per_w``/``r_sink_c_per_w`` (degC/W) and
    ``tau_sink_s`` (s) of the two-stage RC model (docs/model.md).
    """

    full_power_w: np.ndarray
    max_power_w: np.ndarray
    r_die_c_per_w: np.ndarray
    r_sink_c_per_w: np.ndarray
    tau_sink_s: np.ndarray

    @classmethod
    def from_profile(cls, profile: ServerProfile, n_units: int, units_per_server: int = 1,
                     pstates_mhz: np.ndarray | None = None) -> UnitModel:
        """Every unit a ``1/units_per_server`` share of ``profile``'s server (as the simulator splits it).

        ``pstates_mhz``: another P-state table (a real node's) to evaluate the profile at, with the
        simulator's V-f relation; default the profile's own table and voltages.
        """
        if pstates_mhz is None:
            fr = np.asarray(profile.pstates_mhz, dtype=np.float64) / profile.pstates_mhz[-1]
            vr = np.asarray(profile.volt_ratio, dtype=np.float64)
        else:
            fr = np.asarray(pstates_mhz, dtype=np.float64) / float(pstates_mhz[-1])
            vr = np.asarray(volt_ratio(fr), dtype=np.float64)
        # Full load (u = 1) of a compute-bound workload (m = 0): the largest power share of docs/model.md.
        h = 1.0 - (1.0 - profile.static_share) * (1.0 - fr * vr * vr)
        w = profile.wake_share
        full = profile.idle_w + (profile.busy_w - profile.idle_w) * (w + (1.0 - w) * h)
        div = float(units_per_server)
        return cls(full_power_w=np.tile(full / div, (n_units, 1)),
                   max_power_w=np.full(n_units, profile.busy_w / div),
                   r_die_c_per_w=np.full(n_units, profile.r_die_c_per_w * div),
                   r_sink_c_per_w=np.full(n_units, profile.r_sink_c_per_w * div),
                   tau_sink_s=np.full(n_units, profile.tau_sink_s))


class ZoneFilter:
    """The C unit filter for one thermal zone's trip table over every unit."""

    def __init__(self, cfg: ShieldConfig, zone: str, model: UnitModel, backend: str = "c") -> None:
        n, k = model.full_power_w.shape
        trips = [(t.type, t.temp_c, t.hyst_c) for t in cfg.zones[zone].trips]
        self.buffers = b = ShieldBuffers.allocate(
            n, k, trips, floor_pstate=cfg.floor_pstate, max_step_up=cfg.rate_limits.pstate_up,
            max_step_down=cfg.rate_limits.pstate_down, predict_limit_c=cfg.zones[zone].predict_limit_c(),
            cap_limit_c=cfg.zones[zone].cap_limit_c())
        b.full_power_w[:] = model.full_power_w
        b.max_power_w[:] = model.max_power_w
        b.r_die_c_per_w[:] = model.r_die_c_per_w
        b.r_sink_c_per_w[:] = model.r_sink_c_per_w
        # Both predictions must reach at least the next decision: a horizon shorter than the period
        # would let a whole period of full power go unchecked. horizon_s = 0 turns off the predictive
        # P-state throttle only; the thermal cap (the hard guarantee) always looks a period ahead.
        tau = model.tau_sink_s
        cap_horizon = max(cfg.predictive.horizon_s, cfg.period_s)
        cf_horizon = max(cap_horizon, cfg.emergency.cooling_failure_horizon_s)
        off = np.ones(n)
        self.predict_decay = (np.exp(-cap_horizon / tau) if cfg.predictive.horizon_s > 0 else off,
                              np.exp(-cf_horizon / tau) if cfg.predictive.horizon_s > 0 else off)
        self.cap_decay = (np.exp(-cap_horizon / tau), np.exp(-cf_horizon / tau))
        self.inlet_rise_c = cfg.emergency.cooling_failure_inlet_rise_c
        b.sink_decay[:] = self.predict_decay[0]
        b.cap_decay[:] = self.cap_decay[0]
        if backend == "c":
            self._run = ShieldUnitsKernel(b).run
        elif backend == "numpy":
            self._run = lambda commit=True: shield_units_reference(b, commit)
        else:
            raise ValueError(f"backend = {backend!r}: use 'c' or 'numpy'")
        self._cooling_failure = np.zeros(n, dtype=bool)
        self._any_cooling_failure = False

    def set_cooling_failure(self, failing: np.ndarray | bool) -> None:
        """Units whose cooling has failed: longer horizon and a rising inlet in the prediction."""
        if failing is False and not self._any_cooling_failure:
            return
        failing = np.broadcast_to(np.asarray(failing, dtype=bool), self._cooling_failure.shape)
        if np.array_equal(failing, self._cooling_failure):
            return
        self._cooling_failure[:] = failing
        self._any_cooling_failure = bool(failing.any())
        b = self.buffers
        b.sink_decay[:] = np.where(failing, self.predict_decay[1], self.predict_decay[0])
        b.cap_decay[:] = np.where(failing, self.cap_decay[1], self.cap_decay[0])
        b.inlet_rise_c[:] = np.where(failing, self.inlet_rise_c, 0.0)

    def run(self, commit: bool = True) -> None:
        """Filter ``buffers.proposed`` into ``buffers.applied`` (state kept unless ``commit`` is false)."""
        self._run(commit)


class ThermalResult(NamedTuple):
    """One thermal decision, over every zone.

    P-states, units to take offline, thermal caps (W, inf = none), units with an active trip (more
    cooling wanted) and ``{reason: units}``.
    """

    applied: np.ndarray
    offline: np.ndarray
    cap_w: np.ndarray
    cooling_request: np.ndarray
    events: dict[str, int]


class ThermalShield:
    """Thermal shield over ``n_units`` units with one or more zones (each with its trip table).

    Zones are applied in turn (each sees the previous zone's output as its proposal), so the result
    respects every zone, each with its own limits; rate limits apply in the first zone only (later
    zones see an emergency so that they never undo a reduction), and events are the union over zones.

    Args:
        cfg: validated shield config.
        model: the units' thermal and worst-case power model.
        zones: zone names to bind, each a key of ``cfg.zones`` (default: all of them).
        backend: ``"c"`` (default) or ``"numpy"`` (the NumPy twin, for equivalence tests).
    """

    def __init__(self, cfg: ShieldConfig, model: UnitModel, zones: tuple[str, ...] | None = None,
                 backend: str = "c") -> None:
        self.cfg = cfg
        self.zone_names = tuple(zones if zones is not None else cfg.zones)
        self.filters = [ZoneFilter(cfg, z, model, backend) for z in self.zone_names]
        self.n_units, self.n_pstates = model.full_power_w.shape

    def reset(self, units: np.ndarray | None = None) -> None:
        """Forget trips, ceilings and trends of ``units`` (all by default)."""
        idx = np.arange(self.n_units) if units is None else units
        for f in self.filters:
            f.buffers.reset_units(idx)

    def _load(self, temp_c: np.ndarray | dict[str, np.ndarray], power_w: np.ndarray, inlet_c: np.ndarray,
              emergency: np.ndarray | bool, cooling_failure: np.ndarray | bool) -> None:
        """Write one period's telemetry into every zone's buffers (later zones never rate-limit)."""
        for i, f in enumerate(self.filters):
            b = f.buffers
            b.temp_c[:] = temp_c[self.zone_names[i]] if isinstance(temp_c, dict) else temp_c
            b.power_w[:] = power_w
            b.inlet_c[:] = inlet_c
            b.emergency[:] = np.asarray(emergency, dtype=bool) if i == 0 else True
            f.set_cooling_failure(cooling_failure)

    def _chain(self, proposed: np.ndarray, commit: bool) -> np.ndarray:
        """Run the zones in turn, each on the previous one's output; the last zone's ``applied`` (a view)."""
        q = proposed
        for f in self.filters:
            f.buffers.proposed[:] = q
            f.run(commit)
            q = f.buffers.applied
        return q

    def filter(self, proposed: np.ndarray, temp_c: np.ndarray | dict[str, np.ndarray], power_w: np.ndarray,
               inlet_c: np.ndarray, emergency: np.ndarray | bool = False,
               cooling_failure: np.ndarray | bool = False) -> ThermalResult:
        """Filter proposed P-states (``[n_units]`` int32) into safe ones.

        ``temp_c`` is the zone temperature per unit (degC; a dict by zone name when there are several
        zones; NaN/inf = unreadable), ``power_w`` the unit power over the last period (W), ``inlet_c``
        the inlet temperature (degC). The result's arrays are fresh copies.
        """
        self._load(temp_c, power_w, inlet_c, emergency, cooling_failure)
        applied = self._chain(np.asarray(proposed), commit=True).copy()
        first, *rest = (f.buffers for f in self.filters)
        offline, cap_w, bits = first.offline.astype(bool), first.cap_w.copy(), first.events.copy()
        for b in rest:
            offline |= b.offline.view(bool)
            np.minimum(cap_w, b.cap_w, out=cap_w)
            bits |= b.events
        if rest:  # every zone's rate limits and trends continue from what was finally applied
            for f in self.filters:
                f.buffers.last_applied[:] = applied
        return ThermalResult(applied, offline, cap_w, (bits & 1).astype(bool), decode_unit_events(bits))

    def bounds(self, temp_c: np.ndarray | dict[str, np.ndarray], power_w: np.ndarray, inlet_c: np.ndarray,
               emergency: np.ndarray | bool = False, cooling_failure: np.ndarray | bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """Allowed P-state range ``[lo, hi]`` per unit for the next decision, changing no state.

        Every P-state in the range passes the filter unchanged; ``lo <= hi`` always (the floor is
        always reachable), so a mask built from it keeps at least one action.
        """
        self._load(temp_c, power_w, inlet_c, emergency, cooling_failure)
        lo = self._chain(np.zeros(self.n_units, dtype=np.int32), commit=False).copy()
        hi = self._chain(np.full(self.n_units, self.n_pstates - 1, dtype=np.int32), commit=False).copy()
        return np.minimum(lo, hi), hi
