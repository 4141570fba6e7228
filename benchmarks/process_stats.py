"""Helpers shared by the benchmarks that run powerrl as separate processes (agent_tick, coordinator_load).

The machine line, the ``powerrl`` command, a process's CPU time and memory from ``/proc``, a free
loopback port, JSON-lines logs and percentiles of possibly empty samples.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

CLK_TCK = os.sysconf("SC_CLK_TCK")


def powerrl_cli() -> list[str]:
    """The ``powerrl`` console script of this interpreter's environment (or the module)."""
    script = Path(sys.executable).parent / "powerrl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "powerrl.cli"]


def machine() -> str:
    """CPUs, CPU model, kernel and Python: the line every benchmark output carries."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{len(os.sched_getaffinity(0))} CPUs (nproc), {model}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def _stat_cpu_s(path: str) -> float:
    with open(path, encoding="ascii") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (s; resolution 1/CLK_TCK)."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def main_thread_cpu_s(pid: int) -> float:
    """utime + stime of the main thread of ``pid`` alone (a control loop), s."""
    return _stat_cpu_s(f"/proc/{pid}/task/{pid}/stat")


def proc_kb(pid: int, key: str) -> float:
    """A ``kB`` line of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``); NaN when gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return math.nan


def pct(a: Any, q: float) -> float:
    """Percentile ``q`` of ``a``; NaN when empty."""
    a = np.asarray(a, dtype=np.float64)
    return float(np.percentile(a, q)) if a.size else math.nan


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a line being written, or a missing file, is skipped)."""
    out = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out
