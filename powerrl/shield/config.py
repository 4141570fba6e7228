"""Validated shield configuration (``configs/shields/*.yaml``, ``kind: shield``).

Every limit the shield enforces is data in one of these frozen dataclasses, checked at load:
out-of-range numbers, unknown keys, hot below passive, negative hysteresis, a reserve above the
budget or a base above the maximum, an unknown zone name or fallback controller all fail with the
key path, the bad value and the fix. Whether the target has each zone and the floor P-state is
checked when a shield is bound to it (:meth:`ShieldConfig.check_zones`, :meth:`check_pstates`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerrl.config import from_dict, join_key, load_kind, spec
from powerrl.control import controller_names
from powerrl.errors import ConfigError

TRIP_TYPES = ("active", "passive", "hot", "critical")
#: Zone names a shield config may use: what the backends map their sensors to. The simulator provides
#: ``package`` (the CPU package/die of each unit); the node agent maps Linux thermal zones and hwmon
#: sensors (x86_pkg_temp, k10temp Tctl -> package; coretemp cores -> core; DIMM, board, GPU sensors).
ZONE_NAMES = ("package", "core", "dimm", "board", "gpu")
N_PRIORITIES = 5


@dataclass(frozen=True)
class TripPoint:
    """One trip point of a thermal zone, with Linux semantics (fires at T >= temp_c, releases below temp_c - hyst_c)."""

    type: str = field(metadata=spec(choices=TRIP_TYPES, doc="active, passive, hot or critical"))
    temp_c: float = field(metadata=spec(lo=0.0, hi=200.0, unit="degC"))
    hyst_c: float = field(default=2.0, metadata=spec(lo=0.0, hi=50.0, unit="degC"))


@dataclass(frozen=True)
class ZoneConfig:
    """Trip points of one thermal zone (e.g. ``package``): passive < hot < critical, at most one of each."""

    trips: tuple[TripPoint, ...] = field(metadata=spec(doc="list of {type, temp_c, hyst_c}"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Order and uniqueness of the trip types."""
        where = join_key(path, "trips")
        if not self.trips:
            raise ConfigError(where, [], "at least one trip point (e.g. {type: hot, temp_c: 95})", source)
        seen: dict[str, float] = {}
        for i, trip in enumerate(self.trips):
            if trip.type != "active" and trip.type in seen:
                raise ConfigError(f"{where}[{i}].type", trip.type, "at most one passive, hot and critical trip", source)
            if trip.hyst_c >= trip.temp_c:
                raise ConfigError(f"{where}[{i}].hyst_c", trip.hyst_c, f"a hysteresis below temp_c = {trip.temp_c}",
                                  source)
            seen.setdefault(trip.type, trip.temp_c)
        order = [t for t in ("passive", "hot", "critical") if t in seen]
        for lower, upper in zip(order, order[1:], strict=False):
            if seen[upper] <= seen[lower]:
                idx = next(i for i, t in enumerate(self.trips) if t.type == upper)
                raise ConfigError(f"{where}[{idx}].temp_c", seen[upper],
                                  f"a {upper} trip above the {lower} trip ({seen[lower]} degC)", source)
        if "hot" not in seen and "critical" not in seen:
            raise ConfigError(where, [t.type for t in self.trips],
                              "a hot or critical trip: without one nothing bounds the temperature", source)

    def predict_limit_c(self) -> float:
        """Die temperature the predictive throttle keeps under: the passive trip (else hot, else critical)."""
        for kind in ("passive", "hot", "critical"):
            temp = self.temp_of(kind)
            if temp is not None:
                return temp
        raise ValueError("a zone needs a passive, hot or critical trip")  # validate() forbids this

    def cap_limit_c(self) -> float:
        """Die temperature the thermal power cap guarantees: the hot trip minus its hysteresis (else critical)."""
        for kind in ("hot", "critical"):
            trip = next((t for t in self.trips if t.type == kind), None)
            if trip is not None:
                return trip.temp_c - trip.hyst_c
        raise ValueError("a zone needs a hot or critical trip")  # validate() forbids this

    def temp_of(self, trip_type: str) -> float | None:
        """Temperature of the trip of ``trip_type`` (the lowest one for ``active``), or None."""
        temps = [t.temp_c for t in self.trips if t.type == trip_type]
        return min(temps) if temps else None


def _default_zones() -> dict[str, ZoneConfig]:
    # Package zone of a server CPU. The hot trip at 95 degC is the junction limit AMD states for its
    # recent parts (Ryzen 7000 "Tjmax 95 degC"; server CPUs sit in the 95-105 degC range), where the
    # processor's own protection starts throttling; passive at 85 degC leaves 10 degC to act first.
    # Critical at 105 degC is a typical BMC "upper critical" CPU threshold (e.g. Kontron AM4022 IPMI
    # firmware manual, Table 11). Active at 75 degC asks for more airflow before throttling is needed.
    # These are defaults for the simulated EPYC 7502 node; set a real node's trips from its datasheet.
    return {"package": ZoneConfig(trips=(
        TripPoint("active", 75.0, 3.0), TripPoint("passive", 85.0, 3.0),
        TripPoint("hot", 95.0, 2.0), TripPoint("critical", 105.0, 5.0)))}


