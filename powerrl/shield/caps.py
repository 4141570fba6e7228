"""Cap shield: node power caps within a facility budget, power groups and reserves, whatever is requested.

Per control period, from the caps a controller requests:

1. each request is sanitised into [guaranteed base, max] (NaN reads as the base);
2. rate limits bound the controller's own move (lifted while an emergency is handled);
3. an announced budget cut (a grid operator's demand-response call: target and deadline) is phased
   in linearly so that caps fit it ``grid_cut_margin_periods`` periods before the deadline;
4. over-consumption -- measured power above the budget last period -- is an emergency: the power
   nodes drew beyond their caps counts against every scope this period, so the excess is gone
   within one period, and rate limits are lifted;
5. :func:`powerrl.shield.budget.project_caps` fits the caps into every group, the Critical reserve
   and the facility budget minus the emergency reserve, lowest priority first, without priority
   inversion, dropping to emergency floors only where the bases do not fit.
"""

from __future__ import annotations

import math

import numpy as np

from powerrl.shield.budget import GroupLevel, PowerTopology, Projection, count_priority_inversions, project_caps
from powerrl.shield.config import ShieldConfig

#: Relative tolerance on measured vs budget power before over-consumption is declared: float
#: round-off in sums over thousands of nodes, not a physical margin.
OVERCONSUMPTION_RTOL = 1e-9


