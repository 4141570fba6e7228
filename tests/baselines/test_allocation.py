"""ClusterBudget-v0 allocation baselines: formulas on hand-built observations, limits, state, a shielded episode."""

from __future__ import annotations

import math

import numpy as np
import pytest

import powerrl  # noqa: F401  (registers the envs)
import powerrl.baselines.allocation as alloc
from powerrl.baselines.allocation import GroupIndex, waterfill
from powerrl.control import make_controller
from powerrl.envs.cluster_budget import ClusterBudgetVectorEnv
from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.envs.target import control_target
from powerrl.errors import ConfigError

NAMES = ("equal_share", "proportional", "priority_proportional", "efficiency", "dynamo")
TOL_W = 1e-6


@pytest.fixture(scope="module")
def env() -> ClusterBudgetVectorEnv:
    venv = ClusterBudgetVectorEnv(1, split="heldout", episode_s=60.0)
    venv.reset(seed=0)
    return venv


@pytest.fixture(scope="module")
def target(env: ClusterBudgetVectorEnv):
    return control_target(env)


def make(name: str, env: ClusterBudgetVectorEnv, target, **params):
    ctrl = make_controller(name, env.single_action_space, env.single_observation_space, target=target, **params)
    ctrl.reset(seed=0, batch=1)
    return ctrl


def obs_with(target, budget_frac: float, **fields: np.ndarray | float) -> np.ndarray:
    """A hand-built observation row ``[1, obs_dim]``: per-node fields by keyword (default 0), budget_frac."""
    n, k = target.n_units, len(target.unit_fields)
    obs = np.zeros((1, n * k + len(target.global_fields)), dtype=np.float32)
    target.unit(obs, "priority")[:] = target.priority / 4.0
    for name, value in fields.items():
        target.unit(obs, name)[:] = value  # a view: writes into obs
    obs[:, n * k + target.global_fields.index("budget_frac")] = budget_frac
    return obs


def caps_of(env: ClusterBudgetVectorEnv, action: np.ndarray) -> np.ndarray:
    """Caps the env applies for an action, W (the env's own conversion)."""
    return env.core.cap_from_action(np.asarray(action).reshape(1, -1))[0]


def ranges(target) -> tuple[np.ndarray, np.ndarray]:
    """The shield's base and max caps (powerrl.shield.caps.CapShield), W."""
    dyn = target.busy_w - target.idle_w
    return target.idle_w + target.base_frac[target.priority] * dyn, target.idle_w + target.extras["max_frac"] * dyn


def usable(target, budget_frac: float) -> float:
    """Budget less the default shield's 2 % reserve, W."""
    return float(np.float32(budget_frac)) * target.extras["busy_total_w"] * 0.98


def check_limits(target, caps: np.ndarray, budget_frac: float) -> None:
    base, top = ranges(target)
    assert np.all(caps >= base - TOL_W) and np.all(caps <= top + TOL_W)
    assert caps.sum() <= usable(target, budget_frac) + TOL_W
    pdu = np.bincount(target.group, weights=caps, minlength=len(target.group_limit_w))
    assert np.all(pdu <= target.group_limit_w + TOL_W)


# -- water-filling -------------------------------------------------------------------------------

def test_waterfill_matches_hand_computed_fills() -> None:
    one = GroupIndex(np.zeros(3, dtype=np.int64), 1)
    # Equal scores: the first node is full at 1, the other two share the rest equally.
    x = waterfill(np.ones((1, 3)), np.zeros(3), np.array([1.0, 5.0, 5.0]), np.array([7.0]), one)
    np.testing.assert_allclose(x, [[1.0, 3.0, 3.0]], atol=1e-12)
    # Scores 1:2 split 6 as 2:4; lo lifts a node above its share; budgets beyond reach clip.
    x = waterfill(np.array([[1.0, 2.0, 1.0]]), np.array([0.0, 0.0, 3.0]), np.full(3, 10.0), np.array([9.0]), one)
    np.testing.assert_allclose(x, [[2.0, 4.0, 3.0]], atol=1e-12)
    x = waterfill(np.ones((2, 3)), np.ones(3), np.full(3, 2.0), np.array([1.0, 100.0]), one)
    np.testing.assert_allclose(x, [[1.0] * 3, [2.0] * 3], atol=1e-12)
    # Groups fill independently; a zero score waits until the rest of its group is full.
    two = GroupIndex(np.array([0, 1, 1, 0]), 2)
    x = waterfill(np.array([[1.0, 1.0, 0.0, 3.0]]), np.zeros(4), np.array([9.0, 2.0, 9.0, 9.0]),
                  np.array([[8.0, 5.0]]), two)
    np.testing.assert_allclose(x, [[2.0, 2.0, 3.0, 6.0]], atol=1e-9)


