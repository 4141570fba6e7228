import csv
import json

import pytest

from powerrl.cli import main
from powerrl.eval.metrics import METRIC_KEYS

TINY = "env: powerrl/NodeDVFS-v0\ndays: [22]\nstart_h: 10\nduration_h: 0.01\n"
TINY_CB = "env: powerrl/ClusterBudget-v0\ndays: [22, 23]\nstart_h: 10\nduration_h: 0.01\n"


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_writes_every_output(scenario_file, tmp_path, capsys):
    a = scenario_file(TINY, "a.yaml")
    b = scenario_file(TINY_CB, "b.yaml")
    out = tmp_path / "out"
    code, stdout, _ = _run(["compare", "--scenarios", str(a), str(b), "--controllers", "random", "lowest",
                            "--seeds", "2", "--out", str(out), "--jobs", "2", "--quiet"], capsys)
    assert code == 0
    assert "== a: powerrl/NodeDVFS-v0" in stdout and "== b: powerrl/ClusterBudget-v0" in stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["seeds"] == [0, 1]
    for name in ("a", "b"):
        sc = doc["scenarios"][name]
        assert set(sc["controllers"]) == {"random", "lowest"}
        for c in sc["controllers"].values():
            assert set(c["metrics"]) == set(METRIC_KEYS)
            assert c["metrics"]["energy_kwh"]["n"] == 2 and c["metrics"]["energy_kwh"]["ci95"] is not None
            assert len(c["per_seed"]) == 2
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2 * len(METRIC_KEYS)
    md = (out / "report.md").read_text()
    assert "## a" in md and "a_energy_vs_sla.png" in md
    for f in ("a_timeseries.png", "a_energy_vs_sla.png", "a_carbon_vs_intensity.png", "b_timeseries.png"):
        assert (out / f).stat().st_size > 1000


def test_parallel_and_serial_runs_agree(scenario_file, tmp_path, capsys):
    a = scenario_file(TINY, "a.yaml")
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}"
        assert _run(["compare", "--scenarios", str(a), "--controllers", "random", "lowest", "--seeds", "2",
                     "--out", str(out), "--jobs", jobs, "--quiet", "--no-plots"], capsys)[0] == 0
        docs.append(json.loads((out / "results.json").read_text())["scenarios"]["a"]["controllers"])
    for label in docs[0]:
        assert docs[0][label]["per_seed"] == docs[1][label]["per_seed"]


@pytest.mark.parametrize("args, needle", [
    (["--controllers", "no_such_controller"], "no_such_controller"),
    (["--controllers", "missing/policy.onnx"], "policy file"),
    (["--seeds", "0"], "--seeds"),
    (["--scenarios", "no-such-scenario"], "no-such-scenario"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    code, _, err = _run(["compare", "--out", str(out), "--quiet", *args], capsys)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_tune_refuses_held_out_days(scenario_file, tmp_path, capsys):
    a = scenario_file(TINY, "a.yaml")
    code, _, err = _run(["tune-baseline", "random", "--scenario", str(a), "--days", "22", "--out",
                         str(tmp_path / "t.yaml")], capsys)
    assert code == 2  # random is not a baseline: refused before anything runs
    assert "baseline" in err


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "--scenarios" in capsys.readouterr().out


def test_bad_tuned_parameters_fail_before_any_output_naming_the_file(scenario_file, tmp_path, capsys):
    a = scenario_file(TINY, "a.yaml")
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("powerrl/NodeDVFS-v0:\n  ondemand:\n    params: {up_threshold: 500}\n")
    out = tmp_path / "never"
    code, _, err = _run(["compare", "--scenarios", str(a), "--controllers", "ondemand", "--tuned", str(tuned),
                         "--out", str(out), "--quiet"], capsys)
    assert code == 2 and "up_threshold" in err and str(tuned) in err and "Traceback" not in err
    assert not out.exists()
    tuned.write_text("powerrl/NodeDVFS-v0:\n  ondemand: 5\n")
    code, _, err = _run(["compare", "--scenarios", str(a), "--tuned", str(tuned), "--out", str(out)], capsys)
    assert code == 2 and "params" in err


def test_worker_errors_reach_the_user_as_one_line(scenario_file, tmp_path, capsys):
    import pickle

    from powerrl.errors import ConfigError, DataFileError

    for e in (ConfigError("k", 1, "x", "f.yaml"), DataFileError("p.csv", "bad", 3, "c")):
        assert str(pickle.loads(pickle.dumps(e))) == str(e)


def test_policy_labels_never_merge_with_baselines(tmp_path):
    from powerrl.eval.controllers import controllers_for

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "performance.onnx").write_bytes(b"")
        (tmp_path / d / "performance.json").write_text('{"env_id": "powerrl/NodeDVFS-v0", "observation_dim": 18}')
    refs = ["performance", str(tmp_path / "a" / "performance.onnx"), str(tmp_path / "b" / "performance.onnx"),
            str(tmp_path / "a" / "performance.onnx")]
    labels = [s.label for s in controllers_for("powerrl/NodeDVFS-v0", refs, {})]
    assert len(labels) == len(set(labels)) == 3


@pytest.mark.parametrize("body, key", [("start_h: 24\n", "start_h"), ("start_h: .nan\n", "start_h"),
                                       ("days: [22, 22]\n", "days"), ("env_config: {profile: nosuch}\n", "profile")])
def test_more_bad_scenarios(scenario_file, tmp_path, capsys, body, key):
    a = scenario_file("env: powerrl/NodeDVFS-v0\n" + body, "a.yaml")
    code, _, err = _run(["compare", "--scenarios", str(a), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and key in err and "Traceback" not in err


def test_a_failing_cell_raises_its_own_error_through_the_pool(scenario_file, tmp_path):
    from powerrl.errors import PowerrlError
    from powerrl.eval.compare import Cell, run_cells
    from powerrl.eval.runner import ControllerSpec
    from powerrl.eval.scenario import load_scenario

    sc = load_scenario(scenario_file(TINY, "a.yaml"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    broken.with_suffix(".json").write_text('{"env_id": "powerrl/NodeDVFS-v0", "observation_dim": 18}')
    cells = [Cell(sc, 0, (ControllerSpec("performance", label="p"),), False),
             Cell(sc, 0, (ControllerSpec(str(broken), label="broken", kind="policy"),), False)]
    with pytest.raises(PowerrlError, match="broken"):
        run_cells(cells, jobs=2, progress=False)


def test_tuned_file_merges_entries_atomically(tmp_path):
    from powerrl.baselines.tuned import load_tuned, save_tuned

    path = tmp_path / "t.yaml"
    save_tuned(path, "powerrl/NodeDVFS-v0", "ondemand", {"params": {"up_threshold": 70}})
    save_tuned(path, "powerrl/NodeDVFS-v0", "schedutil", {"params": {"headroom": 1.4}})
    assert set(load_tuned(path)["powerrl/NodeDVFS-v0"]) == {"ondemand", "schedutil"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.yaml"]  # no temporary file left behind
