"""``powerrl agent check | run | status | cap`` in-process (powerrl.cli.main) on fake trees."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from powerrl.cli import main
from powerrl.hw.fake import make_fake_sysfs
from powerrl.hw.safety import JOURNAL_REL, allowlisted_state
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.agent import PID_FILE, STATUS_FILE

REPO = Path(__file__).resolve().parents[2]
HOST = str(REPO / "configs" / "hosts" / "example.yaml")
STATE = Path("run") / "powerrl"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    make_fake_sysfs(d, cpus=8, sockets=2, driver="acpi-cpufreq")
    return d


def writable(tree: Path) -> dict[str, str]:
    out = allowlisted_state(SysfsRoot(tree))
    assert len(out) > 40
    return out


def one_error_line(err: str, *needles: str) -> None:
    """The CLI's contract for user errors: one line on stderr, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("powerrl agent: error:")
    for n in needles:
        assert n in lines[0]


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_check_passes_on_a_complete_fake_node(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "check", "--host", HOST, "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "[!!]" not in out
    assert out.count("[ok]") >= 10
    assert "[ok] bind host to the node: 2 domains, P-states 1000-2401 MHz x 11" in out
    assert "[ok] controller " in out and "ready:" in out


def test_check_prints_to_the_current_stdout(tree: Path) -> None:
    """Regression: _print_check wrote to the sys.stdout of import time (a closed stream in-process)."""
    buf = io.StringIO()  # made after powerrl.runtime.cli was imported
    with contextlib.redirect_stdout(buf):
        assert main(["agent", "check", "--host", HOST, "--root", str(tree), "--no-controller"]) == 0
    assert "[ok] bind host to the node" in buf.getvalue()


def test_check_json_lists_every_item(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "check", "--host", HOST, "--root", str(tree), "--json", "--no-controller"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {"name", "ok", "needed", "detail"} <= set(items[0])
    assert all(it["ok"] for it in items)
    assert not any(it["name"].startswith("controller") for it in items)


@pytest.fixture
def broken_tree(tree: Path) -> Path:
    """A node whose package temperature sensors are gone: a needed capability is missing."""
    for z in (1, 2):
        os.unlink(tree / f"sys/class/thermal/thermal_zone{z}/temp")
        os.unlink(tree / f"sys/class/hwmon/hwmon{z - 1}/temp1_input")  # no coretemp fallback either
    return tree


def test_check_fails_when_a_needed_item_is_missing(broken_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "check", "--host", HOST, "--root", str(broken_tree), "--no-controller"]) == 1
    out = capsys.readouterr().out
    assert "[!!] domain 0: package temperature" in out and "[!!] domain 1: package temperature" in out
    assert "2 needed item(s) missing" in out


def test_run_apply_refuses_without_writing(broken_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = writable(broken_tree)
    rc = main(["agent", "run", "--host", HOST, "--root", str(broken_tree), "--apply", "--controller", "schedutil",
               "--duration-s", "0.2", "--metrics-port", "0"])
    assert rc == 1
    cap = capsys.readouterr()
    assert "refusing --apply" in cap.err and "package temperature" in cap.err
    assert cap.out == ""  # never started: no JSON lines
    assert writable(broken_tree) == before
    assert not (broken_tree / JOURNAL_REL).exists()
    assert not (broken_tree / STATE / PID_FILE).exists()


def test_dry_run_then_status_then_cap(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = writable(tree)
    rc = main(["agent", "run", "--host", HOST, "--root", str(tree), "--duration-s", "0.3", "--period-ms", "50",
               "--metrics-port", "0"])
    assert rc == 0
    lines = json_lines(capsys.readouterr().out)
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "tick" in kinds
    start = lines[0]
    assert start["mode"] == "dry-run" and start["period_ms"] == pytest.approx(50.0)
    assert start["controller"].endswith("nodedvfs-v0.onnx") and start["recovered"] == []
    assert all(e["written"] is False for e in lines if e["event"] == "tick")
    assert lines[-1]["ticks"] >= 1
    assert writable(tree) == before
    assert not (tree / STATE / PID_FILE).exists()

    assert main(["agent", "status", "--root", str(tree)]) == 3
    out = capsys.readouterr().out
    assert "stopped" in out and "dry-run" in out
    assert main(["agent", "status", "--root", str(tree), "--json"]) == 3
    st = json.loads(capsys.readouterr().out)
    assert st["running"] is False and st["ticks"] == lines[-1]["ticks"]

    assert main(["agent", "cap", "--set", "120", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "set to 120 W" in out and "no running agent" in out
    cap = json.loads((tree / STATE / "cap.json").read_text(encoding="utf-8"))
    assert cap["cap_w"] == 120.0 and cap["lease_s"] is None


def test_status_without_a_run(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "status", "--root", str(tree)]) == 1
    assert "no agent status" in capsys.readouterr().out
    assert not (tree / STATE / STATUS_FILE).exists()


def test_cap_lease_and_clear(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tree / STATE / "cap.json"
    assert main(["agent", "cap", "--set", "150.5", "--lease-s", "5", "--root", str(tree)]) == 0
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["cap_w"] == 150.5 and data["lease_s"] == 5.0 and data["issued_s"] > 0
    assert main(["agent", "cap", "--clear", "--root", str(tree)]) == 0
    assert json.loads(path.read_text(encoding="utf-8"))["cap_w"] is None
    assert "cleared" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "needles"), [
    (["agent", "cap", "--set", "-5"], ("--set", "-5")),
    (["agent", "cap", "--set", "0"], ("--set",)),
    (["agent", "cap", "--set", "nan"], ("--set",)),
    (["agent", "cap"], ("--set/--clear",)),
    (["agent", "cap", "--set", "100", "--clear"], ("--set/--clear",)),
    (["agent", "cap", "--set", "100", "--lease-s", "0"], ("lease_s",)),
    (["agent", "run", "--host", HOST, "--policy", "x.onnx", "--controller", "schedutil"], ("--policy/--controller",)),
    (["agent", "run", "--host", HOST, "--controller", "schedutil", "--duration-s", "0"], ("--duration-s",)),
    (["agent", "run", "--host", HOST, "--controller", "no-such-governor", "--duration-s", "1"], ("no-such-governor",)),
    (["agent", "run", "--host", HOST, "--policy", "missing.onnx", "--duration-s", "1"], ("missing.onnx",)),
    (["agent", "run", "--host", HOST, "--controller", "schedutil", "--period-ms", "1", "--duration-s", "1"],
     ("--period-ms",)),
    (["agent", "check", "--host", "no/such/host.yaml"], ("no/such/host.yaml",)),
])
def test_bad_arguments_exit_2_with_one_line(tree: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                            needles: tuple[str, ...]) -> None:
    before = writable(tree)
    assert main([*args, "--root", str(tree)]) == 2
    cap = capsys.readouterr()
    one_error_line(cap.err, *needles)
    assert writable(tree) == before
    assert not (tree / STATE / "cap.json").exists()


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_bad_metrics_port_is_one_line_not_a_traceback(tree: Path, port: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["agent", "run", "--host", HOST, "--root", str(tree), "--metrics-port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--metrics-port" in err and "Traceback" not in err
