"""Scenario events of the simulator envs: heat waves, cooling failures, grid cuts and demand surges.

An env config's ``events`` lists :class:`EventSpec` entries, each placed in episode time (s after
the episode start, so every copy of a vector env meets them at its own episode time). The helpers
below are vectorised over per-copy episode times ``t_s`` (any shape, s) and combine overlapping
events: inlet offsets add, factors multiply. An event is active during ``[start_s, start_s +
duration_s)``; a step is affected when its start time falls in that window.

YAML, inside an env config::

    events:
      - {kind: heat_wave, start_s: 600, duration_s: 1200, delta_c: 8}
      - {kind: grid_cut, start_s: 900, duration_s: 600, percent: 40, within_s: 30}

The envs only read these functions when ``events`` is non-empty, so an env without events steps
exactly (bitwise) as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from powerrl.config import spec
from powerrl.errors import ConfigError

EVENT_KINDS = ("heat_wave", "cooling_failure", "grid_cut", "demand_surge")
#: The keys each kind reads besides ``kind``, ``start_s`` and ``duration_s``.
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "heat_wave": ("delta_c",),
    "cooling_failure": ("rise_c", "tau_s"),
    "grid_cut": ("percent", "within_s"),
    "demand_surge": ("factor",),
}
#: Kinds every env supports; ``grid_cut`` needs a facility budget (ClusterBudget-v0 only).
SITE_KINDS = ("heat_wave", "cooling_failure", "demand_surge")


@dataclass(frozen=True)
class EventSpec:
    """One scenario event, placed in episode time.

    Only the keys of its ``kind`` may differ from their defaults (see :data:`KIND_KEYS`):

    * ``heat_wave``: the inlet air is ``delta_c`` warmer (in Datacenter-v0 the outside air too,
      so the economiser gets less free cooling).
    * ``cooling_failure``: the CRAC stops; the inlet rises towards ``inlet + rise_c`` with time
      constant ``tau_s`` and after the event the excess decays back with the same constant (in
      Datacenter-v0 cooling power is 0 while the CRAC is down).
    * ``grid_cut``: the facility budget drops by ``percent`` %, announced at ``start_s`` and in
      force from ``start_s + within_s`` until ``start_s + duration_s`` (ClusterBudget-v0 only).
    * ``demand_surge``: the offered load is multiplied by ``factor``.
    """

    kind: str = field(metadata=spec(choices=EVENT_KINDS, doc="heat_wave, cooling_failure, grid_cut or demand_surge"))
    start_s: float = field(metadata=spec(lo=0.0, unit="s", doc="start, s after the episode start"))
    duration_s: float = field(metadata=spec(lo=0.0, lo_open=True, unit="s"))
    delta_c: float = field(default=10.0, metadata=spec(lo=0.0, lo_open=True, hi=30.0, unit="degC",
                                                       doc="heat_wave: added to the inlet (and outside air)"))
    rise_c: float = field(default=20.0, metadata=spec(lo=0.0, lo_open=True, hi=40.0, unit="degC",
                                                      doc="cooling_failure: inlet rise the failure tends to"))
    tau_s: float = field(default=120.0, metadata=spec(lo=0.0, lo_open=True, hi=86400.0, unit="s",
                                                      doc="cooling_failure: time constant of rise and decay"))
    percent: float = field(default=30.0, metadata=spec(lo=0.0, lo_open=True, hi=90.0, unit="%",
                                                       doc="grid_cut: budget reduction"))
    within_s: float = field(default=5.0, metadata=spec(lo=0.0, unit="s",
                                                       doc="grid_cut: notice between announcement and effect"))
    factor: float = field(default=2.0, metadata=spec(lo=0.0, lo_open=True, hi=10.0,
                                                     doc="demand_surge: multiplies the offered load"))

    @property
    def end_s(self) -> float:
        """Episode time at which the event ends, s."""
        return self.start_s + self.duration_s

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Reject keys of other kinds set to non-default values, and a grid cut that never takes effect."""
        prefix = f"{path}." if path else ""
        own = KIND_KEYS[self.kind]
        for f in dataclasses.fields(self):
            if f.name in own or f.default is dataclasses.MISSING:
                continue
            value = getattr(self, f.name)
            if value != f.default:
                owner = next(k for k, keys in KIND_KEYS.items() if f.name in keys)
                raise ConfigError(f"{prefix}{f.name}", value,
                                  f"no '{f.name}' on a {self.kind} event ('{f.name}' belongs to {owner}; "
                                  f"a {self.kind} reads {', '.join(own)}): remove it", source)
        if self.kind == "grid_cut" and self.within_s >= self.duration_s:
            raise ConfigError(f"{prefix}within_s", self.within_s,
                              f"a notice below duration_s = {self.duration_s:g} s (the cut must take effect "
                              "before it ends)", source)


