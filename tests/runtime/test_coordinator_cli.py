"""``powerrl coordinator run | event | status | check | member`` as a user runs them.

``run`` is a real process on a free loopback port with a token file (killed at teardown whatever
happens: the ``procs`` fixture of tests/runtime/conftest.py); the client commands are run as
processes too, so exit statuses and the "one line, no traceback" contract are what a shell sees.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "clusters" / "example.yaml"
TOKEN = "cli-test-token-0123456789abcdef"
START_S = 30.0


Procs = Any  # tests/runtime/conftest.py's process registry (the ``procs`` fixture)


def powerrl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "powerrl.cli", *args]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def wait_until(fn: Callable[[], Any], timeout_s: float, what: str, diag: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{diag()}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def powerrl(*args: str, cwd: Path, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env.pop("POWERRL_COORDINATOR_TOKEN", None)
    return subprocess.run(powerrl_cmd(*args), capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env,
                          check=False)


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The CLI's contract for user errors: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("powerrl coordinator: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def write_cluster(tmp_path: Path, filename: str = "cluster.yaml", **over: Any) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data.update(over)
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def served(tmp_path: Path, token_file: Path) -> tuple[Path, Path, int]:
    """A cluster file on a free port with the token file and a journal in tmp: (file, journal, port)."""
    port = free_port()
    journal = tmp_path / "state" / "journal.json"
    path = write_cluster(tmp_path, api={"listen": "127.0.0.1", "port": port, "token_file": str(token_file),
                                        "max_body_bytes": 16384}, journal=str(journal))
    return path, journal, port


def log_events(log: Path, kind: str | None = None) -> list[dict[str, Any]]:
    try:
        text = log.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or obj.get("event") == kind:
            out.append(obj)
    return out


def start(procs: Procs, config: Path, log: Path, name: str) -> subprocess.Popen[bytes]:
    proc, out = procs.powerrl("coordinator", "run", "--config", str(config), "--log", str(log), name=name)

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"coordinator exited with {proc.returncode}:\n{out.read_text(errors='replace')}")
        return bool(log_events(log, "coordinator_start"))

    wait_until(up, START_S, "the coordinator to start", lambda: out.read_text(errors="replace"))
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)


# ---------------------------------------------------------------------------------------------------------------------
# check, member, bad files (no server)


def test_check_passes_on_the_example(tmp_path: Path) -> None:
    proc = powerrl("coordinator", "check", "--config", str(EXAMPLE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cluster hall-a: 16 nodes, budget 3800 W" in proc.stdout
    assert "levels: rack (4), pdu (2)" in proc.stdout
    assert "[!!]" not in proc.stdout


def test_check_fails_when_the_budget_cannot_hold_the_bases(tmp_path: Path) -> None:
    path = write_cluster(tmp_path, budget_w=1000.0)
    proc = powerrl("coordinator", "check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[!!]" in proc.stdout and "exceed the budget" in proc.stdout


def test_check_fails_on_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    path = write_cluster(tmp_path, api={"listen": "0.0.0.0", "port": 8470})
    proc = powerrl("coordinator", "check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "needs a token" in proc.stdout


def test_member_prints_the_parents_node_entry(tmp_path: Path) -> None:
    path = write_cluster(tmp_path, parent={"url": "http://10.0.0.1:8470", "name": "hall-a"})
    proc = powerrl("coordinator", "member", "--config", str(path), "--priority", "2", "--group", "pdu0",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)
    assert entry["name"] == "hall-a" and entry["priority"] == 2 and entry["group"] == "pdu0"
    assert entry["busy_w"] == pytest.approx(5046.1, abs=1.0)
    assert 0 < entry["idle_w"] < entry["busy_w"]
    # and it is a valid node entry of a parent's cluster file
    parent = write_cluster(tmp_path, "parent.yaml", name="site", budget_w=4000.0, levels=[], groups={},
                           nodes=[{k: v for k, v in entry.items() if k != "group"}])
    assert powerrl("config", "check", str(parent), cwd=tmp_path).returncode == 0


def test_member_without_a_parent_section_is_a_one_line_error(tmp_path: Path) -> None:
    one_error_line(powerrl("coordinator", "member", "--config", str(EXAMPLE), cwd=tmp_path), "parent")


@pytest.mark.parametrize(("command", "over", "needle"), [
    ("check", {"budget": 10}, "budget"),
    ("check", {"nodes": [{"name": "a b", "idle_w": 1, "busy_w": 2}]}, "nodes[0].name"),
    ("run", {"faults": {"node_timeout_s": 1.0}}, "faults.node_timeout_s"),
])
def test_bad_config_is_exit_2_with_one_line(tmp_path: Path, over: dict[str, Any], needle: str, command: str) -> None:
    path = write_cluster(tmp_path, **over)
    one_error_line(powerrl("coordinator", command, "--config", str(path), cwd=tmp_path), needle, str(path))


def test_missing_config_file_is_exit_2_with_one_line(tmp_path: Path) -> None:
    one_error_line(powerrl("coordinator", "check", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path), "nope.yaml")


def test_run_on_a_non_loopback_address_without_a_token_is_refused(tmp_path: Path) -> None:
    path = write_cluster(tmp_path, api={"listen": "127.0.0.1", "port": free_port()})
    line = one_error_line(powerrl("coordinator", "run", "--config", str(path), "--listen", "0.0.0.0", cwd=tmp_path),
                          "api.listen", "0.0.0.0", "token")
    assert "token_file" in line or "POWERRL_COORDINATOR_TOKEN" in line


def test_short_token_file_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n", encoding="utf-8")
    path = write_cluster(tmp_path, api={"listen": "127.0.0.1", "port": free_port(), "token_file": str(short)})
    one_error_line(powerrl("coordinator", "run", "--config", str(path), cwd=tmp_path), "api.token_file", "16")


def test_client_without_a_coordinator_is_exit_2_naming_the_fix(tmp_path: Path) -> None:
    proc = powerrl("coordinator", "status", "--url", f"http://127.0.0.1:{free_port()}", "--timeout-s", "2",
                   cwd=tmp_path)
    one_error_line(proc, "cannot reach", "powerrl coordinator run")


# ---------------------------------------------------------------------------------------------------------------------
# run, event, status, SIGTERM, restart


def test_run_event_status_sigterm_and_restart(tmp_path: Path, procs: Procs, served: tuple[Path, Path, int],
                                              token_file: Path) -> None:
    config, journal, port = served
    log = tmp_path / "coord.jsonl"
    proc = start(procs, config, log, "coord")
    started = log_events(log, "coordinator_start")[0]
    assert started["listen"] == f"127.0.0.1:{port}" and started["auth"] is True and started["recovered"] is False

    # the client takes address and token from the cluster file
    ev = powerrl("coordinator", "event", "grid-cut", "--percent", "20", "--within-s", "5", "--config", str(config),
                 cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert ev.stdout.startswith("event 1 (grid_cut): round ")
    assert "16 affected nodes" in ev.stdout and "budget 3040 W" in ev.stdout and "within 5 s" in ev.stdout
    emergency = wait_until(lambda: log_events(log, "emergency"), 5.0, "the emergency in the log")
    assert emergency[0]["kind"] == "grid_cut" and emergency[0]["fraction"] == pytest.approx(0.2)

    st = powerrl("coordinator", "status", "--url", f"http://127.0.0.1:{port}", "--token-file", str(token_file),
                 "--nodes", cwd=tmp_path)
    assert st.returncode == 0, st.stderr
    assert st.stdout.startswith("coordinator hall-a: round ")
    assert "budget 3800 W -> 3040 W" in st.stdout
    assert "event 1: grid_cut 20 %" in st.stdout
    assert "never reported 16" in st.stdout
    assert "db-0" in st.stdout and "batch-3" in st.stdout
    js = powerrl("coordinator", "status", "--config", str(config), "--json", cwd=tmp_path)
    assert js.returncode == 0 and json.loads(js.stdout)["events"][0]["kind"] == "grid_cut"

    # a wrong token: exit 2, one line that says what to do
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-right-token-0123456789\n", encoding="utf-8")
    bad = powerrl("coordinator", "status", "--url", f"http://127.0.0.1:{port}", "--token-file", str(wrong),
                  cwd=tmp_path)
    one_error_line(bad, "401", "Authorization: Bearer")
    bad = powerrl("coordinator", "event", "clear", "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)  # no token
    one_error_line(bad, "401")

    # SIGTERM: clean exit, the journal is on disk
    wait_until(lambda: journal.is_file(), 5.0, "the journal")
    assert stop(proc) == 0
    assert log_events(log, "coordinator_stop")
    doc = json.loads(journal.read_text(encoding="utf-8"))
    assert doc["name"] == "hall-a" and doc["round"] >= 1 and len(doc["events"]) == 1

    # restart on the same journal: recovered, the event still in force
    log2 = tmp_path / "coord2.jsonl"
    proc2 = start(procs, config, log2, "coord2")
    rec = log_events(log2, "journal_recovered")
    assert rec and rec[0]["path"] == str(journal) and rec[0]["events"] == 1 and rec[0]["round"] >= doc["round"]
    assert log_events(log2, "coordinator_start")[0]["recovered"] is True
    st2 = powerrl("coordinator", "status", "--config", str(config), "--json", cwd=tmp_path)
    assert st2.returncode == 0 and json.loads(st2.stdout)["recovered"] is True
    assert stop(proc2) == 0

