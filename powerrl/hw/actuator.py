"""Batched P-state and power-cap actuation: :class:`Actuator` over the native ``actuator.h``.

Every target is allowlisted and journaled by the :class:`~powerrl.hw.safety.SafeWriter` before its
descriptor is opened, values are range-checked in SI units and converted once to the kernel's
integers, and the C code writes them in one call without the GIL, rate-limits each target and reads
each one back. A failed write raises the matching :class:`~powerrl.hw.errors.HwError` after the
whole batch was attempted; a read-back that differs is reported (and recorded by the writer).

On a fake tree the native writes bypass the in-process store hook of :mod:`powerrl.hw.fake`, like
any write from C or a shell: the :class:`~powerrl.hw.fake.FakeKernel` then applies the driver's
rules on its next step, and :meth:`powerrl.hw.safety.SafeWriter.verify` reports what it changed.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from powerrl.hw.cpufreq import KHZ_PER_MHZ, Cpufreq, CpufreqPolicy
from powerrl.hw.errors import HwError, HwInvalidValueError, from_oserror
from powerrl.hw.rapl import UW_PER_W, RaplZone
from powerrl.hw.safety import SafeWriter, WriteResult
from powerrl.hw.sysfs import SysfsRoot


@dataclass(frozen=True)
class Target:
    """One integer attribute to actuate: raw units per SI unit (1000 kHz per MHz), SI range, rate limit."""

    name: str
    rel: str
    raw_per_unit: float
    lo: float
    hi: float
    min_interval_s: float = 0.0


@dataclass
class ActuationReport:
    """Outcome of one :meth:`Actuator.apply`: writes issued and per-target status names."""

    written: int
    status: dict[str, str] = field(default_factory=dict)
    overrides: list[WriteResult] = field(default_factory=list)


_STATUS = {0: "ok", 1: "skipped", 2: "rate_limited", 3: "overridden", 4: "unchanged"}


class Actuator:
    """Writes SI values to ``targets`` in one native batch with rate limiting and read-back.

    Args:
        root: hardware root.
        writer: the session's :class:`SafeWriter` (allowlist, journal, restore).
        targets: what to write.
    """

    def __init__(self, root: SysfsRoot, writer: SafeWriter, targets: Sequence[Target]) -> None:
        from powerrl._core.sampler import NativeActuator

        self.root = root
        self.writer = writer
        self.targets = list(targets)
        if not self.targets:
            raise HwInvalidValueError("an Actuator needs at least one target")
        self._fds: list[int] = []
        try:
            for t in self.targets:
                writer.prepare(t.rel)  # allowlist + journal before any descriptor is opened
                self._fds.append(root.open_fd(t.rel, write=True))
        except HwError:
            self.close()
            raise
        self.native: Any = NativeActuator(self._fds, [t.min_interval_s for t in self.targets])
        self._lo = np.array([t.lo for t in self.targets])
        self._hi = np.array([t.hi for t in self.targets])
        self._scale = np.array([t.raw_per_unit for t in self.targets])

    def apply(self, values: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray | None = None,
              *, now_ns: int = 0) -> ActuationReport:
        """Write ``values`` (SI units, one per target) where ``mask`` is true.

        Raises:
            HwInvalidValueError: a value is outside its target's range (nothing is written).
            HwError: a write or read-back failed (after the whole batch was attempted).
        """
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (len(self.targets),):
            raise HwInvalidValueError(f"need {len(self.targets)} values, got shape {v.shape}")
        m = np.ones(len(self.targets), dtype=np.uint8) if mask is None else np.asarray(mask, dtype=np.uint8)
        bad = (m != 0) & ~((v >= self._lo) & (v <= self._hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            t = self.targets[i]
            raise HwInvalidValueError(f"{t.name}: {v[i]} is outside [{t.lo}, {t.hi}]; nothing was written",
                                      path=t.rel)
        raw = np.round(v * self._scale).astype(np.int64)
        written, readback, status = self.native.actuate(raw, m, now_ns)
        report = ActuationReport(int(written))
        first_error: HwError | None = None
        for i, t in enumerate(self.targets):
            code = int(status[i])
            if code < 0:
                err = from_oserror(OSError(-code, os.strerror(-code)), str(self.root.path(t.rel)), "write",
                                   str(int(raw[i])))
                report.status[t.name] = _errno.errorcode.get(-code, str(-code))
                first_error = first_error or err
                continue
            report.status[t.name] = _STATUS.get(code, str(code))
            if code in (0, 3):
                self.writer.note_written(t.rel, str(int(raw[i])))
            if code == 3:
                res = WriteResult(str(self.root.path(t.rel)), str(int(raw[i])), str(int(readback[i])), True)
                report.overrides.append(res)
                self.writer.overrides.append(res)
        if first_error is not None:
            raise first_error
        return report

    def close(self) -> None:
        """Close the descriptors (restoring the values is the writer's job)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __enter__(self) -> Actuator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cpufreq_targets(policies: Sequence[CpufreqPolicy], attribute: str = "scaling_max_freq",
                    min_interval_s: float = 0.0) -> list[Target]:
    """Frequency targets in MHz for ``scaling_max_freq`` (any governor) or ``scaling_setspeed`` (userspace)."""
    if attribute not in ("scaling_max_freq", "scaling_min_freq", "scaling_setspeed"):
        raise HwInvalidValueError(f"cpufreq actuation attribute must be scaling_max_freq, scaling_min_freq or "
                                  f"scaling_setspeed, got {attribute!r}")
    return [Target(f"policy{p.id}.{attribute}_mhz", p.attr(attribute), KHZ_PER_MHZ, p.cpuinfo_min_mhz,
                   p.cpuinfo_max_mhz, min_interval_s) for p in policies]


def check_userspace(cf: Cpufreq, policies: Sequence[CpufreqPolicy]) -> None:
    """Raise :class:`HwInvalidValueError` unless every policy runs the userspace governor (for setspeed)."""
    wrong = [f"policy{p.id}={cf.governor(p)}" for p in policies if cf.governor(p) != "userspace"]
    if wrong:
        raise HwInvalidValueError("scaling_setspeed needs the userspace governor; select it first ("
                                  + ", ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else "") + ")")


def rapl_targets(zones: Sequence[RaplZone], constraint: str = "long_term", min_interval_s: float = 1.0) -> list[Target]:
    """Power-limit targets in W (constraint by name) for RAPL zones; 1 s rate limit by default."""
    out = []
    for z in zones:
        for c in z.constraints:
            if c.name == constraint:
                hi = c.max_power_w if c.max_power_w else 1e6
                out.append(Target(f"{z.name}.{constraint}.power_limit_w", c.attr(z.rel, "power_limit_uw"), UW_PER_W,
                                  0.0, hi, min_interval_s))
    if not out:
        raise HwInvalidValueError(f"no RAPL zone among {[z.id for z in zones]} has a {constraint!r} constraint")
    return out
