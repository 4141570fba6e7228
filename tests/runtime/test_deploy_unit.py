"""The systemd unit: valid for systemd, and its writable paths cover exactly what the agent writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from powerrl.hw.safety import DEFAULT_ALLOWLIST

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "powerrl-agent.service"


def _values(key: str) -> list[str]:
    out = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith(key + "="):
            out.append(line.split("=", 1)[1].lstrip("-"))
    return out


def test_every_allowlisted_attribute_lies_under_a_writable_path() -> None:
    writable = _values("ReadWritePaths")
    for pattern in DEFAULT_ALLOWLIST:
        path = "/" + pattern
        assert any(path.startswith(w.rstrip("/") + "/") for w in writable), (pattern, writable)


def test_unit_runs_check_then_apply_and_keeps_the_journal_across_restarts() -> None:
    assert any(" agent check " in v for v in _values("ExecStartPre"))
    assert any(" agent run " in v and v.endswith("--apply") for v in _values("ExecStart"))
    assert _values("RuntimeDirectoryPreserve") == ["yes"]  # the journal must survive a crash
    assert _values("NoNewPrivileges") == ["yes"] and _values("ProtectSystem") == ["strict"]
    assert _values("ProtectKernelTunables") == ["yes"]  # else /sys and /proc stay writable under strict
    assert any(" hw restore " in v for v in _values("ExecStopPost"))  # a SIGKILLed agent's settings come back


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The unit names /usr/local/bin/powerrl; point it at this environment's executable for the check.
    exe = Path(sys.executable).with_name("powerrl")
    if not exe.exists():
        pytest.skip("no powerrl console script beside the interpreter")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/powerrl", str(exe)), encoding="utf-8")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (out.stdout + out.stderr).splitlines() if UNIT.name in ln]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr
