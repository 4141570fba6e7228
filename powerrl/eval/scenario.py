"""Evaluation scenarios: which env, which real data, which days and hours, which events.

A scenario is YAML (``kind: scenario``; every key in ``docs/scenarios.md``)::

    kind: scenario
    description: NodeDVFS on held-out day 22 of the Google 2019 trace
    env: powerrl/NodeDVFS-v0
    env_config: {n_domains: 2}       # any field of the env's config class
    trace: {path: my.csv, column: cpu, interval_s: 300, scale: 1.0, days: 28}
    carbon: {path: ci.csv, column: intensity, time_column: datetime, timezone: UTC}
    weather: {path: site.json, timezone: America/Los_Angeles}
    events:
      - {kind: heat_wave, start_s: 3600, duration_s: 7200, delta_c: 10}
    days: [22]                       # trace days, one episode each (default: every held-out day)
    start_h: 0.0                     # hour of day each episode starts
    duration_h: 24.0                 # episode length, h
    shield: default                  # shield config name or path

Everything is checked, and the data files are read, by :func:`load_scenario`, so a bad scenario
fails before any simulation starts, naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import filecmp
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerrl.config import from_dict, load_kind, to_dict
from powerrl.envs.config import ENV_CONFIGS, make_config
from powerrl.envs.events import EventSpec
from powerrl.envs.sources import site_series, trace_arrays
from powerrl.errors import ConfigError, PowerrlError
from powerrl.model.carbon import CarbonSpec
from powerrl.model.profiles import get_profile
from powerrl.model.weather import WeatherSpec
from powerrl.model.workload import TraceSpec
from powerrl.shield.config import ShieldConfig, resolve_shield_config

#: Shipped scenario files (``powerrl/data/scenarios/<name>.yaml``; copies in ``configs/scenarios/``).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios"
#: Named sets of shipped scenarios for ``--scenarios``. ``default`` is what ``make demo`` compares.
SCENARIO_SETS: dict[str, tuple[str, ...]] = {
    "default": ("nodedvfs-day22", "clusterbudget-day22", "datacenter-day22"),
    "heldout": ("nodedvfs-heldout", "clusterbudget-heldout", "datacenter-heldout"),
    "events": ("nodedvfs-heatwave", "nodedvfs-cooling-failure", "nodedvfs-surge", "clusterbudget-gridcut",
               "clusterbudget-surge", "datacenter-heatwave", "datacenter-cooling-failure", "datacenter-surge"),
}
DAY_S = 86_400.0
#: Keys of a scenario file besides ``kind`` (the order of docs/scenarios.md).
SCENARIO_KEYS = ("description", "env", "env_config", "trace", "carbon", "weather", "events", "days", "start_h",
                 "duration_h", "shield")


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario (see the module docstring for the YAML).

    Attributes:
        name: short name (the file stem for files).
        env_id: the env, e.g. ``powerrl/NodeDVFS-v0``.
        env_config: the env's validated config (trace, events and, for Datacenter-v0, carbon and
            weather folded in).
        trace, carbon, weather: the data specs (None = shipped default).
        days: trace days evaluated, one episode each (1-based).
        start_h: hour of day each episode starts.
        duration_h: episode length, h.
        shield: the shield config every controller runs behind.
        description: one line for reports.
        source: the file it came from (or ``<mapping>``).
    """

    name: str
    env_id: str
    env_config: Any
    trace: TraceSpec | None
    carbon: CarbonSpec | None
    weather: WeatherSpec | None
    days: tuple[int, ...]
    start_h: float
    duration_h: float
    shield: ShieldConfig
    shield_name: str
    description: str = ""
    source: str = "<mapping>"

    @property
    def dt_s(self) -> float:
        """Control period of the env, s."""
        return float(self.env_config.dt_s)

    @property
    def steps_per_episode(self) -> int:
        """Control steps in one episode."""
        return max(1, int(round(self.duration_h * 3600.0 / self.dt_s)))

    def start_s(self, day: int) -> float:
        """Trace time (s since row 0) at which the episode of ``day`` starts."""
        return (day - 1) * DAY_S + self.start_h * 3600.0

    def with_days(self, days: tuple[int, ...], name: str | None = None) -> Scenario:
        """The same scenario on other days (validated against the trace)."""
        _check_days(days, self.env_config, self.start_h, self.duration_h, self.source, "days")
        return dataclasses.replace(self, days=tuple(days), name=name or self.name)

    def env_kwargs(self) -> dict[str, Any]:
        """Config of a vector env for this scenario: episodes as long as the evaluation window."""
        return {"config": dataclasses.replace(self.env_config, episode_s=self.duration_h * 3600.0)}


