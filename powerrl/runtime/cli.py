"""``powerrl agent run | check | status | cap``: the node agent's command line (docs/deploy.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from powerrl.errors import ConfigError
from powerrl.hw.safety import powerrl_process_alive
from powerrl.hw.sysfs import SysfsRoot
from powerrl.runtime.cli_args import port
from powerrl.runtime.config import HostFile, load_host_file

#: The policy ``powerrl agent run`` drives when neither --policy nor --controller is given.
DEFAULT_POLICY = "nodedvfs-v0"


def _shipped_policy(name: str) -> str:
    from powerrl.eval.policy_file import SHIPPED_POLICIES

    return str(SHIPPED_POLICIES / f"{name}.onnx")


def _controller_arg(args: argparse.Namespace) -> str:
    if args.policy and args.controller:
        raise ConfigError("--policy/--controller", f"{args.policy} and {args.controller}", "one of them, not both")
    if args.controller:
        return str(args.controller)
    return str(args.policy) if args.policy else _shipped_policy(DEFAULT_POLICY)


def _host(args: argparse.Namespace) -> HostFile:
    return load_host_file(args.host)


def _root(args: argparse.Namespace, hf: HostFile | None) -> SysfsRoot:
    return SysfsRoot(args.root or (hf.host.root if hf is not None else "/"))


def _print_check(items: list[Any], out: Any = None) -> None:
    out = sys.stdout if out is None else out  # the stream of now, not of import time
    for it in items:
        mark = "ok" if it.ok else ("!!" if it.needed else "--")
        print(f"  [{mark}] {it.name}: {it.detail}", file=out)


def _run(args: argparse.Namespace) -> int:
    from powerrl.runtime.agent import NodeAgent
    from powerrl.runtime.check import check_host

    hf = _host(args)
    controller = _controller_arg(args)
    if args.duration_s is not None and not args.duration_s > 0:
        raise ConfigError("--duration-s", args.duration_s, "a positive number of seconds")
    if args.apply:
        # A killed run's settings come back first, even when this start is refused below.
        from powerrl.hw.safety import SafeWriter

        SafeWriter(_root(args, hf), install_handlers=False).close()
        items, _ = check_host(hf, controller, args.root)
        missing = [it for it in items if it.needed and not it.ok]
        if missing:
            print("powerrl agent run: refusing --apply, this node lacks what the agent needs:", file=sys.stderr)
            _print_check(missing, sys.stderr)
            print("(powerrl agent check --host ... lists everything; docs/deploy.md explains each item)",
                  file=sys.stderr)
            return 1
    log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115 - closed below
    try:
        agent = NodeAgent(hf, controller, apply=args.apply, root=args.root,
                          period_s=None if args.period_ms is None else args.period_ms / 1000.0, log=log,
                          metrics_port=args.metrics_port, coordinator_url=args.coordinator)
        return agent.run(args.duration_s)
    finally:
        if log is not None:
            log.close()


def _check(args: argparse.Namespace) -> int:
    from powerrl.runtime.check import check_host

    hf = _host(args)
    controller = None if args.no_controller else _controller_arg(args)
    items, layout = check_host(hf, controller, args.root)
    if args.json:
        print(json.dumps([it.__dict__ for it in items], indent=1))
    else:
        print(f"host {hf.path} on root {args.root or hf.host.root}")
        _print_check(items)
    missing = [it for it in items if it.needed and not it.ok]
    if missing:
        if not args.json:
            print(f"{len(missing)} needed item(s) missing: 'powerrl agent run --apply' would refuse to start")
        return 1
    if not args.json:
        print("ready: 'powerrl agent run --apply' can start" + ("" if all(it.ok for it in items)
                                                               else " (items marked -- degrade it as stated)"))
    return 0


def _state(args: argparse.Namespace) -> tuple[Path, HostFile | None]:
    from powerrl.runtime.agent import state_dir

    hf = _host(args) if args.host else None
    rel = hf.agent.state_dir if hf is not None else "run/powerrl"
    return state_dir(_root(args, hf), rel), hf


def _status(args: argparse.Namespace) -> int:
    from powerrl.runtime.agent import STATUS_FILE

    state, _ = _state(args)
    path = state / STATUS_FILE
    if not path.is_file():
        print(f"no agent status at {path}: no agent has run on this root (or --root/--host point elsewhere)")
        return 1
    try:
        st = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError("status file", str(path), f"a JSON status written by powerrl agent run ({exc})") from None
    running = bool(st.get("running")) and powerrl_process_alive(int(st.get("pid", 0)))
    if args.json:
        print(json.dumps({**st, "running": running}, indent=1))
        return 0 if running else 3
    age = time.time() - float(st.get("updated", 0))
    print(f"agent on {st.get('node')}: {'running' if running else 'stopped'} (pid {st.get('pid')}, "
          f"{st.get('mode')}, updated {age:.1f} s ago)")
    print(f"  controller {st.get('controller')}, fallback {st.get('fallback')}, period {st.get('period_ms'):g} ms")
    tick = st.get("tick_ms", {})
    fmt = (lambda v: "-" if v is None else f"{v:.3f}")  # noqa: E731
    print(f"  ticks {st.get('ticks')}, missed deadlines {st.get('missed_deadlines')}, tick p50 {fmt(tick.get('p50'))}"
          f" ms p99 {fmt(tick.get('p99'))} ms, CPU {100 * st.get('cpu_share', 0):.2f} % of a core, "
          f"RSS {st.get('rss_mb', 0):.0f} MB")
    sh = st.get("shield", {})
    print(f"  shield interventions {sh.get('interventions', 0)} of {sh.get('decisions', 0)} decisions; "
          f"events {sh.get('events', {})}; fallbacks {st.get('fallbacks', {})}")
    cap = st.get("cap", {})
    print(f"  node cap {cap.get('node_cap_w')} W, in force {cap.get('in_force_w')} W"
          f"{' (coordinator silent: decaying)' if cap.get('stale') else ''}, guaranteed base {cap.get('base_w')} W")
    co = st.get("coordinator")
    if co:
        _print_coordinator(co)
    last = st.get("last") or {}
    if last:
        print(f"  last tick: {last.get('source')}, P-states {last.get('applied')}, temp {last.get('temp_c')} degC, "
              f"power {last.get('power_w')} W, util {last.get('util')}")
    for e in st.get("errors", []):
        print(f"  error: {e}")
    return 0 if running else 3


def _print_coordinator(co: dict[str, Any]) -> None:
    """The coordinator lines of ``powerrl agent status``."""
    reach = {True: "reachable", False: "UNREACHABLE", None: "no answer yet"}[co.get("reachable")]
    grant = co.get("last_grant") or {}
    got = (f"last grant {grant.get('cap_w')} W (round {grant.get('round')}, base {grant.get('base_w')} W"
           f"{', emergencies ' + ','.join(grant['emergencies']) if grant.get('emergencies') else ''})"
           if grant else "no grant yet")
    print(f"  coordinator {co.get('url')} as {co.get('node')}: {reach}; {got}; reports {co.get('reports')}, "
          f"errors {co.get('errors')}")
    print(f"  coordinator cap in force {co.get('in_force_w')} W"
          f"{' (coordinator silent: decaying to its base)' if co.get('stale') else ''}")
    if co.get("errors") and co.get("last_error") and co.get("reachable") is not True:
        print(f"  coordinator error: {co.get('last_error')}")


def _cap(args: argparse.Namespace) -> int:
    from powerrl.runtime.agent import PID_FILE
    from powerrl.runtime.caps import write_cap_file

    if (args.set is None) == (not args.clear):
        raise ConfigError("--set/--clear", None, "exactly one of --set WATTS or --clear")
    if args.set is not None and not (math.isfinite(args.set) and args.set > 0):
        raise ConfigError("--set", args.set, "a positive number of watts")
    state, _ = _state(args)
    path = write_cap_file(state, None if args.clear else args.set, lease_s=args.lease_s)
    pid_path = state / PID_FILE
    woke = False
    if pid_path.is_file():
        # An unreadable pid file or a process gone meanwhile: the agent takes the file at its next tick.
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_path.read_text(encoding="ascii").strip())
            # A pid file left by a killed agent may name a recycled pid: SIGUSR1 would kill that process.
            if powerrl_process_alive(pid):
                os.kill(pid, signal.SIGUSR1)
                woke = True
    what = "cleared" if args.clear else f"set to {args.set:g} W"
    print(f"node cap {what} ({path}); " + ("the agent applies it now" if woke else
                                           "no running agent: it applies at its next start"))
    return 0


def register(subparsers: Any) -> None:
    """Add ``powerrl agent``."""
    p = subparsers.add_parser("agent", help="run a trained policy on this node (the node agent daemon)",
                              description="The node agent: every period it samples the node, runs a trained policy "
                              "(or a baseline) behind the safety shield and, with --apply, writes P-states and power "
                              "caps. docs/deploy.md walks from a trained run to a running agent.")
    sub = p.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)

    def host_args(q: argparse.ArgumentParser, required: bool = True) -> None:
        q.add_argument("--host", required=required, metavar="HOST.yaml",
                       help="host file (kind: host): domains, P-states, sensors and the agent: section")
        q.add_argument("--root", metavar="DIR", help="hardware root (default: the host file's root, / on a node; "
                       "a fake tree from 'powerrl hw fake-sysfs' for a rehearsal)")

    def controller_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--policy", metavar="POLICY.onnx",
                       help=f"exported policy (powerrl export); default the shipped {DEFAULT_POLICY}")
        q.add_argument("--controller", metavar="NAME",
                       help="a baseline instead of a policy (schedutil, ondemand, conservative, ...)")

    run = sub.add_parser("run", help="run the control loop (dry run unless --apply)",
                         description="Run the control loop. Without --apply it decides and logs what it would "
                         "write and writes nothing. SIGTERM/SIGINT restore every setting and exit 0.")
    host_args(run)
    controller_args(run)
    run.add_argument("--apply", action="store_true", help="write P-states and caps (refuses if a needed "
                     "capability is missing: see 'powerrl agent check')")
    run.add_argument("--period-ms", type=float, help="control period, ms (default agent.period_ms, 100)")
    run.add_argument("--duration-s", type=float, help="stop after this many seconds (default: run until signalled)")
    run.add_argument("--log", metavar="FILE", help="JSON-lines log (default agent.log, or standard output)")
    run.add_argument("--metrics-port", type=port, metavar="PORT",
                     help="Prometheus port on agent.metrics.address (default agent.metrics.port; 0 = off)")
    run.add_argument("--coordinator", metavar="URL",
                     help="report to the cluster coordinator at URL (http(s)://host:port) and apply the caps it "
                     "answers with; overrides agent.coordinator.url")
    run.set_defaults(func=_run)

    chk = sub.add_parser("check", help="validate the host file and this node's capabilities",
                         description="Validate the host file and what this node offers. Exit 0 when "
                         "'run --apply' can start, 1 when a needed capability is missing (each says why).")
    host_args(chk)
    controller_args(chk)
    chk.add_argument("--no-controller", action="store_true", help="skip loading the policy/controller")
    chk.add_argument("--json", action="store_true", help="machine-readable output")
    chk.set_defaults(func=_check)

    st = sub.add_parser("status", help="what the agent on this node is doing",
                        description="Read the status the agent writes every second. Exit 0 when it runs, 3 when "
                        "it stopped, 1 when no agent ran here.")
    host_args(st, required=False)
    st.add_argument("--json", action="store_true", help="the raw status JSON")
    st.set_defaults(func=_status)

    cap = sub.add_parser("cap", help="set or clear this node's power cap (as a coordinator would)",
                         description="Set the node's power cap (W, split over domains by busy power and written to "
                         "the RAPL limits) and wake the agent to apply it at once. With --lease-s it decays to "
                         "the guaranteed base unless refreshed, as a coordinator's cap does.")
    host_args(cap, required=False)
    cap.add_argument("--set", type=float, metavar="WATTS", help="node cap in W")
    cap.add_argument("--clear", action="store_true", help="remove the cap")
    cap.add_argument("--lease-s", type=float, metavar="S", help="the cap holds S seconds, then decays to the "
                     "guaranteed base unless refreshed (what a coordinator does); default: until replaced")
    cap.set_defaults(func=_cap)
