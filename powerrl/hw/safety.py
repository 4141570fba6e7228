"""Safe writes: an allowlist, read-back with override detection, and restore on exit, signal or crash.

:class:`SafeWriter` is the only way powerrl writes to ``/sys``:

1. The path must match :data:`DEFAULT_ALLOWLIST` (per path component, so ``*`` never crosses ``/``).
2. Before the first write to a path its current text is saved to an on-disk **restore journal**
   (JSON, written to a temporary file, ``fsync``-ed and renamed over the old journal, so a crash at
   any point leaves either the old or the new journal, never a torn one).
3. The value is written and read back at once; a different read-back (the kernel clamped it, the
   firmware overrode it) is reported as an override, never hidden. :meth:`SafeWriter.verify` re-reads
   every written attribute later to catch overrides applied asynchronously (e.g. by firmware).
4. :meth:`SafeWriter.restore` writes the saved texts back in reverse order, on ``close()``, at
   interpreter exit, and on SIGTERM/SIGHUP/SIGINT/SIGQUIT. After a crash (SIGKILL, power loss of the
   process) the journal survives: the next :class:`SafeWriter` on the same root restores it first.

The default journal lives in ``<root>/run/powerrl/restore-journal.json``: ``/run`` is a tmpfs, so a
reboot (which resets every cpufreq/RAPL/thermal setting anyway) also forgets the journal.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

from powerrl.hw.errors import HwBusyError, HwError, HwNotAllowedError, HwOverrideError
from powerrl.hw.sysfs import SysfsRoot

log = logging.getLogger(__name__)

#: Attributes powerrl may write, relative to the root; ``*`` and ``[..]`` match within one component.
#: cpufreq.rst (policy attributes, boost), intel_pstate.rst (global knobs, EPP), amd-pstate.rst (EPP),
#: powercap.rst (constraints, enabled), sysfs-api.rst (cooling device cur_state).
DEFAULT_ALLOWLIST: tuple[str, ...] = (
    "sys/devices/system/cpu/cpufreq/policy*/scaling_governor",
    "sys/devices/system/cpu/cpufreq/policy*/scaling_setspeed",
    "sys/devices/system/cpu/cpufreq/policy*/scaling_min_freq",
    "sys/devices/system/cpu/cpufreq/policy*/scaling_max_freq",
    "sys/devices/system/cpu/cpufreq/policy*/energy_performance_preference",
    "sys/devices/system/cpu/cpufreq/boost",
    "sys/devices/system/cpu/intel_pstate/max_perf_pct",
    "sys/devices/system/cpu/intel_pstate/min_perf_pct",
    "sys/devices/system/cpu/intel_pstate/no_turbo",
    "sys/class/powercap/intel-rapl:*/constraint_[0-9]_power_limit_uw",
    "sys/class/powercap/intel-rapl:*/constraint_[0-9]_time_window_us",
    "sys/class/powercap/intel-rapl:*/enabled",
    "sys/class/thermal/cooling_device*/cur_state",
)

#: Saved texts that are not values and cannot be written back (scaling_setspeed outside the
#: userspace governor reads "<unsupported>", cpufreq.rst); restoring the governor restores it.
UNRESTORABLE = ("<unsupported>",)

JOURNAL_REL = "run/powerrl/restore-journal.json"


def write_atomically(path: Path, text: str, mode: int = 0o644, sync: bool = True) -> None:
    """Replace ``path`` with ``text`` so a reader or a crash sees the old or the new file, never a torn one.

    Temp file beside it, (``sync``: fsync,) rename, (``sync``: fsync of the directory, so the rename
    itself survives a crash).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def powerrl_process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process that looks like Python/powerrl.

    Pid files and journals outlive a killed process, and its pid may be recycled by an unrelated
    one: the command line tells them apart (no procfs: assume not running).
    """
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline or b"powerrl" in cmdline


def allowlisted_state(root: SysfsRoot, allowlist: Iterable[str] = DEFAULT_ALLOWLIST) -> dict[str, str]:
    """Text of every attribute under ``root`` that the allowlist lets powerrl write, by relative path.

    What "every setting restored" means, checkably: take it before a run and compare after. Reads
    each file once (fine for a check, not for a control loop).
    """
    out = {}
    for pattern in allowlist:
        for p in root.root.glob(pattern):
            out[str(p.relative_to(root.root))] = p.read_text(encoding="ascii", errors="replace").strip()
    return out


def is_allowed(rel: str, allowlist: Iterable[str] = DEFAULT_ALLOWLIST) -> bool:
    """Whether ``rel`` matches an allowlist pattern component by component."""
    parts = PurePosixPath(rel).parts
    if ".." in parts or PurePosixPath(rel).is_absolute():
        return False
    for pattern in allowlist:
        pp = PurePosixPath(pattern).parts
        if len(pp) == len(parts) and all(fnmatchcase(a, b) for a, b in zip(parts, pp, strict=True)):
            return True
    return False


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one write: what was asked, what the attribute reads now, and whether they differ."""

    path: str
    requested: str
    readback: str
    overridden: bool

    def describe(self) -> str:
        """One line for logs and the CLI."""
        if not self.overridden:
            return f"{self.path} = {self.readback}"
        return (f"{self.path}: wrote {self.requested!r} but it reads {self.readback!r} "
                "(clamped or overridden by the kernel/firmware)")


