"""``powerrl/RealNode-v0``: a NodeDVFS-v0 policy on a real Linux node, as a Gymnasium env.

The env is a thin episode/reward layer over :class:`~powerrl.envs.hw_node.HardwareNode` (which builds
the NodeDVFS-v0 observation from sysfs and writes P-states) and the node agent's shield
(:func:`~powerrl.envs.hw_node.node_shield`), for online evaluation and fine-tuning of DVFS policies
trained in the simulator. Every write goes through a :class:`~powerrl.hw.safety.SafeWriter`, so
:meth:`RealNodeEnv.close` (or the end of the process) restores the kernel's own settings.

Against a fake tree (:func:`powerrl.hw.fake.make_fake_sysfs`) pass ``advance=FakeKernel(dir).step``:
the env then calls it instead of sleeping, and rates use the simulated period, so an episode is
fast and reproducible (tests, rehearsals).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from powerrl.envs.config import RewardWeights
from powerrl.envs.hw_node import HardwareNode, Reading, hardware_target, node_shield
from powerrl.envs.node_dvfs import DOMAIN_FIELDS, dvfs_spaces
from powerrl.errors import ConfigError
from powerrl.hw.errors import HwError
from powerrl.hw.host import HostConfig, HostLayout, bind_host, load_host_config
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot
from powerrl.shield.config import ShieldConfig, resolve_shield_config
from powerrl.shield.shield import Decision

log = logging.getLogger(__name__)

ENV_ID = "powerrl/RealNode-v0"
#: Allowed control periods, s (the node agent's range: below 5 ms the sampling itself dominates).
PERIOD_RANGE_S = (0.005, 60.0)
_DEFAULT_WEIGHTS = RewardWeights()
_FIELD = {name: j for j, (name, *_rest) in enumerate(DOMAIN_FIELDS)}
_K = len(DOMAIN_FIELDS)

HostArg = str | os.PathLike[str] | HostConfig | None


def _host_config(host: HostArg) -> tuple[HostConfig, str | None]:
    """The hardware part of ``host`` and the file it came from (for error messages)."""
    if host is None:
        return HostConfig(), None
    if isinstance(host, HostConfig):
        return host, None
    if isinstance(host, str | os.PathLike):
        path = Path(host)
        if not path.is_file():
            raise ConfigError("host", str(host), "a host file (kind: host, configs/hosts/example.yaml), a HostConfig "
                              "or None for the defaults")
        return load_host_config(path), str(path)  # the hardware part; the agent: section is the agent's
    raise ConfigError("host", host, "a host file path, a HostConfig or None")


def _shield_config(shield: ShieldConfig | str | os.PathLike[str] | dict[str, Any] | None, period_s: float
                   ) -> tuple[ShieldConfig, str | None]:
    """The shield config with this env's period as its control period (as ``ShieldedEnv`` does)."""
    value = os.fspath(shield) if isinstance(shield, os.PathLike) else shield
    cfg = resolve_shield_config(value)
    source = value if isinstance(value, str) and value.endswith((".yaml", ".yml")) else None
    return cfg.for_period(period_s), source


def _release(writer: SafeWriter | None, node: HardwareNode) -> list[tuple[str, str]]:
    """Restore everything written and close the node (run once: by close(), garbage collection or exit)."""
    failed: list[tuple[str, str]] = []
    try:
        if writer is not None:
            failed = writer.close()
    finally:
        node.close()
    return failed


