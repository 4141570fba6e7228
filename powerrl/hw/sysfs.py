"""The one place that opens files under ``/sys`` and ``/proc``: :class:`SysfsRoot`.

Every path is relative to a configurable root (``/`` on a real node, a directory made by
``powerrl hw fake-sysfs`` in tests and demos), so backends never spell an absolute path.

Reads and writes go through the same system calls on a real and a fake tree. Two things a directory
of regular files cannot do by itself are added for fake trees only, both documented in docs/hardware.md:

* **Store callbacks.** A sysfs write runs the driver's ``store()`` callback, which may reject the
  value with ``EINVAL`` or clamp it (Documentation/filesystems/sysfs.rst). When the root holds the
  fake-tree marker :data:`FAKE_MARKER`, :meth:`SysfsRoot.write_text` first passes the text to
  :meth:`powerrl.hw.fake.FakeDriver.store`, which raises ``OSError(EINVAL)`` (or returns the clamped
  text) exactly where the kernel driver would; the write itself is then the same ``open``/``write``.
* **Permissions.** Running as root bypasses mode bits, so ``uid=`` simulates another user: reads and
  writes then check the mode bits the kernel would (``energy_uj`` is 0400 since Linux 5.10,
  CVE-2020-8694) and fail with ``EACCES`` like the kernel.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from powerrl.hw.errors import HwError, HwPermissionError, from_oserror

#: File at the root of a fake tree describing it (driver, CPU count, model parameters).
FAKE_MARKER = ".powerrl-fake-sysfs.json"

#: Paths (relative to the root) of the interfaces the backends use.
CPUFREQ_DIR = "sys/devices/system/cpu/cpufreq"
CPU_DIR = "sys/devices/system/cpu"
INTEL_PSTATE_DIR = "sys/devices/system/cpu/intel_pstate"
AMD_PSTATE_DIR = "sys/devices/system/cpu/amd_pstate"
POWERCAP_DIR = "sys/class/powercap"
THERMAL_DIR = "sys/class/thermal"
HWMON_DIR = "sys/class/hwmon"
PROC_STAT = "proc/stat"
PERF_PARANOID = "proc/sys/kernel/perf_event_paranoid"


class StoreHook(Protocol):
    """What a fake tree's driver emulation provides (see :class:`powerrl.hw.fake.FakeDriver`)."""

    def store(self, root: SysfsRoot, rel: str, text: str) -> str:
        """Validate ``text`` written to ``rel`` like the driver's ``store()``; return the text to store."""
        ...


