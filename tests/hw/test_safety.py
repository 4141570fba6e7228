from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from powerrl.hw.errors import HwError, HwNotAllowedError, HwOverrideError
from powerrl.hw.safety import JOURNAL_REL, SafeWriter, is_allowed
from powerrl.hw.sysfs import SysfsRoot

GOV = "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
MAXF = "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
CAP = "sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw"
REPO = Path(__file__).resolve().parents[2]


def test_allowlist_matches_per_component() -> None:
    assert is_allowed(GOV) and is_allowed(CAP)
    assert is_allowed("sys/class/powercap/intel-rapl:0:2/constraint_0_power_limit_uw")
    assert not is_allowed("sys/class/powercap/intel-rapl:0/energy_uj")
    assert not is_allowed("sys/devices/system/cpu/intel_pstate/status")
    assert not is_allowed("sys/devices/system/cpu/cpufreq/policy0/x/scaling_governor")  # '*' never crosses '/'
    assert not is_allowed("sys/devices/system/cpu/cpufreq/policy0/../../../../etc/passwd")


def test_write_journals_then_restores(fake: SysfsRoot) -> None:
    w = SafeWriter(fake, install_handlers=False)
    with pytest.raises(HwNotAllowedError, match="allowlist"):
        w.write("sys/class/powercap/intel-rapl:0/energy_uj", 0)
    w.write(GOV, "performance")
    w.write(MAXF, 1800000)
    w.write(MAXF, 1600000)  # the original is saved once
    journal = fake.path(JOURNAL_REL)
    entries = json.loads(journal.read_text())["entries"]
    assert [e["path"] for e in entries] == [GOV, MAXF]
    assert entries[1]["original"] == "2401000"
    assert w.close() == []
    assert not journal.exists()
    assert fake.read_str(GOV) == "schedutil" and fake.read_int(MAXF) == 2401000
    with pytest.raises(HwError, match="closed"):
        w.write(GOV, "performance")


def test_strict_mode_raises_on_override(fake: SysfsRoot) -> None:
    with SafeWriter(fake, install_handlers=False, strict=True) as w:
        w.write(GOV, "userspace")
        with pytest.raises(HwOverrideError, match="reads '1200000'"):
            w.write("sys/devices/system/cpu/cpufreq/policy0/scaling_setspeed", 1100000)


def _child(root: Path, body: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        # A foreground process's SIGINT and SIGHUP: a test run started in the background (or under
        # nohup) inherits them ignored, which SafeWriter rightly keeps (it restores, then stays
        # ignored), and the child would not exit.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        from powerrl.hw.safety import SafeWriter
        from powerrl.hw.sysfs import SysfsRoot
        w = SafeWriter(SysfsRoot({str(root)!r}))
        w.write({GOV!r}, "performance")
        w.write({CAP!r}, 100000000)
        print("written", flush=True)
    """) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_crash_leaves_journal_and_next_start_restores(fake: SysfsRoot) -> None:
    proc = _child(fake.root, "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert fake.read_str(GOV) == "performance"  # nothing ran at the crash
    assert fake.path(JOURNAL_REL).exists()
    w = SafeWriter(fake, install_handlers=False)
    assert sorted(w.recovered) == sorted([GOV, CAP])
    assert fake.read_str(GOV) == "schedutil" and fake.read_int(CAP) == 230_000_000
    assert not fake.path(JOURNAL_REL).exists()
    w.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_restores(fake: SysfsRoot, sig: signal.Signals) -> None:
    proc = _child(fake.root, "time.sleep(30)\n")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert fake.read_str(GOV) == "schedutil" and fake.read_int(CAP) == 230_000_000
    assert not fake.path(JOURNAL_REL).exists()


def test_normal_exit_restores(fake: SysfsRoot) -> None:
    proc = _child(fake.root, "sys.exit(0)\n")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert fake.read_str(GOV) == "schedutil"


def test_cli_restore(fake: SysfsRoot, capsys: pytest.CaptureFixture[str]) -> None:
    from powerrl.cli import main

    proc = _child(fake.root, "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc.communicate(timeout=30)
    assert main(["hw", "restore", "--root", str(fake.root)]) == 0
    assert "restored 2 setting(s)" in capsys.readouterr().out
    assert fake.read_str(GOV) == "schedutil"


def test_a_live_writers_journal_is_not_restored_by_another_process(tmp_path: Path) -> None:
    """Recovery is for crashed runs only: a running agent's journal must not be undone behind its back."""
    from powerrl.hw.errors import HwBusyError
    from powerrl.hw.fake import make_fake_sysfs

    root = make_fake_sysfs(tmp_path / "n", cpus=2, sockets=1)
    rel = "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
    code = ("import sys, time\nfrom powerrl.hw.sysfs import SysfsRoot\nfrom powerrl.hw.safety import SafeWriter\n"
            f"w = SafeWriter(SysfsRoot({str(root.root)!r}), install_handlers=False)\n"
            f"w.write({rel!r}, 1000000)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(HwBusyError, match=f"pid {child.pid}"):
            SafeWriter(root, install_handlers=False)
        assert root.read_text(rel) == "1000000"  # the live writer's value stays
    finally:
        child.kill()
        child.wait()
    with SafeWriter(root, install_handlers=False) as w:  # the writer died: now it is a crash, recovered
        assert w.recovered == [rel]
    assert root.read_text(rel) != "1000000"