def _same(requested: str, readback: str) -> bool:
    try:
        return int(requested) == int(readback)
    except ValueError:
        # Governors and EPP strings; cpufreq may show "[name]" lists elsewhere but these attributes
        # show the bare value (cpufreq.rst, intel_pstate.rst).
        return requested.strip() == readback.strip()


class RestoreJournal:
    """The on-disk list of original values: ``{"version": 1, "entries": [{"path", "original"}]}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict[str, str]]:
        """Entries of an existing journal (empty when there is none); a corrupt journal raises :class:`HwError`."""
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = data["entries"]
            return [{"path": str(e["path"]), "original": str(e["original"])} for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise HwError(f"restore journal {self.path} is unreadable ({exc}); inspect it, restore the listed "
                          "settings by hand and delete it", path=str(self.path)) from None

    def owner_pid(self) -> int | None:
        """The pid that wrote the journal, when that process is still alive and looks like Python/powerrl.

        A journal whose writer is alive is not a crashed run's: restoring it would undo a running
        agent's settings behind its back. The command-line check keeps a recycled pid of an
        unrelated process from blocking recovery forever.
        """
        try:
            pid = int(json.loads(self.path.read_text(encoding="utf-8")).get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        return pid if pid != os.getpid() and powerrl_process_alive(pid) else None

    def save(self, entries: list[dict[str, str]]) -> None:
        """Atomically replace the journal with ``entries`` (temp file, fsync, rename, fsync dir)."""
        write_atomically(self.path, json.dumps({"version": 1, "pid": os.getpid(), "entries": entries}, indent=1),
                         mode=0o600)

    def remove(self) -> None:
        """Delete the journal (all settings restored)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def restore_entries(root: SysfsRoot, entries: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Write saved texts back, newest first, with a second pass for ordering conflicts.

    A second pass resolves pairs such as ``scaling_min_freq``/``scaling_max_freq`` that the driver only
    accepts in one order. Returns ``(path, error)`` for every entry that could not be restored.
    """
    pending = [e for e in reversed(entries) if e["original"].strip() not in UNRESTORABLE]
    failed: list[tuple[str, str]] = []
    for _attempt in range(2):
        failed = []
        retry = []
        for e in pending:
            try:
                root.write_text(e["path"], e["original"].strip())
            except HwError as exc:
                failed.append((e["path"], str(exc)))
                retry.append(e)
        pending = retry
        if not pending:
            break
    return failed


class SafeWriter:
    """Allowlisted, journaled, read-back-checked writes that are undone on exit, signal or crash.

    Args:
        root: the hardware root.
        journal_path: restore journal; default ``<root>/run/powerrl/restore-journal.json``.
        allowlist: path patterns that may be written (see :data:`DEFAULT_ALLOWLIST`).
        install_handlers: restore at interpreter exit and on SIGTERM/SIGHUP/SIGINT/SIGQUIT (handlers
            are installed only from the main thread; previous handlers are chained).
        strict: raise :class:`HwOverrideError` when a read-back differs instead of only reporting it.

    On construction a journal left by a crashed run is restored first (see :attr:`recovered`).
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)

    def __init__(self, root: SysfsRoot, journal_path: str | os.PathLike[str] | None = None, *,
                 allowlist: Iterable[str] = DEFAULT_ALLOWLIST, install_handlers: bool = True,
                 strict: bool = False) -> None:
        self.root = root
        self.journal = RestoreJournal(Path(journal_path) if journal_path is not None
                                      else root.path(JOURNAL_REL))
        self.allowlist = tuple(allowlist)
        self.strict = strict
        self._lock = threading.RLock()
        self._entries: list[dict[str, str]] = []
        self._saved: set[str] = set()
        self._last: dict[str, str] = {}
        self.overrides: list[WriteResult] = []
        #: ``(path, error)`` of entries a crashed run left that could not be restored.
        self.recovery_failures: list[tuple[str, str]] = []
        #: Paths restored from a crashed run's journal when this writer started.
        self.recovered: list[str] = self.recover()
        self._closed = False
        self._prev_handlers: dict[int, Any] = {}
        if install_handlers:
            atexit.register(self.restore)
            if threading.current_thread() is threading.main_thread():
                for sig in self._SIGNALS:
                    self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    # -- crash recovery ----------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Restore what a previous run's journal lists, then delete it; returns the restored paths."""
        entries = self.journal.load()
        if not entries:
            self.journal.remove()
            return []
        owner = self.journal.owner_pid()
        if owner is not None:
            raise HwBusyError(f"another powerrl process (pid {owner}) is changing this node's settings (journal "
                              f"{self.journal.path}); stop it first (powerrl agent status shows an agent). Two "
                              "writers would undo each other's settings.", path=str(self.journal.path))
        log.warning("restoring %d setting(s) left by an interrupted powerrl run (%s)", len(entries),
                    self.journal.path)
        self.recovery_failures = restore_entries(self.root, entries)
        if self.recovery_failures:
            raise HwError("could not restore settings of an interrupted run: "
                          + "; ".join(f"{p}: {e}" for p, e in self.recovery_failures)
                          + f" (journal kept at {self.journal.path})", path=str(self.journal.path))
        self.journal.remove()
        return [e["path"] for e in entries]

    # -- writes ------------------------------------------------------------------------------------
    def check_allowed(self, rel: str) -> None:
        """Raise :class:`HwNotAllowedError` unless ``rel`` is allowlisted."""
        if not is_allowed(rel, self.allowlist):
            raise HwNotAllowedError(f"refusing to write {rel!r}: not on the allowlist of powerrl.hw.safety "
                                    "(cpufreq policy knobs, intel_pstate globals, RAPL constraints, cooling "
                                    "device cur_state)", path=rel)

    def prepare(self, rel: str) -> None:
        """Allowlist-check ``rel`` and journal its current text, without writing (used by the native actuator)."""
        with self._lock:
            if self._closed:
                raise HwError("SafeWriter is closed; create a new one", path=rel)
            self.check_allowed(rel)
            if rel in self._saved:
                return
            original = self.root.read_text(rel)
            self._entries.append({"path": rel, "original": original})
            self.journal.save(self._entries)
            self._saved.add(rel)

    def write(self, rel: str, value: str | int) -> WriteResult:
        """Write ``value`` to ``rel`` (allowlisted, journaled first) and read it back.

        Raises:
            HwNotAllowedError: ``rel`` is not allowlisted.
            HwError: the kernel rejected the write (subclass by errno: EINVAL, EACCES, EBUSY, ...).
            HwOverrideError: with ``strict=True``, the read-back differs.
        """
        text = str(value)
        with self._lock:
            self.prepare(rel)
            self.root.write_text(rel, text)
            self._last[rel] = text
            return self._check_readback(rel, text)

    def note_written(self, rel: str, text: str) -> None:
        """Record a value written by the native actuator so that :meth:`verify` checks it later."""
        with self._lock:
            self._last[rel] = text

    def _check_readback(self, rel: str, text: str) -> WriteResult:
        readback = self.root.read_str(rel)
        res = WriteResult(str(self.root.path(rel)), text, readback, not _same(text, readback))
        if res.overridden:
            self.overrides.append(res)
            log.warning("%s", res.describe())
            if self.strict:
                raise HwOverrideError(res.describe(), path=res.path)
        return res

    def verify(self) -> list[WriteResult]:
        """Re-read every attribute written so far; returns those whose value changed behind our back."""
        with self._lock:
            out = []
            for rel, text in self._last.items():
                res = self._check_readback_quiet(rel, text)
                if res.overridden:
                    out.append(res)
            self.overrides.extend(out)
            return out

    def _check_readback_quiet(self, rel: str, text: str) -> WriteResult:
        readback = self.root.read_str(rel)
        return WriteResult(str(self.root.path(rel)), text, readback, not _same(text, readback))

    @property
    def saved(self) -> dict[str, str]:
        """Original text of every path written so far."""
        return {e["path"]: e["original"] for e in self._entries}

    # -- restore -----------------------------------------------------------------------------------
    def restore(self) -> list[tuple[str, str]]:
        """Write every saved original back and delete the journal if all succeeded; returns failures."""
        with self._lock:
            if not self._entries:
                return []
            failed = restore_entries(self.root, self._entries)
            if failed:
                for path, err in failed:
                    log.error("could not restore %s: %s (journal kept at %s)", path, err, self.journal.path)
                return failed
            self._entries = []
            self._saved.clear()
            self._last.clear()
            self.journal.remove()
            return []

    def close(self) -> list[tuple[str, str]]:
        """Restore, uninstall the handlers; the writer refuses further writes."""
        failed = self.restore()
        with self._lock:
            self._closed = True
        atexit.unregister(self.restore)
        if threading.current_thread() is threading.main_thread():
            for sig, prev in self._prev_handlers.items():
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, prev)
        self._prev_handlers.clear()
        return failed

    def __enter__(self) -> SafeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.restore()
        prev = self._prev_handlers.get(signum)
        if callable(prev):
            prev(signum, frame)
            return
        if prev == signal.SIG_IGN:
            return
        # Default action: re-deliver the signal with the default handler so the exit status is right.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
