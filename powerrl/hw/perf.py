"""Per-CPU instruction and cycle counters through ``perf_event_open(2)``.

System-wide counting on one CPU (``pid=-1, cpu=N``) is allowed when
``/proc/sys/kernel/perf_event_paranoid`` <= 0 or the process holds CAP_PERFMON (Linux >= 5.8) or
CAP_SYS_ADMIN (Documentation/admin-guide/perf-security.rst). :func:`perf_capability` says which
applies and how to fix it before anything is opened. Counters are real hardware: a fake tree cannot
provide them, and VMs and containers often have no PMU (``ENOENT``) or forbid the call (``EPERM``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Sequence

import numpy as np

from powerrl.hw.errors import HwError, HwUnsupportedError, from_oserror
from powerrl.hw.sysfs import PERF_PARANOID, SysfsRoot

#: syscall numbers of perf_event_open (arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h).
_SYSCALL_NR = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319, "s390x": 331}
PERF_TYPE_HARDWARE = 0
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_HW_INSTRUCTIONS = 1
PERF_FLAG_FD_CLOEXEC = 8
PERF_ATTR_SIZE_VER0 = 64
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38


def _effective_caps() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def perf_capability(root: SysfsRoot) -> tuple[bool, str]:
    """Whether per-CPU counters may be opened, and if not, the fix.

    Uses ``perf_event_paranoid`` under ``root`` and this process's effective capabilities (none when
    ``root`` simulates a non-root uid).
    """
    if platform.machine() not in _SYSCALL_NR:
        return False, f"perf_event_open is not wired for architecture {platform.machine()}"
    level = root.try_int(PERF_PARANOID)
    if level is None:
        return False, "missing /proc/sys/kernel/perf_event_paranoid: kernel built without perf events"
    caps = 0 if root.simulated_uid else _effective_caps()
    if caps & (1 << CAP_PERFMON) or caps & (1 << CAP_SYS_ADMIN) or level <= 0:
        return True, ""
    return False, (f"perf_event_paranoid is {level}: per-CPU counters need <= 0 or CAP_PERFMON; run "
                   "'sysctl kernel.perf_event_paranoid=0' or grant CAP_PERFMON (setcap cap_perfmon+ep) "
                   "to the agent")


def _attr(config: int) -> bytes:
    # struct perf_event_attr, PERF_ATTR_SIZE_VER0 layout: type, size, config, sample_period,
    # sample_type, read_format, flag bits (all 0: enabled, counting user+kernel), wakeup_events,
    # bp_type, config1 (include/uapi/linux/perf_event.h).
    return struct.pack("=IIQQQQQIIQ", PERF_TYPE_HARDWARE, PERF_ATTR_SIZE_VER0, config, 0, 0, 0, 0, 0, 0, 0)


class PerfCounters:
    """Instructions and cycles per CPU since :meth:`open`; read with :meth:`read`.

    Args:
        root: hardware root (must be the real ``/``: counters come from the PMU, not from files).
        cpus: CPU ids to count on.
    """

    def __init__(self, root: SysfsRoot, cpus: Sequence[int]) -> None:
        if root.is_fake:
            raise HwUnsupportedError("perf counters come from the CPU's PMU; a fake sysfs tree cannot provide "
                                     "them (use the real root '/')", path=str(root.root))
        ok, why = perf_capability(root)
        if not ok:
            raise HwError(why, path=str(root.path(PERF_PARANOID)))
        self.cpus = tuple(int(c) for c in cpus)
        self._fds: list[tuple[int, int]] = []
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._nr = _SYSCALL_NR[platform.machine()]

    def _open_one(self, config: int, cpu: int) -> int:
        buf = ctypes.create_string_buffer(_attr(config), PERF_ATTR_SIZE_VER0)
        fd = self._libc.syscall(self._nr, buf, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise from_oserror(OSError(err, os.strerror(err)), f"perf_event_open(cpu={cpu})", "open")
        return int(fd)

    def open(self) -> PerfCounters:
        """Open one instructions and one cycles counter per CPU; raises :class:`HwError` on failure."""
        try:
            for cpu in self.cpus:
                self._fds.append((self._open_one(PERF_COUNT_HW_INSTRUCTIONS, cpu),
                                  self._open_one(PERF_COUNT_HW_CPU_CYCLES, cpu)))
        except HwError:
            self.close()
            raise
        return self

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(instructions, cycles)`` per CPU since :meth:`open` (int64 arrays)."""
        ins = np.zeros(len(self._fds), dtype=np.int64)
        cyc = np.zeros(len(self._fds), dtype=np.int64)
        for i, (fi, fc) in enumerate(self._fds):
            ins[i] = struct.unpack("=Q", os.pread(fi, 8, 0))[0]
            cyc[i] = struct.unpack("=Q", os.pread(fc, 8, 0))[0]
        return ins, cyc

    def close(self) -> None:
        """Close every counter."""
        for pair in self._fds:
            for fd in pair:
                os.close(fd)
        self._fds = []

    def __enter__(self) -> PerfCounters:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