def test_waterfill_agrees_with_bisection_on_random_instances() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n, g = int(rng.integers(1, 12)), int(rng.integers(1, 4))
        groups = GroupIndex(rng.integers(0, g, n), g)
        v = rng.random((2, n)) * (rng.random((2, n)) > 0.2)
        lo = rng.random((2, n)) * 100
        hi = lo + rng.random((2, n)) * 100
        budget = rng.random((2, g)) * n * 150
        x = waterfill(v, lo, hi, budget, groups)
        for r in range(2):
            for grp in range(g):
                sel = groups.group == grp
                if not sel.any():
                    continue
                want = np.clip(budget[r, grp], lo[r, sel].sum(), hi[r, sel].sum())
                k_lo, k_hi = 0.0, 1e13
                vv = np.maximum(v[r, sel], alloc.SCORE_FLOOR)
                for _ in range(200):
                    k = 0.5 * (k_lo + k_hi)
                    k_lo, k_hi = (k, k_hi) if np.clip(k * vv, lo[r, sel], hi[r, sel]).sum() < want else (k_lo, k)
                np.testing.assert_allclose(x[r, sel], np.clip(k_hi * vv, lo[r, sel], hi[r, sel]), atol=1e-6)
                assert abs(x[r, sel].sum() - want) < 1e-9 * max(1.0, want)


# -- equal share ---------------------------------------------------------------------------------

def test_equal_share_is_one_level_clamped_to_each_range(env, target) -> None:
    base, top = ranges(target)
    level = 250.0  # above Development's base, below Critical's max: clamps at both ends
    frac = float(np.minimum(np.maximum(level, base), top).sum()) / (0.98 * target.extras["busy_total_w"])
    caps = caps_of(env, make("equal_share", env, target).act(obs_with(target, frac)[0]))
    want = np.minimum(np.maximum(level, base), top)
    np.testing.assert_allclose(caps, want, atol=1e-3)  # float32 budget_frac and action rounding
    check_limits(target, caps, frac)


def test_equal_share_gives_a_full_pdu_s_power_to_the_others(env, target) -> None:
    ctrl = make("equal_share", env, target)
    caps = caps_of(env, ctrl.act(obs_with(target, 1.0)[0]))
    check_limits(target, caps, 1.0)
    pdu = np.bincount(target.group, weights=caps)
    # The budget (0.98 of busy power) exceeds both PDU limits (0.85 each): both PDUs end full, and
    # within each PDU the nodes share one level.
    np.testing.assert_allclose(pdu, target.group_limit_w, rtol=1e-5)
    base, _ = ranges(target)
    for g in range(len(pdu)):
        above = (target.group == g) & (caps > base[target.group == g].max() + 1e-3)
        assert np.ptp(caps[above]) < 1e-3


def test_bases_are_returned_when_even_they_do_not_fit(env, target) -> None:
    base, _ = ranges(target)
    for name in NAMES:
        caps = caps_of(env, make(name, env, target).act(obs_with(target, 0.1, offered_load=0.5)[0]))
        np.testing.assert_allclose(caps, base, atol=1e-3)
        assert np.all(caps >= base)  # never a hair under: the shield would count a clipped request


# -- proportional --------------------------------------------------------------------------------

def demand(target, offered: np.ndarray, headroom: float = 1.0) -> np.ndarray:
    return target.idle_w + np.minimum(1.0, headroom * offered) * (target.busy_w - target.idle_w)


