"""The node agent: sample -> features -> policy -> shield -> actuate -> log, every period, fail-safe.

Each tick (100 ms by default, on absolute deadlines so lateness never accumulates):

1. one synchronous native sample of every sensor plus ``/proc/stat`` (:class:`~powerrl.envs.hw_node.HardwareNode`);
2. the NodeDVFS-v0 observation, built exactly as in training (the exported ONNX graph normalises it);
3. the controller (an exported policy run by onnxruntime, torch never imported, or a baseline by
   name) under the shield's watchdog: an exception, a NaN or out-of-range action, an answer later
   than ``controller_timeout_ms`` or a failed sensor hands this tick's decision to the fallback
   governor (``agent.fallback``, schedutil by default);
4. the shield (trip points, predictive throttle, thermal power cap) has the last word;
5. with ``--apply``, the P-states go to every cpufreq policy of each domain in one native batch and
   the caps (thermal cap, coordinator cap) to the RAPL package limits; in a dry run nothing is written;
6. a JSON line (every ``log_every`` ticks, and every tick where anything happened), Prometheus
   metrics and, once a second, the status file ``powerrl agent status`` reads.

Fail-safe: SIGTERM, SIGINT, SIGHUP and SIGQUIT stop the loop, restore every saved setting and exit 0;
after a SIGKILL the next start restores the journal before anything else (:class:`SafeWriter`);
a watchdog thread restores the kernel's own settings when no tick completes for ``hang_s``; a
coordinator cap that is not refreshed decays to the guaranteed base (:mod:`powerrl.runtime.caps`);
``SIGUSR1`` makes the agent read a new cap at once (the budget-event path).

Two node caps can be held, each a :class:`~powerrl.runtime.caps.CapLease`, and the lower one is in
force: the operator's (``cap.json``, ``powerrl agent cap``) in :attr:`NodeAgent.caps`, and the cluster
coordinator's in :attr:`NodeAgent.coord_caps`. With ``agent.coordinator.url`` set, a
:class:`~powerrl.runtime.reporter.CoordinatorReporter` thread reports the node's power every round
and hands each grant to the loop through the same wake-up as ``SIGUSR1``, so a cut is written between
periods, at once; a silent coordinator leaves the grant's lease to run out and decay to its base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import powerrl.baselines  # noqa: F401 - registers the governors the fallback and --controller name
from powerrl.control import Controller, make_controller
from powerrl.envs.hw_node import HardwareNode, Reading, hardware_target, node_shield
from powerrl.errors import ConfigError
from powerrl.hw.host import HostLayout, bind_host
from powerrl.hw.safety import SafeWriter, write_atomically
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.auth import check_url
from powerrl.runtime.caps import CAP_FILE, CapLease, read_cap_file
from powerrl.runtime.config import HostFile, coordinator_token
from powerrl.runtime.policy_thread import ControllerThread
from powerrl.shield.config import ShieldConfig, resolve_shield_config
from powerrl.shield.events import ShieldCounters
from powerrl.shield.shield import Decision
from powerrl.shield.watchdog import HOLD, Watchdog

STATUS_FILE = "agent-status.json"
PID_FILE = "agent.pid"
#: Ring of tick latencies kept for the status percentiles (about 7 minutes at 100 ms).
LATENCY_RING = 4096
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def state_dir(root: SysfsRoot, rel: str) -> Path:
    """The agent's state directory under ``root`` (``run/powerrl`` by default)."""
    return root.path(rel.strip("/"))


