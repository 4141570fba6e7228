"""Stress runs: random and adversarial controllers across the emergency scenarios break no guarantee."""

from __future__ import annotations

import numpy as np
import pytest

from powerrl.envs.stress import CONTROLLERS, FULL_MATRIX, SCENARIOS, run_matrix, run_stress, stress_actions

#: A small matrix for the default suite (every cell, short runs); the full one is `expensive`.
SMALL = {"powerrl/NodeDVFS-v0": (8, 600), "powerrl/ClusterBudget-v0": (2, 300), "powerrl/Datacenter-v0": (2, 120)}


def test_every_cell_of_a_small_matrix_has_zero_violations() -> None:
    results = run_matrix(SMALL, seed=1)
    assert len(results) == 3 * len(SCENARIOS) * len(CONTROLLERS) - 2 * len(CONTROLLERS)  # grid cuts: cluster only
    for r in results:
        assert r.violations == 0, r
    # The scenarios do stress the shield: it throttled and capped.
    events = sum((r.events for r in results), start=type(results[0].events)())
    for reason in ("predictive", "passive", "budget", "grid_cut", "invalid_action", "cooling_failure", "active"):
        assert events[reason] > 0, reason


def test_without_the_shield_the_same_adversary_breaks_the_limits() -> None:
    hot = run_stress("powerrl/NodeDVFS-v0", "cooling_failure", "all_max", 8, 3000, shielded=False)
    over = run_stress("powerrl/ClusterBudget-v0", "normal", "all_max", 2, 60, shielded=False)
    assert hot is not None and hot.hot_exceedances > 0
    assert over is not None and over.budget_violations > 0


def test_stress_actions_cover_the_advertised_kinds() -> None:
    import gymnasium as gym

    space = gym.spaces.MultiDiscrete([11, 11])
    rng = np.random.default_rng(0)
    assert (stress_actions("all_max", space, 3, rng, 0) == 10).all()
    assert (stress_actions("oscillate", space, 3, rng, 0) == 0).all()
    bad = stress_actions("invalid", space, 50, rng, 0)
    assert np.isnan(bad).any() and np.isinf(bad).any() and (bad[np.isfinite(bad)] > 10).any()
    with pytest.raises(ValueError, match="stress controller 'chaos'"):
        stress_actions("chaos", space, 1, rng, 0)


@pytest.mark.expensive
def test_full_fuzz_matrix_records_zero_violations() -> None:
    results = run_matrix(FULL_MATRIX, seed=0)
    assert sum(r.steps for r in results) >= 1_000_000
    assert [r for r in results if r.violations] == []