@dataclass(frozen=True)
class PredictiveConfig:
    """Pre-emptive throttling from the node's RC thermal model (docs/shield.md)."""

    horizon_s: float = field(default=3.0, metadata=spec(lo=0.0, hi=600.0, unit="s", doc="0 disables"))


@dataclass(frozen=True)
class RateLimits:
    """Largest change per control period a controller may make (0 = no limit); lifted in emergencies."""

    pstate_up: int = field(default=0, metadata=spec(lo=0, hi=1000, doc="P-states per period upwards"))
    pstate_down: int = field(default=0, metadata=spec(lo=0, hi=1000, doc="P-states per period downwards"))
    cap_frac: float = field(default=0.0, metadata=spec(lo=0.0, hi=1.0,
                            doc="cap change per period as a fraction of the node's max cap"))


@dataclass(frozen=True)
class BudgetConfig:
    """Facility budget, reserves and guaranteed bases (W; None = the target's own budget)."""

    budget_w: float | None = field(default=None, metadata=spec(lo=0.0, lo_open=True, unit="W",
                                   doc="facility budget; default: the env's or coordinator's"))
    reserve_frac: float = field(default=0.02, metadata=spec(lo=0.0, hi=0.5,
                                doc="emergency reserve held back, fraction of the budget"))
    critical_reserve_frac: float = field(default=0.0, metadata=spec(lo=0.0, hi=0.9,
                                         doc="budget share only Critical nodes may use"))
    base_frac: tuple[float, ...] = field(default=(0.5, 0.3, 0.1, 0.0, 0.0), metadata=spec(
        lo=0.0, hi=1.0, doc="guaranteed base per priority (Critical..Background): idle + frac (busy - idle)"))
    max_frac: float = field(default=1.0, metadata=spec(lo=0.0, lo_open=True, hi=1.0,
                            doc="max cap: idle + frac (busy - idle)"))
    emergency_cut: tuple[float, ...] = field(default=(0.0, 0.2, 0.5, 0.5, 0.5), metadata=spec(
        lo=0.0, hi=1.0, doc="share of the base an emergency may cut per priority (Critical must be 0)"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Per-priority tuples have five entries; Critical is never cut; reserves leave a budget."""
        for name in ("base_frac", "emergency_cut"):
            value = getattr(self, name)
            if len(value) != N_PRIORITIES:
                raise ConfigError(join_key(path, name), list(value),
                                  "5 values, Critical, Production, Development, Research, Background", source)
        if self.emergency_cut[0] != 0.0:
            raise ConfigError(join_key(path, "emergency_cut") + "[0]", self.emergency_cut[0],
                              "0.0: Critical is never cut below its base", source)
        if max(self.base_frac) > self.max_frac:
            raise ConfigError(join_key(path, "base_frac"), list(self.base_frac),
                              f"bases at or below the max cap (max_frac = {self.max_frac})", source)
        if self.reserve_frac + self.critical_reserve_frac >= 1.0:
            raise ConfigError(join_key(path, "critical_reserve_frac"), self.critical_reserve_frac,
                              f"reserves that leave some budget (reserve_frac = {self.reserve_frac})", source)


@dataclass(frozen=True)
class EmergencyConfig:
    """How the shield handles the four emergencies (docs/shield.md)."""

    grid_cut_margin_periods: int = field(default=1, metadata=spec(
        lo=0, hi=100, doc="be within an announced cut this many periods before its deadline"))
    cooling_failure_inlet_rise_c: float = field(default=15.0, metadata=spec(
        lo=0.0, hi=60.0, unit="degC", doc="inlet rise the prediction assumes while a CRAC is down"))
    cooling_failure_horizon_s: float = field(default=30.0, metadata=spec(lo=0.0, hi=3600.0, unit="s"))


@dataclass(frozen=True)
class WatchdogConfig:
    """Stale telemetry, bad actions and controller faults hand control to the fallback."""

    max_telemetry_age_s: float = field(default=0.5, metadata=spec(lo=0.0, lo_open=True, unit="s"))
    controller_timeout_s: float = field(default=0.05, metadata=spec(lo=0.0, lo_open=True, unit="s"))
    fallback: str = field(default="hold", metadata=spec(
        doc="registered controller name taking over (hold = keep the last safe action)"))


@dataclass(frozen=True)
class ShieldConfig:
    """The whole shield: thermal zones, prediction, rate limits, budget, emergencies, watchdog."""

    period_s: float = field(default=0.1, metadata=spec(lo=0.001, hi=3600.0, unit="s", doc="control period"))
    floor_pstate: int = field(default=0, metadata=spec(lo=0, hi=1000, doc="guaranteed floor P-state index"))
    zones: dict[str, ZoneConfig] = field(default_factory=_default_zones)
    predictive: PredictiveConfig = field(default_factory=PredictiveConfig)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    emergency: EmergencyConfig = field(default_factory=EmergencyConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    active_supply_step_c: float = field(default=1.0, metadata=spec(
        lo=0.0, lo_open=True, hi=20.0, unit="degC",
        doc="CRAC supply setpoint lowered per period while an active trip holds"))
    penalty: float = field(default=0.0, metadata=spec(
        lo=0.0, hi=1e6, doc="reward penalty on a step the shield changed anything (env wrapper; info cost is 1 then)"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """At least one known zone; a registered fallback; the watchdog timeout fits in a period."""
        if not self.zones:
            raise ConfigError(join_key(path, "zones"), {}, "at least one thermal zone, e.g. 'package'", source)
        for name in self.zones:
            if name not in ZONE_NAMES:
                raise ConfigError(join_key(path, f"zones.{name}"), name,
                                  "a known zone: " + ", ".join(ZONE_NAMES), source)
        if self.watchdog.fallback != "hold" and self.watchdog.fallback not in controller_names():
            raise ConfigError(join_key(path, "watchdog.fallback"), self.watchdog.fallback,
                              "'hold' or a registered controller: " + ", ".join(controller_names()), source)
        if self.watchdog.controller_timeout_s > self.period_s:
            raise ConfigError(join_key(path, "watchdog.controller_timeout_s"), self.watchdog.controller_timeout_s,
                              f"a timeout within one period_s = {self.period_s} s", source)

    def check_zones(self, available: tuple[str, ...], target: str, source: str | None = None) -> None:
        """Raise :class:`ConfigError` for a zone the target does not have (names the ones it has)."""
        for name in self.zones:
            if name not in available:
                raise ConfigError(f"zones.{name}", name, f"a zone of {target}: one of {', '.join(available)}",
                                  source)

    def check_pstates(self, n_pstates: int, target: str, source: str | None = None) -> None:
        """Raise :class:`ConfigError` when the floor P-state does not exist on the target."""
        if self.floor_pstate >= n_pstates:
            raise ConfigError("floor_pstate", self.floor_pstate,
                              f"a P-state index below {n_pstates} (the P-states of {target})", source)

    def for_period(self, period_s: float, controller_timeout_s: float | None = None, **watchdog: Any
                   ) -> ShieldConfig:
        """The config bound to a backend that decides once per ``period_s``.

        The backend's period becomes the control period, and the controller timeout (the config's
        own, or ``controller_timeout_s``) never exceeds it; ``watchdog`` keys replace other watchdog
        settings. Used by the shielded envs, RealNode-v0 and the node agent alike.
        """
        timeout = self.watchdog.controller_timeout_s if controller_timeout_s is None else controller_timeout_s
        return dataclasses.replace(self, period_s=period_s, watchdog=dataclasses.replace(
            self.watchdog, controller_timeout_s=min(timeout, period_s), **watchdog))

    def cap_limit_c(self) -> float:
        """Lowest thermal-cap limit over every zone (:meth:`ZoneConfig.cap_limit_c`), degC."""
        return min(z.cap_limit_c() for z in self.zones.values())

    def passive_limit_c(self) -> float:
        """Lowest predictive limit over every zone (:meth:`ZoneConfig.predict_limit_c`), degC."""
        return min(z.predict_limit_c() for z in self.zones.values())


def make_shield_config(overrides: dict[str, Any] | None = None, source: str | None = None) -> ShieldConfig:
    """Validated :class:`ShieldConfig` from a mapping (the defaults where keys are absent)."""
    return from_dict(ShieldConfig, dict(overrides or {}), source=source)


def load_shield_config(path: str | Path) -> ShieldConfig:
    """Load ``configs/shields/*.yaml`` (``kind: shield`` plus :class:`ShieldConfig` fields)."""
    return make_shield_config(load_kind(path, "shield"), source=str(path))


#: Shipped shield configs (``configs/shields/<name>.yaml`` in the repo, copied into the package).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "shields"


def shipped_shield_path(name: str) -> Path:
    """Path of the shipped shield config ``name`` (``default``, ...)."""
    here = SHIPPED_DIR / f"{name}.yaml"
    if not here.is_file():
        raise ConfigError("shield", name, f"a shipped shield config ({', '.join(shipped_shield_names())}) or the "
                          "path of an existing YAML file", None)
    return here


def shipped_shield_names() -> tuple[str, ...]:
    """Names of the shield configs shipped in the package."""
    return tuple(sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))


def resolve_shield_config(value: ShieldConfig | str | Path | dict[str, Any] | None) -> ShieldConfig:
    """A config object from an object, a mapping, a shipped name or a YAML path (None = defaults)."""
    if value is None:
        return ShieldConfig()
    if isinstance(value, ShieldConfig):
        return value
    if isinstance(value, dict):
        return make_shield_config(value)
    text = str(value)
    path = Path(text)
    if path.is_file():
        return load_shield_config(path)
    try:
        return load_shield_config(shipped_shield_path(text.removesuffix(".yaml").removesuffix(".yml")))
    except ConfigError as exc:
        raise ConfigError("shield", text, exc.expected, None) from None
