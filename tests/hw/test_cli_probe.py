from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from powerrl.cli import main
from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.probe import probe
from powerrl.hw.sysfs import SysfsRoot

REPO = Path(__file__).resolve().parents[2]


def _caps(root: SysfsRoot, **kw) -> dict[tuple[str, str, str], object]:
    return {(c.area, c.mode, c.name): c for c in probe(root, **kw)}


def test_fake_sysfs_and_probe_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "node"
    assert main(["hw", "fake-sysfs", str(d), "--cpus", "4", "--sockets", "1", "--driver", "intel_pstate",
                 "--locked-zone", "intel-rapl:0"]) == 0
    capsys.readouterr()
    assert main(["hw", "probe", "--root", str(d), "--json", "--write-test"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fake"] is True
    caps = {(c["area"], c["mode"], c["name"]): c for c in data["capabilities"]}
    assert caps[("cpufreq", "sense", "CPU frequency (scaling_cur_freq)")]["ok"]
    setspeed = caps[("cpufreq", "actuate", "exact frequency (scaling_setspeed)")]
    assert not setspeed["ok"] and setspeed["reason"].startswith("governor:")
    assert "intel_pstate=passive" in setspeed["reason"]
    locked = caps[("rapl", "actuate", "power limit intel-rapl:0 (package-0)")]
    assert not locked["ok"] and locked["reason"].startswith("BIOS lock")
    assert caps[("rapl", "actuate", "power limit intel-rapl:1 (psys)")]["ok"]
    assert caps[("perf", "sense", "per-CPU instructions and cycles")]["reason"].startswith("missing driver")


def test_probe_reasons_for_non_root(fake: SysfsRoot) -> None:
    caps = _caps(SysfsRoot(fake.root, uid=1000))
    energy = caps[("rapl", "sense", "energy intel-rapl:0 (package-0)")]
    assert not energy.ok and energy.reason.startswith("permission") and "0400" in energy.reason
    assert caps[("cpufreq", "sense", "CPU frequency (scaling_cur_freq)")].ok
    assert not caps[("cpufreq", "actuate", "frequency limits (scaling_min/max_freq)")].ok


def test_probe_text_on_empty_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "probe", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing driver: no cpufreq directory" in out and "capabilities available" in out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "probe", "--root", str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_fake_kernel_process_reacts_to_writes(fake: SysfsRoot, capsys: pytest.CaptureFixture[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "powerrl.cli", "hw", "fake-kernel", str(fake.root), "--period",
                             "0.02", "--load", "0.9"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        cur = "sys/devices/system/cpu/cpufreq/policy5/scaling_cur_freq"
        gov = "sys/devices/system/cpu/cpufreq/policy5/scaling_governor"
        speed = "sys/devices/system/cpu/cpufreq/policy5/scaling_setspeed"
        pid = fake.root / ".powerrl-fake-kernel/pid"
        # Generous: the subprocess imports numpy/scipy, slow on a loaded 2-core CI machine.
        deadline = time.monotonic() + 90
        while not pid.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        # shell-style writes that bypass powerrl (like the native actuator): the fake kernel polices them
        (fake.root / gov).write_text("userspace\n")
        while not fake.read_str(speed).isdigit() and time.monotonic() < deadline:
            time.sleep(0.02)
        (fake.root / speed).write_text("1200000\n")
        while fake.read_int(cur) != 1200000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.read_int(cur) == 1200000
        (fake.root / "sys/class/thermal/cooling_device0/cur_state").write_text("9\n")  # > max_state 3
        log = fake.root / ".powerrl-fake-kernel/errors.log"
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.exists(), f"the fake kernel never logged the rejected write; stderr: {proc.stderr}"
        assert "rejected" in log.read_text()
        assert fake.read_int("sys/class/thermal/cooling_device0/cur_state") == 0
        e0 = fake.read_int("sys/class/powercap/intel-rapl:0/energy_uj")
        time.sleep(0.2)
        assert fake.read_int("sys/class/powercap/intel-rapl:0/energy_uj") > e0
        assert Cpufreq(fake).cur_freq_mhz(Cpufreq(fake).policy(0)) > 1000.0  # schedutil at 90 % load
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_sample_command(fake: SysfsRoot, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("powerrl._core.sampler")
    assert main(["hw", "sample", "--root", str(fake.root), "--period", "0.01", "--duration", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latest"]["policy0.cur_freq_mhz"] == 1000.0
    assert data["stats"]["samples"] >= 5 and data["errors"] == {}
