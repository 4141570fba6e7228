"""The shield: ``filter(telemetry, proposal) -> decision``, the one object between any controller and actuators.

It composes the thermal shield (per unit: trips, predictive throttle, P-state rate limits) and the
cap shields (per facility: budget projection, groups, reserves, emergencies). It is deterministic,
holds only the state those need (hysteresis, ceilings, previous caps), and never raises on bad
telemetry or proposals in the hot path: NaN temperatures read as hot, NaN caps as bases, out-of-range
P-states are clamped and reported. Backends (the simulator envs, the node agent, the coordinator)
fill :class:`Telemetry` and apply :class:`Decision`; they cannot bypass it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from powerrl.shield.caps import CapShield
from powerrl.shield.config import ShieldConfig
from powerrl.shield.events import ALERT_REASONS, merge
from powerrl.shield.thermal import ThermalShield

#: Caps closer than this to the request count as unchanged (W): float round-off of the projection.
CAP_TOL_W = 1e-6


@dataclass
class Telemetry:
    """What the shield reads each period (SI units; arrays per unit or per node).

    Attributes:
        temp_c: zone temperature per unit (degC; a dict by zone name for several zones; NaN = unreadable).
        unit_power_w: power of each unit over the last period (W).
        inlet_c: inlet air temperature per unit (degC).
        time_s: clock of the decision (s; the budget deadlines use the same clock).
        age_s: age of this telemetry (s); over the watchdog limit it is stale.
        cooling_failure: units whose cooling is down (a CRAC failure signal).
        thermal_alert: units with an external thermal alert (e.g. a BMC event): forced to the floor.
        node_power_w: ``[n_facilities, n_nodes]`` node power over the last period (W), for cap shields.
        budget_w: ``[n_facilities]`` budget in force now (W).
        announced_budget_w: ``[n_facilities]`` budget announced to take effect at ``budget_deadline_s``.
        budget_deadline_s: ``[n_facilities]`` when the announced budget takes effect (s; inf = none).
    """

    temp_c: np.ndarray | dict[str, np.ndarray]
    unit_power_w: np.ndarray
    inlet_c: np.ndarray
    time_s: float | np.ndarray = 0.0
    age_s: float = 0.0
    cooling_failure: np.ndarray | bool = False
    thermal_alert: np.ndarray | bool = False
    node_power_w: np.ndarray | None = None
    budget_w: np.ndarray | None = None
    announced_budget_w: np.ndarray | None = None
    budget_deadline_s: np.ndarray | None = None


@dataclass
class Decision:
    """What the shield lets through, and why it changed anything.

    ``pstate``: P-state per unit; ``thermal_cap_w``: power cap per unit from the thermal shield (W,
    inf = none); ``cap_w``: budget caps ``[n_facilities, n_nodes]`` (W) when caps were proposed;
    ``offline``: units whose work must stop (critical trip); ``cooling_request``: units with an
    active trip.
    """

    pstate: np.ndarray
    thermal_cap_w: np.ndarray
    cap_w: np.ndarray | None
    offline: np.ndarray
    cooling_request: np.ndarray
    pstate_changed: np.ndarray  # per unit: P-state changed, or a thermal cap under its last power
    cap_changed: np.ndarray | None
    events: dict[str, int] = field(default_factory=dict)

    @property
    def unit_cap_w(self) -> np.ndarray:
        """The power cap each unit's backend must enforce (W, inf = none).

        0 where a critical trip took the unit offline (a cap under idle power stalls its work), else
        the thermal cap.
        """
        return np.where(self.offline, 0.0, self.thermal_cap_w)

    @property
    def alerts(self) -> dict[str, int]:
        """The events an operator must hear about (hot, critical, sensor, infeasible, ...)."""
        return {k: v for k, v in self.events.items() if k in ALERT_REASONS}

    @property
    def intervened(self) -> bool:
        """True when the shield changed any P-state or cap (a binding thermal cap counts as a change)."""
        return bool(self.pstate_changed.any() or (self.cap_changed is not None and self.cap_changed.any())
                    or "invalid_action" in self.events)


class Shield:
    """Thermal shield over units plus optional cap shields, one per facility.

    Args:
        cfg: validated shield config.
        thermal: the units' thermal shield.
        caps: one :class:`CapShield` per facility (copies of a cluster in a vector env), or none.
    """

    def __init__(self, cfg: ShieldConfig, thermal: ThermalShield, caps: list[CapShield] | None = None) -> None:
        self.cfg = cfg
        self.thermal = thermal
        self.caps = caps or []
        self.n_units = thermal.n_units
        self.n_pstates = thermal.n_pstates

    def reset(self, units: np.ndarray | None = None, facilities: np.ndarray | None = None) -> None:
        """Forget the state of ``units`` and ``facilities`` (everything by default)."""
        self.thermal.reset(units)
        for i, cap in enumerate(self.caps):
            if facilities is None or facilities[i]:
                cap.reset()

    def _emergency(self, tel: Telemetry, emergency: np.ndarray | bool) -> np.ndarray | bool:
        """Units whose rate limits are lifted: the caller's emergencies and failed cooling."""
        cooling = tel.cooling_failure
        if cooling is False:  # the common case, kept free of array work (a decision costs microseconds)
            return emergency
        return np.asarray(emergency, dtype=bool) | np.asarray(cooling, dtype=bool)

    def bounds(self, tel: Telemetry, emergency: np.ndarray | bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Allowed P-state range per unit for the next decision (never empty); changes no state."""
        lo, hi = self.thermal.bounds(tel.temp_c, tel.unit_power_w, tel.inlet_c, self._emergency(tel, emergency),
                                     tel.cooling_failure)
        if tel.thermal_alert is not False:
            alert = np.asarray(tel.thermal_alert, dtype=bool)
            floor = self.cfg.floor_pstate
            lo, hi = np.where(alert, np.minimum(lo, floor), lo), np.where(alert, np.minimum(hi, floor), hi)
        return lo, hi

    def _as_pstates(self, pstate: object, events: dict[str, int]) -> np.ndarray:
        """``[n_units]`` int32 P-state proposals from anything, never wrapping around.

        Integers are clipped to [-1, n_pstates] in 64 bits (the filter reports and clamps what is out
        of range); NaN, inf and non-integral floats become -1 (out of range: the lowest P-state);
        anything that is not numbers of the right shape is an invalid action: the last applied
        P-states are held.
        """
        n, top = self.n_units, self.n_pstates
        try:
            arr = np.asarray(pstate)
            kind = arr.dtype.kind
            if kind == "i":
                arr = np.minimum(np.maximum(arr, -1), top)
            elif kind == "f":
                with np.errstate(invalid="ignore"):
                    bad = ~np.isfinite(arr) | (arr != np.round(arr))
                    arr = np.where(bad, -1.0, np.minimum(np.maximum(arr, -1.0), float(top)))
            elif kind == "u":
                arr = np.minimum(arr, top)
            elif kind != "b":
                raise TypeError(f"P-states of dtype {arr.dtype}")
            if arr.shape == (n,):
                return arr.astype(np.int32)
            return np.broadcast_to(arr.astype(np.int64), (n,)).astype(np.int32)
        except (TypeError, ValueError, OverflowError):
            events["invalid_action"] = 1
            return self.thermal.filters[0].buffers.last_applied.copy()

    def filter(self, tel: Telemetry, pstate: np.ndarray, cap_w: np.ndarray | None = None,
               emergency: np.ndarray | bool = False) -> Decision:
        """Safe P-states (``[n_units]``) and caps (``[n_facilities, n_nodes]`` W) for a proposal.

        ``emergency`` (per unit or global) lifts P-state rate limits. Never raises on values.
        """
        events: dict[str, int] = {}
        proposed = self._as_pstates(pstate, events)
        if tel.cooling_failure is not False:
            failing = int(np.count_nonzero(np.broadcast_to(tel.cooling_failure, (self.n_units,))))
            if failing:
                events["cooling_failure"] = failing
        result = self.thermal.filter(proposed, tel.temp_c, tel.unit_power_w, tel.inlet_c,
                                     self._emergency(tel, emergency), tel.cooling_failure)
        if result.events:
            events.update(result.events)
        applied, offline, thermal_cap_w, cooling_request = (result.applied, result.offline, result.cap_w,
                                                             result.cooling_request)
        if tel.thermal_alert is not False:
            alert = np.broadcast_to(np.asarray(tel.thermal_alert, dtype=bool), (self.n_units,))
            if alert.any():
                floor = self.cfg.floor_pstate
                forced = alert & (applied > floor)
                applied[forced] = floor
                events["thermal_alert"] = int(alert.sum())
                for f in self.thermal.filters:
                    f.buffers.last_applied[:] = applied
        changed = applied != proposed
        if "thermal_cap" in events:
            # A thermal cap is an intervention where it binds: under last period's power (or power unknown).
            with np.errstate(invalid="ignore"):
                changed |= np.isfinite(thermal_cap_w) & ~(thermal_cap_w >= np.asarray(tel.unit_power_w))
        decision = Decision(pstate=applied, thermal_cap_w=thermal_cap_w, cap_w=None, offline=offline,
                            cooling_request=cooling_request, pstate_changed=changed,
                            cap_changed=None, events=events)
        if cap_w is not None and self.caps:
            self._filter_caps(tel, np.asarray(cap_w, dtype=np.float64), decision)
        return decision

    def _filter_caps(self, tel: Telemetry, cap_w: np.ndarray, decision: Decision) -> None:
        n_fac = len(self.caps)
        req = cap_w.reshape(n_fac, -1)
        out = np.empty_like(req)
        budget = _per_facility(tel.budget_w, n_fac, math.inf)
        announced = _per_facility(tel.announced_budget_w, n_fac, math.nan)
        deadline = _per_facility(tel.budget_deadline_s, n_fac, math.inf)
        times = _per_facility(tel.time_s, n_fac, 0.0)
        measured = (np.zeros_like(req) if tel.node_power_w is None
                    else np.asarray(tel.node_power_w, dtype=np.float64).reshape(n_fac, -1))
        for f, shield in enumerate(self.caps):
            ann = None if math.isnan(announced[f]) else float(announced[f])
            out[f], ev = shield.filter(req[f], measured[f], float(budget[f]), float(times[f]), ann, float(deadline[f]))
            merge(decision.events, ev)
        # A node's cap is also its thermal cap where the thermal shield set one (units are nodes here).
        np.minimum(out, decision.thermal_cap_w.reshape(out.shape), out=out)
        for f, shield in enumerate(self.caps):
            # The caps in force are what rate limits and over-consumption are measured from.
            shield.prev_caps_w[:] = out[f]
        decision.cap_w = out
        clipped_req = np.where(np.isfinite(req), req, np.nan)
        decision.cap_changed = ~(np.abs(out - clipped_req) <= CAP_TOL_W)


def _per_facility(value: float | np.ndarray | None, n: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
