from pathlib import Path

import numpy as np
import pytest

from powerrl.config import from_dict
from powerrl.errors import ConfigError, DataFileError
from powerrl.model.classes import WORKLOAD_CLASSES, Priority, WorkloadClass, class_spec
from powerrl.model.workload import SHIPPED_TRACE_SPEC, Trace, TraceSpec, load_shipped_trace


@pytest.fixture(scope="module")
def trace() -> Trace:
    return load_shipped_trace()


def test_shipped_trace_split_sizes(trace):
    assert len(trace.utilisation) == 8064
    assert trace.n_days == 28 and trace.rows_per_day == 288
    assert trace.day_numbers("train") == list(range(1, 22))
    assert trace.day_numbers("heldout") == list(range(22, 29))
    assert trace.days("train").shape == (21 * 288,)
    assert trace.days("heldout").shape == (7 * 288,)
    np.testing.assert_array_equal(trace.days("heldout"), trace.utilisation[6048:])
    np.testing.assert_array_equal(trace.day(22), trace.utilisation[6048:6336])
    # SOURCES.md: avg_cpu mean 0.473, range 0.320-0.592
    assert trace.utilisation.mean() == pytest.approx(0.473, abs=0.001)
    assert 0.32 <= trace.utilisation.min() and trace.utilisation.max() <= 0.593


def test_split_rejects_bad_days(trace):
    with pytest.raises(ValueError, match="1..28"):
        trace.day_numbers([0, 3])
    with pytest.raises(ValueError, match="unknown split"):
        trace.days("test")


def test_mem_proxy_normalised_from_cpi(trace):
    proxy = trace.mem_bound_proxy
    assert proxy.min() == 0.0 and proxy.max() == 1.0
    cpi = np.genfromtxt(Path(trace.source.replace("shipped:", "powerrl/data/")), delimiter=",", names=True)[
        "avg_cycles_per_instruction"]
    assert int(np.argmax(proxy)) == int(np.argmax(cpi))


def test_clock_alignment(trace):
    # row 0 = local midnight 2023-05-03 America/Los_Angeles (PDT, UTC-7) = 07:00 UTC
    assert trace.start_utc_s == 1683097200.0
    assert str(trace.day_date(1)) == "2023-05-03" and str(trace.day_date(28)) == "2023-05-30"
    assert trace.utc_s(3600.0) == 1683097200.0 + 3600.0
    moved = load_shipped_trace(start_utc_s=0.0)
    assert moved.start_utc_s == 0.0 and moved.utilisation is trace.utilisation


def test_utilisation_at_holds_each_row(trace):
    assert trace.utilisation_at(0.0) == trace.utilisation[0]
    assert trace.utilisation_at(299.9) == trace.utilisation[0]
    np.testing.assert_array_equal(trace.utilisation_at(np.array([300.0, 8063 * 300.0])),
                                  trace.utilisation[[1, 8063]])
    with pytest.raises(ValueError):
        trace.utilisation_at(8064 * 300.0)


def test_demand_deterministic_per_seed_and_differs_across_seeds(trace):
    a = trace.demand_series([22], 10.0, 16, seed=3)
    b = trace.demand_series([22], 10.0, 16, seed=3)
    c = trace.demand_series([22], 10.0, 16, seed=4)
    assert a.shape == (8640, 16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a >= 0).all()


@pytest.mark.parametrize("workload_class, dt_s", [("interactive", 1.0), ("compute", 1.0), ("batch", 10.0)])
def test_demand_mean_tracks_trace(trace, workload_class, dt_s):
    days = [22, 23]
    load = trace.demand_series(days, dt_s, 64, seed=0, workload_class=workload_class)
    per_row = int(300 / dt_s)
    row_means = load.reshape(-1, per_row, 64).mean(axis=(1, 2))
    expected = trace.days(days)
    assert load.mean() == pytest.approx(expected.mean(), rel=0.01)
    # each 5-minute interval's cluster mean follows that row of the trace
    assert np.abs(row_means - expected).max() < 0.05


def test_demand_heterogeneity_and_noise_scale(trace):
    sigma = 0.25
    load = trace.demand_series([22], 1.0, 400, seed=1, node_sigma=sigma)
    node_means = load.mean(axis=0)
    assert np.std(np.log(node_means)) == pytest.approx(sigma, rel=0.2)
    flat = trace.demand_series([22], 1.0, 400, seed=1, node_sigma=0.0)
    # compound Poisson with exponential work: variance = 2 * u * service_s / dt_s
    u = trace.day(22).mean()
    assert flat.var(axis=0).mean() == pytest.approx(2 * u * 0.010 / 1.0 + trace.day(22).var(), rel=0.1)


