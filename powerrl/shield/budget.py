"""Budget projection: the last word on every power cap, vectorised over nodes and groups.

:func:`project_caps` turns the caps a controller requests into caps that fit every power limit of a
nested topology (racks inside PDUs inside the facility), taking power from the least important
nodes first. It is pure NumPy, allocation-light, O(N + G) per scope and deterministic.

Priorities (``PowerTopology.priority``): 0 = Critical, 1 = Production, 2 = Development,
3 = Research, 4 = Background. A larger number is *less* important and is cut first.

Guarantees (checked by ``tests/shield/test_budget.py``):

1. **Sanitised requests.** A NaN request becomes the node's base cap; everything else, ``+-inf``
   included, is clipped to ``[base_w, max_w]``. Bad *values* (NaN, inf, negative, huge) in
   ``requested_w``, ``overhead_w``, ``budget_w`` and the reserves never raise; a wrong *shape* raises
   ``ValueError``. Every cap returned is finite and ``floor_w <= caps_w <= clipped request <= max_w``.
2. **Overhead.** ``overhead_w`` is power a node draws beyond its cap (measured power minus the cap
   in force, e.g. a node capped under its idle power). It counts against every scope: a scope is met
   when the sum over its members of ``cap + overhead`` is at most its limit. NaN, negative and
   infinite overheads count as 0 W (a meter glitch carries no information); finite ones above
   :data:`MAX_NODE_W` count as :data:`MAX_NODE_W` so that sums stay finite.
3. **Scopes**, applied in this order, each only ever lowering caps:

   a. every group of every ``GroupLevel``, innermost level first (rack, then PDU);
   b. the non-Critical scope: all nodes with priority >= 1 together within
      ``budget_w - reserve_w - critical_reserve_w`` (the Critical reserve is power that no
      lower-priority node may use);
   c. the facility: all nodes within ``budget_w - reserve_w``.

   A NaN in ``budget_w`` or a reserve makes the limits it enters 0 W (an unknown budget is treated
   as no budget); a negative reserve counts as 0 W (a reserve never adds power); ``budget_w = inf``
   means unlimited.
4. **Lowest priority first.** A scope over its limit by ``E`` W sheds ``E`` from its members:
   Background down to its floor, then Research, Development, Production, Critical, each level fully
   at its floor before the next more important level is touched. Within one level the cut is
   proportional to ``cap - floor``, so equal nodes are treated equally. Floors are the base caps
   first. Only if the scope cannot be met (to the tolerance of rule 5) with every member at its base,
   or below it where an earlier scope already cut into the emergency floors, is the same lowest-first
   pass repeated down to the *emergency floors* ``base_w * (1 - emergency_cut[priority])``, and the
   nodes cut below their base are flagged ``emergency``. Critical's cut is 0 (enforced), so a
   Critical node never goes below its base. If even the emergency floors do not fit, every member
   of that scope sits exactly at its emergency floor and ``infeasible`` is set.
5. **Tolerance.** A scope that can be met satisfies ``sum(cap + overhead) <= limit + 1e-9 *
   max(1, |limit|)`` (summed with ``np.bincount``); a scope whose emergency floors plus overheads
   exceed that bound is the only way to get ``infeasible``.
6. **Determinism.** No randomness; the same inputs give bitwise the same outputs, and node order
   matters only through floating-point summation order (permuting the nodes permutes the caps to
   within round-off).
7. **Attribution.** ``binding_level`` names the innermost scope that lowered each node's cap, and
   :func:`count_priority_inversions` of the result is 0 (its docstring defines an inversion).

The rule behind the priorities and emergency cuts is the seed's over-consumption rule:
"Development and below may be cut by up to 50 %, higher priorities by up to 20 %, Critical never
below its base" (:data:`DEFAULT_EMERGENCY_CUT`).

Limitations:

* Scopes are met one after another, innermost first, not by one global optimisation. A node cut by
  its rack keeps that cut even when a later, outer scope cuts a same-rack neighbour and so leaves the
  rack with slack; a less important node in *another* rack may then keep power the more important
  node could have used. :func:`count_priority_inversions` therefore only compares a throttled node
  with nodes sharing the group of the innermost scope that cut it (``binding_level``).
* Emergency power is a second tier: power a node holds between its emergency floor and its base is
  only ever taken to bring a scope within its limit, never to lift another node above its base.
* The Critical reserve is a fixed amount: non-Critical nodes stay out of it even while the Critical
  nodes draw less than it.
* Per-node power is bounded by :data:`MAX_NODE_W` (1 GW) to keep every sum finite: a larger
  ``base_w`` or ``max_w`` is rejected when the topology is built, a larger overhead counts as 1 GW.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from powerrl.errors import ConfigError

N_PRIORITIES = 5
PRIORITY_NAMES = ("Critical", "Production", "Development", "Research", "Background")

# Seed over-consumption rule: Development and below may be cut by up to 50 % of their base,
# Production by up to 20 %, Critical never below its base.
DEFAULT_EMERGENCY_CUT = (0.0, 0.2, 0.5, 0.5, 0.5)

# Sanity bound on any single node's cap or overhead: no server draws 1 GW, and the bound keeps sums
# over 1e6 nodes far from float64 overflow (which would turn shed fractions into inf/inf = NaN).
MAX_NODE_W = 1e9

# Relative tolerance of a met scope: sum(cap + overhead) <= limit + REL_TOL * max(1, |limit|).
REL_TOL = 1e-9

# Passes per scope: the first sheds the excess down to the bases, the second cuts into the emergency
# floors where the bases do not fit, the others only mop up float round-off (the excess is
# load - limit, which loses ~1e-16 * load when load >> limit).
_MAX_PASSES = 4


def _readonly(a: np.ndarray) -> np.ndarray:
    """Own copy, not writeable: a frozen topology must not change under a caller's feet."""
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


def _tol_w(limit_w: np.ndarray) -> np.ndarray:
    """Per-limit tolerance, W; 0 for infinite limits (``-inf + inf`` would be NaN)."""
    limit_w = np.asarray(limit_w, dtype=np.float64)
    tol = REL_TOL * np.maximum(1.0, np.abs(limit_w))
    tol[~np.isfinite(limit_w)] = 0.0
    return tol


def _int_vector(value: object, key_path: str, n: int | None) -> np.ndarray:
    """1-D int64 array from ``value``; rejects floats and bools rather than guessing."""
    a = np.asarray(value)
    if a.ndim != 1:
        raise ConfigError(key_path, f"array of shape {a.shape}", "a 1-D array")
    if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
        raise ConfigError(key_path, f"array of dtype {a.dtype}", "an integer array (int64)")
    if n is not None and a.size != n:
        raise ConfigError(key_path, f"array of length {a.size}", f"one value per node ({n})")
    return _readonly(a.astype(np.int64))


def _float_vector(value: object, key_path: str, n: int | None) -> np.ndarray:
    """1-D float64 array from ``value`` with its shape checked."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(key_path, value, "an array of numbers (W)") from exc
    if a.ndim != 1:
        raise ConfigError(key_path, f"array of shape {a.shape}", "a 1-D array")
    if n is not None and a.size != n:
        raise ConfigError(key_path, f"array of length {a.size}", f"one value per node ({n})")
    return _readonly(a)


@dataclass(frozen=True, eq=False)
class GroupLevel:
    """One level of the power tree: a partition of the nodes into groups, each with a power limit.

    Attributes:
        name: level name used in messages, e.g. ``"rack"`` or ``"pdu"``.
        group_of_node: ``[n]`` int64, group index of each node, ``0 .. n_groups - 1``. A group without
            members is allowed (its limit is then trivially met).
        limit_w: ``[n_groups]`` float64 power limit of each group, W; ``+inf`` = unlimited. Must be
            >= 0 (a limit below the group's emergency floors is allowed and makes that group
            infeasible, it is not an error here).

    The arrays are copied and made read-only on construction.
    """

    name: str
    group_of_node: np.ndarray
    limit_w: np.ndarray
    limit_tol_w: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("level.name", self.name, "a non-empty string such as 'rack' or 'pdu'")
        group = _int_vector(self.group_of_node, f"{self.name}.group_of_node", None)
        limit_w = _float_vector(self.limit_w, f"{self.name}.limit_w", None)
        if group.size:
            bad = np.flatnonzero((group < 0) | (group >= limit_w.size))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"{self.name}.group_of_node[{i}]", int(group[i]),
                                  f"a group index in 0..{limit_w.size - 1} (one limit_w per group)")
        bad = np.flatnonzero(~(limit_w >= 0))  # also catches NaN
        if bad.size:
            g = int(bad[0])
            raise ConfigError(f"{self.name}.limit_w[{g}]", float(limit_w[g]), "a limit >= 0 W (+inf = unlimited)")
        object.__setattr__(self, "group_of_node", group)
        object.__setattr__(self, "limit_w", limit_w)
        object.__setattr__(self, "limit_tol_w", _readonly(_tol_w(limit_w)))

    @property
    def n_groups(self) -> int:
        """Number of groups at this level (``len(limit_w)``)."""
        return int(self.limit_w.size)


@dataclass(frozen=True, eq=False)
class _Scope:
    """A partition of the nodes that one limit vector applies to (internal, prebuilt per topology)."""

    index: int  # the value written to Projection.binding_level for nodes this scope cuts
    group: np.ndarray  # [n] int64 group of each node
    key: np.ndarray  # [n] int64 group * N_PRIORITIES + priority, the (group, priority) bincount slot
    n_groups: int


@dataclass(frozen=True, eq=False)
class PowerTopology:
    """Nodes, their priorities and cap ranges, and the nested power groups above them.

    Attributes:
        priority: ``[n]`` int64, 0 = Critical, 1 = Production, 2 = Development, 3 = Research,
            4 = Background (a larger number is cut first).
        base_w: ``[n]`` guaranteed base cap (the floor outside emergencies), W; >= 0.
        max_w: ``[n]`` maximum cap, W; ``base_w <= max_w <= MAX_NODE_W``, finite.
        levels: power-group levels, innermost first (rack, then PDU); may be empty. Each level must
            nest in the next: all nodes of one inner group lie in one outer group.
        emergency_cut: per priority, the fraction of the base that may be cut in an emergency, in
            ``[0, 1]``; the emergency floor is ``base_w * (1 - cut)``. ``emergency_cut[0]`` must be 0:
            Critical never goes below its base.
        min_w: optional ``[n]`` lowest cap the hardware honours, W (a simulated node never draws less
            than its idle power; RAPL has ``constraint_*_min_power_uw``): emergency floors never go
            below ``min(min_w, base_w)``, since a cap the node cannot meet would only show up as
            overhead next period.
        emergency_floor_w: ``[n]`` derived, ``max(base_w * (1 - emergency_cut[priority]),
            min(min_w, base_w))``, W.

    Arrays are copied and made read-only on construction, and validated there (``ConfigError``, a
    ``ValueError``, naming the offending entry), so :func:`project_caps` need not re-check them.
    """

    priority: np.ndarray
    base_w: np.ndarray
    max_w: np.ndarray
    levels: tuple[GroupLevel, ...] = ()
    emergency_cut: tuple[float, float, float, float, float] = DEFAULT_EMERGENCY_CUT
    min_w: np.ndarray | None = None
    emergency_floor_w: np.ndarray = field(init=False, repr=False)
    _scopes: tuple[_Scope, ...] = field(init=False, repr=False)
    _can_go_below_base: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        priority = _int_vector(self.priority, "topology.priority", None)
        n = priority.size
        if n == 0:
            raise ConfigError("topology.priority", "empty array", "at least one node")
        bad = np.flatnonzero((priority < 0) | (priority >= N_PRIORITIES))
        if bad.size:
            i = int(bad[0])
            raise ConfigError(f"topology.priority[{i}]", int(priority[i]),
                              "0..4 (0 Critical, 1 Production, 2 Development, 3 Research, 4 Background)")
        base_w = _float_vector(self.base_w, "topology.base_w", n)
        max_w = _float_vector(self.max_w, "topology.max_w", n)
        for name, a in (("base_w", base_w), ("max_w", max_w)):
            bad = np.flatnonzero(~np.isfinite(a) | (a < 0) | (a > MAX_NODE_W))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"topology.{name}[{i}]", float(a[i]), f"a finite cap in [0, {MAX_NODE_W:g}] W")
        bad = np.flatnonzero(base_w > max_w)
        if bad.size:
            i = int(bad[0])
            raise ConfigError(f"topology.base_w[{i}]", float(base_w[i]), f"<= max_w[{i}] = {float(max_w[i])} W")

        cut = tuple(self.emergency_cut)
        if len(cut) != N_PRIORITIES:
            raise ConfigError("topology.emergency_cut", cut, f"{N_PRIORITIES} fractions, one per priority")
        for p, c in enumerate(cut):
            if not (isinstance(c, int | float | np.floating | np.integer) and 0.0 <= float(c) <= 1.0):
                raise ConfigError(f"topology.emergency_cut[{p}]", c,
                                  f"a fraction of the base in [0, 1] ({PRIORITY_NAMES[p]})")
        if float(cut[0]) != 0.0:
            raise ConfigError("topology.emergency_cut[0]", cut[0], "0.0: Critical never goes below its base")
        cut_f = (0.0, float(cut[1]), float(cut[2]), float(cut[3]), float(cut[4]))

        levels = tuple(self.levels)
        names: set[str] = set()
        for k, level in enumerate(levels):
            if not isinstance(level, GroupLevel):
                raise ConfigError(f"topology.levels[{k}]", level, "a GroupLevel")
            if level.name in names:
                raise ConfigError(f"topology.levels[{k}].name", level.name, "a name not used by another level")
            names.add(level.name)
            if level.group_of_node.size != n:
                raise ConfigError(f"{level.name}.group_of_node", f"array of length {level.group_of_node.size}",
                                  f"one group index per node ({n})")
        for k in range(len(levels) - 1):
            inner, outer = levels[k], levels[k + 1]
            # Writing in reverse makes the last write the first member's, so each inner group's parent
            # is its first node's outer group; comparing back finds strays in O(N), no loop over groups.
            parent = np.full(inner.n_groups, -1, dtype=np.int64)
            parent[inner.group_of_node[::-1]] = outer.group_of_node[::-1]
            bad = np.flatnonzero(parent[inner.group_of_node] != outer.group_of_node)
            if bad.size:
                i = int(bad[0])
                g = int(inner.group_of_node[i])
                raise ConfigError(f"{outer.name}.group_of_node[{i}]", int(outer.group_of_node[i]),
                                  f"{int(parent[g])}, the {outer.name} of the first node of {inner.name} {g}: levels "
                                  "are innermost first and each group must lie inside one group of the next level")

        em_floor_w = base_w * (1.0 - np.asarray(cut_f)[priority])
        if self.min_w is not None:
            min_w = _float_vector(self.min_w, "topology.min_w", n)
            bad = np.flatnonzero(~np.isfinite(min_w) | (min_w < 0))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"topology.min_w[{i}]", float(min_w[i]), "a finite power >= 0 W")
            em_floor_w = np.maximum(em_floor_w, np.minimum(min_w, base_w))
            object.__setattr__(self, "min_w", _readonly(min_w))
        scopes = [_Scope(k, lv.group_of_node, _readonly(lv.group_of_node * N_PRIORITIES + priority), lv.n_groups)
                  for k, lv in enumerate(levels)]
        # Non-Critical scope: group 0 = priority >= 1, group 1 = Critical (unlimited).
        nc_group = _readonly(np.where(priority >= 1, 0, 1).astype(np.int64))
        scopes.append(_Scope(len(levels), nc_group, _readonly(nc_group * N_PRIORITIES + priority), 2))
        scopes.append(_Scope(len(levels) + 1, _readonly(np.zeros(n, dtype=np.int64)), priority, 1))

        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "base_w", base_w)
        object.__setattr__(self, "max_w", max_w)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "emergency_cut", cut_f)
        object.__setattr__(self, "emergency_floor_w", _readonly(em_floor_w))
        object.__setattr__(self, "_scopes", tuple(scopes))
        object.__setattr__(self, "_can_go_below_base", _readonly(em_floor_w < base_w))

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.priority.size)

    @property
    def non_critical_level(self) -> int:
        """``binding_level`` value of the non-Critical scope (``len(levels)``)."""
        return len(self.levels)

    @property
    def facility_level(self) -> int:
        """``binding_level`` value of the facility scope (``len(levels) + 1``)."""
        return len(self.levels) + 1


@dataclass(eq=False)
class Projection:
    """Result of :func:`project_caps`.

    Attributes:
        caps_w: ``[n]`` projected caps, W; finite, ``floor_w <= caps_w <= clipped request``.
        floor_w: ``[n]`` floor in effect per node, W: the base, or the emergency floor where
            ``emergency`` is set.
        emergency: ``[n]`` bool, some scope had to cut the node below its base (its floor was lowered
            to the emergency floor). Never set for Critical nodes or nodes whose emergency floor equals
            their base.
        infeasible: some scope could not be met even with all its members at their emergency floors;
            those members sit exactly at their emergency floors.
        binding_level: ``[n]`` int64, the innermost scope whose limit lowered this node's cap:
            ``0 .. len(levels) - 1`` a group level, ``len(levels)`` the non-Critical scope,
            ``len(levels) + 1`` the facility, -1 not cut by any scope.
        shed_w: total power removed from the clipped requests, W (``sum(clipped - caps_w)``).
    """

    caps_w: np.ndarray
    floor_w: np.ndarray
    emergency: np.ndarray
    infeasible: bool
    binding_level: np.ndarray
    shed_w: float


def _node_vector(value: object, n: int, name: str) -> np.ndarray:
    """Float64 ``[n]`` view or copy of a hot-path input; only the shape is the caller's contract."""
    a = np.asarray(value, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},): one value per node of the topology")
    return a


def clip_requests_w(requested_w: np.ndarray, topo: PowerTopology) -> np.ndarray:
    """Sanitised requests, W: NaN -> base, everything else (+-inf included) clipped to [base, max].

    Raises:
        ValueError: ``requested_w`` is not of shape ``[n]``.
    """
    req = _node_vector(requested_w, topo.n_nodes, "requested_w")
    clipped = np.clip(req, topo.base_w, topo.max_w)  # NaN passes through clip, inf does not
    return np.where(np.isnan(req), topo.base_w, clipped)


def _sanitise_overhead_w(overhead_w: np.ndarray | None, n: int) -> np.ndarray:
    if overhead_w is None:
        return np.zeros(n)
    oh = _node_vector(overhead_w, n, "overhead_w")
    # NaN / inf / negative -> 0 W: a glitching meter must not drive a whole scope to its floors.
    oh = np.where(np.isfinite(oh) & (oh > 0.0), oh, 0.0)
    return np.minimum(oh, MAX_NODE_W)


def _scalar_limits_w(budget_w: float, reserve_w: float, critical_reserve_w: float) -> tuple[float, float]:
    """(non-Critical limit, facility limit), W, with the NaN / negative rules of the module docstring."""
    budget = float(budget_w)
    reserve = float(reserve_w)
    critical = float(critical_reserve_w)
    reserve = 0.0 if reserve < 0.0 else reserve  # NaN stays NaN (comparison is False)
    critical = 0.0 if critical < 0.0 else critical
    facility = budget - reserve
    non_critical = facility - critical
    # NaN (a NaN input, or inf - inf): the budget is unknown, so assume none is available.
    facility = 0.0 if np.isnan(facility) else facility
    non_critical = 0.0 if np.isnan(non_critical) else non_critical
    return non_critical, facility


def _shed(cap_w: np.ndarray, overhead_w: np.ndarray, excess_w: np.ndarray, limit_w: np.ndarray,
          tol_w: np.ndarray, topo: PowerTopology, scope: _Scope, emergency: np.ndarray,
          binding: np.ndarray, done: np.ndarray, allow_emergency: bool) -> bool:
    """Remove ``excess_w[g]`` W from each group ``g`` (0 = leave alone), lowest priority first.

    Ten tiers in shedding order: priorities 4..0 down to their bases, then 4..0 down to their
    emergency floors. Per (group, tier) the headroom ``H`` comes from one bincount; the tier is cut by
    ``frac = clip((excess - headroom of earlier tiers) / H, 0, 1)`` of each member's headroom. With
    ``allow_emergency`` False only the base tiers are cut. Updates ``cap_w``, ``emergency``,
    ``binding`` and ``done`` (infeasible groups) in place; returns whether a group was infeasible.
    """
    n_groups = scope.n_groups
    em_floor_w = topo.emergency_floor_w
    # A node already below its base (an earlier scope's emergency) has no base-tier headroom.
    base_floor_w = np.minimum(topo.base_w, cap_w)
    head1_w = cap_w - base_floor_w
    head2_w = base_floor_w - em_floor_w
    slots = n_groups * N_PRIORITIES
    h1 = np.bincount(scope.key, weights=head1_w, minlength=slots).reshape(n_groups, N_PRIORITIES)
    h2 = np.bincount(scope.key, weights=head2_w, minlength=slots).reshape(n_groups, N_PRIORITIES)
    tiers_w = np.concatenate((h1[:, ::-1], h2[:, ::-1]), axis=1)  # [G, 10], shedding order
    cum_w = np.cumsum(tiers_w, axis=1)
    before_w = np.zeros_like(tiers_w)
    before_w[:, 1:] = cum_w[:, :-1]  # exclusive prefix: no cum - tier cancellation
    rem_w = excess_w[:, None] - before_w
    # Zero headroom: the tier counts as fully cut if any excess reaches it (frac 1), else untouched.
    frac = np.divide(rem_w, tiers_w, out=(rem_w > 0.0).astype(np.float64), where=tiers_w > 0.0)
    np.clip(frac, 0.0, 1.0, out=frac)
    # Emergency tiers only where the bases miss the limit by more than the tolerance: a scope whose
    # bases fit to within round-off must not flag emergencies (it is met to tolerance as it is).
    if allow_emergency:
        frac[:, N_PRIORITIES:] *= (excess_w - cum_w[:, N_PRIORITIES - 1] > tol_w)[:, None]
    else:
        frac[:, N_PRIORITIES:] = 0.0
    f1 = np.ascontiguousarray(frac[:, N_PRIORITIES - 1::-1]).ravel()[scope.key]  # tier of priority p: 4 - p
    f2 = np.ascontiguousarray(frac[:, :N_PRIORITIES - 1:-1]).ravel()[scope.key]  # tier 9 - p
    in_emergency = f2 > 0.0
    touched = (f1 > 0.0) | in_emergency
    # floor + (1 - f) * headroom is exactly the floor at f = 1 and never below it.
    new_w = np.where(in_emergency, em_floor_w + (1.0 - f2) * head2_w + (1.0 - f1) * head1_w,
                     base_floor_w + (1.0 - f1) * head1_w)
    new_w = np.minimum(new_w, cap_w)  # round-off must never raise a cap
    binding[touched & (new_w < cap_w) & (binding < 0)] = scope.index
    np.copyto(cap_w, new_w, where=touched)
    emergency |= in_emergency & topo._can_go_below_base

    over_all_tiers = excess_w > cum_w[:, -1]
    if not over_all_tiers.any():
        return False
    min_load_w = np.bincount(scope.group, weights=em_floor_w + overhead_w, minlength=n_groups)
    infeasible_g = over_all_tiers & (min_load_w > limit_w + tol_w)
    if not infeasible_g.any():
        return False
    members = infeasible_g[scope.group]
    binding[members & (cap_w > em_floor_w) & (binding < 0)] = scope.index
    np.copyto(cap_w, em_floor_w, where=members)  # exactly at the floors, not within round-off
    emergency |= members & topo._can_go_below_base
    done |= infeasible_g
    return True


def _meet_scope(cap_w: np.ndarray, overhead_w: np.ndarray, topo: PowerTopology, scope: _Scope,
                limit_w: np.ndarray, tol_w: np.ndarray, emergency: np.ndarray, binding: np.ndarray) -> bool:
    """Bring every group of ``scope`` within its limit (module docstring, rules 3-5); True if infeasible."""
    done = np.zeros(scope.n_groups, dtype=bool)
    threshold_w: np.ndarray | float = 0.0  # first pass: shed any excess at all
    infeasible = False
    for attempt in range(_MAX_PASSES):
        load_w = np.bincount(scope.group, weights=cap_w + overhead_w, minlength=scope.n_groups)
        excess_w = load_w - limit_w
        over = (excess_w > threshold_w) & ~done
        if not over.any():
            break
        # The first pass stops at the bases: when load >> limit, "excess minus base headroom" carries
        # ~1e-16 * load of round-off, too much to decide an emergency on. The next pass decides it from
        # a load already down at the bases. Later passes only remove what exceeds the tolerance.
        infeasible |= _shed(cap_w, overhead_w, np.where(over, excess_w, 0.0), limit_w, tol_w, topo, scope,
                            emergency, binding, done, allow_emergency=attempt > 0)
        threshold_w = tol_w
    return infeasible


def project_caps(requested_w: np.ndarray, topo: PowerTopology, budget_w: float, reserve_w: float = 0.0,
                 critical_reserve_w: float = 0.0, overhead_w: np.ndarray | None = None) -> Projection:
    """Project requested caps onto the power limits of ``topo`` (guarantees in the module docstring).

    Args:
        requested_w: ``[n]`` caps the controller wants, W. Any values: NaN -> base, the rest clipped
            to ``[base_w, max_w]``.
        topo: the validated topology.
        budget_w: facility power budget, W (``inf`` = unlimited, NaN = treated as 0 W).
        reserve_w: headroom kept unused below the budget, W (e.g. for measurement error or a ramp);
            negative counts as 0.
        critical_reserve_w: power reserved for Critical nodes, W: all non-Critical nodes together
            stay within ``budget_w - reserve_w - critical_reserve_w``; negative counts as 0.
        overhead_w: ``[n]`` power each node draws beyond its cap, W (measured power minus the cap in
            force; default zeros). Counts against every scope. NaN, inf and negative count as 0.

    Returns:
        A :class:`Projection`. Infeasibility is reported, never raised: the caps are then the safest
        ones available (the emergency floors of the infeasible scope).

    Raises:
        ValueError: ``requested_w`` or ``overhead_w`` is not of shape ``[n]``.
    """
    clipped_w = clip_requests_w(requested_w, topo)
    n = topo.n_nodes
    cap_w = clipped_w.copy()
    oh_w = _sanitise_overhead_w(overhead_w, n)
    emergency = np.zeros(n, dtype=bool)
    binding = np.full(n, -1, dtype=np.int64)
    infeasible = False
    for level, scope in zip(topo.levels, topo._scopes, strict=False):
        infeasible |= _meet_scope(cap_w, oh_w, topo, scope, level.limit_w, level.limit_tol_w, emergency, binding)
    non_critical_w, facility_w = _scalar_limits_w(budget_w, reserve_w, critical_reserve_w)
    nc_limit_w = np.array([non_critical_w, np.inf])
    infeasible |= _meet_scope(cap_w, oh_w, topo, topo._scopes[-2], nc_limit_w, _tol_w(nc_limit_w), emergency,
                              binding)
    fac_limit_w = np.array([facility_w])
    infeasible |= _meet_scope(cap_w, oh_w, topo, topo._scopes[-1], fac_limit_w, _tol_w(fac_limit_w), emergency,
                              binding)
    return Projection(
        caps_w=cap_w,
        floor_w=np.where(emergency, topo.emergency_floor_w, topo.base_w),
        emergency=emergency,
        infeasible=bool(infeasible),
        binding_level=binding,
        shed_w=float(np.sum(clipped_w - cap_w)),
    )