def _check_days(days: tuple[int, ...], cfg: Any, start_h: float, duration_h: float, source: str,
                key: str) -> None:
    tr = trace_arrays(cfg.trace)
    n_days = len(tr.trace.day_numbers("all"))
    if not days:
        raise ConfigError(key, list(days), "at least one trace day", source)
    if len(set(days)) != len(days):
        raise ConfigError(key, list(days), "each day once", source)
    for i, d in enumerate(days):
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= n_days:
            raise ConfigError(f"{key}[{i}]", d, f"a trace day in [1, {n_days}]", source)
        end_s = (d - 1) * DAY_S + (start_h + duration_h) * 3600.0
        if end_s > tr.duration_s + 1e-6:
            raise ConfigError(f"{key}[{i}]", d, f"a day whose window (start_h {start_h:g} + duration_h "
                              f"{duration_h:g}) ends inside the {n_days}-day trace", source)


def scenario_from_dict(data: Any, name: str, source: str = "<mapping>") -> Scenario:
    """Validate a scenario mapping (the YAML without ``kind``); errors name the key and ``source``."""
    if not isinstance(data, dict):
        raise ConfigError("", data, "a mapping of scenario keys: " + ", ".join(SCENARIO_KEYS), source)
    raw = dict(data)
    unknown = sorted(set(raw) - set(SCENARIO_KEYS))
    if unknown:
        raise ConfigError(unknown[0], raw[unknown[0]], "a scenario key: " + ", ".join(SCENARIO_KEYS), source)
    env_id = raw.get("env")
    if env_id not in ENV_CONFIGS:
        raise ConfigError("env", env_id, "an env id: " + ", ".join(ENV_CONFIGS), source)
    cls = ENV_CONFIGS[env_id]
    env_over = raw.get("env_config") or {}
    if not isinstance(env_over, dict):
        raise ConfigError("env_config", env_over, f"a mapping of {cls.__name__} fields", source)
    for key in ("trace", "carbon", "weather", "events"):
        if key in env_over:
            raise ConfigError(f"env_config.{key}", env_over[key], f"the top-level scenario key '{key}'", source)
    from_dict(cls, env_over, path="env_config", source=source)  # names env_config.<key> on errors
    trace = None if raw.get("trace") is None else from_dict(TraceSpec, raw["trace"], path="trace", source=source)
    carbon = None if raw.get("carbon") is None else from_dict(CarbonSpec, raw["carbon"], path="carbon", source=source)
    weather = (None if raw.get("weather") is None
               else from_dict(WeatherSpec, raw["weather"], path="weather", source=source))
    events = raw.get("events") or []
    if not isinstance(events, list):
        raise ConfigError("events", events, "a list of events (kind, start_s, duration_s, ...)", source)
    events_t = tuple(from_dict(EventSpec, e, path=f"events[{i}]", source=source) for i, e in enumerate(events))
    fields = {f.name for f in dataclasses.fields(cls)}
    over: dict[str, Any] = dict(env_over, split="heldout")
    over["trace"] = None if trace is None else to_dict(trace)
    if "carbon" in fields:
        over["carbon"] = None if carbon is None else to_dict(carbon)
    if "weather" in fields:
        over["weather"] = None if weather is None else to_dict(weather)
    over["events"] = [to_dict(e) for e in events_t]
    cfg = make_config(env_id, over, source=source)
    try:
        get_profile(cfg.profile)
    except PowerrlError as exc:
        raise ConfigError("env_config.profile", cfg.profile, f"a shipped profile name or profile YAML ({exc})",
                          source) from None
    start_h = _number(raw, "start_h", 0.0, 0.0, 24.0, source, hi_open=True)
    duration_h = _number(raw, "duration_h", 24.0, 0.0, 28 * 24.0, source, lo_open=True)
    if duration_h * 3600.0 < cfg.dt_s:
        raise ConfigError("duration_h", duration_h, f"at least one control period (dt_s = {cfg.dt_s:g} s)", source)
    tr = trace_arrays(cfg.trace)
    held = tr.trace.day_numbers("heldout")
    days_raw = raw.get("days")
    days = tuple(held) if days_raw is None else days_raw
    if not isinstance(days, list | tuple):
        raise ConfigError("days", days, "a list of trace days, e.g. [22, 23]", source)
    days = tuple(days)
    _check_days(days, cfg, start_h, duration_h, source, "days")
    shield_ref = raw.get("shield", "default")
    try:
        shield = resolve_shield_config(shield_ref)
    except PowerrlError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError("shield", shield_ref, f"a shield name (default, strict) or file ({exc})", source) from None
    try:
        site_series(cfg.trace, carbon, weather)  # reads the files now: coverage errors before any work
    except PowerrlError as exc:
        raise ConfigError("carbon/weather", None, f"data covering the trace ({exc})", source) from None
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description", description, "a one-line text", source)
    return Scenario(name=name, env_id=env_id, env_config=cfg, trace=trace, carbon=carbon, weather=weather,
                    days=days, start_h=start_h, duration_h=duration_h, shield=shield,
                    shield_name=str(shield_ref) if isinstance(shield_ref, str) else "<mapping>",
                    description=description, source=source)


