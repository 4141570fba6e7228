"""Exceptions of the hardware backends: one class per kernel error a user can act on.

The kernel reports a rejected sysfs write through ``errno`` only (``write(2)`` returns ``-1``), so
every :class:`OSError` raised while touching ``/sys`` or ``/proc`` is turned into one of these with the
path, the value and what to do about it, e.g. ``EINVAL`` from ``scaling_setspeed`` while the governor
is not ``userspace`` (Documentation/admin-guide/pm/cpufreq.rst).
"""

from __future__ import annotations

import errno as _errno
import os

from powerrl.errors import PowerrlError


class HwError(PowerrlError):
    """A hardware backend could not read or write an attribute.

    Attributes:
        path: the attribute's path (absolute, under the configured root).
        errno: the kernel's errno, or ``None`` when the error was detected by powerrl itself.
    """

    def __init__(self, message: str, *, path: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        # Set after __init__: OSError.__init__ (HwPermissionError is a PermissionError) resets errno.
        self.path = path
        self.errno = errno


class HwPermissionError(HwError, PermissionError):
    """``EACCES``/``EPERM``: not root, a root-only attribute (mode 0400), or a firmware/BIOS lock."""


class HwInvalidValueError(HwError, ValueError):
    """``EINVAL``: the driver rejected the value (out of range, not offered, wrong governor)."""


class HwNoDataError(HwError):
    """``ENODATA``: the attribute exists but the driver has no value to report right now."""


class HwUnsupportedError(HwError):
    """``ENOSYS``/``EOPNOTSUPP``/``ENOENT``/``ENODEV``: this kernel, driver or device lacks the feature."""


class HwBusyError(HwError):
    """``EBUSY``: the driver refuses the change in its current mode (e.g. EPP under ``performance``)."""


class HwNotAllowedError(HwError):
    """A write to a path outside the allowlist of :mod:`powerrl.hw.safety` was refused before reaching the kernel."""


class HwOverrideError(HwError):
    """A written value read back different: the kernel or firmware clamped or overrode it."""


_HINTS: dict[int, tuple[type[HwError], str]] = {
    _errno.EACCES: (HwPermissionError, "permission denied: run as root, or the attribute is root-only or "
                                       "locked by firmware/BIOS"),
    _errno.EPERM: (HwPermissionError, "operation not permitted: needs root (or the capability named by the driver)"),
    _errno.EINVAL: (HwInvalidValueError, "the driver rejected the value (out of range, not offered, or not "
                                         "accepted under the current governor/mode)"),
    _errno.ENODATA: (HwNoDataError, "the driver has no data for this attribute right now"),
    _errno.ENOSYS: (HwUnsupportedError, "not implemented by this kernel or driver"),
    _errno.EOPNOTSUPP: (HwUnsupportedError, "not supported by this driver or device"),
    _errno.ENOENT: (HwUnsupportedError, "no such attribute or event: the driver is not loaded or the hardware "
                                        "lacks the feature"),
    _errno.ENODEV: (HwUnsupportedError, "no such device"),
    _errno.EBUSY: (HwBusyError, "the driver refuses this change in its current mode"),
}


def from_oserror(exc: OSError, path: str, action: str, value: str | None = None) -> HwError:
    """Turn an :class:`OSError` from ``action`` ("read"/"write") on ``path`` into the matching :class:`HwError`."""
    code = exc.errno if exc.errno is not None else 0
    cls, hint = _HINTS.get(code, (HwError, exc.strerror or "I/O error"))
    name = _errno.errorcode.get(code, str(code))
    what = f"{action} {value!r} to {path}" if value is not None else f"{action} {path}"
    detail = exc.strerror if exc.strerror and exc.strerror != os.strerror(code) else ""
    return cls(f"{what} failed with {name}: {hint}" + (f" [{detail}]" if detail else ""), path=path, errno=code)