class CapShield:
    """Budget shield of one facility of ``n`` nodes.

    Args:
        cfg: validated shield config (``budget``, ``rate_limits``, ``emergency``, ``period_s``).
        idle_w, busy_w: each node's idle and busy power (W); bases and maxima are set between them
            from ``cfg.budget.base_frac`` (by priority) and ``cfg.budget.max_frac``.
        priority: each node's priority level (0 = Critical ... 4 = Background).
        levels: power groups, innermost first (rack, then PDU), with their limits (W).
        base_w: optional per-node guaranteed base (W) replacing the ``base_frac`` rule where finite
            (NaN: the rule), e.g. a rack coordinator's summed bases in its parent; max caps are raised
            to it where it is higher.
    """

    def __init__(self, cfg: ShieldConfig, idle_w: np.ndarray, busy_w: np.ndarray, priority: np.ndarray,
                 levels: tuple[GroupLevel, ...] = (), base_w: np.ndarray | None = None) -> None:
        self.cfg = cfg
        bcfg = cfg.budget
        idle = np.asarray(idle_w, dtype=np.float64)
        dyn = np.asarray(busy_w, dtype=np.float64) - idle
        prio = np.asarray(priority, dtype=np.int64)
        base = idle + np.asarray(bcfg.base_frac)[prio] * dyn
        if base_w is not None:
            given = np.asarray(base_w, dtype=np.float64)
            base = np.where(np.isfinite(given), given, base)
        # Emergency floors stop at idle power: a node cannot draw less while it is on.
        self.topology = PowerTopology(priority=prio, base_w=base, max_w=np.maximum(idle + bcfg.max_frac * dyn, base),
                                      levels=levels,
                                      emergency_cut=tuple(bcfg.emergency_cut),  # type: ignore[arg-type]
                                      min_w=idle)
        self.n = idle.size
        # Smallest budget under which both reserves still leave every cap at its maximum: where an
        # announced cut starts its ramp from an unlimited budget.
        self._unbound_budget_w = float(self.topology.max_w.sum()) / (1.0 - bcfg.reserve_frac
                                                                     - bcfg.critical_reserve_frac)
        self.prev_caps_w = self.topology.max_w.copy()
        self.last_budget_w = math.inf
        self._announce_start_s: float | None = None
        self.last_projection: Projection | None = None
        self.last_request_w = self.prev_caps_w.copy()

    def set_topology(self, topology: PowerTopology) -> None:
        """Replace the node ranges and group limits (same nodes), e.g. to pin silent nodes or cut a group.

        The coordinator pins a node it cannot reach at the power it must assume (``base_w = max_w =
        min_w``), and a cooling failure lowers a group's limit; the previous caps are kept.
        """
        if topology.n_nodes != self.n:
            raise ValueError(f"topology of {topology.n_nodes} nodes for a shield of {self.n}")
        self.topology = topology

    def reset(self) -> None:
        """Forget the previous caps, budgets and announcements (caps back at the maxima)."""
        self.prev_caps_w[:] = self.topology.max_w
        self.last_budget_w = math.inf
        self._announce_start_s = None
        self.last_projection = None

    def _budget_in_force_w(self, budget_w: float) -> float:
        """The target's budget, lowered to the configured one; a NaN target budget falls back to it."""
        cfg_w = self.cfg.budget.budget_w
        if cfg_w is None:
            return budget_w
        return cfg_w if math.isnan(budget_w) else min(budget_w, cfg_w)

    def effective_budget_w(self, budget_w: float, time_s: float, announced_budget_w: float | None,
                           deadline_s: float) -> tuple[float, bool]:
        """Budget to plan for now (W) and whether an announced cut is being phased in."""
        budget_w = self._budget_in_force_w(budget_w)
        cfg = self.cfg
        if announced_budget_w is None or not announced_budget_w < budget_w or not math.isfinite(deadline_s):
            self._announce_start_s = None
            return budget_w, False
        if self._announce_start_s is None:
            self._announce_start_s = time_s
        # No line to ramp along from an unlimited budget (inf - inf is NaN, which the projection reads
        # as 0 W): ramp from the smallest budget that binds no cap instead.
        start_w = budget_w if math.isfinite(budget_w) else max(announced_budget_w, self._unbound_budget_w)
        # Caps set now hold for one period; be within the target margin periods before the deadline.
        lead_s = cfg.period_s * (1 + cfg.emergency.grid_cut_margin_periods)
        span_s = deadline_s - lead_s - self._announce_start_s
        done = 1.0 if span_s <= 0 else min(1.0, max(0.0, (time_s - self._announce_start_s) / span_s))
        if time_s + lead_s >= deadline_s:
            done = 1.0
        return start_w + (announced_budget_w - start_w) * done, True

    def filter(self, requested_w: np.ndarray, measured_w: np.ndarray, budget_w: float, time_s: float = 0.0,
               announced_budget_w: float | None = None, deadline_s: float = math.inf,
               emergency: bool = False) -> tuple[np.ndarray, dict[str, int]]:
        """Safe caps (W, ``[n]``) for the requested ones and ``{reason: nodes}``.

        ``measured_w`` is each node's power over the last period (W), ``budget_w`` the facility
        budget in force now, ``announced_budget_w``/``deadline_s`` an announced cut and the time it
        takes effect (same clock as ``time_s``, s).
        """
        topo, cfg, events = self.topology, self.cfg, {}
        req = np.asarray(requested_w, dtype=np.float64).reshape(self.n)
        measured = np.asarray(measured_w, dtype=np.float64).reshape(self.n)
        # NaN, inf and negative readings are meter glitches: 0 W, as overheads in project_caps. A -inf
        # or -1e6 W reading must not cancel the rest of the facility's draw and hide over-consumption.
        measured = np.where(np.isfinite(measured) & (measured > 0.0), measured, 0.0)
        bad = ~np.isfinite(req) | (req < topo.base_w) | (req > topo.max_w)
        if bad.any():
            events["cap_clipped"] = int(bad.sum())
        clipped = np.clip(np.where(np.isnan(req), topo.base_w, req), topo.base_w, topo.max_w)

        overcons = bool(measured.sum() > self.last_budget_w * (1.0 + OVERCONSUMPTION_RTOL))
        if overcons:
            events["overconsumption"] = 1
        plan_w, phasing = self.effective_budget_w(float(budget_w), time_s, announced_budget_w, deadline_s)
        if phasing:
            events["grid_cut"] = 1
        lifted = emergency or overcons or phasing
        target = clipped
        if cfg.rate_limits.cap_frac > 0 and not lifted:
            step = cfg.rate_limits.cap_frac * topo.max_w
            target = np.clip(clipped, self.prev_caps_w - step, self.prev_caps_w + step)
            moved = int(np.count_nonzero(target != clipped))
            if moved:
                events["cap_rate_limit"] = moved
        overhead = np.maximum(measured - self.prev_caps_w, 0.0)
        b = cfg.budget
        # Reserves are shares of a finite budget; an unlimited one has none (inf * frac would make the
        # limits inf - inf = NaN, read as 0 W: every node at its emergency floor).
        finite = math.isfinite(plan_w)
        proj = project_caps(target, topo, plan_w, reserve_w=b.reserve_frac * plan_w if finite else 0.0,
                            critical_reserve_w=b.critical_reserve_frac * plan_w if finite else 0.0,
                            overhead_w=overhead)
        n_levels = len(topo.levels)
        binding = proj.binding_level
        # Without a Critical reserve the non-Critical scope is just the budget seen by non-Critical nodes.
        reserve_reason = "critical_reserve" if b.critical_reserve_frac > 0 else "budget"
        for reason, hit in (("group_limit", (binding >= 0) & (binding < n_levels)),
                            (reserve_reason, binding == n_levels), ("budget", binding == n_levels + 1)):
            count = int(np.count_nonzero(hit))
            if count:
                events[reason] = events.get(reason, 0) + count
        if proj.emergency.any():
            events["emergency_floor"] = int(proj.emergency.sum())
        if proj.infeasible:
            events["infeasible"] = 1
        self.prev_caps_w[:] = proj.caps_w
        self.last_budget_w = self._budget_in_force_w(float(budget_w))
        self.last_projection = proj
        self.last_request_w = target
        return proj.caps_w, events

    def priority_inversions(self) -> int:
        """Priority inversions in the last decision (:func:`powerrl.shield.budget.count_priority_inversions`)."""
        if self.last_projection is None:
            return 0
        return count_priority_inversions(self.last_request_w, self.last_projection, self.topology)
