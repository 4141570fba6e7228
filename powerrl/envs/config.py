"""Validated configuration of the simulator-backed environments.

Every field has a unit and an allowed range; YAML files under ``configs/envs/`` carry
``kind: env`` and ``id: powerrl/<Name>-v0`` plus the fields of that env's config class. Keyword
arguments to ``gymnasium.make`` override the defaults the same way (and are validated the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerrl.config import from_dict, join_key, load_kind, spec
from powerrl.envs.events import EVENT_KINDS, SITE_KINDS, EventSpec, check_events
from powerrl.errors import ConfigError
from powerrl.model.carbon import CarbonSpec
from powerrl.model.weather import WeatherSpec
from powerrl.model.workload import TraceSpec

SPLITS = ("train", "heldout", "all")
TRACE_DOC = "utilisation CSV (path, column, interval_s, scale, ...); default: the shipped Google 2019 trace"
CARBON_DOC = "carbon-intensity CSV (path, column, time_column, timezone); default: the shipped CAISO 2023 file"
WEATHER_DOC = "Open-Meteo hourly weather JSON (path, timezone, ...); default: the shipped San Jose 2023 file"
WORKLOAD_CLASSES = ("compute", "memory", "interactive", "batch")
EVENTS_DOC = ("scenario events in episode time (kind, start_s, duration_s and the kind's keys; "
              "powerrl.envs.events); default: none")


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (dimensionless; energy is normalised by the node's busy power)."""

    energy: float = field(default=1.0, metadata=spec(lo=0.0, hi=1e6, doc="weight of normalised energy"))
    sla: float = field(default=2.0, metadata=spec(lo=0.0, hi=1e6, doc="penalty per SLA-violating domain-step"))
    carbon_price_per_kg: float = field(default=0.1, metadata=spec(lo=0.0, hi=1e4, unit="$/kgCO2"))
    energy_price_per_kwh: float = field(default=0.1, metadata=spec(lo=0.0, hi=1e3, unit="$/kWh"))


#: Default server of every env: the 2-socket EPYC 7502 profile, the one shipped profile measured with
#: its P-state pinned (tud-zih-energy/2021-rome-ee). SPECpower runs use the servers' own power
#: management, so a SPECpower-fitted curve with shape_r > 1 already contains governor DVFS, and
#: pinning P-states on it understates what DVFS can save (docs/calibration.md).
DEFAULT_PROFILE = "epyc7502"


@dataclass(frozen=True)
class NodeDVFSConfig:
    """``powerrl/NodeDVFS-v0``: one server, ``n_domains`` frequency domains."""

    profile: str = field(default=DEFAULT_PROFILE, metadata=spec(doc="shipped profile name or YAML path"))
    n_domains: int = field(default=2, metadata=spec(lo=1, hi=64))
    workload_class: str = field(default="interactive", metadata=spec(choices=WORKLOAD_CLASSES))
    dt_s: float = field(default=0.1, metadata=spec(lo=0.01, hi=60.0, unit="s"))
    episode_s: float = field(default=300.0, metadata=spec(lo=1.0, hi=7 * 86400.0, unit="s"))
    split: str = field(default="train", metadata=spec(choices=SPLITS))
    load_scale: float = field(default=1.0, metadata=spec(lo=0.0, hi=2.0, doc="multiplies trace utilisation"))
    inlet_c: float = field(default=24.0, metadata=spec(lo=5.0, hi=50.0, unit="degC"))
    reward: RewardWeights = field(default_factory=RewardWeights)
    trace: TraceSpec | None = field(default=None, metadata=spec(doc=TRACE_DOC))
    events: tuple[EventSpec, ...] = field(default=(), metadata=spec(doc=EVENTS_DOC))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Cross-field checks: only events one server can meet (no grid cut)."""
        check_events(self.events, SITE_KINDS, "powerrl/NodeDVFS-v0", join_key(path, "events"), source)


@dataclass(frozen=True)
class ClusterBudgetConfig:
    """``powerrl/ClusterBudget-v0``: ``n_nodes`` nodes in racks and PDUs under a facility budget."""

    profile: str = field(default=DEFAULT_PROFILE, metadata=spec())
    n_nodes: int = field(default=64, metadata=spec(lo=2, hi=100_000))
    nodes_per_rack: int = field(default=16, metadata=spec(lo=1, hi=1024))
    racks_per_pdu: int = field(default=2, metadata=spec(lo=1, hi=1024))
    dt_s: float = field(default=1.0, metadata=spec(lo=0.1, hi=300.0, unit="s"))
    episode_s: float = field(default=1800.0, metadata=spec(lo=1.0, hi=7 * 86400.0, unit="s"))
    split: str = field(default="train", metadata=spec(choices=SPLITS))
    budget_fraction: float = field(default=0.75, metadata=spec(lo=0.1, hi=1.0,
                                   doc="facility budget as a fraction of the sum of node busy power"))
    budget_event_rate_per_h: float = field(default=1.0, metadata=spec(lo=0.0, hi=100.0, unit="1/h"))
    budget_event_cut: float = field(default=0.2, metadata=spec(lo=0.0, hi=0.9, doc="fractional budget cut"))
    pdu_limit_fraction: float = field(default=0.85, metadata=spec(lo=0.1, hi=1.0,
                                      doc="each PDU's limit as a fraction of its nodes' busy power"))
    load_scale: float = field(default=1.3, metadata=spec(lo=0.0, hi=3.0))
    inlet_c: float = field(default=24.0, metadata=spec(lo=5.0, hi=50.0, unit="degC"))
    sla_penalty: float = field(default=0.5, metadata=spec(lo=0.0, hi=1e6))
    trace: TraceSpec | None = field(default=None, metadata=spec(doc=TRACE_DOC))
    events: tuple[EventSpec, ...] = field(default=(), metadata=spec(
        doc=EVENTS_DOC + "; grid_cut events are announced ahead of the budget drop"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Cross-field checks of the events."""
        check_events(self.events, EVENT_KINDS, "powerrl/ClusterBudget-v0", join_key(path, "events"), source)


@dataclass(frozen=True)
class DatacenterConfig:
    """``powerrl/Datacenter-v0``: racks with P-state ceilings, CRAC setpoint and batch deferral."""

    profile: str = field(default=DEFAULT_PROFILE, metadata=spec())
    n_racks: int = field(default=8, metadata=spec(lo=1, hi=10_000))
    nodes_per_rack: int = field(default=16, metadata=spec(lo=1, hi=1024))
    dt_s: float = field(default=300.0, metadata=spec(lo=1.0, hi=3600.0, unit="s"))
    episode_s: float = field(default=86400.0, metadata=spec(lo=60.0, hi=28 * 86400.0, unit="s"))
    split: str = field(default="train", metadata=spec(choices=SPLITS))
    batch_share: float = field(default=0.4, metadata=spec(lo=0.0, hi=1.0,
                               doc="share of each rack's nodes running deferrable batch work"))
    defer_window_h: float = field(default=6.0, metadata=spec(lo=0.0, hi=48.0, unit="h"))
    solar_kwp: float = field(default=20.0, metadata=spec(lo=0.0, hi=1e6, unit="kWp"))
    supply_min_c: float = field(default=15.0, metadata=spec(lo=5.0, hi=30.0, unit="degC"))
    supply_max_c: float = field(default=27.0, metadata=spec(lo=10.0, hi=35.0, unit="degC"))
    load_scale: float = field(default=1.0, metadata=spec(lo=0.0, hi=2.0))
    reward: RewardWeights = field(default_factory=RewardWeights)
    trace: TraceSpec | None = field(default=None, metadata=spec(doc=TRACE_DOC))
    carbon: CarbonSpec | None = field(default=None, metadata=spec(doc=CARBON_DOC))
    weather: WeatherSpec | None = field(default=None, metadata=spec(doc=WEATHER_DOC))
    events: tuple[EventSpec, ...] = field(default=(), metadata=spec(doc=EVENTS_DOC))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Cross-field checks: supply range, and only events a site can meet (no grid cut)."""
        if self.supply_max_c <= self.supply_min_c:
            raise ConfigError(join_key(path, "supply_max_c"), self.supply_max_c,
                              f"a value above supply_min_c = {self.supply_min_c}", source)
        check_events(self.events, SITE_KINDS, "powerrl/Datacenter-v0", join_key(path, "events"), source)


ENV_CONFIGS: dict[str, type] = {
    "powerrl/NodeDVFS-v0": NodeDVFSConfig,
    "powerrl/ClusterBudget-v0": ClusterBudgetConfig,
    "powerrl/Datacenter-v0": DatacenterConfig,
}


def make_config(env_id: str, overrides: dict[str, Any] | None = None, source: str | None = None) -> Any:
    """Validated config of ``env_id`` with ``overrides`` applied."""
    cls = ENV_CONFIGS[env_id]
    return from_dict(cls, dict(overrides or {}), source=source)


def load_env_config(path: str | Path) -> tuple[str, Any]:
    """Load an env YAML (``kind: env``, ``id: ...``, then config fields); returns ``(env_id, config)``."""
    data = load_kind(path, "env", "and 'id'")
    env_id = data.pop("id", None)
    if env_id not in ENV_CONFIGS:
        raise ConfigError("id", env_id, "one of " + ", ".join(ENV_CONFIGS), str(path))
    return env_id, make_config(env_id, data, source=str(path))
