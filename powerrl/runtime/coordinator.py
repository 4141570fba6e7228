"""The cluster coordinator's core: member state, allocation rounds, emergencies, faults and the journal.

No networking here (:mod:`powerrl.runtime.server` puts this behind HTTP), so every guarantee is
testable with a fake clock. Each round (``round_s``, 1 s by default):

1. every member is classified: *ok* (reported within :data:`SILENT_AFTER_ROUNDS` rounds),
   *silent* (counted at its maximum: it may be uncapped or hold any cap it was sent) or *lost*
   (silent for ``faults.node_timeout_s``: its cap has decayed to its guaranteed base by then, so it
   is counted at ``min(cap it may hold, base)``). A member that never reported is counted at its
   maximum. Silent and lost members are *pinned* at that power in the shield's topology;
2. the allocator (:mod:`powerrl.runtime.allocator`) requests caps from the latest reports;
3. the budget shield (:class:`powerrl.shield.caps.CapShield`) fits them into every power group,
   the reserves and the budget in force -- lowest priority first, phasing announced grid cuts in
   before their deadline and treating measured power above the budget as an emergency;
4. **raise gating**: a member may hold its old cap until its next report shows the new one
   arrived, so a raise is granted only as far as cuts in the same scopes have been acknowledged.
   Per scope (each group, the non-Critical nodes, the facility), ``sum(max(hold, cap)) <= sum(safe
   caps)`` holds, where ``hold`` bounds the cap a member may hold now. Whatever order caps arrive
   in, the caps in force never sum above the shield's limits (except for one round after an
   unannounced drop of the budget itself, which no allocator can undo faster than its members hear
   about it);
5. the round is written to the journal (temp file, fsync, rename) *before* any member is sent
   its new cap, so a restarted coordinator knows every cap that may be in force.

A member reports (``POST /v1/report``) once per round and gets its latest cap back; the cap holds
``faults.lease_s`` at the member, then decays to the base over ``faults.decay_s`` (the agent's
:class:`powerrl.runtime.caps.CapLease`), so members of a coordinator that went down drift to their
bases and a budget that counted them there stays safe.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from powerrl.errors import ConfigError, PowerrlError
from powerrl.hw.safety import write_atomically
from powerrl.runtime.allocator import Allocator
from powerrl.runtime.caps import CapLease
from powerrl.runtime.cluster import TIMEOUT_MARGIN_S, ClusterSpec
from powerrl.runtime.protocol import API_VERSION, CapGrant, EventAnswer, EventRequest, NodeReport
from powerrl.shield.budget import GroupLevel, PowerTopology
from powerrl.shield.caps import CapShield
from powerrl.shield.config import resolve_shield_config

#: A member with no report for this many rounds (and at least :data:`SILENT_AFTER_MIN_S`) is silent.
#: Members report once per round; 2.5 rounds tolerate one lost report plus scheduling jitter.
SILENT_AFTER_ROUNDS = 2.5
#: ... and at least this long, s: a coordinator stall (GC, fsync, a paused VM) must not turn every
#: member silent at once. Until then a member is counted at the cap it may hold, which is safe for a
#: live agent; counting at the maximum only guards against an agent that died.
SILENT_AFTER_MIN_S = 2.0
#: Boot ids remembered per member: a report from an older boot is stale (a delayed request, or two
#: agents under one name), never a new start.
BOOTS_KEPT = 4
#: Journal format version (``"version"`` key); a journal of another version is ignored with a warning.
JOURNAL_VERSION = 1
#: Round latencies kept for the status percentiles.
LATENCY_WINDOW = 1000


class StaleReport(PowerrlError):
    """A report older than one already taken (an earlier seq, or a previous boot): answered with no cap."""


class UnknownNode(PowerrlError):
    """A report names a node that is not in the cluster file."""


class EventError(PowerrlError):
    """An event request that cannot be applied (missing percent, unknown group or event id)."""


@dataclass
class Event:
    """An emergency in force: ``fraction`` of the budget (grid_cut) or of a group's limit taken away."""

    id: int
    kind: str
    fraction: float
    group: str | None
    start_wall_s: float
    deadline_wall_s: float
    end_wall_s: float | None

    def in_force(self, wall_s: float) -> bool:
        """Whether the event's cut is fully in force at ``wall_s``."""
        return wall_s >= self.deadline_wall_s


def _num(x: float) -> float | None:
    """JSON has no inf/NaN: those become null."""
    return float(x) if math.isfinite(x) else None


