"""Cap shield of one facility over sequences of control periods: budgets, PDUs, reserves, emergencies.

The property test re-derives every limit from the module docstrings with plain NumPy -- bases and
emergency floors from the config, the phased-in budget of an announced cut, the reserves, the
over-consumption rule and the overhead -- independent of the code it checks. The examples below it
check each emergency, the rate limits and each event reason by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerrl.shield.budget import DEFAULT_EMERGENCY_CUT, GroupLevel
from powerrl.shield.caps import CapShield
from powerrl.shield.config import ShieldConfig, make_shield_config

REL_TOL = 1e-9
CUT_REASONS = ("budget", "critical_reserve", "group_limit")
REASONS = {*CUT_REASONS, "emergency_floor", "infeasible", "cap_clipped", "cap_rate_limit", "overconsumption",
           "grid_cut"}


# ---------------------------------------------------------------------------------------------------------------------
# Facilities and their independently derived limits


@dataclass
class Facility:
    cfg: ShieldConfig
    idle_w: np.ndarray
    busy_w: np.ndarray
    priority: np.ndarray
    levels: tuple[GroupLevel, ...] = ()
    base_w: np.ndarray = field(init=False)
    max_w: np.ndarray = field(init=False)
    floor_w: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        b = self.cfg.budget
        dyn = self.busy_w - self.idle_w
        self.base_w = self.idle_w + np.asarray(b.base_frac)[self.priority] * dyn
        self.max_w = self.idle_w + b.max_frac * dyn
        # Emergency floor: base * (1 - cut), never below idle power (the base is never below idle).
        self.floor_w = np.maximum(self.base_w * (1.0 - np.asarray(b.emergency_cut)[self.priority]), self.idle_w)

    def shield(self) -> CapShield:
        return CapShield(self.cfg, self.idle_w, self.busy_w, self.priority, self.levels)

    def clipped_w(self, requested_w: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(requested_w), self.base_w, np.clip(requested_w, self.base_w, self.max_w))


def meter_w(measured_w: np.ndarray) -> np.ndarray:
    """Measured power as the shield must read it: NaN, inf and negative readings are glitches, 0 W."""
    return np.where(np.isfinite(measured_w) & (measured_w > 0.0), measured_w, 0.0)


class PlanModel:
    """The budget to plan for (module docstring, step 3): a linear ramp to an announced cut."""

    def __init__(self, fac: Facility) -> None:
        self.fac = fac
        self.start_s: float | None = None

    def in_force_w(self, budget_w: float) -> float:
        cap_w = self.fac.cfg.budget.budget_w
        if cap_w is None:
            return budget_w
        return cap_w if math.isnan(budget_w) else min(budget_w, cap_w)  # a NaN target falls back to the config

    def plan(self, budget_w: float, time_s: float, announced_w: float | None, deadline_s: float) -> tuple[float, bool]:
        cfg = self.fac.cfg
        budget_w = self.in_force_w(budget_w)
        if announced_w is None or not announced_w < budget_w or not math.isfinite(deadline_s):
            self.start_s = None
            return budget_w, False
        if self.start_s is None:
            self.start_s = time_s
        lead_s = cfg.period_s * (1 + cfg.emergency.grid_cut_margin_periods)
        start_w = budget_w
        if math.isinf(budget_w):
            # No line to ramp along from an unlimited budget: start from the smallest budget whose
            # reserves still leave every cap at its maximum.
            b = cfg.budget
            start_w = max(announced_w, float(self.fac.max_w.sum()) / (1.0 - b.reserve_frac - b.critical_reserve_frac))
        span_s = deadline_s - lead_s - self.start_s
        if span_s <= 0 or time_s + lead_s >= deadline_s:  # caps set now hold into the margin periods
            done = 1.0
        else:
            done = min(1.0, max(0.0, (time_s - self.start_s) / span_s))
        return start_w + (announced_w - start_w) * done, True


def scope_limits_w(fac: Facility, plan_w: float) -> tuple[float, float]:
    """(non-Critical, facility) limits, W, for a planned budget; reserves are shares of a finite budget."""
    b = fac.cfg.budget
    if math.isnan(plan_w):
        return 0.0, 0.0
    reserve = max(0.0, b.reserve_frac * plan_w) if math.isfinite(plan_w) else 0.0
    critical = max(0.0, b.critical_reserve_frac * plan_w) if math.isfinite(plan_w) else 0.0
    return plan_w - reserve - critical, plan_w - reserve


def scopes(fac: Facility, plan_w: float) -> list[tuple[str, np.ndarray, float]]:
    out = []
    for level in fac.levels:
        for g in range(level.n_groups):
            out.append((f"{level.name}[{g}]", level.group_of_node == g, float(level.limit_w[g])))
    non_critical_w, facility_w = scope_limits_w(fac, plan_w)
    out.append(("non-Critical", fac.priority >= 1, non_critical_w))
    out.append(("facility", np.ones(fac.priority.size, dtype=bool), facility_w))
    return out


def tol_w(limit_w: float) -> float:
    return REL_TOL * max(1.0, abs(limit_w)) if math.isfinite(limit_w) else 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Random facilities and sequences of periods


@dataclass
class Period:
    requested_w: np.ndarray
    measured_w: np.ndarray
    budget_w: float
    time_s: float
    announced_w: float | None
    deadline_s: float
    emergency: bool


def _power(rng: np.random.Generator, fac: Facility, members: np.ndarray, p: tuple[float, ...]) -> float:
    """A limit for ``members``: (unlimited, below their floors, floors..bases, bases..1.1 x maxima)."""
    kind = rng.choice(4, p=p)
    floor, base, top = (float(a[members].sum()) for a in (fac.floor_w, fac.base_w, fac.max_w))
    if kind == 0:
        return math.inf
    if kind == 1:
        return float(rng.uniform(0.0, floor))
    if kind == 2:
        return float(rng.uniform(floor, base))
    return float(rng.uniform(base, 1.1 * top))


def _budget(rng: np.random.Generator, fac: Facility) -> float:
    junk = rng.random()
    if junk < 0.03:
        return math.nan
    if junk < 0.05:
        return -100.0
    return _power(rng, fac, np.ones(fac.priority.size, dtype=bool), (0.1, 0.15, 0.25, 0.5))


def random_facility(n: int, seed: int, with_pdus: bool) -> tuple[Facility, np.random.Generator]:
    """A facility of ``n`` nodes with a random config (and PDUs), and the generator to go on with."""
    rng = np.random.default_rng(seed)
    idle_w = rng.uniform(50.0, 150.0, n)
    busy_w = idle_w + rng.uniform(50.0, 300.0, n)
    priority = rng.integers(0, 5, n)
    max_frac = float(rng.choice([1.0, rng.uniform(0.3, 1.0)]))
    cut = DEFAULT_EMERGENCY_CUT if rng.random() < 0.5 else (0.0, *rng.choice([0.0, 0.3, 1.0, rng.uniform()], 4))
    budget: dict[str, Any] = {
        "max_frac": max_frac,
        "base_frac": [float(x) for x in rng.uniform(0.0, max_frac, 5)],
        "emergency_cut": [float(x) for x in cut],
        "reserve_frac": float(rng.choice([0.0, 0.02, rng.uniform(0.0, 0.3)])),
        "critical_reserve_frac": float(rng.choice([0.0, rng.uniform(0.0, 0.3)])),
    }
    overrides: dict[str, Any] = {
        "period_s": float(rng.choice([0.1, 1.0])),
        "rate_limits": {"cap_frac": float(rng.choice([0.0, 0.1, rng.uniform(0.01, 1.0)]))},
        "emergency": {"grid_cut_margin_periods": int(rng.integers(0, 4))},
        "budget": budget,
    }
    cfg = make_shield_config(overrides)
    fac = Facility(cfg, idle_w, busy_w, priority)
    if rng.random() < 0.3:  # a budget of the shield's own, below or above the target's
        budget["budget_w"] = max(1.0, _power(rng, fac, np.ones(n, dtype=bool), (0.0, 0.2, 0.3, 0.5)))
        fac = Facility(make_shield_config(overrides), idle_w, busy_w, priority)
    if with_pdus:
        n_pdus = int(rng.integers(1, max(2, n // 8) + 1))
        pdu = rng.integers(0, n_pdus, n)
        n_groups = n_pdus + int(rng.integers(0, 2))  # sometimes an empty PDU
        limits = [_power(rng, fac, pdu == g, (0.2, 0.1, 0.2, 0.5)) for g in range(n_groups)]
        fac = Facility(fac.cfg, idle_w, busy_w, priority, (GroupLevel("pdu", pdu, np.array(limits)),))
    return fac, rng


def _request(rng: np.random.Generator, fac: Facility) -> np.ndarray:
    n = fac.priority.size
    mode = rng.integers(0, 5)
    if mode == 0:
        return fac.max_w.copy()
    if mode == 1:
        return np.full(n, 1e300)
    kinds = rng.integers(0, 10, n)
    req = rng.uniform(-50.0, fac.max_w + 100.0)
    req[kinds == 0] = np.nan
    req[kinds == 1] = np.inf
    req[kinds == 2] = -np.inf
    req[kinds == 3] = 1e300
    req[kinds == 4] = -1e300
    req[kinds == 5] = fac.max_w[kinds == 5]
    return req


def _measured(rng: np.random.Generator, fac: Facility, caps_w: np.ndarray) -> np.ndarray:
    """Power drawn under ``caps_w``: at, under and over the caps, idle, off, and meter glitches."""
    n = caps_w.size
    kinds = rng.integers(0, 12, n) if rng.random() < 0.7 else np.full(n, rng.integers(0, 12))
    out = caps_w.copy()  # kinds >= 7: at the cap
    out[kinds == 0] = np.nan
    under = kinds == 1
    out[under] = caps_w[under] * rng.uniform(0.3, 1.0, int(under.sum()))
    over = kinds == 2
    out[over] = caps_w[over] + rng.uniform(0.0, 150.0, int(over.sum()))
    out[kinds == 3] = fac.idle_w[kinds == 3]
    out[kinds == 4] = 0.0
    out[kinds == 5] = caps_w[kinds == 5] * 3.0
    glitch = kinds == 6
    out[glitch] = rng.choice([np.inf, -np.inf, -1e6, -5.0], int(glitch.sum()))
    return out


def run_sequence(fac: Facility, rng: np.random.Generator, n_periods: int) -> None:
    """Drive a shield through ``n_periods`` random periods, checking every decision; then replay it."""
    cfg = fac.cfg
    shield, plan_model = fac.shield(), PlanModel(fac)
    prev_caps_w = fac.max_w.copy()
    last_budget_w = math.inf
    t0 = float(rng.uniform(0.0, 1000.0))
    budget_w = _budget(rng, fac)
    announce_at = int(rng.integers(0, n_periods)) if rng.random() < 0.4 else n_periods
    announced_w: float | None = None
    deadline_s = math.inf
    periods: list[Period] = []
    outputs: list[tuple[bytes, dict[str, int]]] = []
    for k in range(n_periods):
        time_s = t0 + k * cfg.period_s
        if rng.random() < 0.3:
            budget_w = _budget(rng, fac)
        if k == announce_at:  # a demand-response call: a cut to a share of the budget, some periods ahead
            ref_w = budget_w if math.isfinite(budget_w) else float(fac.max_w.sum())
            announced_w = float(rng.uniform(0.3, 1.1) * ref_w)
            deadline_s = math.inf if rng.random() < 0.1 else time_s + int(rng.integers(0, 9)) * cfg.period_s
        if announced_w is not None and time_s >= deadline_s:  # the cut is in force, the notice cleared
            budget_w, announced_w, deadline_s = announced_w, None, math.inf
        period = Period(_request(rng, fac), _measured(rng, fac, prev_caps_w), budget_w, time_s, announced_w,
                        deadline_s, bool(rng.random() < 0.1))
        periods.append(period)
        caps_w, events = shield.filter(period.requested_w, period.measured_w, period.budget_w, period.time_s,
                                       period.announced_w, period.deadline_s, period.emergency)
        outputs.append((caps_w.tobytes(), dict(events)))

        plan_w, phasing = plan_model.plan(budget_w, time_s, announced_w, deadline_s)
        overhead_w = np.maximum(meter_w(period.measured_w) - prev_caps_w, 0.0)
        overcons = bool(meter_w(period.measured_w).sum() > last_budget_w * (1.0 + REL_TOL))
        check_decision(fac, period, prev_caps_w, caps_w, events, plan_w, phasing, overhead_w, overcons)
        assert shield.priority_inversions() == 0
        prev_caps_w = caps_w.copy()
        last_budget_w = plan_model.in_force_w(budget_w)

    # Determinism: a second shield fed the same sequence decides bitwise the same.
    twin = fac.shield()
    for period, (caps_bytes, events) in zip(periods, outputs, strict=True):
        caps_w, twin_events = twin.filter(period.requested_w, period.measured_w, period.budget_w, period.time_s,
                                          period.announced_w, period.deadline_s, period.emergency)
        assert caps_w.tobytes() == caps_bytes
        assert twin_events == events


def check_decision(fac: Facility, period: Period, prev_caps_w: np.ndarray, caps_w: np.ndarray,
                   events: dict[str, int], plan_w: float, phasing: bool, overhead_w: np.ndarray,
                   overcons: bool) -> None:
    cfg = fac.cfg
    assert caps_w.shape == (fac.priority.size,) and caps_w.dtype == np.float64
    assert np.all(np.isfinite(caps_w))
    assert np.all(caps_w >= fac.floor_w) and np.all(caps_w <= fac.max_w)
    critical = fac.priority == 0
    assert np.all(caps_w[critical] >= fac.base_w[critical])
    if "emergency_floor" not in events:
        assert np.all(caps_w >= fac.base_w)

    # Every scope holds caps + overhead within its limit, unless even its emergency floors do not fit,
    # and then its members sit at their floors.
    any_infeasible = False
    for name, members, limit_w in scopes(fac, plan_w):
        min_load_w = float(np.sum(fac.floor_w[members] + overhead_w[members]))
        if min_load_w > limit_w + tol_w(limit_w):
            any_infeasible = True
            np.testing.assert_allclose(caps_w[members], fac.floor_w[members], rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            load_w = float(np.sum(caps_w[members] + overhead_w[members]))
            slack_w = 1e-12 * float(np.sum(caps_w[members] + overhead_w[members]))  # summation order
            assert load_w <= limit_w + tol_w(limit_w) + slack_w, (name, load_w, limit_w)
    assert ("infeasible" in events) == any_infeasible

    # Events: names, and exactly the ones the period calls for.
    assert set(events) <= REASONS, events
    assert all(isinstance(v, int) and v > 0 for v in events.values())
    req = period.requested_w
    bad = ~np.isfinite(req) | (req < fac.base_w) | (req > fac.max_w)
    assert events.get("cap_clipped", 0) == int(bad.sum())
    assert ("overconsumption" in events) == overcons
    assert ("grid_cut" in events) == phasing
    if cfg.budget.critical_reserve_frac == 0:
        assert "critical_reserve" not in events

    # Rate limits bind the controller's move unless an emergency lifts them; the projection may only cut.
    target_w = fac.clipped_w(req)
    lifted = period.emergency or overcons or phasing
    if cfg.rate_limits.cap_frac > 0 and not lifted:
        step_w = cfg.rate_limits.cap_frac * fac.max_w
        limited_w = np.clip(target_w, prev_caps_w - step_w, prev_caps_w + step_w)
        assert events.get("cap_rate_limit", 0) == int(np.count_nonzero(limited_w != target_w))
        target_w = np.clip(limited_w, fac.base_w, fac.max_w)  # the base is guaranteed whatever the limit
        assert np.all(caps_w <= np.maximum(prev_caps_w + step_w, fac.base_w))
    else:
        assert "cap_rate_limit" not in events
    assert np.all(caps_w <= target_w)
    cut = caps_w < target_w  # only a scope cuts, and each cut node is named by one reason
    assert sum(events.get(r, 0) for r in CUT_REASONS) == int(cut.sum())


@given(st.integers(1, 120), st.integers(0, 2**32 - 1), st.booleans(), st.integers(1, 10))
def test_every_decision_is_safe_over_random_sequences(n: int, seed: int, with_pdus: bool, n_periods: int) -> None:
    fac, rng = random_facility(n, seed, with_pdus)
    run_sequence(fac, rng, n_periods)


# ---------------------------------------------------------------------------------------------------------------------
# Hand-computed examples

IDLE_W, BUSY_W = 100.0, 300.0
NO_BUDGET_W = 1e6  # a budget that binds no cap of these small facilities


def facility(priority: list[int], **overrides: Any) -> Facility:
    """Nodes idle at 100 W, busy at 300 W; default bases 200 / 160 / 120 / 100 / 100 W by priority."""
    n = len(priority)
    levels = overrides.pop("levels", ())
    return Facility(make_shield_config(overrides), np.full(n, IDLE_W), np.full(n, BUSY_W), np.array(priority),
                    levels)


def test_overconsumption_is_gone_within_one_period_and_not_rate_limited() -> None:
    fac = facility([0, 1, 2, 4, 4, 4, 4, 4], rate_limits={"cap_frac": 0.1}, budget={"reserve_frac": 0.0})
    shield = fac.shield()
    top = fac.max_w.copy()
    caps, events = shield.filter(top, np.zeros(8), 1500.0)
    # 2400 W requested: Background sheds 900 W of its 1000 W above base.
    np.testing.assert_allclose(caps, [300, 300, 300] + [120] * 5)
    assert events == {"budget": 5}
    # The Background nodes overshoot their caps by 40 W each (a cap applied late, RAPL's averaging
    # window): 1700 W drawn against a 1500 W budget.
    drawn = caps + np.array([0, 0, 0] + [40.0] * 5)
    caps, events = shield.filter(top, drawn, 1500.0)
    assert events["overconsumption"] == 1 and "cap_rate_limit" not in events
    # The 200 W overhead counts against the budget: Background gives its last 100 W above base, then
    # Development 100 W -- a cut of 100 W in one period, though the rate limit is 30 W.
    np.testing.assert_allclose(caps, [300, 300, 200] + [100] * 5)
    assert float(np.sum(caps)) + 200.0 <= 1500.0 * (1 + REL_TOL)
    assert shield.priority_inversions() == 0
    # The same overshoot next period: the facility draws the budget, no more, and no alert.
    caps_next, events = shield.filter(top, caps + np.array([0, 0, 0] + [40.0] * 5), 1500.0)
    assert "overconsumption" not in events
    assert float(np.sum(caps_next)) + 200.0 <= 1500.0 * (1 + REL_TOL)


def test_overconsumption_cuts_lowest_priority_first_down_to_emergency_floors() -> None:
    fac = facility([0, 1, 2, 4], budget={"reserve_frac": 0.0})
    shield = fac.shield()
    caps, _ = shield.filter(fac.max_w, np.zeros(4), 1000.0)
    np.testing.assert_allclose(caps, [300, 300, 300, 100])
    # Critical overshoots by 250 W: 1250 W drawn, so the caps get 750 W. Bases (200 + 160 + 120 + 100 W)
    # fit, so only power above the bases goes, lowest priority first: Background 200 W, Development
    # 180 W, Production the last 70 W; Critical keeps its request.
    caps, events = shield.filter(fac.max_w, caps + np.array([250.0, 0, 0, 0]), 1000.0)
    np.testing.assert_allclose(caps, [300, 230, 120, 100])
    assert events == {"overconsumption": 1, "budget": 3}
    assert shield.priority_inversions() == 0
    # A 460 W overshoot leaves 540 W: below the bases (580 W), above the emergency floors (200 + 128
    # + 100 + 100 W; Development and Background stop at idle). Every node goes to its base, then
    # Development gives 20 W (down to idle) and Production the last 20 W.
    shield.reset()
    shield.filter(fac.max_w, np.zeros(4), 1000.0)
    caps, events = shield.filter(fac.max_w, np.array([760.0, 300.0, 300.0, 100.0]), 1000.0)
    np.testing.assert_allclose(caps, [200, 140, 100, 100])
    assert events == {"overconsumption": 1, "budget": 4, "emergency_floor": 2}
    assert float(np.sum(caps)) + 460.0 <= 1000.0 * (1 + REL_TOL)
    assert shield.priority_inversions() == 0


def test_a_meter_glitch_does_not_hide_overconsumption() -> None:
    fac = facility([1, 4], budget={"reserve_frac": 0.0})
    for glitch in (np.nan, np.inf, -np.inf, -1e6):
        shield = fac.shield()
        caps, _ = shield.filter(fac.max_w, np.zeros(2), 500.0)
        np.testing.assert_allclose(caps, [300, 200])
        _, events = shield.filter(fac.max_w, np.array([600.0, glitch]), 500.0)
        assert events.get("overconsumption") == 1, glitch


def test_rate_limit_bounds_the_controller_and_is_reported() -> None:
    fac = facility([1, 2, 3, 4], rate_limits={"cap_frac": 0.1})  # 30 W per period
    shield = fac.shield()
    caps = fac.max_w.copy()
    for k in range(1, 4):  # all the way down to the bases, asked at once: 30 W per period
        new, events = shield.filter(fac.base_w, caps, NO_BUDGET_W)
        np.testing.assert_allclose(new, np.maximum(fac.max_w - 30.0 * k, fac.base_w))
        assert events == {"cap_rate_limit": 4}
        caps = new
    for _ in range(10):  # and back up to the maxima
        new, events = shield.filter(fac.max_w, caps, NO_BUDGET_W)
        assert np.all(np.abs(new - caps) <= 30.0 + 1e-9)
        assert ("cap_rate_limit" in events) == bool(np.any(fac.max_w - caps > 30.0))
        caps = new
    np.testing.assert_array_equal(caps, fac.max_w)
    # An emergency lifts the limit: the controller may jump at once.
    caps, events = shield.filter(fac.base_w, caps, NO_BUDGET_W, emergency=True)
    np.testing.assert_array_equal(caps, fac.base_w)
    assert "cap_rate_limit" not in events


def test_budget_cut_is_not_rate_limited() -> None:
    fac = facility([0, 1, 2, 4, 4], rate_limits={"cap_frac": 0.1}, budget={"reserve_frac": 0.0})
    shield = fac.shield()
    caps, events = shield.filter(fac.max_w, np.zeros(5), 1500.0)
    np.testing.assert_array_equal(caps, fac.max_w)
    assert events == {}
    # The budget halves: caps fit at once, 200 W off each Background node and 100 W off Development
    # in one period, though the controller's own moves are limited to 30 W.
    caps, events = shield.filter(fac.max_w, caps, 1000.0)
    np.testing.assert_allclose(caps, [300, 300, 200, 100, 100])
    assert events == {"budget": 3}
    # While the controller climbs from its bases (rate limited) the budget still binds at once.
    shield.reset()
    shield.filter(fac.base_w, np.zeros(5), NO_BUDGET_W, emergency=True)
    caps, events = shield.filter(fac.max_w, np.zeros(5), 700.0)
    # Targets 30 W above the bases (830 W) shed 130 W: Background 60 W, Development 30 W, Production
    # 30 W, Critical the last 10 W.
    np.testing.assert_allclose(caps, [220, 160, 120, 100, 100])
    assert events == {"cap_rate_limit": 5, "budget": 5}


@pytest.mark.parametrize("margin", [0, 1, 2])
def test_grid_cut_is_phased_in_and_met_before_its_deadline(margin: int) -> None:
    fac = facility([0, 1, 1, 2, 2, 3, 3, 4, 4, 4], period_s=1.0, emergency={"grid_cut_margin_periods": margin},
                   rate_limits={"cap_frac": 0.05})
    r = fac.cfg.budget.reserve_frac
    full_w = float(fac.max_w.sum()) / (1.0 - r)  # every cap at its maximum just fits
    target_w = 0.7 * full_w
    deadline_s = 5.0
    shield = fac.shield()
    prev = fac.max_w.copy()
    plans, sums = [], []
    for t in range(12):
        in_force = t >= deadline_s
        caps, events = shield.filter(fac.max_w, prev, target_w if in_force else full_w, float(t),
                                     None if in_force else target_w, math.inf if in_force else deadline_s)
        assert ("grid_cut" in events) == (not in_force)
        if not in_force:
            assert "cap_rate_limit" not in events  # lifted while phasing
        sums.append(float(np.sum(caps)))
        assert shield.priority_inversions() == 0
        if t + (margin + 1) >= deadline_s:  # caps set now hold into the last `margin` periods
            assert sums[-1] <= (1.0 - r) * target_w * (1 + REL_TOL), t
        prev = caps
        plans.append(sums[-1] / (1.0 - r))
    # A linear ramp from the full budget to the target, reached `margin + 1` periods before the deadline.
    reach = deadline_s - (margin + 1)
    expected = [full_w + (target_w - full_w) * min(1.0, t / reach) for t in range(12)]
    np.testing.assert_allclose(plans, expected, rtol=1e-9)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(plans, plans[1:], strict=False))
    assert shield._announce_start_s is None  # cleared with the announcement

    # A second announcement ramps from its own start, not from the first one's.
    caps, events = shield.filter(fac.max_w, prev, target_w, 20.0, 0.5 * full_w, 30.0)
    assert events["grid_cut"] == 1
    np.testing.assert_allclose(np.sum(caps), (1.0 - r) * target_w, rtol=1e-9)


def test_grid_cut_announced_too_late_is_met_at_once() -> None:
    fac = facility([1, 4], period_s=1.0, budget={"reserve_frac": 0.0})
    caps, events = fac.shield().filter(fac.max_w, np.zeros(2), 600.0, 10.0, 400.0, 11.0)
    np.testing.assert_allclose(caps, [300, 100])
    assert events == {"grid_cut": 1, "budget": 1}


def test_unlimited_budget_binds_nothing() -> None:
    # The Shield passes budget_w = inf when telemetry carries none: inf times a reserve share must not
    # become NaN (an unknown budget, 0 W) and drive every node to its emergency floor.
    for reserves in ({}, {"reserve_frac": 0.0}, {"reserve_frac": 0.1, "critical_reserve_frac": 0.2}):
        fac = facility([0, 1, 2, 4], budget=reserves)
        caps, events = fac.shield().filter(fac.max_w, np.zeros(4), math.inf)
        np.testing.assert_array_equal(caps, fac.max_w)
        assert events == {}, reserves


def test_grid_cut_from_an_unlimited_budget_ramps_to_the_target() -> None:
    fac = facility([0, 1, 2, 4], period_s=1.0, budget={"reserve_frac": 0.0})
    shield = fac.shield()
    sums = []
    for t in range(5):
        caps, events = shield.filter(fac.max_w, np.zeros(4), math.inf, float(t), 800.0, 5.0)
        assert np.all(np.isfinite(caps)) and "infeasible" not in events and events["grid_cut"] == 1
        sums.append(float(np.sum(caps)))
    # From the sum of the maxima (1200 W: no cap binds) down to 800 W, reached 2 periods before the deadline.
    np.testing.assert_allclose(sums, [1200, 1200 - 400 / 3, 1200 - 800 / 3, 800, 800])


def test_configured_budget_lowers_the_targets_budget() -> None:
    fac = facility([0, 1, 4], budget={"budget_w": 700.0, "reserve_frac": 0.0})
    shield = fac.shield()
    caps, events = shield.filter(fac.max_w, np.zeros(3), 2000.0)
    np.testing.assert_allclose(caps, [300, 300, 100])
    assert events == {"budget": 1}
    # The lower of the two is in force, for the projection and for the over-consumption alert.
    caps, events = shield.filter(fac.max_w, caps + np.array([0.0, 0.0, 50.0]), 650.0)
    np.testing.assert_allclose(caps, [300, 200, 100])
    assert events == {"overconsumption": 1, "budget": 2}


def test_event_reasons_name_the_scope_that_cut() -> None:
    pdu = GroupLevel("pdu", np.array([0, 0, 1, 1]), np.array([450.0, np.inf]))
    # A PDU: only its own Background node is cut, by the group limit.
    fac = facility([1, 4, 1, 4], budget={"reserve_frac": 0.0}, levels=(pdu,))
    caps, events = fac.shield().filter(fac.max_w, np.zeros(4), NO_BUDGET_W)
    np.testing.assert_allclose(caps, [300, 150, 300, 300])
    assert events == {"group_limit": 1}

    # Without a Critical reserve the non-Critical scope is just the budget; with one it is named.
    fac = facility([0, 1, 4], budget={"reserve_frac": 0.0})
    caps, events = fac.shield().filter(fac.max_w, np.zeros(3), 500.0)
    # Non-Critical nodes (600 W) over 500 W: Background to its base; then the facility (800 W): Background
    # is at its base, Production gives 140 W, Critical the last 60 W.
    np.testing.assert_allclose(caps, [240, 160, 100])
    assert events == {"budget": 3}
    fac = facility([0, 1, 4], budget={"reserve_frac": 0.0, "critical_reserve_frac": 0.5})
    caps, events = fac.shield().filter(fac.max_w, np.zeros(3), 800.0)
    np.testing.assert_allclose(caps, [300, 300, 100])  # non-Critical within 400 W
    assert events == {"critical_reserve": 1}

    # Bases that do not fit: emergency floors; floors that do not fit: infeasible; bad requests: clipped.
    fac = facility([0, 1, 2, 4], budget={"reserve_frac": 0.0})
    caps, events = fac.shield().filter(np.array([np.nan, 1e9, -np.inf, 250.0]), np.zeros(4), 550.0)
    # Requests 200 (NaN: the base), 300, 120 (the base), 250 W; 580 W of bases do not fit 550 W, so
    # Development goes to idle (20 W below its base) and Production gives the last 10 W below its base.
    np.testing.assert_allclose(caps, [200, 150, 100, 100])
    assert events == {"cap_clipped": 3, "budget": 3, "emergency_floor": 2}
    caps, events = fac.shield().filter(fac.max_w, np.zeros(4), 300.0)
    np.testing.assert_allclose(caps, fac.floor_w)
    np.testing.assert_allclose(fac.floor_w, [200, 128, 100, 100])
    # Background's floor is its base (idle): only Production and Development go below their bases.
    assert events == {"budget": 4, "emergency_floor": 2, "infeasible": 1}


def test_a_nan_target_budget_falls_back_to_the_configured_budget() -> None:
    cfg = make_shield_config({"budget": {"budget_w": 500.0, "reserve_frac": 0.0, "base_frac": [0.0] * 5}})
    shield = CapShield(cfg, np.full(2, 100.0), np.full(2, 300.0), np.array([1, 4]))
    caps, _ = shield.filter(np.full(2, 300.0), np.zeros(2), math.nan)
    assert caps.sum() == pytest.approx(500.0)
