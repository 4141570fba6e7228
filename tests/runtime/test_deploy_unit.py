"""The systemd unit: valid for systemd, and its writable paths cover exactly what the agent writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from powerrl.hw.safety import DEFAULT_ALLOWLIST

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "powerrl-agent.service"
COORDINATOR_UNIT = UNIT.with_name("powerrl-coordinator.service")


def _values(key: str, unit: Path = UNIT) -> list[str]:
    out = []
    for line in unit.read_text(encoding="utf-8").splitlines():
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


def test_coordinator_unit_checks_then_runs_unprivileged_with_a_persistent_journal() -> None:
    unit = COORDINATOR_UNIT
    assert any(" coordinator check " in v for v in _values("ExecStartPre", unit))
    assert any(" coordinator run " in v for v in _values("ExecStart", unit))
    assert _values("StateDirectory", unit) == ["powerrl-coordinator"]  # the journal survives restarts
    assert _values("DynamicUser", unit) == ["yes"] and _values("CapabilityBoundingSet", unit) == [""]
    assert _values("NoNewPrivileges", unit) == ["yes"] and _values("ProtectSystem", unit) == ["strict"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit_path", [UNIT, COORDINATOR_UNIT], ids=lambda p: p.name)
def test_systemd_accepts_the_unit(tmp_path: Path, unit_path: Path) -> None:
    # The unit names /usr/local/bin/powerrl; point it at this environment's executable for the check.
    exe = Path(sys.executable).with_name("powerrl")
    if not exe.exists():
        pytest.skip("no powerrl console script beside the interpreter")
    unit = tmp_path / unit_path.name
    unit.write_text(unit_path.read_text(encoding="utf-8").replace("/usr/local/bin/powerrl", str(exe)),
                    encoding="utf-8")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (out.stdout + out.stderr).splitlines() if unit_path.name in ln]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr
