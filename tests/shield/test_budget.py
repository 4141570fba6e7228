"""Budget projection of the safety shield: invariants over random topologies, hand-computed cases.

The checks below re-derive every scope, limit and tolerance from the module docstring's rules with
plain loops and masks, independent of the vectorised code they check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerrl.errors import ConfigError
from powerrl.shield.budget import (
    DEFAULT_EMERGENCY_CUT,
    GroupLevel,
    PowerTopology,
    Projection,
    count_priority_inversions,
    group_power_w,
    project_caps,
)

REL_TOL = 1e-9


# ---------------------------------------------------------------------------------------------------------------------
# Random cases


@dataclass
class Case:
    topo: PowerTopology
    requested_w: np.ndarray
    budget_w: float
    reserve_w: float
    critical_reserve_w: float
    overhead_w: np.ndarray | None

    def project(self) -> Projection:
        return project_caps(self.requested_w, self.topo, self.budget_w, self.reserve_w, self.critical_reserve_w,
                            self.overhead_w)


# Per case, the odds of each kind of limit: (unlimited, 0 W, below the emergency floors, between the
# emergency floors and the bases, between the bases and 1.1x the maxima). "mild" needs an emergency
# only through the reserves, "emergency" often needs one but is mostly feasible, "harsh" is often not.
LIMIT_REGIMES = {
    "mild": (0.15, 0.0, 0.0, 0.0, 0.85),
    "emergency": (0.1, 0.0, 0.0, 0.4, 0.5),
    "harsh": (0.1, 0.1, 0.2, 0.3, 0.3),
}


def _limit(rng: np.random.Generator, mode: str, em_w: float, base_w: float, max_w: float) -> float:
    """A limit for a scope whose members' emergency floors, bases and maxima sum to em_w, base_w, max_w."""
    kind = rng.choice(5, p=LIMIT_REGIMES[mode])
    if kind == 0:
        return float(np.inf)
    if kind == 1:
        return 0.0
    if kind == 2:
        return float(rng.uniform(0.0, em_w))  # below the floors: infeasible (unless they are 0)
    if kind == 3:
        return float(rng.uniform(em_w, base_w))  # bases do not fit: emergency
    return float(rng.uniform(base_w, 1.1 * max_w))  # binding or slack


@st.composite
def cases(draw: st.DrawFn, max_n: int = 300) -> Case:
    n = draw(st.integers(1, max_n))
    n_levels = draw(st.integers(0, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ties = draw(st.booleans())  # equal nodes stress the proportional rule and zero-headroom tiers
    mode = draw(st.sampled_from(sorted(LIMIT_REGIMES)))

    priority = rng.integers(0, 5, n)
    if ties:
        base_w = rng.choice([0.0, 50.0, 100.0], n)
        max_w = base_w + rng.choice([0.0, 100.0, 200.0], n)
    else:
        base_w = rng.uniform(0.0, 300.0, n) * (rng.random(n) > 0.05)
        max_w = base_w + rng.uniform(0.0, 400.0, n) * (rng.random(n) > 0.05)
    if draw(st.booleans()):
        cut = DEFAULT_EMERGENCY_CUT
    else:
        c = rng.choice([0.0, 0.3, 1.0, rng.uniform()], 4)
        cut = (0.0, float(c[0]), float(c[1]), float(c[2]), float(c[3]))
    em_floor_w = base_w * (1.0 - np.asarray(cut)[priority])

    levels: list[GroupLevel] = []
    if n_levels:
        n_racks = int(rng.integers(1, max(2, n // 3)))
        rack = rng.integers(0, n_racks, n)
        names_groups = [("rack", rack)]
        if n_levels == 2:
            n_pdus = int(rng.integers(1, n_racks + 1))
            pdu_of_rack = rng.integers(0, n_pdus, n_racks)
            names_groups.append(("pdu", pdu_of_rack[rack]))
        for name, group in names_groups:
            n_groups = int(group.max()) + 1 + int(rng.integers(0, 2))  # sometimes an empty group
            limits = np.empty(n_groups)
            for g in range(n_groups):
                members = group == g
                limits[g] = _limit(rng, mode, float(em_floor_w[members].sum()), float(base_w[members].sum()),
                                   float(max_w[members].sum()))
            levels.append(GroupLevel(name, group, limits))
    topo = PowerTopology(priority, base_w, max_w, tuple(levels), cut)

    kinds = rng.integers(0, 10, n)
    requested_w = rng.uniform(-50.0, max_w + 100.0)
    requested_w[kinds == 0] = np.nan
    requested_w[kinds == 1] = np.inf
    requested_w[kinds == 2] = -np.inf
    requested_w[kinds == 3] = 1e300
    requested_w[kinds == 4] = -1e300
    requested_w[kinds == 5] = max_w[kinds == 5]

    overhead_w = None
    if draw(st.booleans()):
        overhead_w = rng.uniform(0.0, 40.0, n) * (rng.random(n) < 0.3)
        junk = rng.integers(0, 12, n)
        overhead_w[junk == 0] = np.nan
        overhead_w[junk == 1] = np.inf
        overhead_w[junk == 2] = -np.inf
        overhead_w[junk == 3] = -25.0

    total_max_w = float(max_w.sum())
    budget_w = _limit(rng, mode, float(em_floor_w.sum()), float(base_w.sum()), total_max_w)
    if mode == "harsh":
        budget_w = float(rng.choice([budget_w, np.nan, -100.0], p=[0.8, 0.1, 0.1]))

    def reserve() -> float:
        return float(rng.choice([0.0, rng.uniform(0.0, 0.1 * total_max_w + 1.0), -10.0, np.nan],
                                p=[0.45, 0.45, 0.05, 0.05]))

    return Case(topo, requested_w, float(budget_w), reserve(), reserve(), overhead_w)


# ---------------------------------------------------------------------------------------------------------------------
# Independent re-derivation of the rules


def clipped_w(case: Case) -> np.ndarray:
    t = case.topo
    return np.where(np.isnan(case.requested_w), t.base_w, np.clip(case.requested_w, t.base_w, t.max_w))


def overhead_w(case: Case) -> np.ndarray:
    if case.overhead_w is None:
        return np.zeros(case.topo.n_nodes)
    oh = case.overhead_w
    return np.where(np.isfinite(oh) & (oh > 0), oh, 0.0)


def scopes(case: Case) -> list[tuple[int, np.ndarray, float]]:
    """Every (binding index, member mask, limit W) in the order the rules apply them."""
    t = case.topo
    out = []
    for k, level in enumerate(t.levels):
        for g in range(level.n_groups):
            out.append((k, level.group_of_node == g, float(level.limit_w[g])))
    budget = case.budget_w
    reserve = 0.0 if case.reserve_w < 0 else case.reserve_w
    critical = 0.0 if case.critical_reserve_w < 0 else case.critical_reserve_w
    facility = budget - reserve
    non_critical = facility - critical
    facility = 0.0 if np.isnan(facility) else facility
    non_critical = 0.0 if np.isnan(non_critical) else non_critical
    out.append((len(t.levels), t.priority >= 1, non_critical))
    out.append((len(t.levels) + 1, np.ones(t.n_nodes, dtype=bool), facility))
    return out


def tol_w(limit_w: float) -> float:
    return REL_TOL * max(1.0, abs(limit_w)) if np.isfinite(limit_w) else 0.0


def brute_force_inversions(case: Case, proj: Projection, tol: float = 1e-6) -> int:
    """O(N^2) count of the inversions defined in ``count_priority_inversions``'s docstring."""
    t = case.topo
    req = clipped_w(case)
    cap, floor, base = proj.caps_w, proj.floor_w, t.base_w
    count = 0
    for i in range(t.n_nodes):
        if not cap[i] < req[i] - tol:
            continue
        b = int(proj.binding_level[i])
        for j in range(t.n_nodes):
            if t.priority[j] <= t.priority[i]:
                continue
            if 0 <= b < len(t.levels) and t.levels[b].group_of_node[j] != t.levels[b].group_of_node[i]:
                continue
            spare_above = floor[j] if cap[i] < base[i] - tol else base[j]
            if cap[j] > spare_above + tol:
                count += 1
                break
    return count


def check_invariants(case: Case, proj: Projection) -> None:
    t = case.topo
    req = clipped_w(case)
    oh = overhead_w(case)
    em = t.emergency_floor_w
    cap = proj.caps_w

    assert cap.shape == (t.n_nodes,) and cap.dtype == np.float64
    assert np.all(np.isfinite(cap))
    assert np.all(proj.floor_w <= cap)
    assert np.all(cap <= t.max_w)
    assert np.all(cap <= req)
    np.testing.assert_array_equal(proj.floor_w, np.where(proj.emergency, em, t.base_w))
    critical = t.priority == 0
    assert np.all(cap[critical] >= t.base_w[critical])
    assert not proj.emergency[critical].any()
    assert np.all((cap >= t.base_w) | proj.emergency)
    assert proj.shed_w == pytest.approx(float(np.sum(req - cap)), rel=1e-9, abs=1e-6)
    # Only a scope cuts caps, and the innermost one that did is recorded.
    assert np.all((proj.binding_level >= 0) | (cap == req))
    assert np.all((proj.binding_level >= -1) & (proj.binding_level <= len(t.levels) + 1))

    any_infeasible = False
    bases_fit_everywhere = True
    for _, members, limit in scopes(case):
        tol = tol_w(limit)
        load = float(np.sum(cap[members] + oh[members]))
        min_load = float(np.sum(em[members] + oh[members]))
        base_load = float(np.sum(t.base_w[members] + oh[members]))
        bases_fit_everywhere &= base_load <= limit + tol - 1e-12 * base_load
        if min_load > limit + tol:
            any_infeasible = True
            if min_load > limit + tol + 1e-6 * max(1.0, abs(limit)):  # clear of summation-order round-off
                np.testing.assert_array_equal(cap[members], em[members])
            np.testing.assert_allclose(cap[members], em[members], rtol=1e-9, atol=1e-9)
        else:
            slack = 1e-12 * float(np.sum(np.abs(cap[members]) + oh[members]))  # summation-order round-off
            assert load <= limit + tol + slack, (load, limit)
    assert proj.infeasible == any_infeasible
    if bases_fit_everywhere:
        assert not proj.emergency.any()

    assert count_priority_inversions(case.requested_w, proj, t) == 0


# ---------------------------------------------------------------------------------------------------------------------
# Properties


@given(cases())
def test_invariants_hold_for_any_topology_and_request(case: Case) -> None:
    check_invariants(case, case.project())


@given(cases(max_n=40))
def test_no_inversions_by_brute_force(case: Case) -> None:
    assert brute_force_inversions(case, case.project()) == 0


@given(cases(max_n=40), st.integers(0, 2**32 - 1))
def test_inversion_counter_matches_brute_force_on_arbitrary_caps(case: Case, seed: int) -> None:
    # Any caps in [floor, max] with any binding levels: the counter must find what the O(N^2) loop finds,
    # including the inversions a correct projection never produces.
    rng = np.random.default_rng(seed)
    t = case.topo
    emergency = (rng.random(t.n_nodes) < 0.3) & (t.priority > 0)
    floor = np.where(emergency, t.emergency_floor_w, t.base_w)
    cap = floor + (t.max_w - floor) * rng.choice([0.0, 1.0, rng.uniform()], t.n_nodes)
    binding = rng.integers(-1, len(t.levels) + 2, t.n_nodes)
    fake = Projection(cap, floor, emergency, False, binding, 0.0)
    assert count_priority_inversions(case.requested_w, fake, t) == brute_force_inversions(case, fake)


@given(cases())
def test_deterministic(case: Case) -> None:
    a, b = case.project(), case.project()
    for name in ("caps_w", "floor_w", "emergency", "binding_level"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert (a.infeasible, a.shed_w) == (b.infeasible, b.shed_w)


@given(cases(), st.integers(0, 2**32 - 1))
def test_permuting_nodes_permutes_caps(case: Case, seed: int) -> None:
    t = case.topo
    perm = np.random.default_rng(seed).permutation(t.n_nodes)
    levels = tuple(GroupLevel(lv.name, lv.group_of_node[perm], lv.limit_w) for lv in t.levels)
    permuted = Case(PowerTopology(t.priority[perm], t.base_w[perm], t.max_w[perm], levels, t.emergency_cut),
                    case.requested_w[perm], case.budget_w, case.reserve_w, case.critical_reserve_w,
                    None if case.overhead_w is None else case.overhead_w[perm])
    a, b = case.project(), permuted.project()
    np.testing.assert_allclose(b.caps_w, a.caps_w[perm], rtol=1e-9, atol=1e-9)
    assert a.infeasible == b.infeasible


# ---------------------------------------------------------------------------------------------------------------------
# Hand-computed examples


def flat(priority: list[int], base_w: float = 100.0, max_w: float = 300.0, **kw) -> PowerTopology:
    n = len(priority)
    return PowerTopology(np.array(priority), np.full(n, base_w), np.full(n, max_w), **kw)


def test_budget_cut_hits_background_only() -> None:
    topo = flat([0, 1, 2, 3, 4])
    proj = project_caps(np.full(5, 300.0), topo, budget_w=1400.0)
    np.testing.assert_array_equal(proj.caps_w, [300, 300, 300, 300, 200])
    np.testing.assert_array_equal(proj.binding_level, [-1, -1, -1, -1, topo.facility_level])
    assert proj.shed_w == 100.0 and not proj.emergency.any() and not proj.infeasible


def test_background_at_floor_then_research_shares_proportionally() -> None:
    topo = PowerTopology(np.array([3, 3, 4]), np.array([100.0, 100.0, 50.0]), np.full(3, 400.0))
    # 750 W requested, 500 W budget: Background gives its 200 W of headroom, then Research the last
    # 50 W in proportion to its headroom (200 W and 100 W).
    proj = project_caps(np.array([300.0, 200.0, 250.0]), topo, budget_w=500.0)
    np.testing.assert_allclose(proj.caps_w, [300 - 50 * 2 / 3, 200 - 50 / 3, 50], rtol=1e-12)
    assert proj.caps_w.sum() == pytest.approx(500.0, rel=1e-12)
    assert count_priority_inversions(np.array([300.0, 200.0, 250.0]), proj, topo) == 0


def test_equal_nodes_are_cut_equally() -> None:
    topo = flat([2] * 7)
    proj = project_caps(np.full(7, 250.0), topo, budget_w=1000.0)
    np.testing.assert_allclose(proj.caps_w, np.full(7, 1000.0 / 7), rtol=1e-12)


def test_rack_over_its_limit_cuts_only_inside_that_rack() -> None:
    rack = GroupLevel("rack", np.array([0, 0, 1, 1]), np.array([400.0, np.inf]))
    topo = flat([1, 4, 4, 4], levels=(rack,))
    proj = project_caps(np.full(4, 300.0), topo, budget_w=10_000.0)
    # Rack 0 sheds its 200 W excess from its Background node; rack 1's Background nodes keep theirs.
    np.testing.assert_array_equal(proj.caps_w, [300, 100, 300, 300])
    np.testing.assert_array_equal(proj.binding_level, [-1, 0, -1, -1])
    np.testing.assert_array_equal(group_power_w(proj.caps_w, rack), [400, 600])


def test_pdu_limit_applies_after_racks() -> None:
    rack = GroupLevel("rack", np.array([0, 0, 1, 1]), np.array([500.0, 500.0]))
    pdu = GroupLevel("pdu", np.array([0, 0, 0, 0]), np.array([800.0]))
    topo = flat([1, 4, 2, 3], levels=(rack, pdu))
    proj = project_caps(np.full(4, 300.0), topo, budget_w=np.inf)
    # Racks: rack 0 cuts Background to 200, rack 1 cuts Research to 200 (total 1000). PDU: 200 W more,
    # Background first (100 W of headroom left), then Research (100 W).
    np.testing.assert_allclose(proj.caps_w, [300, 100, 300, 100])
    np.testing.assert_array_equal(proj.binding_level, [-1, 0, -1, 0])


def test_critical_reserve_keeps_non_critical_nodes_below_their_share() -> None:
    topo = flat([0, 1, 1])
    proj = project_caps(np.full(3, 300.0), topo, budget_w=900.0, reserve_w=50.0, critical_reserve_w=300.0)
    # Non-Critical nodes share 900 - 50 - 300 = 550 W; Critical keeps its full request.
    np.testing.assert_allclose(proj.caps_w, [300, 275, 275])
    np.testing.assert_array_equal(proj.binding_level, [-1, topo.non_critical_level, topo.non_critical_level])
    assert proj.caps_w[1:].sum() <= 550.0


def test_infeasible_budget_drops_to_emergency_floors_and_critical_stays_at_base() -> None:
    topo = flat([0, 1, 2, 4], max_w=200.0)
    proj = project_caps(np.full(4, 200.0), topo, budget_w=200.0)
    # Emergency floors 100, 80, 50, 50 = 280 W > 200 W: nothing more can be done.
    np.testing.assert_array_equal(proj.caps_w, [100, 80, 50, 50])
    np.testing.assert_array_equal(proj.emergency, [False, True, True, True])
    np.testing.assert_array_equal(proj.floor_w, [100, 80, 50, 50])
    assert proj.infeasible


def test_emergency_cuts_lowest_priority_first_when_feasible() -> None:
    topo = flat([0, 1, 2, 4], max_w=200.0)
    proj = project_caps(np.full(4, 200.0), topo, budget_w=300.0)
    # Bases (400 W) do not fit; the last 100 W come from Background (50 W), then Development (50 W).
    np.testing.assert_array_equal(proj.caps_w, [100, 100, 50, 50])
    np.testing.assert_array_equal(proj.emergency, [False, False, True, True])
    assert not proj.infeasible


def test_overhead_counts_against_the_budget() -> None:
    topo = flat([1, 4])
    proj = project_caps(np.full(2, 300.0), topo, budget_w=600.0, overhead_w=np.array([0.0, 50.0]))
    np.testing.assert_array_equal(proj.caps_w, [300, 250])
    # A meter glitch (NaN, negative, inf) counts as no overhead.
    for junk in (np.array([np.nan, -10.0]), np.array([np.inf, -np.inf])):
        np.testing.assert_array_equal(project_caps(np.full(2, 300.0), topo, 600.0, overhead_w=junk).caps_w,
                                      [300, 300])


def test_bad_request_values_are_sanitised() -> None:
    topo = flat([1, 1, 1, 1, 1])
    proj = project_caps(np.array([np.nan, np.inf, -np.inf, -5.0, 1e308]), topo, budget_w=np.inf)
    np.testing.assert_array_equal(proj.caps_w, [100, 300, 100, 100, 300])


def test_nan_budget_means_no_budget() -> None:
    topo = flat([0, 4])
    proj = project_caps(np.full(2, 300.0), topo, budget_w=float("nan"))
    np.testing.assert_array_equal(proj.caps_w, [100, 50])
    assert proj.infeasible


@pytest.mark.parametrize("spare_w", [0.0, 0.5, 1.0, 17.0])
def test_limit_met_to_tolerance_when_requests_dwarf_it(spare_w: float) -> None:
    # Requests ~1e12 W against a budget of a few W: load - limit loses ~1e-4 W to round-off, far more
    # than the ~1e-9 W tolerance, so only the clean-up pass keeps the invariant (seed 0 leaves
    # 1e-4 W over after one pass); and the bases, which fit, must not be declared an emergency.
    rng = np.random.default_rng(0)
    n = 3000
    base_w = rng.uniform(0.0, 1e-3, n)
    topo = PowerTopology(rng.integers(0, 5, n), base_w, base_w + rng.uniform(1e6, 1e9, n))
    budget_w = float(base_w.sum()) + spare_w
    proj = project_caps(topo.max_w, topo, budget_w=budget_w)
    assert float(np.sum(proj.caps_w)) <= budget_w + 1e-9 * max(1.0, budget_w)
    assert not proj.infeasible and not proj.emergency.any()
    assert count_priority_inversions(topo.max_w, proj, topo) == 0


def test_count_priority_inversions_finds_a_throttled_important_node() -> None:
    topo = flat([1, 4])
    wrong = Projection(np.array([200.0, 300.0]), np.full(2, 100.0), np.zeros(2, bool), False,
                       np.array([topo.facility_level, -1]), 100.0)
    assert count_priority_inversions(np.full(2, 300.0), wrong, topo) == 1


# ---------------------------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"priority": np.array([0, 7])}, "priority[1] = 7"),
    ({"priority": np.array([0.0, 1.0])}, "integer"),
    ({"base_w": np.array([100.0, 400.0])}, "base_w[1] = 400.0"),
    ({"base_w": np.array([np.nan, 100.0])}, "base_w[0] = nan"),
    ({"base_w": np.array([-1.0, 100.0])}, "base_w[0] = -1.0"),
    ({"max_w": np.array([300.0, np.inf])}, "max_w[1] = inf"),
    ({"max_w": np.array([300.0])}, "max_w"),
    ({"emergency_cut": (0.1, 0.2, 0.5, 0.5, 0.5)}, "emergency_cut[0] = 0.1"),
    ({"emergency_cut": (0.0, 1.5, 0.5, 0.5, 0.5)}, "emergency_cut[1] = 1.5"),
    ({"levels": (GroupLevel("rack", np.array([0, 1, 2]), np.ones(3)),)}, "rack.group_of_node"),
    ({"levels": (GroupLevel("rack", np.array([0, 1]), np.ones(2)), GroupLevel("pdu", np.array([0, 0]), np.ones(1)),
                 GroupLevel("row", np.array([0, 1]), np.ones(2)))}, "row.group_of_node[1] = 1"),
])
def test_topology_validation_names_the_bad_value(kwargs: dict, needle: str) -> None:
    args = {"priority": np.array([0, 1]), "base_w": np.array([100.0, 100.0]), "max_w": np.array([300.0, 300.0])}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        PowerTopology(**args)
    assert needle in str(info.value)
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(("group", "limit", "needle"), [
    (np.array([0, 2]), np.ones(2), "rack.group_of_node[1] = 2"),
    (np.array([0, -1]), np.ones(2), "rack.group_of_node[1] = -1"),
    (np.array([0, 1]), np.array([1.0, -3.0]), "rack.limit_w[1] = -3.0"),
    (np.array([0, 1]), np.array([np.nan, 1.0]), "rack.limit_w[0] = nan"),
])
def test_group_level_validation_names_the_bad_value(group: np.ndarray, limit: np.ndarray, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        GroupLevel("rack", group, limit)
    assert needle in str(info.value)


def test_wrong_request_shape_raises_with_the_shape() -> None:
    with pytest.raises(ValueError, match=r"requested_w has shape \(3,\), expected \(2,\)"):
        project_caps(np.ones(3), flat([0, 1]), budget_w=1e4)
    with pytest.raises(ValueError, match=r"overhead_w has shape"):
        project_caps(np.ones(2), flat([0, 1]), budget_w=1e4, overhead_w=np.ones(5))


def test_topology_arrays_are_read_only_copies() -> None:
    base = np.array([100.0, 100.0])
    topo = PowerTopology(np.array([0, 1]), base, np.array([300.0, 300.0]))
    base[0] = 500.0
    assert topo.base_w[0] == 100.0
    with pytest.raises(ValueError):
        topo.base_w[0] = 1.0


def test_emergency_floors_stop_at_the_hardware_minimum() -> None:
    # Background base 100 W, cut 50 % -> 50 W, but the node cannot draw less than 80 W (idle).
    topo = PowerTopology(np.array([1, 4]), np.array([100.0, 100.0]), np.array([300.0, 300.0]),
                         min_w=np.array([80.0, 80.0]))
    np.testing.assert_allclose(topo.emergency_floor_w, [80.0, 80.0])
    proj = project_caps(np.array([300.0, 300.0]), topo, budget_w=100.0)
    assert proj.infeasible
    np.testing.assert_allclose(proj.caps_w, [80.0, 80.0])
    with pytest.raises(ValueError, match=r"topology.min_w\[1\] = -1.0"):
        PowerTopology(np.array([1, 4]), np.array([100.0, 100.0]), np.array([300.0, 300.0]),
                      min_w=np.array([80.0, -1.0]))
