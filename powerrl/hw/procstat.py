"""CPU utilisation from ``/proc/stat`` (Documentation/filesystems/proc.rst, "1.8 Miscellaneous kernel statistics").

Each ``cpu``/``cpuN`` line counts time in USER_HZ ticks: user, nice, system, idle, iowait, irq,
softirq, steal, guest, guest_nice. Busy time is user + nice + system + irq + softirq + steal (guest
time is already inside user and nice); utilisation is busy ticks / all ticks between two readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from powerrl.hw.errors import HwError
from powerrl.hw.sysfs import PROC_STAT, SysfsRoot


@dataclass(frozen=True)
class CpuTimes:
    """Busy and total ticks of the aggregate (index 0 of the arrays) and of every CPU (1..n)."""

    names: tuple[str, ...]
    busy: np.ndarray
    total: np.ndarray


def parse_proc_stat(text: str) -> CpuTimes:
    """Parse the ``cpu`` lines of ``/proc/stat`` text."""
    names, busy, total = [], [], []
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        v = [int(x) for x in parts[1:9]] + [0] * max(0, 8 - len(parts[1:9]))
        if len(parts) < 5:
            raise HwError(f"/proc/stat line {line!r} has fewer than 4 counters", path=PROC_STAT)
        b = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        names.append(parts[0])
        busy.append(b)
        total.append(b + v[3] + v[4])
    if not names or names[0] != "cpu":
        raise HwError("/proc/stat has no aggregate 'cpu' line", path=PROC_STAT)
    return CpuTimes(tuple(names), np.array(busy, dtype=np.int64), np.array(total, dtype=np.int64))


class ProcStat:
    """Utilisation between successive readings of ``<root>/proc/stat``."""

    def __init__(self, root: SysfsRoot) -> None:
        self.root = root
        self._prev: CpuTimes | None = None

    def available(self) -> tuple[bool, str]:
        """Whether ``/proc/stat`` is readable."""
        ok, why = self.root.access(PROC_STAT)
        return (True, "") if ok else (False, "missing /proc/stat" if why == "missing" else why)

    def read(self) -> CpuTimes:
        """Current tick counts."""
        return parse_proc_stat(self.root.read_text(PROC_STAT))

    def utilisation(self) -> np.ndarray | None:
        """Utilisation in [0, 1] since the previous call (index 0 aggregate, then per CPU); ``None`` the first time."""
        cur = self.read()
        prev, self._prev = self._prev, cur
        if prev is None or prev.names != cur.names:
            return None
        dt = cur.total - prev.total
        db = cur.busy - prev.busy
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(dt > 0, db / np.maximum(dt, 1), np.nan)