def test_proportional_caps_are_one_multiple_of_demand(env, target) -> None:
    offered = np.linspace(0.0, 1.2, target.n_units).astype(np.float32)
    for headroom in (1.0, 1.25):
        ctrl = make("proportional", env, target, headroom=headroom)
        caps = caps_of(env, ctrl.act(obs_with(target, 0.7, offered_load=offered)[0]))
        check_limits(target, caps, 0.7)
        base, top = ranges(target)
        d = demand(target, offered.astype(np.float64), headroom)
        free = (caps > base + 1e-3) & (caps < top - 1e-3)
        assert free.sum() > 10
        ratio = caps[free] / d[free]
        assert np.ptp(ratio) < 1e-5 * ratio.mean()
        assert caps.sum() == pytest.approx(usable(target, 0.7), rel=1e-5)
        assert ctrl.params == {"headroom": headroom}


def test_priority_proportional_weights_demand_and_caps_it_first(env, target) -> None:
    offered = np.full(target.n_units, 0.8, dtype=np.float32)
    weight = target.extras["priority_weight"][target.priority]
    base, top = ranges(target)
    d = demand(target, offered.astype(np.float64))
    for exponent in (0.5, 2.0):
        ctrl = make("priority_proportional", env, target, exponent=exponent)
        caps = caps_of(env, ctrl.act(obs_with(target, 0.6, offered_load=offered)[0]))
        check_limits(target, caps, 0.6)
        # Scarce budget: nobody above its demand, and the nodes between base and demand get one
        # multiple of w^exponent * d.
        assert np.all(caps <= np.maximum(base, d) + 1e-3)
        free = (caps > base + 1e-3) & (caps < d - 1e-3)
        ratio = caps[free] / (weight[free] ** exponent * d[free])
        assert free.sum() >= 2 and np.ptp(ratio) < 1e-5 * ratio.mean()
        # More important nodes never get less.
        for p in range(4):
            assert caps[target.priority == p].min() >= caps[target.priority == p + 1].max() - 1e-3
    # Ample budget: everyone has its demand, the leftover goes on top.
    caps = caps_of(env, make("priority_proportional", env, target).act(
        obs_with(target, 0.95, offered_load=0.3)[0]))
    assert np.all(caps >= np.minimum(demand(target, np.full(target.n_units, 0.3)), top) - 1e-3)
    check_limits(target, caps, 0.95)


# -- efficiency ----------------------------------------------------------------------------------

def test_efficiency_cuts_the_least_efficient_and_boosts_efficient_constrained_nodes(env, target) -> None:
    ctrl = make("efficiency", env, target)
    base, _ = ranges(target)
    frac = 0.65  # equal share at about 200 W per node: no PDU binds, budget binds
    fields = {"util": np.full(target.n_units, 0.5), "offered_load": np.full(target.n_units, 0.5),
              "power_frac": np.full(target.n_units, 0.5), "cap_frac": np.full(target.n_units, 0.9)}
    first = caps_of(env, ctrl.act(obs_with(target, frac, **fields)[0]))  # fresh: equal share
    np.testing.assert_allclose(first, caps_of(env, make("equal_share", env, target).act(
        obs_with(target, frac)[0])), atol=1e-3)
    dev, low, crit = 30, 31, 0  # node 30 and 31: Development (level 2); node 0: Critical
    assert target.priority[dev] == target.priority[low] == 2 and target.priority[crit] == 0
    fields["util"][dev] = fields["offered_load"][dev] = 0.0  # efficiency 0: least efficient
    fields["util"][low] = fields["offered_load"][low] = 0.3  # 0.6 < 0.7 x mean: a candidate too
    fields["util"][crit] = fields["offered_load"][crit] = 1.0  # efficiency 2
    fields["cap_frac"][crit] = 0.5  # power at its cap: constrained
    caps = caps_of(env, ctrl.act(obs_with(target, frac, **fields)[0]))
    eff = np.minimum(fields["util"], fields["offered_load"]) / fields["power_frac"]
    assert eff[crit] > 1.3 * eff.mean() and eff[low] < 0.7 * eff.mean()
    step = 0.15 * base
    # ceil(0.2 x 2 candidates) = 1 cut: the least efficient (node 30) only.
    assert caps[dev] == pytest.approx(first[dev] - step[dev], abs=1e-3)
    assert caps[crit] == pytest.approx(first[crit] + step[crit], abs=1e-3)
    # The net rise is shed from Background (level 4) first, evenly across its equal caps.
    shed = step[crit] - step[dev]
    bg = target.priority == 4
    np.testing.assert_allclose(caps[bg], first[bg] - shed / bg.sum(), atol=1e-3)
    untouched = ~bg & (np.arange(target.n_units) != dev) & (np.arange(target.n_units) != crit)
    np.testing.assert_allclose(caps[untouched], first[untouched], atol=1e-3)
    check_limits(target, caps, frac)