def test_demand_day_shape_and_range(trace):
    # Its speed is a benchmark figure (benchmarks/forecast_error.py prints it), not a timed test.
    load = trace.demand_series([22], 1.0, 100, seed=0)
    assert load.shape == (86_400, 100)
    assert np.all(load >= 0) and np.all(np.isfinite(load))


def test_demand_argument_checks(trace):
    with pytest.raises(ValueError, match="dt_s"):
        trace.demand_series([1], 7.0, 4, seed=0)
    with pytest.raises(ValueError, match="n_nodes"):
        trace.demand_series([1], 1.0, 0, seed=0)
    with pytest.raises(ValueError, match="unknown workload class"):
        trace.demand_series([1], 1.0, 2, seed=0, workload_class="gpu")


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "trace.csv"
    p.write_text(text, encoding="utf-8")
    return str(p)


def _day_rows(n: int, value: str = "50") -> str:
    return "".join(f"{value}\n" for _ in range(n))


def test_user_trace_from_yaml_mapping(tmp_path):
    path = _write(tmp_path, "cpu_pct\n" + _day_rows(48, "50") + _day_rows(48, "20"))
    spec = from_dict(TraceSpec, {"path": path, "column": "cpu_pct", "interval_s": 1800, "scale": 0.01,
                                 "heldout_days": 1, "timezone": "UTC", "start_date": "2023-06-01"})
    tr = Trace.load(spec)
    assert tr.n_days == 2 and tr.rows_per_day == 48
    assert tr.days("train").mean() == pytest.approx(0.5) and tr.days("heldout").mean() == pytest.approx(0.2)
    assert tr.start_utc_s == 1685577600.0  # 2023-06-01T00:00Z
    assert (tr.mem_bound_proxy == 0.5).all()


@pytest.mark.parametrize("cell, problem", [("abc", "not a number"), ("nan", "not a finite number"),
                                           ("-0.2", "below the allowed minimum"), ("", "empty field")])
def test_bad_value_names_file_row_and_column(tmp_path, cell, problem):
    path = _write(tmp_path, "cpu\n" + _day_rows(10, "0.4") + f"{cell}\n" + _day_rows(13, "0.4"))
    with pytest.raises(DataFileError) as err:
        Trace.load(TraceSpec(path=path, column="cpu", interval_s=3600))
    msg = str(err.value)
    assert path in msg and "row 12" in msg and "'cpu'" in msg and problem in msg
    assert err.value.row == 12 and err.value.column == "cpu"


def test_missing_column_and_missing_file(tmp_path):
    path = _write(tmp_path, "cpu\n" + _day_rows(24))
    with pytest.raises(DataFileError, match=r"row 1, column 'util'.*'cpu'"):
        Trace.load(TraceSpec(path=path, column="util", interval_s=3600))
    with pytest.raises(DataFileError, match="file not found"):
        Trace.load(TraceSpec(path=str(tmp_path / "nope.csv"), column="cpu"))
    with pytest.raises(DataFileError, match="less than one day"):
        Trace.load(TraceSpec(path=_write(tmp_path, "cpu\n0.5\n"), column="cpu", interval_s=3600))


def test_trace_spec_validation():
    with pytest.raises(ConfigError, match="interval_s"):
        from_dict(TraceSpec, {"path": "x.csv", "column": "c", "interval_s": 7})
    with pytest.raises(ConfigError, match="timezone"):
        from_dict(TraceSpec, {"path": "x.csv", "column": "c", "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="start_date"):
        from_dict(TraceSpec, {"path": "x.csv", "column": "c", "start_date": "May 3"})
    with pytest.raises(ConfigError, match="colum"):
        from_dict(TraceSpec, {"path": "x.csv", "colum": "c"})
    assert SHIPPED_TRACE_SPEC.path.startswith("shipped:")


def test_classes_and_priorities():
    assert [p.value for p in Priority] == [0, 1, 2, 3, 4]
    assert Priority.CRITICAL < Priority.PRODUCTION < Priority.DEVELOPMENT < Priority.RESEARCH < Priority.BACKGROUND
    assert set(WORKLOAD_CLASSES) == {c.value for c in WorkloadClass}
    inter = class_spec("interactive")
    assert inter.service_ms < inter.sla_ms and not inter.deferrable
    assert class_spec("batch").deferrable and class_spec("batch").sla_ms >= 3_600_000
    for c in WORKLOAD_CLASSES.values():
        # an M/M/1 p99 of ln(100)*S at zero load must fit inside the SLA, else the class is unservable
        assert np.log(100) * c.service_ms < c.sla_ms