def _number(raw: dict[str, Any], key: str, default: float, lo: float, hi: float, source: str,
            lo_open: bool = False, hi_open: bool = False) -> float:
    v = raw.get(key, default)
    if (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi)):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(key, v, f"a number in {left}{lo:g}, {hi:g}{right} h", source)
    return float(v)


def shipped_scenarios() -> tuple[str, ...]:
    """Names of the shipped scenarios."""
    return tuple(sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))


def load_scenario(ref: str | Path) -> Scenario:
    """A shipped scenario name or a scenario YAML path, validated (data files read)."""
    text = str(ref)
    shipped = SHIPPED_DIR / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        if not shipped.is_file():
            raise ConfigError("scenario", text, "a shipped scenario (" + ", ".join(shipped_scenarios())
                              + ") or a scenario YAML path")
        path = shipped
    else:
        path = Path(text)
    data = load_kind(path, "scenario")
    return scenario_from_dict(data, name=path.stem, source=str(path))


def resolve_scenarios(refs: list[str] | tuple[str, ...]) -> list[Scenario]:
    """Scenario names, set names (``default``, ``heldout``, ``events``) and paths, expanded and loaded."""
    names: list[str] = []
    for ref in refs:
        names.extend(SCENARIO_SETS.get(ref, (ref,)))
    out: list[Scenario] = []
    seen: dict[str, str] = {}
    for n in names:
        sc = load_scenario(n)
        where = str(Path(sc.source).resolve())
        if sc.name in seen:
            if seen[sc.name] == where or filecmp.cmp(seen[sc.name], where, shallow=False):
                continue  # the same scenario twice (a set and its member, or a copy of a shipped file)
            raise ConfigError("--scenarios", n, f"scenarios with distinct names ({sc.name!r} is also {seen[sc.name]}; "
                              "results are keyed by name: rename one file)")
        seen[sc.name] = where
        out.append(sc)
    return out
