import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from powerrl.cli import main
from powerrl.config import to_dict
from powerrl.errors import ConfigError, DataFileError, PowerrlError
from powerrl.model import power
from powerrl.model import profiles as P

SPEC = P.SPECPOWER_CSV


@pytest.fixture(scope="module")
def rows():
    return P.read_specpower()


def test_read_specpower_parses_per_node(rows):
    assert len(rows) == 625
    row = next(r for r in rows if r.n_nodes > 1)
    assert len(row.load) == len(row.power_w) == 11
    assert row.load[0] == 0.0 and all(0.0 < u < 1.2 for u in row.load[1:])
    assert sum(r.single_node for r in rows) > 400


def test_shipped_profiles_exist_and_fit(rows):
    shipped = P.shipped_profiles()
    assert {"xeon-l5335-2007", "xeon-platinum-8180-2017", "epyc-7763-2021", "epyc7502"} <= set(shipped)
    years = set()
    for name, prof in shipped.items():
        assert prof.fit_max_rel_error <= P.GOAL_MAX_REL_ERROR, name
        if name == "epyc7502":
            continue
        rep = P.profile_report(prof, P.find_row(rows, prof.result_id))
        assert rep.max_rel_error <= P.GOAL_MAX_REL_ERROR, name
        assert P.find_row(rows, prof.result_id).single_node
        years.add(prof.year)
    assert len(years) >= 3


def test_epyc_profile_fits_thread_sweep():
    prof, rep = P.epyc7502_profile()
    assert rep.max_rel_error <= P.GOAL_MAX_REL_ERROR
    shipped = P.get_profile("epyc7502")
    assert math.isclose(shipped.shape_r, prof.shape_r, rel_tol=1e-4)
    assert shipped.pstates_mhz[0] == 1500.0 and shipped.pstates_mhz[-1] == 2500.0
    assert 2200.0 in shipped.pstates_mhz


@pytest.mark.parametrize("kernel, cls", [("compute", "compute"), ("memory_copy", "memory")])
@pytest.mark.parametrize("freq_mhz", [1500.0, 2200.0])
def test_epyc_frequency_scaling(kernel, cls, freq_mhz):
    d = P.read_epyc()
    prof = P.get_profile("epyc7502")
    measured = d.ac(kernel, freq_mhz) / d.ac(kernel, 2500.0)
    idx = prof.pstates_mhz.index(freq_mhz)
    m = power.CLASS_MEM_BOUND[cls]
    model = float(prof.power_w(1.0, idx, m) / prof.power_w(1.0, len(prof.pstates_mhz) - 1, m))
    assert abs(model / measured - 1.0) <= 0.05, (kernel, freq_mhz, model, measured)


def test_frequency_scaling_matches_architecture_numbers():
    prof = P.get_profile("epyc7502")
    low = prof.pstates_mhz.index(1500.0)
    cut_compute = 1 - prof.power_w(1.0, low, power.CLASS_MEM_BOUND["compute"]) / prof.busy_w
    cut_memory = 1 - prof.power_w(1.0, low, power.CLASS_MEM_BOUND["memory"]) / prof.busy_w
    assert 0.21 <= cut_compute <= 0.31  # measured ~26 %
    assert 0.03 <= cut_memory <= 0.13  # measured ~8 %


def test_power_constants_match_derivation():
    fm = P.derive_frequency_model()
    assert fm.static_share == power.STATIC_SHARE
    assert abs(fm.vf_intercept - power.VF_INTERCEPT) < 0.01
    assert abs(fm.vf_intercept_rapl - fm.vf_intercept) < 0.06  # independent RAPL check agrees
    assert abs(fm.mem_bound_memory - power.CLASS_MEM_BOUND["memory"]) < 0.01


def test_fit_goal_on_single_node_results(rows):
    sample = [r for r in rows if r.single_node][::10]
    errors = [P.fit_profile(r)[1].max_rel_error for r in sample]
    assert np.mean(np.asarray(errors) <= P.GOAL_MAX_REL_ERROR) >= 0.9