def _column(a: np.ndarray) -> list[float | None]:
    """A float array as a JSON-ready list: inf and NaN become None (as :func:`_num` does per value)."""
    return [x if math.isfinite(x) else None for x in a.tolist()]


def _unnum(x: Any, default: float) -> float:
    return default if x is None else float(x)


def cluster_shield(spec: ClusterSpec) -> CapShield:
    """The budget shield of a cluster: its shield config bound to the round, its nodes, groups and bases."""
    cfg = resolve_shield_config(spec.config.shield).for_period(spec.config.round_s)
    return CapShield(cfg, spec.idle_w, spec.busy_w, spec.priority, spec.levels, base_w=spec.base_w)


class Coordinator:
    """One coordinator of a cluster (or of one rack, under a parent).

    Args:
        spec: the validated cluster file.
        journal: journal path (None: the cluster file's, relative paths under the current directory);
            ``False`` disables the journal (tests, dry runs).
        clock: monotonic seconds (liveness, round timing).
        wall: epoch seconds (journal, events, time of day).
        log: receives one dict per log event (round summaries, emergencies, rejections).
    """

    def __init__(self, spec: ClusterSpec, *, journal: Path | str | bool | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.spec = spec
        cfg = self.cfg = spec.config
        self.clock, self.wall = clock, wall
        self.log = log or (lambda _obj: None)
        self.shield = cluster_shield(spec)
        shield_cfg = self.shield_cfg = self.shield.cfg
        self.nominal = self.shield.topology
        self.allocator = Allocator(spec, shield_cfg, cfg.allocator)
        n = self.n = spec.n
        self.index = spec.index()
        self.base_w = np.array(self.nominal.base_w)
        self.max_w = np.array(self.nominal.max_w)
        #: Most a member can draw: its busy power (an uncapped node), at least its max cap.
        self.node_max_w = np.maximum(spec.busy_w, self.max_w)
        self.last_report_s = np.full(n, -math.inf)
        self.boot_id = [""] * n
        self.old_boots: list[list[str]] = [[] for _ in range(n)]
        self.seq = np.full(n, -1, dtype=np.int64)
        self.implausible = 0  # reports whose power exceeded the member's maximum (clamped)
        self.power_w = np.zeros(n)
        self.load = np.zeros(n)
        self.util = np.zeros(n)
        self.temp_c = np.full(n, np.nan)
        self.held_w = np.full(n, math.inf)  # cap the member said it holds (inf: none)
        self.held_round = np.full(n, -1, dtype=np.int64)
        self.sent_w = np.full(n, math.nan)  # cap in the last answer (NaN: none yet)
        self.hold_w = np.full(n, math.inf)  # most the member may hold now (inf: uncapped)
        self.issued_w = np.full(n, math.nan)  # latest decision (NaN: none yet)
        #: Whether the latest decision lets a member rise above the least it may hold; a member that
        #: may not is never sent more than the cap it reports holding (its lease may have decayed).
        self.may_rise = np.zeros(n, dtype=bool)
        self.counted_w = self.node_max_w.copy()  # what the last round counted each member at
        self.state = np.ones(n, dtype=np.int8)  # 0 ok, 1 silent, 2 lost (last round; silent before one)
        self.round = 0
        self.events: dict[int, Event] = {}
        self.next_event_id = 1
        self._events_version = 0
        self._topo_key: tuple[bytes, bytes, int] | None = None
        self.round_ms: list[float] = []
        self.shield_events: dict[str, int] = {}
        self.last_summary: dict[str, Any] = {}
        self.rejected = 0
        self.parent_lease: CapLease | None = None
        self.parent_round = -1
        if cfg.parent is not None:
            self.parent_lease = CapLease(base_w=0.0, lease_s=cfg.faults.lease_s, decay_s=cfg.faults.decay_s)
        self.journal_path: Path | None
        if journal is False:
            self.journal_path = None
        elif journal is None or journal is True:
            self.journal_path = Path(cfg.journal)
        else:
            self.journal_path = Path(journal)
        self._scopes = self._gating_scopes()
        self.silent_after_s = max(SILENT_AFTER_ROUNDS * cfg.round_s, SILENT_AFTER_MIN_S)
        self.last_round_s = -math.inf  # monotonic time of the last completed round
        self.lost_not_before_s = -math.inf  # monotonic; set by a restart from the journal
        self.recovered = self._load_journal() if self.journal_path is not None else False

    # -- members -----------------------------------------------------------------------------------
    def report(self, rep: NodeReport) -> CapGrant:
        """Take one member's report; its cap for now.

        Raises:
            UnknownNode: the name is not in the cluster file (nothing changes).
            StaleReport: a report from an earlier boot, or not newer than the last one taken
                (nothing changes, no cap is sent: the member keeps what it holds).
        """
        i = self.index.get(rep.node)
        if i is None:
            self.rejected += 1
            raise UnknownNode(f"node {rep.node!r} is not in cluster {self.cfg.name!r}: add it to the cluster file's "
                              "nodes: and restart the coordinator, or fix the agent's coordinator.node")
        now = self.clock()
        reported = math.inf if rep.cap_w is None else float(rep.cap_w)
        held = reported
        new_boot = rep.boot_id != self.boot_id[i]
        if new_boot and rep.boot_id in self.old_boots[i]:
            # An older boot's report, delayed, or a second agent under this name.
            self.rejected += 1
            self.log({"event": "stale_boot", "node": rep.node, "boot_id": rep.boot_id,
                      "current": self.boot_id[i], "fix": "one agent per node name (agent.coordinator.node)"})
            raise StaleReport(f"report of {rep.node!r} from an earlier boot ({rep.boot_id!r}; current "
                              f"{self.boot_id[i]!r}): ignored, no cap sent")
        if not new_boot and rep.seq <= self.seq[i]:
            # A delayed or repeated report: the cap it says is held may be older than the one the
            # member holds now (its lease may have decayed since), so no answer could be trusted.
            self.rejected += 1
            # (No seq numbers in the text: an agent logs each distinct rejection once.)
            raise StaleReport(f"report of {rep.node!r} is not newer than the last one taken (seq must increase "
                              "with every report of one boot_id): ignored, no cap sent")
        if new_boot:
            if self.boot_id[i]:
                self.old_boots[i] = ([self.boot_id[i]] + self.old_boots[i])[:BOOTS_KEPT]
            # A new boot proves nothing about caps the previous process may still have in force.
            held = max(held, float(self.hold_w[i]))
        self.boot_id[i] = rep.boot_id
        self.seq[i] = rep.seq
        self.last_report_s[i] = now
        power = float(rep.power_w)
        if power > 1.5 * self.node_max_w[i]:
            # A meter glitch (or a bug) would otherwise read as facility-wide over-consumption and
            # push everyone to their emergency floors: clamp to the most the node can draw.
            self.implausible += 1
            self.log({"event": "implausible_power", "node": rep.node, "power_w": power,
                      "clamped_to_w": float(self.node_max_w[i])})
            power = float(self.node_max_w[i])
        self.power_w[i] = power
        self.load[i] = rep.load
        self.util[i] = min(rep.load, 1.0) if rep.util is None else rep.util
        self.temp_c[i] = math.nan if rep.temp_c is None else rep.temp_c
        self.held_w[i] = held
        self.held_round[i] = rep.cap_round
        sent = float(self.issued_w[i])
        if math.isnan(sent):
            # No decision yet (a cold start): keep what it holds, or its max cap if it holds none
            # (a cut: an uncapped node can draw its busy power). Never a rise before a round.
            sent = reported if math.isfinite(reported) else float(self.max_w[i])
        elif not self.may_rise[i]:
            # Not granted a rise: never more than it holds now (a decayed lease included).
            sent = min(sent, reported)
        self.sent_w[i] = sent
        # Until its next report the member holds what it reported or what it is sent now.
        self.hold_w[i] = max(held, sent)
        return CapGrant(node=rep.node, round=self.round, cap_w=sent, base_w=float(self.base_w[i]),
                        lease_s=self.cfg.faults.lease_s, decay_s=self.cfg.faults.decay_s,
                        report_every_s=self.cfg.round_s, emergencies=self.emergencies())

    def emergencies(self) -> tuple[str, ...]:
        """Kinds of the events in force or being phased in."""
        return tuple(sorted({e.kind for e in self.events.values()}))

    # -- the round ---------------------------------------------------------------------------------
    def classify(self, now_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(state [n] int8: 0 ok, 1 silent, 2 lost; counted_w [n])`` at monotonic time ``now_s``."""
        age = now_s - self.last_report_s
        ok = age <= self.silent_after_s
        hold = np.minimum(self.hold_w, self.node_max_w)  # no node draws more than its maximum (inf: uncapped)
        # Lost: silent past the timeout and known to hold a cap (which decayed to the base by now).
        # After a restart from the journal nobody is lost before a lease sent just before the crash
        # could have decayed: the journal's contact times stop when its writes fail, not the answers.
        lost = (~ok & (age > self.cfg.faults.node_timeout_s) & np.isfinite(self.hold_w)
                & (now_s >= self.lost_not_before_s))
        state = np.where(ok, 0, np.where(lost, 2, 1)).astype(np.int8)
        counted = np.where(ok, hold, np.where(lost, np.minimum(hold, self.base_w), self.node_max_w))
        return state, counted

    def budget_w(self, wall_s: float) -> tuple[float, float | None, float]:
        """``(budget in force, announced budget or None, its deadline)`` in W and epoch s.

        The cluster's budget, lowered to the parent's cap (when under a parent), by every grid cut
        past its deadline and by facility-wide cooling failures; the announced budget also takes the
        grid cuts still ahead, whose earliest deadline is returned.
        """
        budget = float(self.cfg.budget_w)
        if self.parent_lease is not None and math.isfinite(self.parent_lease.cap_w):
            budget = min(budget, self.parent_lease.value(wall_s))
        announced, deadline = budget, math.inf
        for ev in self.events.values():
            if ev.kind == "cooling_failure" and ev.group is not None:
                continue
            keep = 1.0 - ev.fraction
            announced *= keep
            if ev.in_force(wall_s):
                budget *= keep
            else:
                deadline = min(deadline, ev.deadline_wall_s)
        return budget, (announced if announced < budget else None), deadline

    def run_round(self, reason: str = "timer") -> dict[str, Any]:
        """Decide every member's cap; returns the round summary (also logged)."""
        t0 = time.perf_counter()
        now, wall = self.clock(), self.wall()
        self._expire_events(wall)
        state, counted = self.classify(now)
        # Pinned: members we cannot hear from, and members that hold no cap (a cold start, a dry-run
        # agent, a node without writable RAPL limits): no cap we allocate them would bind, so the
        # shield counts them at their power and the allocation is among the others. Left in the
        # allocation, an uncapped member's unmet cut would hold every scope "over" for good.
        pinned = (state != 0) | ~np.isfinite(self.hold_w)
        self._set_topology(pinned, counted)
        budget, announced, deadline = self.budget_w(wall)
        measured = np.where(pinned, counted, self.power_w)
        hold = counted  # for ok members: the cap they may hold; else what they are counted at
        obs = self.allocator.observe(np.where(pinned, 1.0, self.load), measured, self.temp_c, hold,
                                     np.where(pinned, 1.0, self.util), announced or budget, wall % 86400.0)
        request = self.allocator.request_w(obs)
        request[pinned] = counted[pinned]  # their range is pinned there: not a clipped request
        prev_caps = self.shield.prev_caps_w.copy()
        # Power above the cap a member held is overhead the shield counts against every scope. The
        # power reported covers the last round, over which the member may still have held the cap
        # counted then: measure the overhead against the larger one, or a cut that arrived mid-round
        # reads as over-consumption and is cut a second time.
        self.shield.prev_caps_w[:] = np.maximum(hold, self.counted_w)
        cooling = any(e.kind == "cooling_failure" for e in self.events.values())
        safe, events = self.shield.filter(request, measured, budget, time_s=wall, announced_budget_w=announced,
                                          deadline_s=deadline, emergency=cooling)
        low = np.fmin(np.minimum(self.held_w, self.node_max_w), self.sent_w)  # fmin: NaN (nothing sent) ignored
        caps, may_rise = self.gate_rises(safe, hold, np.where(pinned, counted, low))
        # A member we cannot hear from is sent no more than it may hold already: when it (or every
        # member, after a coordinator stall) reports again, that is no rise. Counting it at its
        # maximum meanwhile covers an agent that died and left its node uncapped.
        finite = np.isfinite(self.hold_w)
        keep = np.where(finite, np.minimum(self.hold_w, self.max_w), self.base_w)
        caps = np.where(pinned, np.minimum(keep, counted), caps)
        may_rise &= ~pinned
        # Journal first: a cap nobody can recover after a crash must not go out.
        try:
            self._write_journal(wall, self.round + 1, caps)
        except OSError as exc:
            self.shield.prev_caps_w[:] = prev_caps
            self.log({"event": "journal_write_failed", "path": str(self.journal_path), "error": str(exc),
                      "effect": "this round's caps are not sent; members keep the previous ones"})
            raise
        self.round += 1
        self.issued_w[:] = caps
        self.may_rise[:] = may_rise
        self.counted_w[:] = counted
        self.state[:] = state
        self.last_round_s = now
        ms = (time.perf_counter() - t0) * 1e3
        self.round_ms.append(ms)
        if len(self.round_ms) > LATENCY_WINDOW:
            del self.round_ms[: len(self.round_ms) - LATENCY_WINDOW]
        for k, v in events.items():
            self.shield_events[k] = self.shield_events.get(k, 0) + v
        summary = {"event": "round", "round": self.round, "reason": reason, "ms": round(ms, 3),
                   "budget_w": round(budget, 1), "announced_w": None if announced is None else round(announced, 1),
                   "caps_w": round(float(caps.sum()), 1), "hold_w": round(float(np.maximum(hold, caps).sum()), 1),
                   "measured_w": round(float(measured.sum()), 1), "ok": int((state == 0).sum()),
                   "silent": int((state == 1).sum()), "lost": int((state == 2).sum()),
                   "gated": int((caps < safe - 1e-9).sum()), "shield": events, "emergencies": list(self.emergencies())}
        self.last_summary = summary
        if events or reason != "timer" or self.round % 10 == 1 or summary["silent"] or summary["lost"]:
            self.log(summary)
        return summary

    def gate(self, safe_w: np.ndarray, hold_w: np.ndarray, low_w: np.ndarray | None = None) -> np.ndarray:
        """Caps to send (:meth:`gate_rises` without the per-member permission to rise)."""
        return self.gate_rises(safe_w, hold_w, low_w)[0]

    def gate_rises(self, safe_w: np.ndarray, hold_w: np.ndarray, low_w: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Caps to send and which members may rise: cuts at once, rises only as far as they are funded.

        A member may hold any cap between ``low_w`` (the lower of the cap it reported and the cap it
        was sent) and ``hold_w`` (the higher one) until its next report. Per scope ``S`` (each group
        of each level, the non-Critical nodes, the facility):

        * a scope whose members may hold more than its safe caps (``sum_S hold > sum_S safe``: a
          cold start, a limit that just dropped, cuts on their way) is *over*: none of its members
          is sent more than ``low_w``, so what they hold can only fall;
        * otherwise a member may go back up to ``min(safe, hold)`` (already counted in ``hold``), and
          rises above ``hold`` are scaled by ``clip(sum_S(safe - hold) / sum_S(rises), 0, 1)``, so
          ``sum_S max(hold, cap) <= sum_S safe``, which the shield made fit the scope's limit.

        A member takes the tightest of its scopes. ``low_w`` defaults to ``hold_w``.
        """
        low = hold_w if low_w is None else np.minimum(low_w, hold_w)
        over_hold = np.maximum(safe_w - hold_w, 0.0)  # a rise above anything it may hold
        back_up = np.maximum(np.minimum(safe_w, hold_w) - low, 0.0)  # back up within what it may hold
        caps = np.minimum(safe_w, low)
        if not (over_hold.any() or back_up.any()):
            return caps, np.zeros(self.n, dtype=bool)
        factor = np.ones(self.n)
        allow = np.ones(self.n, dtype=bool)
        delta = safe_w - hold_w
        for group, n_groups, skip in self._scopes:
            net = np.bincount(group, weights=delta, minlength=n_groups)
            rises = np.bincount(group, weights=over_hold, minlength=n_groups)
            total = np.bincount(group, weights=safe_w, minlength=n_groups)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(rises > 0, np.clip(net / rises, 0.0, 1.0), 1.0)
            ok = net >= -1e-9 * np.maximum(1.0, total)
            if skip is not None:
                f[skip], ok[skip] = 1.0, True
            factor = np.minimum(factor, f[group])
            allow &= ok[group]
        caps = caps + np.where(allow, back_up + factor * over_hold, 0.0)
        return caps, allow & (caps > low)

    def _gating_scopes(self) -> list[tuple[np.ndarray, int, int | None]]:
        scopes: list[tuple[np.ndarray, int, int | None]] = [(lv.group_of_node, lv.n_groups, None)
                                                            for lv in self.spec.levels]
        # Non-Critical scope (group 0); the Critical group (1) has no limit of its own.
        scopes.append((np.where(self.spec.priority >= 1, 0, 1).astype(np.int64), 2, 1))
        scopes.append((np.zeros(self.n, dtype=np.int64), 1, None))
        return scopes

    def _set_topology(self, pinned: np.ndarray, counted: np.ndarray) -> None:
        """Pin unreachable members at their counted power and apply cooling-failure group cuts."""
        key = (pinned.tobytes(), counted[pinned].tobytes(), self._events_version)
        if key == self._topo_key:
            return
        nom = self.nominal
        base, mx = np.array(nom.base_w), np.array(nom.max_w)
        mn = np.array(nom.min_w) if nom.min_w is not None else np.zeros(self.n)
        base[pinned] = mx[pinned] = mn[pinned] = counted[pinned]
        levels = []
        for k, lv in enumerate(nom.levels):
            limit = np.array(lv.limit_w)
            for ev in self.events.values():
                if ev.kind != "cooling_failure" or ev.group is None:
                    continue
                names = self.spec.group_names[k]
                if ev.group in names:
                    g = names.index(ev.group)
                    basis = limit[g] if math.isfinite(limit[g]) else float(
                        self.node_max_w[lv.group_of_node == g].sum())
                    limit[g] = basis * (1.0 - ev.fraction)
            levels.append(GroupLevel(lv.name, lv.group_of_node, limit))
        self.shield.set_topology(PowerTopology(nom.priority, base, mx, tuple(levels), nom.emergency_cut, mn))
        self._topo_key = key

    # -- emergencies -------------------------------------------------------------------------------
    def declare(self, req: EventRequest) -> EventAnswer:
        """Apply an event and run a round at once, so the new caps go out with the next reports.

        Raises:
            EventError: a grid cut without ``percent`` or with a group, an unknown group, or a
                ``clear`` of an unknown event (nothing changes).
        """
        wall = self.wall()
        if req.kind == "clear":
            if req.id is not None and req.id not in self.events:
                raise EventError(f"no event {req.id} in force (events: {sorted(self.events) or 'none'}): "
                                 "run powerrl coordinator status to list them")
            gone = [req.id] if req.id is not None else list(self.events)
            removed = {k: self.events.pop(k) for k in gone}
            self._events_version += 1
            try:
                summary = self.run_round(reason="clear")
            except OSError:
                self.events.update(removed)  # nothing changes when the round cannot be journaled
                self._events_version += 1
                raise
            for k, e in removed.items():
                self.log({"event": "event_cleared", "id": k, "kind": e.kind})
            return EventAnswer(id=req.id or 0, kind="clear", budget_w=summary["budget_w"], deadline_s=0.0,
                               affected_nodes=self.n, round=self.round)
        affected = np.ones(self.n, dtype=bool)
        if req.kind == "grid_cut":
            if req.percent is None:
                raise EventError("a grid_cut needs percent (share of the budget to shed, e.g. --percent 20)")
            if req.group is not None:
                raise EventError("a grid_cut lowers the facility budget: leave out group "
                                 "(a cooling_failure is per group)")
            fraction, deadline = req.percent / 100.0, wall + req.within_s
        else:
            fraction = (req.percent / 100.0) if req.percent is not None else self.cfg.cooling_failure_cut
            deadline = wall
            if req.group is not None:
                try:
                    affected = self.spec.groups_of(req.group)
                except ConfigError as exc:
                    raise EventError(str(exc)) from None
        ev = Event(self.next_event_id, req.kind, fraction, req.group, wall, deadline,
                   None if req.duration_s is None else deadline + req.duration_s)
        if not affected.any():
            raise EventError(f"group {req.group!r} has no nodes: name a group with members (coordinator status "
                             "--nodes lists them)")
        self.events[ev.id] = ev
        self.next_event_id += 1
        self._events_version += 1
        try:
            self.run_round(reason=req.kind)
        except OSError:
            del self.events[ev.id]  # nothing changes when the round cannot be journaled
            self.next_event_id -= 1
            self._events_version += 1
            raise
        self.log({"event": "emergency", **asdict(ev)})
        budget, announced, _ = self.budget_w(wall)
        return EventAnswer(id=ev.id, kind=ev.kind, budget_w=announced if announced is not None else budget,
                           deadline_s=max(0.0, deadline - wall), affected_nodes=int(affected.sum()), round=self.round)

    def _expire_events(self, wall_s: float) -> None:
        gone = [k for k, e in self.events.items() if e.end_wall_s is not None and wall_s >= e.end_wall_s]
        for k in gone:
            self.log({"event": "event_ended", "id": k, "kind": self.events[k].kind})
            del self.events[k]
        if gone:
            self._events_version += 1

    # -- hierarchy ---------------------------------------------------------------------------------
    def apply_parent_grant(self, grant: CapGrant) -> bool:
        """Take the parent's cap for this whole coordinator as its budget; True when it went down."""
        lease = self.parent_lease
        if lease is None:
            raise EventError("this coordinator has no parent: section in its cluster file")
        wall = self.wall()
        before = self.budget_w(wall)[0]
        lease.take(grant, wall)
        self.parent_round = grant.round
        return self.budget_w(wall)[0] < before - 1e-9

    def member_report(self, seq: int, boot_id: str) -> NodeReport:
        """The report of this coordinator as one member of its parent: summed power and demand, the cap it holds.

        The cap it holds is the larger of the parent's cap in force and what its own members may
        hold: while a cut travels down, the subtree may still draw the old caps.
        """
        assert self.cfg.parent is not None
        wall = self.wall()
        busy = self.spec.busy_w
        counted = self.counted_w
        held = float(np.maximum(counted, np.nan_to_num(self.issued_w, nan=0.0)).sum())
        lease = self.parent_lease
        if lease is not None and math.isfinite(lease.cap_w):
            held = max(held, lease.value(wall))
        temps = self.temp_c[np.isfinite(self.temp_c)]
        power = float(np.where(self.state == 0, self.power_w, counted).sum())
        return NodeReport(node=self.cfg.parent.name, boot_id=boot_id, seq=seq, power_w=min(power, 1e9),
                          load=float(min(16.0, (self.load * busy).sum() / busy.sum())),
                          util=float(min(1.0, (self.util * busy).sum() / busy.sum())),
                          temp_c=float(min(200.0, temps.max())) if temps.size else None,
                          cap_w=min(held, 1e9), cap_round=self.parent_round)

    # -- journal -----------------------------------------------------------------------------------
    def _write_journal(self, wall_s: float, round_id: int, issued_w: np.ndarray) -> None:
        if self.journal_path is None:
            return
        # Whole columns at once (this runs every round, before any cap goes out): non-finite -> null.
        last_wall = wall_s - (self.clock() - self.last_report_s)
        cols = [_column(a) for a in (self.held_w, self.sent_w, self.hold_w, issued_w, last_wall)]
        nodes = dict(zip(self.spec.names, map(list, zip(*cols, self.seq.tolist(), self.boot_id, strict=True)),
                         strict=True))
        lease = self.parent_lease
        doc = {"version": JOURNAL_VERSION, "api": API_VERSION, "name": self.cfg.name, "round": round_id,
               "wall_s": wall_s, "next_event_id": self.next_event_id,
               "events": [asdict(e) for e in self.events.values()],
               "parent": None if lease is None or not math.isfinite(lease.cap_w) else {
                   "cap_w": lease.cap_w, "issued_s": lease.issued_s, "lease_s": lease.cap_lease_s,
                   "decay_s": lease.decay_s, "base_w": lease.base_w, "round": self.parent_round},
               "nodes_fields": ["held_w", "sent_w", "hold_w", "issued_w", "last_report_wall_s", "seq", "boot_id"],
               "nodes": nodes}
        write_atomically(self.journal_path, json.dumps(doc, separators=(",", ":")))

    def _load_journal(self) -> bool:
        """Restore caps, member contact times and events; False when there is no usable journal."""
        path = self.journal_path
        assert path is not None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, UnicodeError, json.JSONDecodeError) as exc:
            self.log({"event": "journal_unreadable", "path": str(path), "error": str(exc),
                      "action": "cold start: every member counted at its maximum until it reports"})
            return False
        try:
            if not isinstance(doc, dict) or doc.get("version") != JOURNAL_VERSION or doc.get("name") != self.cfg.name:
                got = (doc.get("version"), doc.get("name")) if isinstance(doc, dict) else type(doc).__name__
                raise ValueError(f"not a version-{JOURNAL_VERSION} journal of {self.cfg.name!r}: {got}")
            now, wall = self.clock(), self.wall()
            saved_wall = float(doc["wall_s"])
            nodes = doc["nodes"]
            if not isinstance(nodes, dict):
                raise TypeError("nodes is not a mapping")
            rows = {}
            for name, row in nodes.items():
                i = self.index.get(name)
                if i is None:
                    continue  # removed from the cluster file since
                held, sent, hold, issued, last_wall, seq, boot = row
                rows[i] = (_unnum(held, math.inf), _unnum(sent, math.nan), _unnum(hold, math.inf),
                           _unnum(issued, math.nan), None if last_wall is None else float(last_wall), int(seq),
                           str(boot))
            events = {}
            for e in doc["events"]:
                ev = Event(int(e["id"]), str(e["kind"]), float(e["fraction"]),
                           None if e["group"] is None else str(e["group"]), float(e["start_wall_s"]),
                           float(e["deadline_wall_s"]), None if e["end_wall_s"] is None else float(e["end_wall_s"]))
                if ev.kind not in ("grid_cut", "cooling_failure") or not 0.0 < ev.fraction < 1.0 or (
                        ev.group is not None and not self.spec.groups_of(ev.group).any()):
                    raise ValueError(f"event {e!r}")
                events[ev.id] = ev
            round_id, next_id = int(doc["round"]), int(doc["next_event_id"])
            parent = doc.get("parent")
            parent_vals = None if not parent else (float(parent["base_w"]), float(parent["decay_s"]),
                                                   float(parent["cap_w"]), float(parent["issued_s"]),
                                                   float(parent["lease_s"]), int(parent["round"]))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            self.log({"event": "journal_unreadable", "path": str(path), "error": f"{type(exc).__name__}: {exc}",
                      "action": "cold start: every member counted at its maximum until it reports"})
            return False
        # Everything parsed: only now change state (a half-read journal would mix two states).
        for i, (held, sent, hold, issued, last_wall, seq, boot) in rows.items():
            self.held_w[i], self.sent_w[i], self.issued_w[i] = held, sent, issued
            # The member may hold the last cap decided for it even if no answer carried it yet.
            self.hold_w[i] = max(hold, issued) if math.isfinite(issued) else hold
            self.last_report_s[i] = -math.inf if last_wall is None else now - (wall - last_wall)
            self.seq[i] = seq
            self.boot_id[i] = boot
        self.round, self.next_event_id, self.events = round_id, next_id, events
        f = self.cfg.faults
        self.lost_not_before_s = now + f.lease_s + f.decay_s + TIMEOUT_MARGIN_S
        if parent_vals is not None and self.parent_lease is not None:
            lease = self.parent_lease
            lease.base_w, lease.decay_s = parent_vals[0], parent_vals[1]
            lease.set(parent_vals[2], parent_vals[3], parent_vals[4])
            self.parent_round = parent_vals[5]
        self._events_version += 1
        self.log({"event": "journal_recovered", "path": str(path), "round": self.round,
                  "events": len(self.events), "age_s": round(self.wall() - saved_wall, 3)})
        return True

    # -- status ------------------------------------------------------------------------------------
    def status(self, nodes: bool = False) -> dict[str, Any]:
        """What ``powerrl coordinator status`` prints (and ``GET /v1/status`` returns)."""
        wall = self.wall()
        budget, announced, deadline = self.budget_w(wall)
        ms = np.array(self.round_ms) if self.round_ms else np.zeros(1)
        out: dict[str, Any] = {
            "api": API_VERSION, "name": self.cfg.name, "round": self.round, "round_s": self.cfg.round_s,
            "allocator": self.cfg.allocator, "budget_w": budget, "announced_budget_w": announced,
            "deadline_in_s": None if not math.isfinite(deadline) else round(deadline - wall, 3),
            "nodes": self.n, "ok": int((self.state == 0).sum()), "silent": int((self.state == 1).sum()),
            "lost": int((self.state == 2).sum()), "never_reported": int(np.isinf(self.last_report_s).sum()),
            "caps_w": float(np.nan_to_num(self.issued_w).sum()), "counted_w": float(self.counted_w.sum()),
            "measured_w": float(self.power_w[self.state == 0].sum()),
            "round_ms_p50": float(np.percentile(ms, 50)), "round_ms_p99": float(np.percentile(ms, 99)),
            "shield_events": dict(self.shield_events), "rejected": self.rejected, "recovered": self.recovered,
            "events": [asdict(e) for e in self.events.values()],
            "parent": None if self.parent_lease is None else {
                "cap_w": _num(self.parent_lease.cap_w), "in_force_w": _num(self.parent_lease.value(wall)),
                "stale": self.parent_lease.stale(wall)},
        }
        if nodes:
            now = self.clock()
            out["members"] = {
                name: {"state": ("ok", "silent", "lost")[int(self.state[i])], "priority": int(self.spec.priority[i]),
                       "cap_w": _num(self.issued_w[i]), "hold_w": _num(self.hold_w[i]),
                       "power_w": float(self.power_w[i]), "counted_w": float(self.counted_w[i]),
                       "base_w": float(self.base_w[i]), "max_w": float(self.max_w[i]),
                       "age_s": _num(now - self.last_report_s[i])}
                for i, name in enumerate(self.spec.names)}
        return out
