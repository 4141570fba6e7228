"""Power-allocation baselines for ``powerrl/ClusterBudget-v0``: split a facility budget into node caps.

Five registered rules, all deployable (they read only the observation and the static
:class:`powerrl.control.ControlTarget`):

* ``equal_share``: the same cap for every node, clamped to each node's [base, max] range, the
  clamped-off power handed to the others (water-filling);
* ``proportional``: caps proportional to each node's demand estimate;
* ``priority_proportional``: the same, the demand weighted by ``priority_weight ** exponent``;
* ``efficiency``: the project seed's heuristic (cut inefficient low-priority nodes, boost efficient
  power-constrained high-priority ones), stateful;
* ``dynamo``: Facebook Dynamo's leaf power controller (Wu et al., ISCA 2016), stateful.

Every rule returns caps that the shield (:mod:`powerrl.shield.budget`) would pass unchanged: each
cap in ``[base, max]`` (``base = idle + base_frac[priority] * (busy - idle)``, ``max = idle +
max_frac * (busy - idle)``, the shield's formulas in :class:`powerrl.shield.caps.CapShield`), every
PDU within its limit and the sum within ``budget * (1 - reserve_frac)`` (the shield holds the
emergency reserve back; the shipped ``default`` shield reserves 2 %). The budget is read from the
observation: ``budget_frac * target.extras["busy_total_w"]`` is the budget in force for the next
step. Where even the bases do not fit (a deep budget event), the bases are returned and the shield
cuts into its emergency floors.

The allocation primitive is :func:`waterfill` (exact, sort-based): ``x_i = clip(k * v_i, lo_i,
hi_i)`` with ``k`` chosen per group so the group's sum meets its budget. PDU limits nest inside the
facility budget: the PDU-level water-filling gives each node's ceiling, and the facility-level one
runs under those ceilings (progressive filling, so power a full PDU cannot use goes to the others).
The shield's Critical reserve (``critical_reserve_frac``, 0 in the shipped shields) is not modelled:
it is not nested with the PDUs; the shield enforces it if a custom shield sets one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from powerrl.baselines.base import Baseline, caps_to_action
from powerrl.control import ControlTarget, register
from powerrl.errors import ConfigError
from powerrl.shield.config import resolve_shield_config

ENV_ID = "powerrl/ClusterBudget-v0"
#: Priority levels (0 = Critical .. 4 = Background), as in :mod:`powerrl.shield.budget`.
N_PRIORITIES = 5
#: Relative margin kept below every limit: the observation carries ``budget_frac`` as float32
#: (relative rounding up to 6e-8), so a budget read back from it may exceed the true one slightly.
LIMIT_RTOL = 1e-6
#: Smallest score in :func:`waterfill`: a node with no demand still receives power once every other
#: node of its group is at its ceiling (the leftover is redistributed), never before.
SCORE_FLOOR = 1e-9
#: Relative excess over a limit below which :meth:`AllocationBaseline.shed` cuts nothing: float
#: round-off of a sum that an earlier fit set to the limit (far inside :data:`LIMIT_RTOL`).
SHED_RTOL = 1e-10
#: A node draws at least this share of its cap when "power-constrained" (efficiency heuristic).
#: Under a binding cap the node runs the highest P-state that fits, whose power is within one
#: P-state step (about 3 % of busy power for the EPYC 7502 table) below the cap.
CONSTRAINED_POWER_SHARE = 0.95


def shield_reserve_frac(shield: Any = "default") -> float:
    """The emergency reserve the shield keeps below the budget (``budget.reserve_frac``, 0.02 for ``default``)."""
    return float(resolve_shield_config(shield).budget.reserve_frac)


class GroupIndex:
    """Static bookkeeping of a partition of ``n`` nodes into groups, for :func:`waterfill` and sums.

    Args:
        group: ``[n]`` integer group of each node, ``0 .. n_groups - 1`` (empty groups allowed).
        n_groups: number of groups (default ``group.max() + 1``).
    """

    def __init__(self, group: np.ndarray, n_groups: int | None = None) -> None:
        g = np.asarray(group, dtype=np.int64).reshape(-1)
        self.group = g
        self.n = g.size
        self.n_groups = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
        counts = np.bincount(g, minlength=self.n_groups)
        self.counts = counts
        # Events (two per node) sorted by group occupy contiguous slots: group j owns
        # [start[j], start[j] + 2 * counts[j]).
        ev_group = np.concatenate((g, g))
        self.ev_group = ev_group
        self.ev_group_sorted = np.sort(ev_group)
        start = np.zeros(self.n_groups, dtype=np.int64)
        start[1:] = np.cumsum(2 * counts)[:-1]
        self.start = start
        self.end = start + 2 * counts
        self.nonempty = np.flatnonzero(counts > 0)
        self.single = self.n_groups == 1

    def sums(self, x: np.ndarray) -> np.ndarray:
        """Per-row group sums ``[B, n_groups]`` of ``x`` (``[B, n]``; a ``[n]`` vector gives ``[1, n_groups]``)."""
        x2 = x.reshape(-1, self.n)
        if self.single:
            return x2.sum(axis=1, keepdims=True)
        b = x2.shape[0]
        if b == 1:
            return np.bincount(self.group, weights=x2[0], minlength=self.n_groups)[None, :]
        idx = (np.arange(b)[:, None] * self.n_groups + self.group[None, :]).ravel()
        return np.bincount(idx, weights=x2.ravel(), minlength=b * self.n_groups).reshape(b, self.n_groups)


def waterfill(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: np.ndarray, groups: GroupIndex) -> np.ndarray:
    """``x_i = clip(k_g * v_i, lo_i, hi_i)`` with each group's sum equal to its budget (clipped to reach).

    The exact solution of weighted water-filling (max-min fair shares with weights ``v``): the
    group sum ``T(k) = sum clip(k v_i, lo_i, hi_i)`` is piecewise linear and non-decreasing in
    ``k`` with breakpoints ``lo_i / v_i`` (node i starts to grow) and ``hi_i / v_i`` (node i is
    full). The breakpoints are sorted per row and group and ``T`` is evaluated at each by
    cumulative sums, which finds the segment where ``T`` crosses the budget; ``k`` is then solved
    on that segment from sums over the nodes (not from the cumulative sums, whose cancellation
    would cost precision). O(n log n) per row.

    Args:
        v: ``[B, n]`` scores (weights), >= 0; scores below :data:`SCORE_FLOOR` count as that floor.
        lo: ``[B, n]`` or ``[n]`` lower bounds (W).
        hi: ``[B, n]`` or ``[n]`` upper bounds (W); raised to ``lo`` where below it.
        budget: ``[B, n_groups]`` (or ``[B]`` for one group) target sum per group (W). A budget
            below the group's ``sum(lo)`` gives ``lo``, above ``sum(hi)`` gives ``hi``.
        groups: the node partition.

    Returns:
        ``[B, n]`` float64 allocations; each group sums to ``clip(budget, sum lo, sum hi)`` to
        round-off.
    """
    v = np.maximum(v, SCORE_FLOOR)
    b, n = v.shape
    hi = np.maximum(hi, lo)  # lo and hi may be [n] (broadcast over rows)
    n_g = groups.n_groups
    sum_lo = groups.sums(lo)
    target = np.minimum(np.maximum(np.asarray(budget, dtype=np.float64).reshape(b, n_g), sum_lo), groups.sums(hi))
    # Events: node i enters the linear regime at k = lo/v (slope +v, constant -lo) and leaves it at
    # k = hi/v (slope -v, constant +hi).
    enter = lo / v
    leave = hi / v
    ev = np.empty((3, b, 2 * n))
    ev[0, :, :n] = enter
    ev[0, :, n:] = leave
    ev[1, :, :n] = v
    ev[1, :, n:] = -v
    ev[2, :, :n] = -lo
    ev[2, :, n:] = hi
    if groups.single:
        order = np.argsort(ev[0], axis=1)
    else:
        order = np.lexsort((ev[0], np.broadcast_to(groups.ev_group, (b, 2 * n))), axis=-1)
    flat = (order + (2 * n) * np.arange(b)[:, None]).ravel()
    ev = ev.reshape(3, -1)[:, flat].reshape(3, b, 2 * n)
    bp = ev[0]
    acc = np.cumsum(ev[1:], axis=2)  # slope and constant after each event
    gs = groups.ev_group_sorted
    if groups.single:
        total = sum_lo + acc[1] + acc[0] * bp  # T at each event, after applying it
        m = np.count_nonzero(total < target, axis=1)[:, None]
        j = m
        end = 2 * n
    else:
        # Cumulative sums restart at each group's first event.
        ne = groups.nonempty
        first = groups.start[ne]
        base = np.zeros((2, b, n_g))
        has_prev = first > 0
        base[:, :, ne[has_prev]] = acc[:, :, first[has_prev] - 1]
        acc = acc - base[:, :, gs]
        total = sum_lo[:, gs] + acc[1] + acc[0] * bp
        below = (total < target[:, gs]).astype(np.int64)
        m = np.zeros((b, n_g), dtype=np.int64)
        m[:, ne] = np.add.reduceat(below, first, axis=1)
        j = groups.start[None, :] + m
        end = groups.end[None, :]
    rows = np.arange(b)[:, None]
    bp_prev = bp[rows, np.maximum(j - 1, 0)]  # [B, G]: the last breakpoint below the crossing
    bp_next = bp[rows, np.minimum(j, 2 * n - 1)]
    # On the crossing segment: nodes entered (enter <= bp_prev) and not left (leave > bp_prev) grow
    # with k; the others sit at lo or hi.
    kp = bp_prev[:, groups.group] if not groups.single else bp_prev
    grown = enter <= kp
    full = leave <= kp
    lin = grown & ~full
    slope = groups.sums(np.where(lin, v, 0.0))
    const = groups.sums(np.where(full, hi, np.where(grown, 0.0, lo)))
    k = np.divide(target - const, slope, out=bp_next.copy(), where=slope > 0.0)
    k = np.minimum(np.maximum(k, bp_prev), bp_next)
    k = np.where(j >= end, np.inf, np.where(m == 0, 0.0, k))
    kn = k[:, groups.group] if not groups.single else k
    return np.minimum(np.maximum(kn * v, lo), hi)


class AllocationBaseline(Baseline):
    """What the ClusterBudget-v0 baselines share: the target's node ranges, budget reading, allocation.

    Args:
        action_space, observation_space, target: as :class:`powerrl.control.Controller`.
        reserve_frac: share of the budget left unused, like the shield's emergency reserve (default:
            the shipped ``default`` shield's, 0.02), so that the shield never has to cut.
    """

    env_ids = (ENV_ID,)

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target)
        assert target is not None  # needs_target: the base class refuses None
        name = f"controller.{self.name or type(self).__name__}"
        if target.priority is None or target.base_frac is None:
            raise ConfigError(f"{name}.target", target.env_id,
                              "a ClusterBudget-v0 target with priorities and base_frac (control_target(env))")
        if "busy_total_w" not in target.extras:
            raise ConfigError(f"{name}.target.extras", sorted(target.extras), "extras with 'busy_total_w'")
        self.reserve_frac = shield_reserve_frac() if reserve_frac is None else _check_range(
            name, "reserve_frac", reserve_frac, 0.0, 0.5)
        t = target
        self.n = t.n_units
        self.idle_w = np.asarray(t.idle_w, dtype=np.float64)
        self.busy_w = np.asarray(t.busy_w, dtype=np.float64)
        self.dyn_w = self.busy_w - self.idle_w
        self.prio = np.asarray(t.priority, dtype=np.int64)
        # The shield's per-node range (CapShield.__init__): base = idle + base_frac[p] (busy - idle).
        self.base_w = self.idle_w + np.asarray(t.base_frac, dtype=np.float64)[self.prio] * self.dyn_w
        max_frac = float(np.asarray(t.extras.get("max_frac", 1.0)))
        self.max_w = np.maximum(self.idle_w + max_frac * self.dyn_w, self.base_w)
        self.weight = np.asarray(t.extras.get("priority_weight", 2.0 ** (4 - np.arange(N_PRIORITIES))),
                                 dtype=np.float64)[self.prio]
        self.busy_total_w = float(t.extras["busy_total_w"])
        self.everything = GroupIndex(np.zeros(self.n, dtype=np.int64), 1)
        self.pdus: GroupIndex | None = None
        self.pdu_prio: GroupIndex | None = None
        self.pdu_limit_w = np.zeros(0)
        if t.group is not None and t.group_limit_w is not None:
            self.pdus = GroupIndex(np.asarray(t.group), len(t.group_limit_w))
            self.pdu_limit_w = np.asarray(t.group_limit_w, dtype=np.float64) * (1.0 - LIMIT_RTOL)
            self.pdu_prio = GroupIndex(self.pdus.group * N_PRIORITIES + self.prio, self.pdus.n_groups * N_PRIORITIES)
        self.by_prio = GroupIndex(self.prio, N_PRIORITIES)

    # -- observation -----------------------------------------------------------------------------
    def budget_w(self, observations: np.ndarray) -> np.ndarray:
        """Usable budget per row (W): the next step's budget less the reserve and a round-off margin."""
        assert self.target is not None
        frac = self.target.glob(observations, "budget_frac").astype(np.float64)
        return frac * self.busy_total_w * (1.0 - self.reserve_frac) * (1.0 - LIMIT_RTOL)

    def field(self, observations: np.ndarray, name: str) -> np.ndarray:
        """Per-node observation field ``[B, n]`` as float64."""
        assert self.target is not None
        return self.target.unit(observations, name).astype(np.float64)

    # -- allocation ------------------------------------------------------------------------------
    def allocate(self, v: np.ndarray, budget_w: np.ndarray, lo: np.ndarray | None = None,
                 hi: np.ndarray | None = None) -> np.ndarray:
        """Weighted water-filling of ``budget_w`` with scores ``v`` under every PDU limit (W, ``[B, n]``).

        ``lo``/``hi`` default to the nodes' base and max caps. PDU level first (each PDU's own
        fill gives its nodes' ceilings), then the facility under those ceilings.
        """
        lo_w = self.base_w if lo is None else lo
        hi_w = self.max_w if hi is None else hi
        caps = waterfill(v, lo_w, hi_w, budget_w, self.everything)
        if self.pdus is None:
            return caps
        # Most steps no PDU binds: only then is the nested (two-level) fill needed.
        if not (self.pdus.sums(caps) > self.pdu_limit_w * (1.0 + 1e-12)).any():
            return caps
        b = v.shape[0]
        hi_w = waterfill(v, lo_w, hi_w, np.broadcast_to(self.pdu_limit_w, (b, self.pdus.n_groups)), self.pdus)
        return waterfill(v, lo_w, hi_w, budget_w, self.everything)

    def shed(self, caps_w: np.ndarray, budget_w: np.ndarray) -> np.ndarray:
        """Caps lowered to fit every PDU and the facility: lowest priority first, highest caps first.

        Within a scope over its limit by ``E`` W, priority levels are cut in the order Background,
        Research, Development, Production, Critical, each down to its bases before the next is
        touched (the shield's order, :mod:`powerrl.shield.budget`); within one level the highest
        caps are cut first, down to a common level (the continuous form of Dynamo's
        high-bucket-first rule). Caps never drop below the bases.
        """
        x = np.clip(caps_w, self.base_w, self.max_w)
        b = x.shape[0]
        if self.pdus is not None and self.pdu_prio is not None:
            x = self._shed_scope(x, self.pdus, self.pdu_prio, np.broadcast_to(self.pdu_limit_w,
                                                                               (b, self.pdus.n_groups)))
        return self._shed_scope(x, self.everything, self.by_prio, np.asarray(budget_w).reshape(b, 1))

    def _shed_scope(self, x: np.ndarray, scope: GroupIndex, scope_prio: GroupIndex, limit_w: np.ndarray
                    ) -> np.ndarray:
        b = x.shape[0]
        excess = scope.sums(x) - limit_w  # [B, G]
        # Round-off of an earlier fit (sum = limit to ~1e-12) is no excess: skip the work then.
        excess = np.where(excess > SHED_RTOL * np.maximum(1.0, np.abs(limit_w)), excess, 0.0)
        if not (excess > 0).any():
            return x
        head = scope_prio.sums(x - self.base_w).reshape(b, scope.n_groups, N_PRIORITIES)
        # Cut Background (4) first: the headroom of the less important levels is used before.
        rev = head[:, :, ::-1]
        before = np.cumsum(rev, axis=2) - rev
        cut = np.clip(excess[:, :, None] - before, 0.0, rev)[:, :, ::-1]
        keep = scope_prio.sums(x) - cut.reshape(b, -1)
        return waterfill(np.ones_like(x), self.base_w, x, keep, scope_prio)

    def to_action(self, caps_w: np.ndarray) -> np.ndarray:
        """ClusterBudget-v0 actions (float32 ``[B, n]``) for caps in W (:func:`caps_to_safe_action`)."""
        return caps_to_safe_action(caps_w, self.idle_w, self.busy_w, self.base_w)