def test_multi_node_rows_are_divided(rows):
    row = next(r for r in rows if r.n_nodes > 1)
    prof, rep = P.fit_profile(row)
    assert math.isclose(prof.idle_w, row.power_w[0], rel_tol=1e-3)
    assert rep.measured_w[-1] == row.power_w[-1]


def test_round_trip(tmp_path):
    prof = P.get_profile("xeon-platinum-8180-2017")
    path = P.save_profile(prof, tmp_path / "p.yaml")
    assert P.load_profile(path) == prof
    assert P.get_profile(str(path)) == prof


def _write(tmp_path: Path, **changes) -> Path:
    data = {"kind": "profile"}
    data.update(yaml.safe_load(yaml.safe_dump(to_dict(P.get_profile("epyc7502")))))
    data.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes, key, value", [
    ({"colour": "red"}, "colour", "red"),
    ({"busy_w": 50.0}, "busy_w", "50.0"),
    ({"idle_w": -3.0}, "idle_w", "-3.0"),
    ({"tau_sink_s": -1.0}, "tau_sink_s", "-1.0"),
    ({"pstates_mhz": [1500.0, 1400.0, 2500.0], "volt_ratio": [0.8, 0.9, 1.0]}, "pstates_mhz[1]", "1400.0"),
    ({"volt_ratio": [0.5]}, "volt_ratio", "0.5"),
    ({"wake_share": 1.5}, "wake_share", "1.5"),
])
def test_validation_errors_name_key_and_value(tmp_path, changes, key, value):
    with pytest.raises(ConfigError) as exc:
        P.load_profile(_write(tmp_path, **changes))
    assert key in str(exc.value) and value in str(exc.value)


def test_wrong_kind_and_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        P.load_profile(_write(tmp_path, kind="env"))
    with pytest.raises(ConfigError, match="xeon-platinum-8180-2017"):
        P.get_profile("no-such-profile")


def test_bad_csv_errors(tmp_path):
    lines = SPEC.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    bad = tmp_path / "bad.csv"
    # corrupt p50_w of the 3rd data row (file row 4, header = row 1)
    rec = next(csv.reader(io.StringIO(lines[3])))
    rec[header.index("p50_w")] = "12x"
    out = io.StringIO()
    csv.writer(out).writerow(rec)
    bad.write_text("\n".join([lines[0], lines[1], lines[2], out.getvalue().strip()]) + "\n")
    with pytest.raises(DataFileError) as exc:
        P.read_specpower(bad)
    assert "row 4" in str(exc.value) and "p50_w" in str(exc.value) and "12x" in str(exc.value)
    missing = tmp_path / "missing.csv"
    missing.write_text(",".join(h for h in header if h != "idle_w") + "\n")
    with pytest.raises(DataFileError, match="idle_w"):
        P.read_specpower(missing)


def test_cli_json_and_unknown_id(capsys, tmp_path):
    out = tmp_path / "p.yaml"
    assert main(["calibrate", "--result-id", "power_ssj2008-20170703-00767", "--json", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result_id"] == "power_ssj2008-20170703-00767"
    assert data["max_rel_error"] <= 0.05 and {"idle_w", "busy_w", "shape_r", "wake_share"} <= set(data["params"])
    assert P.load_profile(out).result_id == data["result_id"]
    assert main(["calibrate", "--result-id", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "--list" in err


def test_cli_table(capsys):
    assert main(["calibrate", "--result-id", "power_ssj2008-20071128-00001"]) == 0
    text = capsys.readouterr().out
    assert "measured_w" in text and "idle" in text and "99.1%" in text


def test_find_row_error_is_powerrl_error(rows):
    with pytest.raises(PowerrlError, match="nope"):
        P.find_row(rows, "nope")
