"""The ClusterBudget-v0 allocation oracle: envelope, frontier vs the kernel, LP, bound in a shielded episode."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import powerrl  # noqa: F401  (registers the envs)
import powerrl.baselines.allocation  # noqa: F401  (registers the baselines)
import powerrl.baselines.oracle_allocation as oa
from powerrl.baselines.oracle_allocation import AllocationOracle, concave_segments, envelope_work
from powerrl.control import make_controller
from powerrl.envs.cluster_budget import ClusterBudgetVectorEnv
from powerrl.envs.shielded import ShieldedVectorEnv
from powerrl.envs.target import control_target
from powerrl.errors import ConfigError

BASELINES = ("equal_share", "proportional", "priority_proportional", "efficiency", "dynamo")


def oracle_for(venv: ClusterBudgetVectorEnv, **params) -> AllocationOracle:
    return AllocationOracle(venv.single_action_space, venv.single_observation_space, target=control_target(venv),
                            **params)


# -- the concave envelope ------------------------------------------------------------------------

def test_envelope_keeps_only_rising_concave_vertices() -> None:
    # (0,0) (1,2) (2,3) (3,3.5) are concave; (1.5, 1.0) lies below, (2, 2.5) is dominated by (2, 3)
    # at the same power, (4, 3.5) adds power but no work, (2.5, 3.25) is collinear with its neighbours.
    p = np.array([[0.0, 2.0, 1.5, 1.0, 3.0, 4.0, 2.0, 2.5]])
    w = np.array([[0.0, 2.5, 1.0, 2.0, 3.5, 3.5, 3.0, 3.25]])
    seg = concave_segments(p, w)
    starts = seg.p0[seg.valid]
    np.testing.assert_allclose(starts, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(seg.p1[seg.valid], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(seg.slope[seg.valid], [2.0, 1.0, 0.5])
    np.testing.assert_allclose(envelope_work(seg, np.array([0.5, 1.5, 2.5, 10.0])[:, None]).ravel(),
                               [1.0, 2.5, 3.25, 3.5])


def test_envelope_of_a_node_without_work_is_empty() -> None:
    seg = concave_segments(np.full((1, 4), 100.0), np.zeros((1, 4)))
    assert not seg.valid.any()
    assert envelope_work(seg, np.array([150.0]))[0] == 0.0


# -- frontier points against the C kernel --------------------------------------------------------

def test_frontier_points_are_what_the_kernel_does_under_those_caps() -> None:
    venv = ClusterBudgetVectorEnv(1, split="heldout", episode_s=60.0, load_scale=2.0)
    venv.reset(seed=5)
    n = venv.core.n
    for _ in range(3):  # build some backlog: nodes at idle-ish caps
        venv.step(np.full((1, n), -0.6, dtype=np.float32))
    oracle = oracle_for(venv)
    oracle.bind(venv, np.array([0]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, w = oracle.frontier_points()
        q = rng.integers(0, p.shape[2], n)  # 0 = the idle point, 1 + k = P-state k
        cap = p[0, np.arange(n), q] + oa.CAP_EPS_W
        action = powerrl.baselines.allocation.caps_to_safe_action(cap[None], oracle.idle_w, oracle.busy_w,
                                                                  oracle.idle_w)
        venv.step(action)
        a = venv.core.arrays
        served, power = a.served[:n], a.power_w[:n]
        assert np.all(power <= cap + 1e-9)
        assert np.all(served >= w[0, np.arange(n), q] - 1e-9)  # the kernel may find a higher P-state
        same = (a.pstate_applied[:n] == q - 1) & (q > 0)
        assert same.sum() > n // 2
        np.testing.assert_allclose(served[same], w[0, same, q[same]], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(power[same], p[0, same, q[same]], rtol=1e-12)
        np.testing.assert_array_equal(served[q == 0], 0.0)  # a cap at idle power serves nothing


# -- the LP --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic() -> tuple[AllocationOracle, np.ndarray, np.ndarray]:
    """Every node reaches 1 node-s at idle + 100 W, linearly from (idle, 0): value per W = weight / 100."""
    venv = ClusterBudgetVectorEnv(1, split="heldout", episode_s=60.0)
    oracle = oracle_for(venv)
    idle = oracle.idle_w[None, :, None]
    p = np.concatenate((idle, idle + 100.0), axis=2)
    w = np.concatenate((np.zeros_like(idle), np.ones_like(idle)), axis=2)
    return oracle, p, w


def budget_for(oracle: AllocationOracle, room_w: float) -> np.ndarray:
    """The facility budget that leaves ``room_w`` above the bases (and the cap margins)."""
    n = oracle.n
    return np.array([(room_w + oracle.base_w.sum() + 2 * oa.CAP_EPS_W * n)
                     / ((1 - oracle.reserve_frac) * (1 - powerrl.baselines.allocation.LIMIT_RTOL))])


@pytest.mark.parametrize("solver", ["highs", "greedy"])
def test_lp_fills_by_priority_weight_within_budget_and_pdus(synthetic, solver: str) -> None:
    oracle, p, w = synthetic
    oracle.solver = solver
    prio, base = oracle.prio, oracle.base_w
    top_useful = oracle.idle_w + 100.0
    room = np.maximum(top_useful - base, 0.0)  # Critical's base is above idle + 100 W: no room
    prod, dev = prio == 1, prio == 2
    budget = budget_for(oracle, room[prod].sum() + 0.5 * room[dev].sum())
    powers = oracle.solve(p, w, budget)[0]
    assert oracle.last_status == 0
    np.testing.assert_allclose(powers[prio == 0], base[prio == 0])
    np.testing.assert_allclose(powers[prod], top_useful[prod], atol=1e-6)
    assert (powers[dev] - base[dev]).sum() == pytest.approx(0.5 * room[dev].sum(), abs=1e-6)
    np.testing.assert_allclose(powers[prio >= 3], base[prio >= 3], atol=1e-6)
    # A tight PDU 0 (Production's) stops Production; PDU 1's Development and then Research get it.
    pdu0 = oracle.pdu == 0
    saved = oracle.pdu_limit_w.copy()
    try:
        oracle.pdu_limit_w = saved.copy()
        oracle.pdu_limit_w[0] = (base[pdu0] + 2 * oa.CAP_EPS_W).sum() + 500.0
        oracle.pdu_limit_w[0] /= 1 - powerrl.baselines.allocation.LIMIT_RTOL
        powers = oracle.solve(p, w, budget)[0]
    finally:
        oracle.pdu_limit_w = saved
    assert (powers[pdu0] - base[pdu0]).sum() == pytest.approx(500.0, abs=1e-6)
    np.testing.assert_allclose(powers[pdu0 & dev], base[pdu0 & dev], atol=1e-6)
    np.testing.assert_allclose(powers[~pdu0 & dev], top_useful[~pdu0 & dev], atol=1e-6)
    research = (powers[prio == 3] - base[prio == 3]).sum()
    assert research == pytest.approx(room[prod].sum() + 0.5 * room[dev].sum() - 500.0 - room[~pdu0 & dev].sum(),
                                     abs=1e-6)
    np.testing.assert_allclose(powers[prio == 4], base[prio == 4], atol=1e-6)


def test_infeasible_or_failed_lp_falls_back_to_bases(synthetic, monkeypatch) -> None:
    oracle, p, w = synthetic
    oracle.solver = "highs"
    np.testing.assert_array_equal(oracle.solve(p, w, np.array([100.0]))[0], oracle.base_w)  # bases do not fit
    monkeypatch.setattr(oa, "linprog", lambda *a, **k: SimpleNamespace(status=4, x=None))
    np.testing.assert_array_equal(oracle.solve(p, w, budget_for(oracle, 1000.0))[0], oracle.base_w)
    assert oracle.last_status == 4


def test_highs_and_greedy_reach_the_same_optimum_on_real_steps() -> None:
    venv = ClusterBudgetVectorEnv(2, split="heldout", episode_s=100.0, budget_event_rate_per_h=100.0)
    obs, _ = venv.reset(seed=2)
    highs, greedy = oracle_for(venv), oracle_for(venv, solver="greedy")
    for o in (highs, greedy):
        o.bind(venv, np.arange(2))
    for _ in range(40):
        p, w = highs.frontier_points()
        seg = concave_segments(p, w)
        budget = highs.budget_w()
        value = [(highs.weight * envelope_work(seg, o.solve(p, w, budget))).sum() for o in (highs, greedy)]
        assert value[1] == pytest.approx(value[0], rel=1e-9)
        obs, *_ = venv.step(greedy.act_batch(obs))


def test_oracle_needs_bind_and_validates(synthetic) -> None:
    oracle, _, _ = synthetic
    fresh = AllocationOracle(oracle.action_space, oracle.observation_space, target=oracle.target)
    with pytest.raises(ValueError, match="bind"):
        fresh.act_batch(np.zeros((1, 6 * oracle.n + 4), dtype=np.float32))
    with pytest.raises(TypeError, match="unwrapped"):
        fresh.bind(object(), np.array([0]))
    with pytest.raises(ConfigError, match="solver"):
        AllocationOracle(oracle.action_space, oracle.observation_space, target=oracle.target, solver="simplex")
    assert fresh.clairvoyant and fresh.env_ids == ("powerrl/ClusterBudget-v0",)


def test_registered_oracle_dispatches_here() -> None:
    dispatcher = pytest.importorskip("powerrl.baselines.oracle")
    venv = ClusterBudgetVectorEnv(1, split="heldout", episode_s=60.0)
    ctrl = make_controller("oracle", venv.single_action_space, venv.single_observation_space,
                           target=control_target(venv))
    assert isinstance(ctrl, dispatcher.Oracle) and isinstance(ctrl.impl, AllocationOracle)


# -- the bound in a shielded episode -------------------------------------------------------------

@pytest.mark.parametrize("seed", [4, 11])
def test_oracle_bounds_every_baseline_on_the_same_arrivals(seed: int) -> None:
    names = (*BASELINES, "oracle")
    venv = ClusterBudgetVectorEnv(len(names), shared_arrivals=True, split="heldout", episode_s=120.0,
                                  budget_event_rate_per_h=60.0)
    senv = ShieldedVectorEnv(venv)
    target = control_target(venv)
    oracle = AllocationOracle(venv.single_action_space, venv.single_observation_space, target=target)
    ctrls = [make_controller(nm, venv.single_action_space, venv.single_observation_space, target=target)
             for nm in BASELINES] + [oracle]
    for c in ctrls:
        c.reset(seed=seed, batch=1)
    obs, _ = senv.reset(seed=seed)
    oracle.bind(venv, np.array([len(names) - 1]))
    k = len(names)
    work, over, intervened = np.zeros(k), np.zeros(k), np.zeros(k)
    for _ in range(120):
        acts = np.stack([c.act_batch(obs[i:i + 1])[0] for i, c in enumerate(ctrls)])
        obs, _, _, trunc, info = senv.step(acts)
        work += info["priority_weighted_work"]
        over += info["budget_overshoot_w"] + info["pdu_overshoot_w"]
        intervened += info["shield_intervened"]
        if trunc.any():
            break
    assert oracle.last_status == 0
    assert np.all(over == 0.0)
    assert intervened[-1] == 0  # the oracle's caps pass the shield untouched
    assert np.all(work[-1] >= work[:-1]), dict(zip(names, work, strict=True))