def rss_bytes() -> int:
    """Resident set size of this process, bytes (``/proc/self/statm``, pages)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def make_agent_controller(name_or_path: str, node: HardwareNode, target: Any) -> Controller:
    """A policy file (``*.onnx``) or a registered controller name, checked against the host.

    Raises:
        ConfigError: the policy was trained for another env, observation size or P-state count.
    """
    if name_or_path.endswith(".onnx"):
        from powerrl.eval.policy_file import PolicyFileController, read_metadata

        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError("--policy", name_or_path, "an exported policy file (powerrl export RUN)")
        meta = read_metadata(str(path))
        nvec = (meta.get("action") or {}).get("nvec")
        if nvec is not None and list(nvec) != [node.n_pstates] * node.n:
            raise ConfigError("--policy", name_or_path,
                              f"a policy for {node.n} domains x {node.n_pstates} P-states (it chooses {nvec}); set "
                              f"n_domains / n_pstates in the host file to match, or train for this host")
        return PolicyFileController(path, node.action_space, node.observation_space, target)
    return make_controller(name_or_path, node.action_space, node.observation_space, target)


@dataclass
class TickRecord:
    """What one tick did (also the JSON log line)."""

    tick: int
    wall_s: float
    source: str
    proposed: list[int]
    applied: list[int]
    events: dict[str, int]
    cap_w: list[float | None]
    util: list[float]
    temp_c: list[float]
    power_w: list[float]
    tick_ms: float
    late_ms: float
    written: bool
    errors: list[str] = field(default_factory=list)


def _floats(a: np.ndarray, nd: int = 3) -> list[Any]:
    return [None if not math.isfinite(v) else round(v, nd) for v in np.asarray(a, dtype=np.float64).tolist()]


class NodeAgent:
    """Runs a controller on a real node every period, behind the shield and the watchdog.

    Args:
        host: the host file (hardware mapping and agent settings).
        controller: an exported policy (``*.onnx``) or a registered controller name.
        apply: write decisions (False: dry run, decide and log only).
        root: hardware root (default the host file's ``root``).
        period_s: control period (default ``agent.period_ms``).
        log: where JSON lines go (default ``agent.log`` or standard output).
        metrics_port: override ``agent.metrics.port`` (0 = off).
        coordinator_url: override ``agent.coordinator.url`` (``powerrl agent run --coordinator``).
        coordinator_transport: an httpx transport for the coordinator reporter (tests: ``httpx.MockTransport``).
    """

    def __init__(self, host: HostFile, controller: str, *, apply: bool = False, root: str | None = None,
                 period_s: float | None = None, log: IO[str] | None = None, metrics_port: int | None = None,
                 coordinator_url: str | None = None, coordinator_transport: Any = None) -> None:
        self.host = host
        cfg = host.agent
        self.apply = apply
        self.period_s = float(period_s if period_s is not None else cfg.period_s)
        if not 0.005 <= self.period_s <= 60.0:
            raise ConfigError("--period-ms", self.period_s * 1000, "a period in [5, 60000] ms")
        hcfg = host.host if root is None else dataclasses.replace(host.host, root=root)
        self.root = SysfsRoot(hcfg.root)
        self.name = hcfg.name or socket.gethostname()
        self.state = state_dir(self.root, cfg.state_dir)
        # Before anything else: restore what a killed run left (the journal survives SIGKILL).
        recovery = SafeWriter(self.root, install_handlers=False)
        self.recovered = recovery.recovered
        if apply:
            self.writer: SafeWriter | None = recovery
        else:
            recovery.close()
            self.writer = None
        self.metrics: Any = None
        self.reporter: Any = None  # a CoordinatorReporter when a coordinator URL is set
        self.log_failures = 0  # log lines that could not be written (full disk, closed stream)
        self._policy: ControllerThread | None = None
        self._own_log = False
        try:
            self._build(hcfg, controller, log, metrics_port)
            self._build_reporter(hcfg, coordinator_url, coordinator_transport)
        except BaseException:
            # Whatever was opened or written so far (governors switched by prepare(), a metrics
            # port) is released and restored: a failed start leaves the node as it found it.
            self._release()
            raise
        self.started_wall = time.time()
        self._t0_cpu = time.process_time()
        self._t0 = time.monotonic()

    def _build(self, hcfg: Any, controller: str, log: IO[str] | None, metrics_port: int | None) -> None:
        host, cfg, apply = self.host, self.host.agent, self.apply
        self.layout: HostLayout = bind_host(hcfg, self.root, host.path)
        self.node = HardwareNode(self.layout, self.writer, self.period_s)
        self.shield_cfg = self._shield_config(cfg.shield, cfg.controller_timeout_ms / 1000.0)
        self.shield = node_shield(self.layout, self.shield_cfg, host.path)
        self.target = hardware_target(self.layout, self.period_s, self.shield_cfg)
        self.controller_name = controller
        self.controller = make_agent_controller(controller, self.node, self.target)
        self._policy = ControllerThread(self.controller) if cfg.policy_thread else None
        self.watchdog = Watchdog(self.shield_cfg.watchdog, self.node.action_space, self.node.observation_space)
        self.watchdog.fallback = make_controller(cfg.fallback, self.node.action_space, self.node.observation_space,
                                                 self.target)
        base_frac = self.shield_cfg.budget.base_frac[hcfg.priority]
        idle, busy = float(np.sum(self.target.idle_w)), float(np.sum(self.target.busy_w))
        self.base_w = idle + base_frac * (busy - idle)
        self.caps = CapLease(self.base_w, cfg.caps.lease_s, cfg.caps.decay_s)  # the operator's (cap.json)
        # The coordinator's: base, lease and decay come with each grant (these hold until the first).
        self.coord_caps = CapLease(self.base_w, cfg.caps.lease_s, cfg.caps.decay_s)
        self.coord_round = -1
        self._coord_errors_seen = 0  # reporter errors already added to the metrics counter
        self._grant_seen: tuple[float, float, tuple[str, ...]] | None = None  # last logged (cap, base, emergencies)
        self._cap_file = self.state / CAP_FILE
        self._cap_stamp: tuple[int, int, int] | None = None
        self.counters = ShieldCounters()
        self.fallbacks: dict[str, int] = {}
        self.ticks = 0
        self.missed = 0
        self.writes = 0
        self.errors: list[str] = []
        self._lat = np.full(LATENCY_RING, np.nan)
        self._late = np.full(LATENCY_RING, np.nan)
        self.last: TickRecord | None = None
        self.decision: Decision | None = None
        self._stop = threading.Event()
        # Wake-ups of the sleeping loop (SIGUSR1: a new cap; stop()): a pipe, because a signal
        # handler must not take a lock the interrupted main thread may hold (threading.Event does).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._cap_signal = False
        self._lock = threading.Lock()  # between ticks' writes and the hang watchdog's restore
        self._log_lock = threading.Lock()  # log lines come from the loop, the hang watchdog and the reporter
        self._restored_by_watchdog = False
        self._signal: str | None = None
        self._last_tick_done = time.monotonic()
        self._hang_thread: threading.Thread | None = None
        if log is None and cfg.log:
            try:
                log = open(cfg.log, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise ConfigError("agent.log", cfg.log, f"a file the agent can append to ({exc.strerror})",
                                  host.path) from None
            self._own_log = True
        self.log: IO[str] = log if log is not None else sys.stdout
        port = cfg.metrics.port if metrics_port is None else metrics_port
        if port:
            from powerrl.runtime.metrics import AgentMetrics

            self.metrics = AgentMetrics(self.node.n, self.name, cfg.metrics.address, port)
        if apply:
            # Last, once everything else was accepted: open and journal every target now, so the first
            # thermal or budget event does not pay for it (milliseconds) in its tick.
            self.node.prepare()

    def _build_reporter(self, hcfg: Any, url: str | None, transport: Any) -> None:
        ccfg = self.host.agent.coordinator
        if url is not None:
            url = check_url(url, "--coordinator")
        url = url or ccfg.url
        if not url:
            return
        token = coordinator_token(ccfg, url, self.host.path)  # read once: a rotated token needs a restart
        try:
            from powerrl.runtime.reporter import CoordinatorReporter
        except ModuleNotFoundError as exc:
            raise ConfigError("agent.coordinator.url", url, f"no coordinator, or {exc.name} installed "
                              "(pip install 'powerrl[agent]')", self.host.path) from None
        self.reporter = CoordinatorReporter(
            url, ccfg.node or self.name, token=token, priority=hcfg.priority, report_s=ccfg.report_s,
            timeout_s=ccfg.timeout_s, wake=self._coordinator_wake, emit=self._emit, held_cap=self._coordinator_held,
            transport=transport)
        # Until the first answer the node holds its guaranteed base: a restarted agent must not run
        # uncapped while the coordinator still counts the previous process's cap.
        self.coord_caps.set(self.base_w, time.time(), math.inf)

    def _coordinator_wake(self) -> None:
        """A grant arrived (reporter thread): the loop applies it between periods, as after SIGUSR1."""
        self._cap_signal = True
        self._poke()

    def _coordinator_held(self) -> tuple[float, int]:
        """The coordinator cap in force and its round (reporter thread; a racing grant shows next report).

        A cap this agent does not enforce -- a dry run, or no writable RAPL limit -- is reported as
        none (inf): the coordinator must count the node at what it can draw, not at a cap on paper.
        """
        if not self.apply or not self.node.can_cap:
            return math.inf, -1
        return self.coord_caps.value(time.time()), self.coord_round

    def _release(self) -> None:
        """Restore and release what a (partly) built agent holds; safe to call more than once."""
        if self.reporter is not None:
            self.reporter.close()
            self.reporter = None
        if self._policy is not None:
            self._policy.close()
            self._policy = None
        if self.writer is not None:
            self.writer.close()
        node = getattr(self, "node", None)
        if node is not None:
            node.close()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self._own_log:
            self.log.close()
            self._own_log = False
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _shield_config(self, shield: str, timeout_s: float) -> ShieldConfig:
        cfg = resolve_shield_config(shield)
        # One decision per period; the fallback is the agent's governor (installed on the watchdog).
        return cfg.for_period(self.period_s, timeout_s, fallback=HOLD,
                              max_telemetry_age_s=max(cfg.watchdog.max_telemetry_age_s, 2 * self.period_s))

    # -- one tick --------------------------------------------------------------------------------------
    def _decide(self, r: Reading, obs: np.ndarray) -> tuple[np.ndarray, str, dict[str, int]]:
        """The proposal and who made it (``policy`` or ``fallback:<reason>``)."""
        if not np.all(np.isfinite(obs)):
            # A failed or not-yet-primed sensor: the policy never sees NaN; the fallback decides on
            # a sanitised observation (unknown load reads as busy: keep performance; the shield
            # handles unknown temperatures as hot).
            clean = np.where(np.isnan(obs), 0.0, obs).astype(np.float32)
            k = len(self.target.unit_fields)
            util = clean[: self.node.n * k: k]
            util[np.isnan(obs[: self.node.n * k: k])] = 1.0
            clean[: self.node.n * k: k] = util
            return np.asarray(self.watchdog.fallback_action(clean)), "fallback:stale_sensor", {"stale_sensor": 1}
        if self._policy is not None:
            action, reason = self._policy.act(obs, self.shield_cfg.watchdog.controller_timeout_s)
            if reason is not None:
                return np.asarray(self.watchdog.fallback_action(obs)), "fallback:" + reason, {reason: 1}
            action, events = self.watchdog.screen(action, obs)
        else:  # inline: a late answer is replaced, but a hung call holds the loop (until hang_s)
            action, events = self.watchdog.decide(self.controller, obs)
        if events:
            return np.asarray(action), "fallback:" + next(iter(events)), events
        return np.asarray(action), "policy", {}

    def node_cap_w(self, now_wall: float) -> float:
        """The node cap in force (W; inf = none): the lower of the operator's and the coordinator's."""
        return min(self.caps.value(now_wall), self.coord_caps.value(now_wall))

    def _coordinator_cap_w(self, now_wall: float) -> np.ndarray:
        """Per-domain share of the node cap in force (W; inf = none), split by domain busy power."""
        cap = self.node_cap_w(now_wall)
        if not math.isfinite(cap):
            return np.full(self.node.n, np.inf)
        busy = np.asarray(self.target.busy_w)
        return cap * busy / busy.sum()

    def _poll_cap_file(self) -> bool:
        """Read ``cap.json`` if it changed; True when a new cap was taken."""
        try:
            st = os.stat(self._cap_file)
        except OSError:
            return False  # absent, or unreadable: the next tick looks again
        # write_cap_file renames a new file into place: a new inode even within one timestamp tick.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._cap_stamp:
            return False
        self._cap_stamp = stamp
        try:
            got = read_cap_file(self._cap_file)
        except ConfigError as exc:
            self._emit({"event": "cap_rejected", "error": str(exc)})
            return False
        if got is None:
            return False
        cap, issued, lease = got
        # A sender whose clock runs ahead must not stretch the lease: never later than receipt.
        self.caps.set(cap, min(issued, time.time()), lease)
        self._emit({"event": "cap", "cap_w": cap, "issued_s": issued, "lease_s": self.caps.cap_lease_s
                    if math.isfinite(self.caps.cap_lease_s) else None, "base_w": round(self.base_w, 1)})
        return True

    def _take_grant(self) -> bool:
        """Take the coordinator's latest grant into :attr:`coord_caps`; True when the cap in force changed."""
        got = self.reporter.take_grant() if self.reporter is not None else None
        if got is None:
            return False
        grant, received_s = got
        lease = self.coord_caps
        now = time.time()
        before = self.node_cap_w(now)
        # The lease counts from receipt on this clock: the coordinator's clock may differ from ours.
        lease.take(grant, received_s)
        self.coord_round = grant.round
        seen = (grant.cap_w, grant.base_w, grant.emergencies)
        if seen != self._grant_seen:
            # A refresh of the same cap (every round) is not news; a new cap, base or emergency is.
            self._grant_seen = seen
            self._emit({"event": "coordinator_cap", "cap_w": grant.cap_w, "round": grant.round,
                        "base_w": grant.base_w, "lease_s": grant.lease_s, "decay_s": grant.decay_s,
                        "emergencies": list(grant.emergencies)})
        return self.node_cap_w(now) != before

    def _caps_now(self, decision: Decision) -> np.ndarray:
        return np.minimum(decision.unit_cap_w, self._coordinator_cap_w(time.time()))

    def _write(self, pstate: np.ndarray | None, cap_w: np.ndarray) -> list[str]:
        """Actuate (with ``--apply``): P-states and, where any cap is or was in force, RAPL limits."""
        if not self.apply:
            return []
        with self._lock:
            if self._restored_by_watchdog:
                self.node.reopen()
                self._restored_by_watchdog = False
            errors = self.node.actuate(pstate, cap_w)
        self.writes += 1
        return errors

    def tick(self, late_s: float = 0.0) -> TickRecord:
        """Run one control period now and return what it did."""
        t0 = time.perf_counter()
        r = self.node.sample()
        obs = self.node.observation(r)
        proposal, source, wd_events = self._decide(r, obs)
        tel = self.node.telemetry(r)
        decision = self.shield.filter(tel, proposal)
        applied = decision.pstate.copy()
        self.watchdog.record_applied(applied)
        self._poll_cap_file()  # a cap file changed without SIGUSR1 (written by hand) counts from this tick
        if self.reporter is not None:
            self._take_grant()  # a grant that arrived while this tick ran counts from this tick
            self._observe(r, obs)
        cap = self._caps_now(decision)
        errors = self._write(applied, cap)
        tick_s = time.perf_counter() - t0
        self.decision = decision
        events = dict(decision.events)
        for k, v in wd_events.items():
            events[k] = events.get(k, 0) + v
        self.counters.add(decision.events, decision.intervened)
        if source != "policy":
            reason = source.split(":", 1)[1]
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        i = self.ticks % LATENCY_RING
        self._lat[i], self._late[i] = tick_s, late_s
        self.ticks += 1
        self._last_tick_done = time.monotonic()
        rec = TickRecord(self.ticks, r.wall_s, source, np.asarray(proposal).astype(int).tolist(), applied.tolist(),
                         events, _floats(cap, 1), _floats(r.util), _floats(r.temp_c, 2), _floats(r.power_w, 2),
                         round(tick_s * 1e3, 4), round(late_s * 1e3, 3), self.apply and not errors, errors)
        self.last = rec
        if errors:
            self.errors = (self.errors + errors)[-20:]
        if events or errors or source != "policy" or self.ticks % self.host.agent.log_every == 0 or self.ticks == 1:
            self._emit({"event": "tick", **dataclasses.asdict(rec)})
        if self.metrics is not None:
            self._update_metrics(r, rec, decision, source, tick_s, late_s, cap)
        return rec

    def _observe(self, r: Reading, obs: np.ndarray) -> None:
        """Feed this tick's node power, offered load, utilisation and hottest temperature to the reporter."""
        n = self.node.n
        util = np.asarray(r.util, dtype=np.float64)
        power = np.asarray(r.power_w, dtype=np.float64)
        if np.isnan(power).any():
            # No RAPL reading for a domain: the target's power model at its utilisation, so a node
            # without power sensors still reports a plausible draw rather than none.
            idle, busy = np.asarray(self.target.idle_w), np.asarray(self.target.busy_w)
            power = np.where(np.isnan(power), idle + np.clip(util, 0.0, 1.0) * (busy - idle), power)
        fields = self.target.unit_fields
        k = len(fields)
        load = np.asarray(obs[: n * k], dtype=np.float64)[fields.index("offered_load")::k]
        temps = np.asarray(r.temp_c, dtype=np.float64)
        assert self.reporter is not None

        def mean(a: np.ndarray) -> float:
            ok = a[np.isfinite(a)]
            return float(ok.mean()) if ok.size else math.nan

        self.reporter.observe(float(power.sum()), mean(load), mean(util),
                              float(temps[np.isfinite(temps)].max()) if np.isfinite(temps).any() else None)

    def cap_tick(self) -> float | None:
        """Apply a new node cap at once (between periods); returns the write time (s) or None.

        The cap is the operator's (a changed ``cap.json``) or the coordinator's (a grant whose cap differs
        from the one in force); both wake the loop through the same pipe.
        """
        changed = self._poll_cap_file()
        changed = self._take_grant() or changed
        if not changed or self.decision is None:
            return None
        t0 = time.perf_counter()
        cap = self._caps_now(self.decision)
        errors = self._write(None, cap)
        dt = time.perf_counter() - t0
        self._emit({"event": "cap_applied", "cap_w": _floats(cap, 1), "write_ms": round(dt * 1e3, 4),
                    "written": self.apply and not errors, "errors": errors})
        return dt

    def _update_metrics(self, r: Reading, rec: TickRecord, d: Decision, source: str, tick_s: float, late_s: float,
                        cap: np.ndarray) -> None:
        m = self.metrics
        assert m is not None
        m.domains("power_watts", r.power_w)
        m.domains("temperature_celsius", r.temp_c)
        m.domains("pstate", d.pstate.astype(np.float64))
        m.domains("cap_watts", cap)
        m.domains("utilisation_ratio", r.util)
        if math.isfinite(r.energy_j):
            m.energy.set(r.energy_j)
        m.decisions.labels(m.node, "policy" if source == "policy" else "fallback").inc()
        if source != "policy":
            m.fallbacks.labels(m.node, source.split(":", 1)[1]).inc()
        if d.intervened:
            m.interventions.inc()
        for k, v in d.events.items():
            m.shield_events.labels(m.node, k).inc(v)
        m.tick.observe(tick_s)
        m.lateness.observe(late_s)
        if self.reporter is not None:
            held_w = self.coord_caps.value(time.time())
            m.coordinator_cap.set(held_w if math.isfinite(held_w) else math.nan)
            errors = self.reporter.errors
            if errors > self._coord_errors_seen:
                m.coordinator_errors.inc(errors - self._coord_errors_seen)
                self._coord_errors_seen = errors

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> int:
        """Run until stopped (a signal, :meth:`stop`) or ``duration_s`` passes; restores and returns 0."""
        handlers = self._install_signals()
        self._hang_thread = threading.Thread(target=self._hang_watchdog, name="powerrl-agent-watchdog", daemon=True)
        try:
            self._start()
            self._loop(duration_s)
        finally:
            self.close(handlers)
        return 0

    def _start(self) -> None:
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / PID_FILE).write_text(str(os.getpid()), encoding="ascii")
        except OSError as exc:
            raise ConfigError("agent.state_dir", str(self.state), f"a writable directory ({exc.strerror})",
                              self.host.path) from None
        self._emit({"event": "start", "node": self.name, "mode": "apply" if self.apply else "dry-run",
                    "controller": self.controller_name, "fallback": self.host.agent.fallback,
                    "period_ms": self.period_s * 1e3, "domains": [list(d.cpus) for d in self.layout.domains],
                    "pstates_mhz": self.layout.pstates_mhz.tolist(), "driver": self.layout.driver,
                    "knob": self.layout.config.actuate, "recovered": self.recovered, "notes": list(self.layout.notes),
                    "base_w": round(self.base_w, 1), "pid": os.getpid()})
        assert self._hang_thread is not None
        self._hang_thread.start()
        if self.reporter is not None:
            self._emit({"event": "coordinator", "url": self.reporter.url, "node": self.reporter.node,
                        "boot_id": self.reporter.boot_id, "report_s": self.reporter.report_every_s})
            self.reporter.start()

    def _loop(self, duration_s: float | None) -> None:
        period = self.period_s
        t_start = time.monotonic()
        deadline = t_start
        last_status = 0.0
        while not self._stop.is_set() and self._signal is None:
            now = time.monotonic()
            late = max(0.0, now - deadline)
            self.tick(late)
            if now - last_status >= 1.0:
                self.write_status()
                last_status = now
            if duration_s is not None and time.monotonic() - t_start >= duration_s:
                break
            deadline += period
            now = time.monotonic()
            if now - deadline > period:
                skipped = int((now - deadline) // period)
                self.missed += skipped
                if self.metrics is not None:
                    self.metrics.missed.inc(skipped)
                deadline += skipped * period
            # Sleep to the deadline; a SIGUSR1 (new cap) wakes us for a cap-only write.
            while not self._stop.is_set() and self._signal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if select.select([self._wake_r], [], [], left)[0]:
                    with contextlib.suppress(BlockingIOError):  # drained already: nothing more to read
                        os.read(self._wake_r, 4096)
                    if self._cap_signal:
                        self._cap_signal = False
                        self.cap_tick()

    def stop(self) -> None:
        """Ask the loop to finish its tick, restore and return (from any thread, not a signal handler)."""
        self._stop.set()
        self._poke()

    def _poke(self) -> None:
        """Wake the sleeping loop (async-signal-safe: one write to a non-blocking pipe)."""
        # A full pipe already holds a pending wake-up; a closed one means the agent has stopped.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        prev: dict[int, Any] = {}

        # Handlers only set plain attributes and write to the wake pipe: they may interrupt the main
        # thread anywhere, including inside a lock or a buffered log write, neither of which is reentrant.
        def on_stop(signum: int, frame: Any) -> None:
            self._signal = signal.Signals(signum).name
            self._poke()

        def on_cap(signum: int, frame: Any) -> None:
            self._cap_signal = True
            self._poke()

        for sig in STOP_SIGNALS:
            prev[sig] = signal.signal(sig, on_stop)
        prev[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_cap)
        return prev

    def _hang_watchdog(self) -> None:
        """Restore the kernel's own settings when no tick completes for ``hang_s`` (a stuck loop)."""
        # Never shorter than a few periods: a slow configured period is not a hang.
        hang_s = max(self.host.agent.hang_s, 3 * self.period_s)
        while not self._stop.wait(min(hang_s / 4, 0.5)):
            if time.monotonic() - self._last_tick_done > hang_s and self.writer is not None \
                    and not self._restored_by_watchdog:
                if not self._lock.acquire(timeout=hang_s):
                    self._emit({"event": "watchdog", "error": "a write is stuck; could not restore"})
                    continue
                try:
                    # Re-check under the lock: a tick may have completed (and written) meanwhile.
                    if self._stop.is_set() or time.monotonic() - self._last_tick_done <= hang_s:
                        continue
                    failed = self.writer.restore()
                    self._restored_by_watchdog = True
                finally:
                    self._lock.release()
                self._emit({"event": "watchdog", "action": "restored the kernel's settings",
                            "stalled_s": round(time.monotonic() - self._last_tick_done, 3), "failed": failed})

    def close(self, handlers: dict[int, Any] | None = None) -> None:
        """Restore every saved setting, write the final status, release everything."""
        if self._wake_r < 0:
            return  # closed already
        self._stop.set()
        if self.reporter is not None:
            self.reporter.close()  # no grant after this point; the coordinator sees silence and counts our base
        if self._hang_thread is not None and self._hang_thread.is_alive():
            self._hang_thread.join(timeout=2.0)
        if self._signal is not None:
            self._emit({"event": "signal", "signal": self._signal})
        failed: list[tuple[str, str]] = []
        if self.writer is not None:
            with self._lock:
                failed = self.writer.close()
        self.write_status(running=False)
        (self.state / PID_FILE).unlink(missing_ok=True)
        self._emit({"event": "stop", "ticks": self.ticks, "restored": self.apply and not failed,
                    "restore_failures": failed})
        for sig, h in (handlers or {}).items():
            signal.signal(sig, h)
        self._release()

    # -- outputs ---------------------------------------------------------------------------------------
    def _emit(self, obj: dict[str, Any]) -> None:
        obj.setdefault("ts", round(time.time(), 4))
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        try:
            with self._log_lock:  # one whole line at a time, whichever thread writes
                self.log.write(line)
                self.log.flush()
        except (OSError, ValueError):
            # A full disk or a closed log must not stop the control loop; the loss is counted in the status.
            self.log_failures += 1

    def summary(self) -> dict[str, Any]:
        """Counters and percentiles so far (the status file's body)."""
        lat = self._lat[np.isfinite(self._lat)]
        late = self._late[np.isfinite(self._late)]
        wall = max(time.monotonic() - self._t0, 1e-9)
        rec = dataclasses.asdict(self.last) if self.last is not None else None
        now = time.time()
        return {
            "node": self.name, "pid": os.getpid(), "mode": "apply" if self.apply else "dry-run",
            "controller": self.controller_name, "fallback": self.host.agent.fallback,
            "period_ms": self.period_s * 1e3, "started": self.started_wall, "updated": time.time(),
            "ticks": self.ticks, "missed_deadlines": self.missed, "fallbacks": dict(self.fallbacks),
            "log_lines_lost": self.log_failures,
            "shield": self.counters.as_dict(),
            "tick_ms": {"p50": float(np.percentile(lat, 50)) * 1e3 if lat.size else None,
                        "p99": float(np.percentile(lat, 99)) * 1e3 if lat.size else None,
                        "max": float(lat.max()) * 1e3 if lat.size else None},
            "late_ms": {"p99": float(np.percentile(late, 99)) * 1e3 if late.size else None},
            "cpu_share": (time.process_time() - self._t0_cpu) / wall, "rss_mb": rss_bytes() / 2**20,
            "cap": {"node_cap_w": None if not math.isfinite(self.caps.cap_w) else self.caps.cap_w,
                    "in_force_w": None if not math.isfinite(v := self.node_cap_w(now)) else round(v, 1),
                    "stale": self.caps.stale(now), "base_w": round(self.base_w, 1)},
            "coordinator": self._coordinator_summary(now),
            "recovered": self.recovered, "errors": self.errors[-5:], "last": rec,
        }

    def _coordinator_summary(self, now: float) -> dict[str, Any] | None:
        """The reporter's state and the coordinator cap in force (None: no coordinator)."""
        if self.reporter is None:
            return None
        lease = self.coord_caps
        v = lease.value(now)
        return {**self.reporter.state(), "cap_w": None if not math.isfinite(lease.cap_w) else lease.cap_w,
                "round": self.coord_round, "in_force_w": None if not math.isfinite(v) else round(v, 1),
                "stale": lease.stale(now), "base_w": round(lease.base_w, 1)}

    def write_status(self, running: bool = True) -> None:
        """Write the status file atomically (``<state_dir>/agent-status.json``)."""
        body = self.summary()
        body["running"] = running
        try:
            # No fsync: a status a second old after a power cut is harmless, and fsync costs milliseconds.
            write_atomically(self.state / STATUS_FILE, json.dumps(body, indent=1, default=float), sync=False)
        except OSError as exc:
            self._emit({"event": "status_error", "error": str(exc)})