def group_power_w(values_w: np.ndarray, level: GroupLevel) -> np.ndarray:
    """Sum of ``values_w`` over the members of each group of ``level``, W, shape ``[n_groups]``.

    Raises:
        ValueError: ``values_w`` does not have one value per node of ``level``.
    """
    values = _node_vector(values_w, level.group_of_node.size, "values_w")
    return np.bincount(level.group_of_node, weights=values, minlength=level.n_groups)


def _max_priority_in_scope(spare: np.ndarray, topo: PowerTopology, binding: np.ndarray) -> np.ndarray:
    """Per node, the largest priority number among ``spare`` nodes of its binding scope (-1: none).

    The scope is the node's group at its binding level; for the non-Critical scope, the facility and
    -1 (not cut, e.g. a projection of other requests) it is the whole topology.
    """
    prio = topo.priority
    out = np.full(topo.n_nodes, int(prio[spare].max()) if spare.any() else -1, dtype=np.int64)
    for k, level in enumerate(topo.levels):
        sel = binding == k
        if not sel.any():
            continue
        group_max = np.full(level.n_groups, -1, dtype=np.int64)
        np.maximum.at(group_max, level.group_of_node[spare], prio[spare])
        out[sel] = group_max[level.group_of_node[sel]]
    return out


def count_priority_inversions(requested_w: np.ndarray, proj: Projection, topo: PowerTopology,
                              tol_w: float = 1e-6) -> int:
    """Number of nodes throttled while a less important node keeps power they could have had.

    Node ``i`` counts when it is throttled, ``caps_w[i] < clipped request[i] - tol_w``, and some node
    ``j`` with ``priority[j] > priority[i]`` (less important) in ``i``'s binding scope still holds
    spare power: ``j`` must share ``i``'s group at ``i``'s binding level (and so, the levels being
    nested, every level outside it); for the non-Critical and facility scopes any ``j`` qualifies.
    Spare power depends on ``i``'s tier (module docstring, Limitations):

    * ``i`` at or above its base: ``caps_w[j] > base_w[j] + tol_w`` (power below ``j``'s base only
      ever goes to meeting a limit, never to lifting another node above its base);
    * ``i`` below its base (emergency): ``caps_w[j] > floor_w[j] + tol_w``.

    Counts nodes ``i``, not pairs. O(N + G) per level.
    """
    clipped_w = clip_requests_w(requested_w, topo)
    cap_w = np.asarray(proj.caps_w, dtype=np.float64)
    throttled = cap_w < clipped_w - tol_w
    if not throttled.any():
        return 0
    below_base = cap_w < topo.base_w - tol_w
    binding = np.asarray(proj.binding_level)
    worst_any = _max_priority_in_scope(cap_w > np.asarray(proj.floor_w) + tol_w, topo, binding)
    worst_above_base = _max_priority_in_scope(cap_w > topo.base_w + tol_w, topo, binding)
    worst = np.where(below_base, worst_any, worst_above_base)
    return int(np.count_nonzero(throttled & (worst > topo.priority)))