# -- dynamo --------------------------------------------------------------------------------------

def test_dynamo_three_bands(env, target) -> None:
    ctrl = make("dynamo", env, target)
    base, top = ranges(target)
    p, pdu = target.priority, target.group
    frac = 0.75
    limit = usable(target, frac)
    # Fresh: uncapped (max) caps shed to PDU 0's limit (Development there to its bases, then
    # Production levelled), then to the budget (Background to its bases, Research levelled).
    caps0 = caps_of(env, ctrl.act(obs_with(target, frac)[0]))
    in0 = pdu == 0
    excess0 = top[in0].sum() - target.group_limit_w[0]
    dev0_room = (top - base)[in0 & (p == 2)].sum()
    assert 0 < dev0_room < excess0
    np.testing.assert_allclose(caps0[in0 & (p == 2)], base[in0 & (p == 2)], atol=1e-3)
    prod = p == 1
    np.testing.assert_allclose(caps0[prod], top[prod] - (excess0 - dev0_room) / prod.sum(), atol=1e-3)
    np.testing.assert_allclose(caps0[p == 4], base[p == 4], atol=1e-3)
    research_level = caps0[p == 3]
    assert np.ptp(research_level) < 1e-3 and base[p == 3][0] < research_level[0] < top[p == 3][0]
    np.testing.assert_allclose(caps0[(p == 0) | (~in0 & (p == 2))], top[(p == 0) | (~in0 & (p == 2))], atol=1e-3)
    assert caps0.sum() == pytest.approx(limit, rel=1e-5)
    # In the band (0.9 L <= P <= 0.99 L): caps hold.
    caps1 = caps_of(env, ctrl.act(obs_with(target, frac, power_frac=caps0 * 0.95 / target.busy_w)[0]))
    np.testing.assert_allclose(caps1, caps0, atol=1e-3)
    # The budget drops: P > 0.99 L. Cut P - 0.97 L, lowest group first (Background draws its
    # base: nothing to give; Research all of its power above base), then the highest-drawing
    # Development servers down to a common level; the others keep their caps.
    frac2 = 0.70
    limit2 = usable(target, frac2)
    power = caps0.copy()
    dev1 = ~in0 & (p == 2)
    power[dev1] = np.linspace(230.0, top[dev1][0], dev1.sum())
    power = (power / target.busy_w).astype(np.float32).astype(np.float64) * target.busy_w
    assert power.sum() > 0.99 * limit2
    cut = power.sum() - 0.97 * limit2
    caps2 = caps_of(env, ctrl.act(obs_with(target, frac2, power_frac=power / target.busy_w)[0]))
    np.testing.assert_allclose(caps2[p == 3], base[p == 3], atol=1e-3)
    hit = dev1 & (caps2 < caps0 - 1e-3)
    assert 1 < hit.sum() < dev1.sum()  # only the highest were cut
    level = caps2[hit][0]
    np.testing.assert_allclose(caps2[hit], level, atol=1e-3)
    assert np.all(power[hit] > level) and np.all(power[dev1 & ~hit] <= level + 1e-3)
    given = (power[p == 3] - base[p == 3]).sum() + (power[hit] - level).sum()
    assert given == pytest.approx(cut, abs=0.05)  # the controller keeps a 1e-6 round-off margin
    rest = (p != 3) & ~hit
    np.testing.assert_allclose(caps2[rest], caps0[rest], atol=1e-3)
    check_limits(target, caps2, frac2)
    # Below 0.9 L: every cap rises by step * (busy - idle), then the fit sheds the excess again.
    caps3 = caps_of(env, ctrl.act(obs_with(target, frac2, power_frac=0.3)[0]))
    step = 0.1 * (target.busy_w - target.idle_w)
    np.testing.assert_allclose(caps3[p == 0], top[p == 0], atol=1e-3)
    np.testing.assert_allclose(caps3[hit], np.minimum(level + step[hit], top[hit]), atol=1e-3)
    check_limits(target, caps3, frac2)