def caps_to_safe_action(caps_w: np.ndarray, idle_w: np.ndarray, busy_w: np.ndarray, base_w: np.ndarray
                        ) -> np.ndarray:
    """:func:`powerrl.baselines.base.caps_to_action`, nudged so no cap reads back below its base.

    Pitfall: float32 actions round. A cap exactly at a Development node's base is action -0.8,
    whose float32 is -0.800000012, and the env's ``idle + (a + 1) / 2 * (busy - idle)`` then gives
    a cap ~1e-6 W under the base: the shield counts that as a clipped request (an intervention).
    Actions whose cap (computed as the env does) falls under ``base_w`` move up one float32 ulp
    (~1e-5 W of cap, far inside the budget margin :data:`LIMIT_RTOL`).
    """
    act = caps_to_action(caps_w, idle_w, busy_w)
    back = idle_w + (act.astype(np.float64) + 1.0) * 0.5 * (busy_w - idle_w)
    low = back < base_w
    if low.any():
        act = np.where(low, np.nextafter(act, np.float32(np.inf)), act).astype(np.float32)
    return act


def _check_range(name: str, key: str, value: float, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}.{key}", value, f"a number in {'(' if lo_open else '['}{lo}, {hi}]") from None
    if not np.isfinite(x) or x > hi or x < lo or (lo_open and x == lo):
        raise ConfigError(f"{name}.{key}", value, f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
    return x


@register("equal_share")
class EqualShare(AllocationBaseline):
    """The budget split equally over nodes, each clamped to its [base, max] range, the rest redistributed.

    ``cap_i = clip(L, base_i, max_i)`` with the level ``L`` such that the caps sum to the usable
    budget (water-filling); a full PDU holds its nodes at its own level and the power goes to the
    others. No parameters (``param_grid`` is empty): the fair-share reference.
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target, reserve_frac)
        # Everything but the budget is static: the PDU ceilings, and the facility total T(L) =
        # sum clip(L, base, ceiling) at every breakpoint level (piecewise linear, non-decreasing),
        # so each call is one interpolation L = T^-1(budget) (np.interp handles T's flat parts).
        ones = np.ones((1, self.n))
        ceiling = self.max_w
        if self.pdus is not None:
            ceiling = waterfill(ones, self.base_w, self.max_w, self.pdu_limit_w[None, :], self.pdus)[0]
        self.ceiling_w = ceiling
        self.levels_w = np.unique(np.concatenate((self.base_w, ceiling)))
        self.totals_w = np.minimum(np.maximum(self.levels_w[:, None], self.base_w), ceiling).sum(axis=1)

    def caps_w(self, budget_w: np.ndarray) -> np.ndarray:
        """Equal-share caps (W, ``[B, n]``) for usable budgets ``[B]``."""
        level = np.interp(budget_w, self.totals_w, self.levels_w)
        return np.minimum(np.maximum(level[:, None], self.base_w), self.ceiling_w)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Equal caps for every row."""
        return self.to_action(self.caps_w(self.budget_w(np.asarray(observations))))


@register("proportional")
class Proportional(AllocationBaseline):
    """Caps proportional to each node's demand estimate, clamped to [base, max], leftover redistributed.

    Demand estimate (W): ``d_i = idle_i + min(1, headroom * offered_load_i) * (busy_i - idle_i)``:
    the power a node would draw at f_max serving last step's offered work, on a linear power model
    (the simulator's curve is concave, ``u^0.77`` above a 33 % wake floor for the EPYC 7502, so the
    linear model over-estimates the power of lightly loaded nodes). Caps ``clip(k d_i, base_i,
    max_i)`` summing to the usable budget (water-filling, PDU limits nested).

    Args:
        headroom: multiplier on the offered load (>= 1 leaves room for growth between steps);
            default 1.0, grid (1.0, 1.1, 1.25, 1.5).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"headroom": (1.0, 1.1, 1.25, 1.5)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, headroom: float = 1.0, reserve_frac: float | None = None
                 ) -> None:
        super().__init__(action_space, observation_space, target, reserve_frac)
        self.headroom = _check_range(f"controller.{self.name}", "headroom", headroom, 0.0, 10.0, lo_open=True)

    def demand_w(self, observations: np.ndarray) -> np.ndarray:
        """Demand estimate per node, W ``[B, n]`` (class docstring)."""
        load = np.minimum(1.0, self.headroom * self.field(observations, "offered_load"))
        return self.idle_w + load * self.dyn_w

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Demand-proportional caps."""
        obs = np.asarray(observations)
        return self.to_action(self.allocate(self.demand_w(obs), self.budget_w(obs)))


@register("priority_proportional")
class PriorityProportional(Proportional):
    """Demand-proportional caps with each node's demand weighted by ``priority_weight ** exponent``.

    Two water-filling passes with scores ``v_i = w_i ** exponent * d_i`` (``w`` = 16, 8, 4, 2, 1
    from Critical to Background, ``target.extras["priority_weight"]``; ``d_i`` as in
    ``proportional``): first each node up to its demand (``clip(k v_i, base_i, max(base_i,
    d_i))``), so a high weight never buys a node more than it can use while others starve; then
    the leftover budget, if any, with the same scores up to the max caps. ``exponent = 0`` is
    ``proportional`` with demand-capped first pass; a large exponent approaches strict priority.

    Args:
        headroom: as ``proportional``; default 1.0, grid (1.0, 1.25).
        exponent: weighting exponent; default 1.0, grid (0.5, 1.0, 2.0, 4.0).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"headroom": (1.0, 1.25), "exponent": (0.5, 1.0, 2.0, 4.0)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, headroom: float = 1.0, exponent: float = 1.0,
                 reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target, headroom, reserve_frac)
        self.exponent = _check_range(f"controller.{self.name}", "exponent", exponent, 0.0, 20.0)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Priority-weighted, demand-capped caps."""
        obs = np.asarray(observations)
        d = self.demand_w(obs)
        v = d * self.weight ** self.exponent
        budget = self.budget_w(obs)
        first = self.allocate(v, budget, hi=np.maximum(self.base_w, np.minimum(d, self.max_w)))
        return self.to_action(self.allocate(v, budget, lo=first))


class _StatefulCaps(AllocationBaseline):
    """Caps kept per copy between calls; ``reset(batch=B)`` forgets them (each row starts fresh)."""

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target, reserve_frac)
        self.caps_w: np.ndarray | None = None

    def reset(self, seed: int | None = None, batch: int = 1) -> None:
        """Forget every copy's caps; the next call starts ``batch`` copies afresh."""
        self.caps_w = None

    def state_for(self, observations: np.ndarray) -> tuple[np.ndarray, bool]:
        """The caps of the rows in ``observations`` (W), and whether they are fresh (first call).

        A batch of another size than the last reset's starts afresh (rows are copies: a changed
        batch means new copies).
        """
        b = observations.shape[0]
        if self.caps_w is None or self.caps_w.shape[0] != b:
            return np.zeros((b, self.n)), True
        return self.caps_w, False


