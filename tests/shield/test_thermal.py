"""Thermal shield invariants over random states and arbitrary proposals (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from powerrl.model.profiles import get_profile
from powerrl.shield.config import ShieldConfig, make_shield_config
from powerrl.shield.shield import Shield, Telemetry
from powerrl.shield.thermal import ThermalShield, UnitModel

PROFILE = get_profile("epyc7502")
K = len(PROFILE.pstates_mhz)


def _shield(cfg: ShieldConfig, n: int, backend: str = "c") -> Shield:
    return Shield(cfg, ThermalShield(cfg, UnitModel.from_profile(PROFILE, n, 2), backend=backend))


temps = st.one_of(st.floats(0.0, 130.0), st.just(float("nan")))
proposals = st.one_of(st.integers(-5, K + 5), st.floats(allow_nan=True, allow_infinity=True), st.just(K - 1))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ShieldConfig, list[tuple[list[float], list[object], list[float], bool]]]:
    n = draw(st.integers(1, 6))
    cfg = make_shield_config({
        "floor_pstate": draw(st.integers(0, 3)),
        "rate_limits": {"pstate_up": draw(st.integers(0, 3)), "pstate_down": draw(st.integers(0, 3))},
        "predictive": {"horizon_s": draw(st.sampled_from([0.0, 1.0, 3.0, 30.0]))},
    })
    steps = draw(st.lists(st.tuples(
        st.lists(temps, min_size=n, max_size=n), st.lists(proposals, min_size=n, max_size=n),
        st.lists(st.floats(10.0, 50.0), min_size=n, max_size=n), st.booleans()), min_size=1, max_size=12))
    return cfg, steps


def _tel(temp: list[float], inlet: list[float], cooling: bool) -> Telemetry:
    t = np.array(temp)
    power = np.full(t.size, PROFILE.busy_w / 2 * 0.8)
    return Telemetry(temp_c=t, unit_power_w=power, inlet_c=np.array(inlet), cooling_failure=cooling)


def _predicted_die(shield: Shield, tel: Telemetry, q: np.ndarray, power_w: np.ndarray | None = None) -> np.ndarray:
    b = shield.thermal.filters[0].buffers
    pw = b.full_power_w[np.arange(q.size), q] if power_w is None else power_w
    sink_now = tel.temp_c - tel.unit_power_w * b.r_die_c_per_w  # type: ignore[operator]
    target = tel.inlet_c + b.inlet_rise_c + pw * b.r_sink_c_per_w
    return target + (sink_now - target) * b.sink_decay + pw * b.r_die_c_per_w


@given(scenarios())
def test_filtered_pstates_satisfy_every_invariant(case: tuple[ShieldConfig, list]) -> None:  # type: ignore[type-arg]
    cfg, steps = case
    zone = cfg.zones["package"]
    hot_c, hyst_hot = zone.temp_of("hot"), zone.trips[2].hyst_c
    limit_c = cfg.passive_limit_c()
    n = len(steps[0][0])
    shield = _shield(cfg, n)
    hot_held = np.zeros(n, dtype=bool)
    for temp, prop, inlet, cooling in steps:
        tel = _tel(temp, inlet, cooling)
        lo, hi = shield.bounds(tel)
        assert (lo <= hi).all() and (lo >= 0).all() and (hi < K).all()
        # Every P-state inside the mask passes unchanged (checked on a twin shield in the same state).
        for q in {int(lo.min()), int(hi.max())}:
            probe = np.clip(np.full(n, q), lo, hi)
            twin = _shield(cfg, n)
            for a, b in zip(shield.thermal.filters, twin.thermal.filters, strict=True):
                for name in ("trip_on", "ceiling", "last_applied", "last_temp_c"):
                    getattr(b.buffers, name)[:] = getattr(a.buffers, name)
            assert (twin.filter(tel, probe).pstate == probe).all()
        decision = shield.filter(tel, np.array(prop, dtype=np.float64))
        q = decision.pstate
        t = np.array(temp)
        nan = np.isnan(t)
        hot_held = np.where(nan | (t >= hot_c), True, np.where(t < hot_c - hyst_hot, False, hot_held))
        assert ((q >= 0) & (q < K)).all()
        assert (q[hot_held] <= cfg.floor_pstate).all(), "hot or unreadable zone above the floor P-state"
        assert ((q >= lo) & (q <= hi)).all(), "decision outside the mask the shield advertised"
        if cfg.predictive.horizon_s > 0:
            above = (q > cfg.floor_pstate) & ~nan
            die = _predicted_die(shield, tel, q)
            assert (die[above] < limit_c).all(), "predicted to cross passive at the applied P-state"
            # Whatever the work, the power the thermal cap allows keeps the die under hot - hysteresis.
            b = shield.thermal.filters[0].buffers
            allowed = np.minimum(b.max_power_w, decision.thermal_cap_w)
            worst = _predicted_die(shield, tel, q, allowed)
            room = ~nan & (decision.thermal_cap_w > 0)
            assert (worst[room] <= cfg.cap_limit_c() + 1e-9).all(), "thermal cap lets the die over the hot trip"


@given(st.lists(st.tuples(st.floats(20.0, 120.0), st.integers(0, K - 1)), min_size=1, max_size=30))
def test_c_and_numpy_backends_agree(steps: list[tuple[float, int]]) -> None:
    cfg = ShieldConfig()
    c, py = _shield(cfg, 1, "c"), _shield(cfg, 1, "numpy")
    for temp, prop in steps:
        tel = _tel([temp], [30.0], False)
        dc, dp = c.filter(tel, np.array([prop])), py.filter(tel, np.array([prop]))
        assert dc.pstate.tolist() == dp.pstate.tolist() and dc.events == dp.events


def test_thermal_alert_forces_the_floor_and_cooling_request_follows_active_trip() -> None:
    shield = _shield(ShieldConfig(), 2)
    tel = _tel([76.0, 50.0], [24.0, 24.0], False)
    tel.thermal_alert = np.array([False, True])
    d = shield.filter(tel, np.array([K - 1, K - 1]))
    assert d.pstate[1] == 0 and d.events["thermal_alert"] == 1
    assert d.cooling_request.tolist() == [True, False]
    assert d.intervened


def test_multi_zone_takes_the_most_restrictive() -> None:
    cfg = make_shield_config({"zones": {
        "package": {"trips": [{"type": "passive", "temp_c": 85}, {"type": "hot", "temp_c": 95}]},
        "dimm": {"trips": [{"type": "hot", "temp_c": 80}]}}, "predictive": {"horizon_s": 0}})
    shield = Shield(cfg, ThermalShield(cfg, UnitModel.from_profile(PROFILE, 1)))
    tel = Telemetry(temp_c={"package": np.array([60.0]), "dimm": np.array([82.0])},
                    unit_power_w=np.array([200.0]), inlet_c=np.array([24.0]))
    d = shield.filter(tel, np.array([K - 1]))
    assert d.pstate.tolist() == [0] and d.events.get("hot") == 1


def _tel_n(temp: list[float], power: float = 100.0, inlet: float = 25.0) -> Telemetry:
    n = len(temp)
    return Telemetry(temp_c=np.array(temp), unit_power_w=np.full(n, power), inlet_c=np.full(n, inlet))


def test_proposals_never_wrap_and_junk_holds_the_last_pstates() -> None:
    shield = _shield(ShieldConfig(), 2)
    d = shield.filter(_tel_n([50.0, 50.0]), np.array([2**32 + 3, 4], dtype=np.int64))
    assert d.pstate.tolist() == [K - 1, 4] and d.events["out_of_range"] == 1
    d = shield.filter(_tel_n([50.0, 50.0]), np.array([2**63 + 5, 2], dtype=np.uint64))
    assert d.pstate.tolist() == [K - 1, 2] and d.events["out_of_range"] == 1
    d = shield.filter(_tel_n([50.0, 50.0]), np.array([3.9, 3.0]))
    assert d.pstate.tolist() == [0, 3] and d.events["out_of_range"] == 1 and d.intervened
    d = shield.filter(_tel_n([50.0, 50.0]), np.array([None, 1], dtype=object))
    assert d.pstate.tolist() == [0, 3] and d.events["invalid_action"] == 1 and d.intervened


def test_decision_arrays_are_not_rewritten_by_later_calls() -> None:
    shield = _shield(ShieldConfig(), 2)
    d = shield.filter(_tel_n([110.0, 50.0]), np.array([5, 5]))
    assert d.offline.tolist() == [True, False]
    shield.bounds(_tel_n([50.0, 50.0]))
    shield.filter(_tel_n([50.0, 50.0]), np.array([5, 5]))
    assert d.offline.tolist() == [True, False] and d.pstate.tolist() == [0, 5]


def test_a_thermal_cap_counts_as_an_intervention_only_where_it_binds() -> None:
    shield = _shield(ShieldConfig(), 1)
    # A hot inlet: the cap (about 124 W) is below the 158 W a domain can draw, above the 60 W it draws.
    d = shield.filter(_tel_n([84.0], power=60.0, inlet=60.0), np.array([0]))
    assert "thermal_cap" in d.events and 60.0 < d.thermal_cap_w[0] < 158.0 and not d.intervened
    d = shield.filter(_tel_n([90.0], power=155.0, inlet=60.0), np.array([0]))
    assert d.thermal_cap_w[0] < 155.0 and d.intervened


def test_zones_union_their_events_and_cooling_requests() -> None:
    cfg = make_shield_config({"predictive": {"horizon_s": 0}, "zones": {
        "package": {"trips": [{"type": "passive", "temp_c": 85}, {"type": "hot", "temp_c": 95}]},
        "dimm": {"trips": [{"type": "active", "temp_c": 60}, {"type": "passive", "temp_c": 80},
                           {"type": "hot", "temp_c": 90}]}}})
    shield = Shield(cfg, ThermalShield(cfg, UnitModel.from_profile(PROFILE, 4)))
    tel = Telemetry(temp_c={"package": np.array([86.0, 86.0, 50.0, 50.0]), "dimm": np.array([50.0, 50.0, 81.0, 81.0])},
                    unit_power_w=np.full(4, 100.0), inlet_c=np.full(4, 24.0))
    d = shield.filter(tel, np.full(4, K - 1))
    assert d.events["passive"] == 4 and d.pstate.tolist() == [K - 2] * 4
    assert d.cooling_request.tolist() == [False, False, True, True]
