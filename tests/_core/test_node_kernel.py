"""The C node kernel agrees with its NumPy twin, and both obey the model's physics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerrl._core import _reference as ref
from powerrl._core.arrays import NodeArrays
from powerrl._core.sim import NodeKernel


def random_arrays(rng: np.random.Generator, n: int, k: int) -> NodeArrays:
    a = NodeArrays.allocate(n, k)
    a.idle_w[:] = rng.uniform(20, 200, n)
    a.busy_w[:] = a.idle_w + rng.uniform(10, 400, n)
    a.shape_r[:] = rng.uniform(0.25, 4.0, n)
    a.wake_share[:] = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0, 0.95, n))
    a.static_share[:] = rng.uniform(0, 1, n)
    lo = rng.uniform(0.3, 0.7, n)
    a.freq_ratio[:] = lo[:, None] + (1 - lo[:, None]) * np.linspace(0, 1, k)[None, :]
    a.volt_ratio[:] = 0.7 + 0.3 * a.freq_ratio
    a.r_die_c_per_w[:] = rng.uniform(0.01, 0.1, n)
    a.r_sink_c_per_w[:] = rng.uniform(0.05, 0.2, n)
    a.set_dt(0.1, rng.uniform(0.5, 2, n), rng.uniform(10, 20, n))
    a.service_ms[:] = rng.uniform(1, 50, n)
    a.sla_ms[:] = rng.uniform(50, 500, n)
    a.temp_die_c[:] = rng.uniform(20, 90, n)
    a.temp_sink_c[:] = rng.uniform(20, 70, n)
    a.backlog[:] = np.where(rng.random(n) < 0.3, rng.uniform(0, 2, n), 0.0)
    randomize_inputs(rng, a)
    return a


def randomize_inputs(rng: np.random.Generator, a: NodeArrays) -> None:
    n, k = a.n_nodes, a.n_pstates
    a.pstate[:] = rng.integers(-2, k + 2, n)  # out-of-range requests are clamped
    caps = rng.uniform(0, 700, n)
    a.cap_w[:] = np.where(rng.random(n) < 0.4, np.inf, caps)
    a.demand[:] = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0, 1.5, n))
    a.mem_bound[:] = rng.uniform(0, 1, n)
    a.inlet_c[:] = rng.uniform(15, 40, n)


FIELDS = ("backlog", "load_avg", "temp_die_c", "temp_sink_c", "energy_j", "work_done", "power_w", "util", "served",
          "freq_ratio_applied", "latency_ms", "pstate_applied", "sla_violation", "throttled")


@pytest.mark.parametrize("seed", range(5))
def test_c_kernel_matches_numpy_twin_over_many_steps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = random_arrays(rng, 500, 8)
    b = a.copy()
    kernel = NodeKernel(a)
    for _ in range(20):
        randomize_inputs(rng, a)
        for name in ("pstate", "cap_w", "demand", "mem_bound", "inlet_c"):
            getattr(b, name)[:] = getattr(a, name)
        kernel.step(0.1)
        ref.nodes_step(b, 0.1)
        for name in FIELDS:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 12), dt_s=st.floats(0.01, 60.0))
def test_c_kernel_matches_twin_on_random_shapes(seed: int, k: int, dt_s: float) -> None:
    rng = np.random.default_rng(seed)
    a = random_arrays(rng, 17, k)
    a.set_dt(dt_s, np.full(17, 1.0), np.full(17, 18.0))
    b = a.copy()
    NodeKernel(a).step(dt_s)
    ref.nodes_step(b, dt_s)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-9, err_msg=name)


def test_power_never_exceeds_cap_unless_cap_is_below_idle() -> None:
    rng = np.random.default_rng(7)
    a = random_arrays(rng, 2000, 6)
    NodeKernel(a).step(0.1)
    capped = np.isfinite(a.cap_w)
    above_idle = a.cap_w >= a.idle_w
    assert np.all(a.power_w[capped & above_idle] <= a.cap_w[capped & above_idle] + 1e-9)
    below = capped & ~above_idle
    np.testing.assert_allclose(a.power_w[below], a.idle_w[below])
    assert np.all(a.power_w >= a.idle_w - 1e-9)
    assert np.all(a.pstate_applied <= np.clip(a.pstate, 0, 5))


def test_work_is_conserved() -> None:
    rng = np.random.default_rng(3)
    a = random_arrays(rng, 300, 5)
    kernel = NodeKernel(a)
    start_backlog = a.backlog.copy()
    arrived = np.zeros(300)
    for _ in range(50):
        randomize_inputs(rng, a)
        arrived += np.maximum(a.demand, 0) * 0.1
        kernel.step(0.1)
    np.testing.assert_allclose(start_backlog + arrived, a.backlog + a.work_done, rtol=1e-9)


def test_lower_frequency_is_slower_and_cheaper_for_compute_bound_full_load() -> None:
    a = NodeArrays.allocate(2, 2)
    a.idle_w[:] = 100.0
    a.busy_w[:] = 300.0
    a.shape_r[:] = 1.4
    a.wake_share[:] = 0.2
    a.static_share[:] = 0.3
    a.freq_ratio[:] = [0.6, 1.0]
    a.volt_ratio[:] = [0.85, 1.0]
    a.set_dt(1.0, np.ones(2), np.full(2, 15.0))
    a.service_ms[:] = 5.0
    a.sla_ms[:] = 100.0
    a.demand[:] = 2.0  # more than either frequency can serve: both fully busy
    a.pstate[:] = [0, 1]
    NodeKernel(a).step(1.0)
    assert a.util[0] == pytest.approx(1.0) and a.util[1] == pytest.approx(1.0)
    assert a.served[0] == pytest.approx(0.6)
    assert a.served[1] == pytest.approx(1.0)
    assert a.power_w[1] == pytest.approx(300.0)
    assert a.power_w[0] < a.power_w[1]


def test_temperature_converges_to_rc_steady_state() -> None:
    a = NodeArrays.allocate(1, 1)
    a.idle_w[:], a.busy_w[:], a.shape_r[:], a.static_share[:] = 100.0, 300.0, 1.4, 0.3
    a.wake_share[:] = 0.2
    a.freq_ratio[:], a.volt_ratio[:] = 1.0, 1.0
    a.r_die_c_per_w[:], a.r_sink_c_per_w[:] = 0.05, 0.1
    a.set_dt(1.0, np.ones(1), np.full(1, 15.0))
    a.service_ms[:], a.sla_ms[:] = 5.0, 100.0
    a.temp_die_c[:] = a.temp_sink_c[:] = 25.0
    a.inlet_c[:] = 25.0
    a.demand[:] = 5.0
    NodeKernel(a).step(1.0, n_steps=600)
    assert a.temp_sink_c[0] == pytest.approx(25.0 + 300 * 0.1, abs=1e-6)
    assert a.temp_die_c[0] == pytest.approx(25.0 + 300 * 0.15, abs=1e-6)


def test_rejects_misshaped_buffers() -> None:
    a = NodeArrays.allocate(4, 3)
    a.demand = np.zeros(5)
    with pytest.raises(ValueError, match="demand"):
        NodeKernel(a)


def test_kernel_power_and_speed_match_the_calibrated_model_functions() -> None:
    """The C kernel and powerrl.model.power (what `powerrl calibrate` fits) are one model."""
    from powerrl.model import power as pm

    rng = np.random.default_rng(21)
    a = random_arrays(rng, 400, 6)
    a.cap_w[:] = np.inf  # no cap: the requested P-state runs
    NodeKernel(a).step(0.1)
    idx = np.arange(a.n_nodes)
    q = a.pstate_applied
    fr, vr = a.freq_ratio[idx, q], a.volt_ratio[idx, q]
    expected = pm.node_power_w(a.util, fr, vr, a.mem_bound, a.idle_w, a.busy_w, a.shape_r, a.static_share,
                               a.wake_share)
    np.testing.assert_allclose(a.power_w, expected, rtol=1e-12)
    saturated = a.util >= 1.0
    np.testing.assert_allclose(a.served[saturated], 0.1 * pm.speed(fr, a.mem_bound)[saturated], rtol=1e-12)


def test_shipped_epyc_profile_through_the_kernel_reproduces_measured_ratios() -> None:
    """End to end: profile file -> fleet buffers -> C kernel at full load vs the EPYC 7502 measurement."""
    import csv
    from importlib.resources import files

    from powerrl.envs.fleet import build_fleet
    from powerrl.model.power import CLASS_MEM_BOUND

    path = files("powerrl") / "data" / "pstates" / "epyc7502_2s_power_vs_freq_threads_summary.csv"
    with path.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh)
                if r["active_hw_threads"] == "128" and r["cstate_setting"] == "C2_enabled"]
    measured = {(r["kernel"], int(r["freq_mhz"])): float(r["ac_power_w_mean"]) for r in rows}
    a, kernel, _ = build_fleet("epyc7502", 6, 1, ["compute"] * 6, 1.0, 25.0)
    freqs = list(np.rint(a.freq_ratio[0] * 2500).astype(int))
    cases = [(k, f) for k in ("compute", "memory_copy") for f in (1500, 2200, 2500)]
    for i, (k, f) in enumerate(cases):
        a.pstate[i] = freqs.index(f)
        a.mem_bound[i] = CLASS_MEM_BOUND["compute" if k == "compute" else "memory"]
    a.demand[:] = 10.0  # saturate: full load
    kernel.step(1.0)
    for i, (k, f) in enumerate(cases):
        j = cases.index((k, 2500))
        model_ratio = a.power_w[i] / a.power_w[j]
        assert model_ratio == pytest.approx(measured[(k, f)] / measured[(k, 2500)], rel=0.05), (k, f)
