"""``powerrl hw ...``: probe a node, make a fake sysfs tree, run its fake kernel, sample, restore."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from powerrl.hw.fake import DRIVERS, FakeKernel, make_fake_sysfs
from powerrl.hw.probe import format_text, probe, to_json
from powerrl.hw.safety import JOURNAL_REL, RestoreJournal, restore_entries
from powerrl.hw.sysfs import SysfsRoot


def _root(args: argparse.Namespace) -> SysfsRoot:
    return SysfsRoot(args.root, uid=args.uid)


def _probe(args: argparse.Namespace) -> int:
    root = _root(args)
    caps = probe(root, write_test=args.write_test)
    if args.json:
        print(json.dumps(to_json(root, caps), indent=2))
    else:
        print(format_text(root, caps))
    return 0


def _fake_sysfs(args: argparse.Namespace) -> int:
    root = make_fake_sysfs(args.dir, cpus=args.cpus, sockets=args.sockets, driver=args.driver,
                           energy_range_uj=args.energy_range_uj, locked_zones=tuple(args.locked_zone),
                           load=args.load)
    print(f"fake sysfs for {args.cpus} CPUs on {args.sockets} socket(s), driver {args.driver}: {root.root}")
    print(f"run its kernel with: powerrl hw fake-kernel {root.root}")
    return 0


def _fake_kernel(args: argparse.Namespace) -> int:
    fk = FakeKernel(args.dir, load=args.load)
    print(f"fake kernel on {fk.root} every {args.period} s (pid in {fk.root}/.powerrl-fake-kernel/pid); Ctrl-C stops",
          flush=True)
    steps = fk.run(args.period, args.duration)
    print(f"{steps} steps, {len(fk.errors)} rejected write(s)")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from powerrl.hw.sensors import Sampler

    root = _root(args)
    with Sampler(root, period_s=args.period) as s:
        time.sleep(args.duration)
        s.stop()
        latest = s.latest()
        stats = s.stats()
        errors = s.errors()
    out: dict[str, Any] = {"latest": latest[1] if latest else {}, "stats": stats.__dict__ | {"cpu_share":
                                                                                            stats.cpu_share},
                           "errors": {k: list(v) for k, v in errors.items()}}
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    for name, value in out["latest"].items():
        print(f"{name:<48} {value:.6g}")
    print(f"{stats.samples} samples, {stats.missed} missed, lateness p50 {stats.late_p50_s * 1e6:.0f} us "
          f"p99 {stats.late_p99_s * 1e6:.0f} us max {stats.late_max_s * 1e6:.0f} us, CPU {100 * stats.cpu_share:.4f} %")
    for name, (count, code) in errors.items():
        print(f"sensor {name}: {count} failed read(s), last {code}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    root = _root(args)
    journal = RestoreJournal(Path(args.journal) if args.journal else root.path(JOURNAL_REL))
    entries = journal.load()
    if not entries:
        print(f"nothing to restore ({journal.path} absent or empty)")
        return 0
    failed = restore_entries(root, entries)
    for path, err in failed:
        print(f"could not restore {path}: {err}")
    if failed:
        return 1
    journal.remove()
    print(f"restored {len(entries)} setting(s) from {journal.path}")
    return 0


def _add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/", help="directory standing for / (a fake tree for tests; default /)")
    p.add_argument("--uid", type=int, default=None,
                   help="emulate this user id for permission checks (e.g. 1000 to see what a non-root agent gets)")


def register(subparsers: Any) -> None:
    """Add ``powerrl hw probe|fake-sysfs|fake-kernel|sample|restore``."""
    p = subparsers.add_parser("hw", help="real-node backends: probe, fake sysfs, sampling, restore",
                              description="Inspect and exercise the sysfs/procfs/NVML backends of powerrl.hw.")
    sub = p.add_subparsers(dest="hw_command", metavar="SUBCOMMAND", required=True)

    c = sub.add_parser("probe", help="what this node can sense and actuate, and why not")
    _add_root(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.add_argument("--write-test", action="store_true",
                   help="detect BIOS-locked RAPL limits by writing each current value back (restored after)")
    c.set_defaults(func=_probe)

    c = sub.add_parser("fake-sysfs", help="create a fake sysfs/procfs tree for tests and demos")
    c.add_argument("dir", help="directory to create (must be empty or absent)")
    c.add_argument("--cpus", type=int, default=64, help="logical CPUs (default 64)")
    c.add_argument("--sockets", type=int, default=2, help="packages (default 2)")
    c.add_argument("--driver", choices=DRIVERS, default="acpi-cpufreq", help="cpufreq driver (default acpi-cpufreq)")
    c.add_argument("--energy-range-uj", type=int, default=None,
                   help="max_energy_range_uj of every RAPL zone (small values show the wrap-around)")
    c.add_argument("--locked-zone", action="append", default=[], metavar="ID",
                   help="RAPL zone whose limits the BIOS locked, e.g. intel-rapl:1 (repeatable)")
    c.add_argument("--load", type=float, default=0.3, help="initial CPU load in [0, 1] (default 0.3)")
    c.set_defaults(func=_fake_sysfs)

    c = sub.add_parser("fake-kernel", help="run the fake kernel of a fake tree (reacts to writes, advances counters)")
    c.add_argument("dir", help="a tree made by 'powerrl hw fake-sysfs'")
    c.add_argument("--period", type=float, default=0.1, help="step period in s (default 0.1)")
    c.add_argument("--duration", type=float, default=None, help="stop after this many s (default: run until killed)")
    c.add_argument("--load", type=float, default=None, help="CPU load in [0, 1] (default: the tree's)")
    c.set_defaults(func=_fake_kernel)

    c = sub.add_parser("sample", help="run the native sampler for a while and print the latest values")
    _add_root(c)
    c.add_argument("--period", type=float, default=0.1, help="sampling period in s (default 0.1)")
    c.add_argument("--duration", type=float, default=1.0, help="how long to sample in s (default 1)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_sample)

    c = sub.add_parser("restore", help="restore the settings recorded in a restore journal (after a crash)")
    _add_root(c)
    c.add_argument("--journal", default=None, help=f"journal path (default <root>/{JOURNAL_REL})")
    c.set_defaults(func=_restore)