@register("efficiency")
class Efficiency(_StatefulCaps):
    """The project seed's efficiency heuristic: take power from inefficient low-priority nodes, give to efficient ones.

    Each period, per copy (estimates from the observation only):

    * served work per second ``s_i = min(util_i, offered_load_i)`` (node-seconds at f_max per s):
      ``util`` is the busy fraction at the applied P-state, so ``util`` over-estimates the work of
      a node throttled below f_max by up to its speed loss (at most 40 % at the EPYC 7502's lowest
      P-state); ``offered_load`` bounds it by what arrived;
    * efficiency ``e_i = s_i / power_frac_i`` (work per unit of busy power; ``power_frac`` never
      drops below idle/busy, about 0.32);
    * score = the fleet **mean** efficiency of the copy;
    * cut: among Development-or-lower nodes (priority level >= 2) with ``e_i < low_ratio * score``,
      the ``ceil(cut_share * count)`` least efficient get their cap lowered by ``boost_frac *
      base_i`` (the seed names no cut size: the boost step is used);
    * boost: Production-or-higher nodes (level <= 1) with ``e_i > high_ratio * score`` that are
      power-constrained (power >= 95 % of their applied cap) get ``boost_frac * base_i`` more;
    * caps are clamped to [base, max] and shed to the PDU limits and the usable budget, lowest
      priority and highest caps first (:meth:`AllocationBaseline.shed`).

    Caps start at ``equal_share``'s. Power freed by cuts is not handed out (only boosts raise
    caps), so Development-and-lower caps only ever fall: the heuristic's known ratchet.

    Args:
        cut_share: share of the candidates cut each period; default 0.2, grid (0.1, 0.2, 0.4).
        low_ratio: efficiency below ``low_ratio * score`` is inefficient; default 0.7, grid (0.5, 0.7, 0.9).
        high_ratio: efficiency above ``high_ratio * score`` is efficient; default 1.3, grid (1.1, 1.3, 1.6).
        boost_frac: step as a share of the node's base cap; default 0.15, grid (0.05, 0.15, 0.3).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "cut_share": (0.1, 0.2, 0.4), "low_ratio": (0.5, 0.7, 0.9), "high_ratio": (1.1, 1.3, 1.6),
        "boost_frac": (0.05, 0.15, 0.3)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, cut_share: float = 0.2, low_ratio: float = 0.7,
                 high_ratio: float = 1.3, boost_frac: float = 0.15, reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target, reserve_frac)
        name = f"controller.{self.name}"
        self.cut_share = _check_range(name, "cut_share", cut_share, 0.0, 1.0)
        self.low_ratio = _check_range(name, "low_ratio", low_ratio, 0.0, 10.0)
        self.high_ratio = _check_range(name, "high_ratio", high_ratio, 0.0, 10.0)
        if self.high_ratio < self.low_ratio:
            raise ConfigError(f"{name}.high_ratio", high_ratio, f"a value >= low_ratio = {self.low_ratio}")
        self.boost_frac = _check_range(name, "boost_frac", boost_frac, 0.0, 1.0)
        self.step_w = self.boost_frac * self.base_w

    def efficiency(self, observations: np.ndarray) -> np.ndarray:
        """Served work per unit of busy power per node, ``[B, n]`` (class docstring)."""
        served = np.minimum(self.field(observations, "util"), self.field(observations, "offered_load"))
        return served / np.maximum(self.field(observations, "power_frac"), 1e-6)

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Cut, boost, fit; remembers each copy's caps."""
        obs = np.asarray(observations)
        budget = self.budget_w(obs)
        caps, fresh = self.state_for(obs)
        if fresh:
            caps = self.allocate(np.ones((obs.shape[0], self.n)), budget)
        else:
            eff = self.efficiency(obs)
            score = eff.mean(axis=1, keepdims=True)
            cand = (self.prio >= 2) & (eff < self.low_ratio * score)
            n_cut = np.ceil(self.cut_share * cand.sum(axis=1, keepdims=True) - 1e-9)
            rank = np.argsort(np.argsort(np.where(cand, eff, np.inf), axis=1, kind="stable"), axis=1)
            cut = cand & (rank < n_cut)
            power = self.field(obs, "power_frac") * self.busy_w
            applied_cap = self.field(obs, "cap_frac") * self.busy_w
            constrained = power >= CONSTRAINED_POWER_SHARE * applied_cap
            boost = (self.prio <= 1) & (eff > self.high_ratio * score) & constrained
            caps = caps + self.step_w * (boost.astype(np.float64) - cut)
        caps = self.shed(caps, budget)
        self.caps_w = caps
        return self.to_action(caps)