def check_events(events: Sequence[EventSpec], allowed: Sequence[str], env_id: str, path: str = "events",
                 source: str | None = None) -> None:
    """Validate every event and reject kinds ``env_id`` cannot apply (ConfigError naming the key)."""
    for i, ev in enumerate(events):
        ev.validate(path=f"{path}[{i}]", source=source)
        if ev.kind not in allowed:
            fix = (" (a grid cut needs a facility budget: use it with powerrl/ClusterBudget-v0)"
                   if ev.kind == "grid_cut" else "")
            raise ConfigError(f"{path}[{i}].kind", ev.kind, f"one of {', '.join(allowed)} in {env_id}{fix}", source)


def _window(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (t >= lo) & (t < hi)


def cooling_excess_c(ev: EventSpec, t_s: np.ndarray) -> np.ndarray:
    """Inlet excess of one cooling failure at episode times ``t_s`` (degC), in closed form.

    ``rise * (1 - exp(-(t - t0) / tau))`` during the failure, then the excess reached at its end
    decaying as ``exp(-(t - t_end) / tau)``; 0 before it.
    """
    t = np.asarray(t_s, dtype=np.float64)
    ramp = np.clip(t - ev.start_s, 0.0, ev.duration_s)
    decay = np.maximum(t - ev.end_s, 0.0)
    return -ev.rise_c * np.expm1(-ramp / ev.tau_s) * np.exp(-decay / ev.tau_s)


def ambient_offset_c(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Added outside-air temperature at episode times ``t_s`` (degC): heat waves only."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.zeros(t.shape)
    for ev in events:
        if ev.kind == "heat_wave":
            out += np.where(_window(t, ev.start_s, ev.end_s), ev.delta_c, 0.0)
    return out


def inlet_offset_c(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Added inlet temperature at episode times ``t_s`` (degC): heat waves plus cooling failures."""
    out = ambient_offset_c(events, t_s)
    for ev in events:
        if ev.kind == "cooling_failure":
            out += cooling_excess_c(ev, t_s)
    return out


def cooling_down(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Whether a cooling failure has the CRAC down at episode times ``t_s`` (bool)."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.zeros(t.shape, dtype=bool)
    for ev in events:
        if ev.kind == "cooling_failure":
            out |= _window(t, ev.start_s, ev.end_s)
    return out


def demand_factor(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Multiplier of the offered load at episode times ``t_s`` (product of active surges)."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.ones(t.shape)
    for ev in events:
        if ev.kind == "demand_surge":
            out *= np.where(_window(t, ev.start_s, ev.end_s), ev.factor, 1.0)
    return out


def _cut(ev: EventSpec) -> float:
    return 1.0 - ev.percent / 100.0


def budget_factor(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Multiplier of the facility budget in force at episode times ``t_s`` (cuts past their notice)."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.ones(t.shape)
    for ev in events:
        if ev.kind == "grid_cut":
            out *= np.where(_window(t, ev.start_s + ev.within_s, ev.end_s), _cut(ev), 1.0)
    return out


def announced_budget_factor(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Multiplier of the budget once every announced cut is in force at episode times ``t_s``.

    Equals :func:`budget_factor` when no cut is pending.
    """
    t = np.asarray(t_s, dtype=np.float64)
    out = np.ones(t.shape)
    for ev in events:
        if ev.kind == "grid_cut":
            out *= np.where(_window(t, ev.start_s, ev.end_s), _cut(ev), 1.0)
    return out


def budget_deadline_s(events: Sequence[EventSpec], t_s: np.ndarray) -> np.ndarray:
    """Episode time at which the earliest announced, not yet effective cut takes effect (s; +inf if none).

    With several pending cuts the announced budget (:func:`announced_budget_factor`) includes them
    all and the deadline is the earliest, which errs on the safe side.
    """
    t = np.asarray(t_s, dtype=np.float64)
    out = np.full(t.shape, np.inf)
    for ev in events:
        if ev.kind == "grid_cut":
            effect = ev.start_s + ev.within_s
            out = np.where(_window(t, ev.start_s, effect), np.minimum(out, effect), out)
    return out


def active_kinds(events: Sequence[EventSpec], t_s: float) -> tuple[str, ...]:
    """Kinds of the events active at one episode time ``t_s`` (a grid cut counts from its announcement)."""
    kinds = [ev.kind for ev in events if ev.start_s <= t_s < ev.end_s]
    return tuple(dict.fromkeys(kinds))