# -- parameters, state, spaces --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "params", "key"), [
    ("proportional", {"headroom": 0.0}, "headroom"),
    ("priority_proportional", {"exponent": -1.0}, "exponent"),
    ("efficiency", {"cut_share": 1.5}, "cut_share"),
    ("efficiency", {"low_ratio": 1.5, "high_ratio": 1.2}, "high_ratio"),
    ("dynamo", {"uncap_threshold": 0.98}, "uncap_threshold"),
    ("dynamo", {"step": float("nan")}, "step"),
])
def test_bad_parameters_name_the_parameter(env, target, name: str, params: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make(name, env, target, **params)


def test_grids_are_valid_parameter_sets(env, target) -> None:
    for name in NAMES:
        ctrl = make(name, env, target)
        assert ctrl.env_ids == ("powerrl/ClusterBudget-v0",)
        grid = type(ctrl).param_grid
        assert set(ctrl.params) == set(grid)
        for key, values in grid.items():
            for value in values:
                make(name, env, target, **{key: value})


@pytest.mark.parametrize("name", ["efficiency", "dynamo", "priority_proportional"])
def test_copies_are_independent_and_reset_forgets(env, target, name: str) -> None:
    rng = np.random.default_rng(3)
    n = target.n_units
    rows = [[obs_with(target, float(rng.uniform(0.55, 0.9)), util=rng.random(n), offered_load=rng.random(n) * 1.2,
                      power_frac=rng.uniform(0.35, 1.0, n), cap_frac=rng.uniform(0.5, 1.0, n))[0]
             for _ in range(2)] for _ in range(6)]
    batched = make(name, env, target)
    batched.reset(seed=0, batch=2)
    singles = [make(name, env, target), make(name, env, target)]
    for step in rows:
        both = batched.act_batch(np.stack(step))
        assert both.dtype == np.float32 and both.shape == (2, n)
        assert all(env.single_action_space.contains(a) for a in both)
        for i in range(2):
            np.testing.assert_array_equal(both[i], singles[i].act(step[i]))
    # After reset the first call is a fresh start again (same action as a new controller's).
    batched.reset(seed=0, batch=1)
    np.testing.assert_array_equal(batched.act(rows[-1][0]), make(name, env, target).act(rows[-1][0]))


# -- the shielded episode ------------------------------------------------------------------------

def run_shielded(names: tuple[str, ...], steps: int = 120, seed: int = 4, extra=None):
    """One shared-arrivals copy per controller; returns per-controller totals and the budgets seen."""
    venv = ClusterBudgetVectorEnv(len(names) + (extra is not None), shared_arrivals=True, split="heldout",
                                  episode_s=float(steps), budget_event_rate_per_h=100.0)
    senv = ShieldedVectorEnv(venv)
    target = control_target(venv)
    ctrls = [make_controller(nm, venv.single_action_space, venv.single_observation_space, target=target)
             for nm in names]
    if extra is not None:
        ctrls.append(extra(venv, target))
    for c in ctrls:
        c.reset(seed=seed, batch=1)
    obs, _ = senv.reset(seed=seed)
    for i, c in enumerate(ctrls):
        c.bind(venv, np.array([i]))
    k = len(ctrls)
    work, over, pdu_over, intervened = (np.zeros(k) for _ in range(4))
    budgets = set()
    for _ in range(steps):
        acts = np.stack([c.act_batch(obs[i:i + 1])[0] for i, c in enumerate(ctrls)])
        assert all(venv.single_action_space.contains(a) for a in acts)
        obs, _, _, trunc, info = senv.step(acts)
        work += info["priority_weighted_work"]
        over += info["budget_overshoot_w"]
        pdu_over += info["pdu_overshoot_w"]
        intervened += info["shield_intervened"]
        budgets.add(round(float(info["budget_w"][0]), 3))
        if trunc.any():
            break
    return work, over, pdu_over, intervened, budgets


def test_shielded_episode_no_overshoot_no_intervention() -> None:
    work, over, pdu_over, intervened, budgets = run_shielded(NAMES)
    assert len(budgets) >= 2  # a budget event happened: the cut and its end were handled
    assert np.all(over == 0.0) and np.all(pdu_over == 0.0)
    assert np.all(intervened == 0)  # the shield never had to change a baseline's caps
    assert np.all(work > 0.0) and all(math.isfinite(w) for w in work)