@register("dynamo")
class Dynamo(_StatefulCaps):
    """Facebook Dynamo's leaf power controller: three-band capping of measured power, by priority, high bucket first.

    Wu et al., "Dynamo: Facebook's Data Center-Wide Power Management System", ISCA 2016, section
    on the leaf power controller and performance-aware capping.

    Each period, per copy, with ``P`` the measured power of the last step and ``L`` the usable
    budget (budget less the shield's reserve):

    * ``P > cap_threshold * L``: cut ``P - (cap_threshold - margin) * L`` W (the capping target
      sits ``margin`` below the threshold). The cut goes to the lowest-priority group first
      (Background, Research, ...; the paper's priority groups of services), each down to its bases
      (the paper's per-service SLA lower bounds) before the next group is touched; within a group
      the highest-power servers are cut first to a common level (high-bucket-first with
      vanishing bucket width: the highest bucket is cut evenly until it reaches the next one).
      A cut server's cap becomes its measured power less its cut.
    * ``P < uncap_threshold * L``: every cap rises by ``step * (busy - idle)`` towards the max
      (the paper uncaps; stepwise here, so uncapping cannot overshoot at once).
    * otherwise caps hold (the band between the thresholds stops oscillation).

    Dynamo reacts to measured power and tolerates caps that sum above the limit; the shield here
    does not, so the caps are finally shed to the PDU limits and the usable budget by the same rule
    (lowest priority first, highest caps first). Caps start at the max ("uncapped") and are shed at
    once. The paper's leaf controllers sample every 3 s; here every env step.

    Args:
        cap_threshold: share of ``L`` above which power is cut; default 0.99, grid (0.97, 0.99, 1.0).
        margin: capping target below the threshold, share of ``L``; default 0.02 (our choice).
        uncap_threshold: share of ``L`` below which caps rise; default 0.90, grid (0.8, 0.9).
            Must be below ``cap_threshold - margin``.
        step: cap rise per period while uncapping, share of ``busy - idle``; default 0.1, grid
            (0.05, 0.1, 0.25).
    """

    param_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "cap_threshold": (0.97, 0.99, 1.0), "uncap_threshold": (0.8, 0.9), "step": (0.05, 0.1, 0.25)}

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None, cap_threshold: float = 0.99, margin: float = 0.02,
                 uncap_threshold: float = 0.90, step: float = 0.1, reserve_frac: float | None = None) -> None:
        super().__init__(action_space, observation_space, target, reserve_frac)
        name = f"controller.{self.name}"
        self.cap_threshold = _check_range(name, "cap_threshold", cap_threshold, 0.0, 1.5, lo_open=True)
        self.margin = _check_range(name, "margin", margin, 0.0, 0.5)
        self.uncap_threshold = _check_range(name, "uncap_threshold", uncap_threshold, 0.0, 1.5)
        if self.uncap_threshold >= self.cap_threshold - self.margin:
            raise ConfigError(f"{name}.uncap_threshold", uncap_threshold,
                              f"a value below cap_threshold - margin = {self.cap_threshold - self.margin:g}")
        self.step = _check_range(name, "step", step, 0.0, 1.0, lo_open=True)
        self.step_w = self.step * self.dyn_w

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Three-band decision, then the fit to the limits; remembers each copy's caps."""
        obs = np.asarray(observations)
        limit = self.budget_w(obs)
        caps, fresh = self.state_for(obs)
        if fresh:
            caps = np.broadcast_to(self.max_w, (obs.shape[0], self.n)).copy()
        else:
            power = self.field(obs, "power_frac") * self.busy_w
            total = power.sum(axis=1)
            over = total > self.cap_threshold * limit
            if over.any():
                # Levelling measured power (floored at the bases) down to the capping target.
                target_w = (self.cap_threshold - self.margin) * limit
                x = np.maximum(power, self.base_w)
                cut_to = self._shed_scope(x, self.everything, self.by_prio,
                                          np.where(over, target_w, np.inf)[:, None])
                caps = np.where(cut_to < x - 1e-9, np.minimum(caps, cut_to), caps)
            under = total < self.uncap_threshold * limit
            caps = np.where(under[:, None], np.minimum(caps + self.step_w, self.max_w), caps)
        caps = self.shed(caps, limit)
        self.caps_w = caps
        return self.to_action(caps)