class RealNodeEnv(gym.Env[np.ndarray, np.ndarray]):
    """NodeDVFS-v0's DVFS task on a real Linux node: measured state, written P-states, wall-clock periods.

    ## Description
    The frequency domains of the node named by a host file (``configs/hosts/example.yaml``,
    ``docs/deploy.md``; by default the CPU packages) are the domains of ``powerrl/NodeDVFS-v0``,
    with the same action and observation spaces, so a policy trained in the simulator (or its
    exported ONNX file) runs here unchanged, for online evaluation and fine-tuning. Each step the
    proposed P-states pass the node agent's thermal shield (``shield``), are written to every
    cpufreq policy of each domain (``scaling_max_freq`` or ``scaling_setspeed``, as the host file
    says) and, where the shield sets a thermal power cap, to the RAPL long-term limit; the env then
    waits one period and measures the node.

    What differs from the simulator: the node runs whatever work it has (no trace, no arrivals, no
    seeds: ``reset(seed=...)`` only seeds ``np_random``, the env is registered
    ``nondeterministic``); a step takes ``period_s`` of wall-clock time (absolute deadlines; a
    caller slower than half a period gets a fresh full period after its write, see ``late_s``);
    every feature is measured, not simulated, field by field as the module docstring of
    :mod:`powerrl.envs.hw_node` says (``util`` from ``/proc/stat``, ``power_w`` from RAPL
    energy, ``temp_die_c`` from the package sensor, ``latency_slack`` from the application's
    latency file or an M/M/1 estimate, ``mem_bound`` a constant of the host file, time of day
    from the local clock); the kernel, not a model, decides the frequency actually run under the
    written limit. The shield is always on: this env is the shielded NodeDVFS-v0, not the bare one.

    ## Action Space
    ``MultiDiscrete([n_pstates] * n_domains)``: P-state index per domain, 0 = lowest frequency,
    ``n_pstates - 1`` = f_max of the host's P-state table (``pstates_mhz``, or ``n_pstates``
    frequencies evenly spaced over ``cpuinfo_min_freq``..``cpuinfo_max_freq``, entries of the
    driver's frequency table where it has one). The default host (2 domains, 11 P-states) has
    NodeDVFS-v0's default spaces.

    ## Observation Space
    NodeDVFS-v0's: ``Box(float32)`` of ``8 * n_domains + 2`` values, per domain ``util``,
    ``offered_load``, ``mem_bound``, ``pstate``, ``temp_die_c`` (degC), ``power_w`` (W),
    ``latency_slack``, ``backlog_s`` (s), then ``tod_sin``, ``tod_cos`` (local time of day), with
    the same bounds. A feature that cannot be measured this period (a failed read, no sensor of
    that kind on the node) reads as its lower bound and is named in ``info["stale_sensors"]``.

    ## Rewards
    NodeDVFS-v0's: ``-reward_energy * P / P_busy - reward_sla * (share of domains with
    latency_slack < 0)``, ``P`` the node's measured power over the period (sum of the domains'
    RAPL package power, W) and ``P_busy`` the host profile's busy power (``hardware_target(...)
    .busy_w`` summed, W); minus the shield config's ``penalty`` on a step the shield changed the
    action. RAPL measures the CPU packages, not the whole server the profile describes (fans,
    disks, power supply), so the energy term sits at another level than in the simulator unless
    the profile was fitted on this node (``powerrl calibrate``). A domain whose power is unknown
    counts with the profile's model at its P-state and measured utilisation (its busy power when
    that is unknown too); an unknown slack is no violation.

    ## Starting State
    The node as the kernel runs it: ``reset`` restores every setting this env wrote (so each
    episode starts under the node's own governor and limits), forgets the shield's state, and
    samples twice one period apart (rates need two samples).

    ## Episode End
    No termination; truncation after ``round(episode_s / period_s)`` steps.

    ## Info
    ``energy_j`` (J measured over the period), ``power_w`` (node power, W), ``sla_violation`` (any
    domain), ``sla_violation_rate`` (share of domains), ``latency_ms`` (the application's p99, or
    ``sla_ms * (1 - latency_slack)`` of the worst domain, ms), ``temp_die_c`` (hottest domain,
    degC), ``pstate_applied`` (the shield's P-states: written with ``apply``, what would have been
    written without), ``time_s`` (wall clock, s since the epoch), ``inlet_c`` (the host file's,
    degC), ``period_s`` (time the rates cover, s), ``late_s`` (how late ``step`` was called
    against the schedule, s), ``stale_sensors`` (failed sensors and unmeasured features, e.g.
    ``domain0.temp_die_c``), ``written`` (whether anything was written), ``write_errors`` (kernel
    refusals, the env goes on), ``shield`` (``proposed``, ``applied``, ``events`` as ``{reason:
    domains}``, ``alerts``, ``intervened``, ``thermal_cap_w`` per domain, W, inf = none) and
    ``cost`` (1.0 on a step the shield changed anything, for constrained RL).

    ## Arguments
    ``gym.make("powerrl/RealNode-v0", host="configs/hosts/example.yaml")`` with keywords:
    ``host`` (host file path, :class:`~powerrl.hw.host.HostConfig`, or None for the defaults;
    a host file's ``agent:`` section belongs to the node agent and is ignored), ``root`` (hardware root
    override, e.g. a fake tree), ``shield`` (shipped name, YAML path, mapping or
    :class:`~powerrl.shield.config.ShieldConfig`; default ``default``), ``period_s`` (0.1),
    ``episode_s`` (300), ``reward_energy`` (1.0), ``reward_sla`` (2.0), ``apply`` (True; False
    observes and decides only, writes nothing, and the ``pstate`` feature shows the P-state
    nearest the running frequency), ``advance`` (a callable ``advance(dt_s)`` run instead of
    waiting, e.g. ``FakeKernel(dir).step``; rates then use ``period_s`` as their time base).
    Writing needs root (or write access to the cpufreq and powercap attributes); ``close()``
    restores the node, as do garbage collection and interpreter exit. Nothing is journaled or
    written before the first ``reset``.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, host: HostArg = None, *, root: str | os.PathLike[str] | None = None,
                 shield: ShieldConfig | str | os.PathLike[str] | dict[str, Any] | None = "default",
                 period_s: float = 0.1, episode_s: float = 300.0, reward_energy: float = _DEFAULT_WEIGHTS.energy,
                 reward_sla: float = _DEFAULT_WEIGHTS.sla, apply: bool = True,
                 advance: Callable[[float], Any] | None = None) -> None:
        period_s, episode_s = float(period_s), float(episode_s)
        if not PERIOD_RANGE_S[0] <= period_s <= PERIOD_RANGE_S[1]:
            raise ConfigError("period_s", period_s, f"a control period in [{PERIOD_RANGE_S[0]}, {PERIOD_RANGE_S[1]}] s")
        if not (math.isfinite(episode_s) and episode_s >= period_s):
            raise ConfigError("episode_s", episode_s, f"an episode of at least one period ({period_s} s)")
        for key, w in (("reward_energy", reward_energy), ("reward_sla", reward_sla)):
            if not (math.isfinite(float(w)) and float(w) >= 0.0):
                raise ConfigError(key, w, "a finite weight >= 0")
        if advance is not None and not callable(advance):
            raise ConfigError("advance", advance, "a callable advance(dt_s), e.g. FakeKernel(dir).step, or None")
        cfg, source = _host_config(host)
        if root is not None:
            cfg = dataclasses.replace(cfg, root=os.fspath(root))
        self.host_config = cfg
        self.period_s = period_s
        self.episode_s = episode_s
        self.reward_energy = float(reward_energy)
        self.reward_sla = float(reward_sla)
        self.apply = bool(apply)
        self.advance = advance
        self.root = SysfsRoot(cfg.root)
        self.layout: HostLayout = bind_host(cfg, self.root, source)
        self.shield_config, shield_source = _shield_config(shield, period_s)
        self.shield = node_shield(self.layout, self.shield_config, shield_source)
        self.target = hardware_target(self.layout, period_s, self.shield_config)
        self.n_domains = len(self.layout.domains)
        self.n_pstates = len(self.layout.pstates_mhz)
        self.busy_power_w = float(np.sum(self.target.busy_w))
        self.steps_per_episode = max(1, int(round(episode_s / period_s)))
        self.action_space, self.observation_space = dvfs_spaces(self.n_domains, self.n_pstates)
        self._lo = self.observation_space.low.copy()
        self._hi = self.observation_space.high.copy()
        # Opened at the first reset (nothing is journaled or written before an episode starts).
        self.node: HardwareNode | None = None
        self.writer: SafeWriter | None = None
        self._finalizer: weakref.finalize | None = None
        self.restore_failures: list[tuple[str, str]] = []
        self.step_count = 0
        self._deadline = 0.0
        self._reading: Reading | None = None
        self.covered_s = period_s  # time the latest sample's rates cover, s

    # -- node lifetime -----------------------------------------------------------------------------
    def _open(self) -> HardwareNode:
        if self.node is not None:
            return self.node
        writer = SafeWriter(self.root, install_handlers=False) if self.apply else None
        try:
            node = HardwareNode(self.layout, writer, self.period_s,
                                fixed_dt_s=self.period_s if self.advance is not None else None)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        self.writer, self.node = writer, node
        # Restore at close(), garbage collection or interpreter exit, whichever comes first (once).
        self._finalizer = weakref.finalize(self, _release, writer, node)
        return node

    def close(self) -> None:
        """Restore every setting this env wrote and close the node; safe to call twice."""
        if self._finalizer is not None:
            failed = self._finalizer()
            if failed:
                self.restore_failures = list(failed)
            self._finalizer = None
        self.node = None
        self.writer = None
        super().close()

    # -- timing --------------------------------------------------------------------------------------
    def _wait(self, node: HardwareNode) -> None:
        """Let one period pass under the settings just written (absolute deadlines)."""
        if self.advance is not None:
            self.advance(self.period_s)
            return
        now = time.monotonic()
        due = self._deadline + self.period_s
        if due - now < 0.5 * self.period_s:
            # The caller took most of the period (a learner update, a slow policy): sample now so the
            # next observation's rates cover one full period under the action just written.
            self._sample(node)
            due = time.monotonic() + self.period_s
        left = due - time.monotonic()
        if left > 0:
            time.sleep(left)
        self._deadline = due

    # -- observation, power, reward --------------------------------------------------------------------
    def _sample(self, node: HardwareNode) -> Reading:
        """Sample the node; :attr:`covered_s` becomes the time its rates cover."""
        prev = node.reading
        r = node.sample()
        if self.advance is not None or prev is None or not r.t_s > prev.t_s:
            self.covered_s = self.period_s
        else:
            self.covered_s = r.t_s - prev.t_s
        return r  # in a dry run nothing is written, so node.pstate follows the running frequency

    def _observe(self, node: HardwareNode, r: Reading) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The observation inside the Box, the raw one (NaN = unmeasured) and the stale sensor names."""
        raw = node.observation(r)
        per = raw[: self.n_domains * _K].reshape(self.n_domains, _K)
        if not math.isfinite(r.latency_ms):
            # The M/M/1 slack needs the utilisation: unknown utilisation is an unknown slack (not a violation).
            per[~np.isfinite(r.util), _FIELD["latency_slack"]] = np.nan
        bad = np.isnan(raw)
        stale = set(r.errors)
        for j in np.flatnonzero(bad[: self.n_domains * _K]):
            stale.add(f"domain{j // _K}.{DOMAIN_FIELDS[j % _K][0]}")
        obs = np.clip(np.where(bad, self._lo, raw), self._lo, self._hi).astype(np.float32)
        return obs, raw, sorted(stale)

    def _power_w(self, node: HardwareNode, r: Reading) -> np.ndarray:
        """Per-domain power over the period (W): measured, else the profile's model, else busy power."""
        t = self.target
        p = np.maximum(node.pstate, 0)
        idle = np.asarray(t.idle_w)
        full = np.asarray(t.busy_w_at_pstate)[np.arange(self.n_domains), p]
        model = np.where(np.isfinite(r.util), idle + np.nan_to_num(r.util) * (full - idle), np.asarray(t.busy_w))
        return np.where(np.isfinite(r.power_w), r.power_w, model)

    def _info(self, node: HardwareNode, r: Reading, raw: np.ndarray, stale: list[str], period_s: float
              ) -> dict[str, Any]:
        cfg = self.layout.config
        power = self._power_w(node, r)
        slack = raw[: self.n_domains * _K].reshape(self.n_domains, _K)[:, _FIELD["latency_slack"]].astype(np.float64)
        known = np.isfinite(slack)
        violating = known & (slack < 0.0)
        if math.isfinite(r.latency_ms):
            latency = r.latency_ms
        elif known.any():
            latency = cfg.sla_ms * (1.0 - float(np.min(slack[known])))
        else:
            latency = math.nan
        temps = r.temp_c[np.isfinite(r.temp_c)]
        total = float(np.sum(power))
        return {
            "energy_j": total * period_s, "power_w": total, "sla_violation": bool(violating.any()),
            "sla_violation_rate": float(np.mean(violating)), "latency_ms": float(latency),
            "temp_die_c": float(np.max(temps)) if temps.size else math.nan,
            "pstate_applied": np.maximum(node.pstate, 0).astype(np.int64), "time_s": r.wall_s,
            "inlet_c": float(cfg.inlet_c), "period_s": float(period_s), "stale_sensors": stale,
        }

    # -- Gymnasium API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Restore what the last episode wrote, forget the shield's state and sample twice one period apart."""
        super().reset(seed=seed)
        node = self.node
        if node is None:
            node = self._open()
        elif self.writer is not None:
            failed = self.writer.restore()
            if failed:
                raise HwError("could not restore the node's settings before a new episode: "
                              + "; ".join(f"{p}: {e}" for p, e in failed))
            node.reopen()  # forgets the written P-states: the next sample reads the running ones
        self.shield.reset()
        self.step_count = 0
        self._deadline = time.monotonic()
        self._sample(node)
        self._wait(node)
        r = self._sample(node)
        obs, raw, stale = self._observe(node, r)
        info = self._info(node, r, raw, stale, self.covered_s)
        info["late_s"] = 0.0
        self._reading = r
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Shield and write one P-state per domain, wait one period, measure."""
        node, prev = self.node, self._reading
        if node is None or prev is None:
            raise gym.error.ResetNeeded("call reset() before step() (and again after close())")
        # How late the caller is against the schedule (0 when on time; a period's budget is the caller's too).
        late = 0.0 if self.advance is not None else max(0.0, time.monotonic() - self._deadline - self.period_s)
        proposed = np.array(action, copy=True)
        decision: Decision = self.shield.filter(node.telemetry(prev), proposed)
        errors = self._write(node, decision)
        self._wait(node)
        r = self._sample(node)
        self.step_count += 1
        obs, raw, stale = self._observe(node, r)
        info = self._info(node, r, raw, stale, self.covered_s)
        info["pstate_applied"] = decision.pstate.astype(np.int64)
        intervened = decision.intervened
        reward = (-self.reward_energy * info["power_w"] / self.busy_power_w
                  - self.reward_sla * info["sla_violation_rate"] - self.shield_config.penalty * intervened)
        info.update({
            "late_s": late, "written": self.apply and not errors, "write_errors": errors,
            "shield": {"proposed": proposed, "applied": decision.pstate.astype(np.int64),
                       "events": dict(decision.events), "alerts": decision.alerts, "intervened": intervened,
                       "thermal_cap_w": np.array(decision.thermal_cap_w, dtype=np.float64)},
            "cost": float(intervened),
        })
        self._reading = r
        return obs, float(reward), False, self.step_count >= self.steps_per_episode, info

    def _write(self, node: HardwareNode, decision: Decision) -> list[str]:
        """Write the decision (with ``apply``): P-states, and RAPL caps where any cap is or was in force."""
        if not self.apply:
            return []
        errors = node.actuate(decision.pstate, decision.unit_cap_w)
        for e in errors:
            log.warning("%s: %s", ENV_ID, e)
        return errors