class SysfsRoot:
    """Reads and writes attributes under ``root`` with kernel-like errors.

    Args:
        root: directory standing for ``/`` (default ``/``).
        uid: effective user id to emulate for permission checks; ``None`` = the real one (the
            kernel then checks). A non-zero ``uid`` while running as root makes mode bits count, so
            permission handling is testable without dropping privileges.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *, uid: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise HwError(f"hardware root {str(self.root)!r} is not a directory (use '/' on a real node or a "
                          "tree made by 'powerrl hw fake-sysfs DIR')", path=str(self.root))
        self.uid = os.geteuid() if uid is None else int(uid)
        self.simulated_uid = uid is not None and uid != os.geteuid()
        self.fake_info: dict[str, Any] | None = None
        self.driver: StoreHook | None = None
        marker = self.root / FAKE_MARKER
        if marker.is_file():
            self.fake_info = json.loads(marker.read_text(encoding="utf-8"))
            from powerrl.hw.fake import FakeDriver

            self.driver = FakeDriver(self.fake_info)

    def __repr__(self) -> str:
        kind = "fake" if self.is_fake else "real"
        return f"SysfsRoot({str(self.root)!r}, {kind}, uid={self.uid})"

    @property
    def is_fake(self) -> bool:
        """True for a tree made by ``powerrl hw fake-sysfs``."""
        return self.fake_info is not None

    def path(self, rel: str) -> Path:
        """Absolute path of ``rel`` under the root; refuses absolute paths and ``..`` components."""
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts:
            raise HwError(f"path {rel!r} must be relative to the hardware root without '..'", path=rel)
        return self.root.joinpath(*parts)

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists."""
        return self.path(rel).exists()

    def listdir(self, rel: str) -> list[str]:
        """Sorted entries of directory ``rel`` (empty when it does not exist)."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    # -- permissions -------------------------------------------------------------------------------
    def access(self, rel: str, write: bool = False) -> tuple[bool, str]:
        """Whether ``rel`` can be read (or written), and why not.

        With the real uid this asks :func:`os.access`; with a simulated uid it applies the owner or
        "other" mode bits (sysfs attributes are owned by root, group ignored), root passing always.
        """
        p = self.path(rel)
        try:
            st = p.stat()
        except FileNotFoundError:
            return False, "missing"
        if not self.simulated_uid:
            ok = os.access(p, os.W_OK if write else os.R_OK)
        elif self.uid == 0:
            ok = True
        else:
            if st.st_uid == self.uid:
                bit = stat.S_IWUSR if write else stat.S_IRUSR
            else:
                bit = stat.S_IWOTH if write else stat.S_IROTH
            ok = bool(st.st_mode & bit)
        if ok:
            return True, ""
        mode = stat.S_IMODE(st.st_mode)
        return False, f"permission: mode {mode:04o}, {'write' if write else 'read'} needs root"

    def _check(self, rel: str, write: bool) -> None:
        if self.simulated_uid:
            ok, why = self.access(rel, write)
            if not ok and why != "missing":
                raise from_oserror(PermissionError(errno.EACCES, why), str(self.path(rel)),
                                   "write" if write else "read")

    # -- reads -------------------------------------------------------------------------------------
    def read_text(self, rel: str) -> str:
        """The attribute's text with the trailing newline removed (inner and trailing spaces kept)."""
        p = self.path(rel)
        self._check(rel, write=False)
        try:
            with open(p, "rb", buffering=0) as fh:
                data = fh.read(65536)
        except OSError as exc:
            raise from_oserror(exc, str(p), "read") from None
        return data.decode("ascii", errors="replace").rstrip("\n")

    def read_str(self, rel: str) -> str:
        """The attribute's text, stripped of surrounding whitespace."""
        return self.read_text(rel).strip()

    def read_int(self, rel: str) -> int:
        """The attribute as an integer (raw kernel units: kHz, uW, uJ, m degC, ...)."""
        text = self.read_str(rel)
        try:
            return int(text)
        except ValueError:
            raise HwError(f"{self.path(rel)} holds {text!r}, not an integer", path=str(self.path(rel))) from None

    def read_words(self, rel: str) -> tuple[str, ...]:
        """Whitespace-separated words (e.g. ``scaling_available_governors`` with its trailing space)."""
        return tuple(self.read_text(rel).split())

    def try_int(self, rel: str) -> int | None:
        """:meth:`read_int`, or ``None`` when the attribute is missing, unreadable or not an integer."""
        try:
            return self.read_int(rel)
        except HwError:
            return None

    def try_str(self, rel: str) -> str | None:
        """:meth:`read_str`, or ``None`` when the attribute is missing or unreadable."""
        try:
            return self.read_str(rel)
        except HwError:
            return None

    def open_fd(self, rel: str, write: bool = False) -> int:
        """Open ``rel`` read-only (or read-write) for the native sampler/actuator; raises :class:`HwError`."""
        p = self.path(rel)
        self._check(rel, write=write)
        try:
            return os.open(p, (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)
        except OSError as exc:
            raise from_oserror(exc, str(p), "open") from None

    # -- writes ------------------------------------------------------------------------------------
    def write_text(self, rel: str, text: str) -> None:
        """Write ``text`` to attribute ``rel`` like ``echo text > file``; kernel errors become :class:`HwError`.

        Use :class:`powerrl.hw.safety.SafeWriter` rather than calling this directly: it enforces the
        allowlist, journals the original value and reads the result back.
        """
        p = self.path(rel)
        self._check(rel, write=True)
        try:
            if self.driver is not None:
                text = self.driver.store(self, rel, text)
            fd = os.open(p, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                os.write(fd, (text + "\n").encode("ascii"))
            finally:
                os.close(fd)
        except HwPermissionError:
            raise
        except OSError as exc:
            raise from_oserror(exc, str(p), "write", text) from None
