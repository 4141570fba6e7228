"""``powerrl coordinator run | event | status | check | member``: the cluster coordinator's command line.

``run`` serves the coordinator of a cluster file; ``event`` declares an emergency to a running one
(``grid-cut --percent 20 --within-s 5``, ``cooling-failure --group rack2``, ``clear``); ``status``
prints its state; ``check`` validates a cluster file and builds its allocator without serving;
``member`` prints the node entry a parent's cluster file needs for this coordinator (docs/coordinator.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from powerrl.errors import ConfigError, PowerrlError
from powerrl.runtime.cli_args import non_negative, port
from powerrl.runtime.cluster import DEFAULT_PORT, ClusterSpec, load_cluster


def _run(args: argparse.Namespace) -> int:
    from powerrl.runtime.server import serve

    spec = load_cluster(args.config)
    return serve(spec, host=args.listen, port=args.port, journal=args.journal, log_path=args.log)


def _check(args: argparse.Namespace) -> int:
    from powerrl.runtime.auth import TOKEN_ENV, is_loopback, read_token
    from powerrl.runtime.coordinator import Coordinator

    spec = load_cluster(args.config)
    coord = Coordinator(spec, journal=False)
    cfg = spec.config
    token = read_token(cfg.api.token_file, TOKEN_ENV, "api.token_file", spec.source)
    busy = float(spec.busy_w.sum())
    base = float(coord.base_w.sum())
    usable = cfg.budget_w * (1.0 - coord.shield_cfg.budget.reserve_frac)
    lines = [f"cluster {cfg.name}: {spec.n} nodes, budget {cfg.budget_w:g} W ({usable:.0f} W after the shield's "
             f"reserve; busy power {busy:.0f} W, guaranteed bases {base:.0f} W)",
             f"levels: {', '.join(f'{lv.name} ({lv.n_groups})' for lv in spec.levels) or 'none'}",
             f"allocator: {cfg.allocator}; shield: {cfg.shield}; round {cfg.round_s:g} s",
             f"api: {cfg.api.listen}:{cfg.api.port}, auth {'token' if token else 'none (loopback only)'}"]
    problems = []
    if base > usable:
        problems.append(f"the guaranteed bases ({base:.0f} W) exceed the budget less its reserve ({usable:.0f} W): "
                        "emergency floors will be used")
    for level, names in zip(spec.levels, spec.group_names, strict=True):
        sums = np.bincount(level.group_of_node, weights=coord.base_w, minlength=level.n_groups)
        for g in np.flatnonzero(sums > level.limit_w):
            problems.append(f"{level.name} {names[g]}: guaranteed bases {sums[g]:.0f} W exceed its limit "
                            f"{level.limit_w[g]:.0f} W")
    if token is None and not is_loopback(cfg.api.listen):
        problems.append(f"api.listen {cfg.api.listen} needs a token (api.token_file or ${TOKEN_ENV})")
    for line in lines:
        print(line)
    for p in problems:
        print(f"  [!!] {p}")
    return 1 if problems else 0


def _member(args: argparse.Namespace) -> int:
    spec = load_cluster(args.config)
    entry = member_entry(spec, args.priority, args.group)
    print(json.dumps(entry))
    return 0


def member_entry(spec: ClusterSpec, priority: int, group: str | None) -> dict[str, Any]:
    """The parent's node entry for this coordinator: its summed idle, busy and guaranteed base power, W.

    The base is this coordinator's own (its members' bases under its shield), rounded up: the
    parent must never count the rack below what the rack guarantees its members.
    """
    from powerrl.runtime.coordinator import cluster_shield

    cfg = spec.config
    if cfg.parent is None:
        raise ConfigError("parent", None, "a parent: section (url, name) in the cluster file", spec.source)
    base_w = float(cluster_shield(spec).topology.base_w.sum())  # no allocator or policy session needed
    entry: dict[str, Any] = {"name": cfg.parent.name, "priority": priority,
                             "idle_w": round(float(spec.idle_w.sum()), 1), "busy_w": round(float(spec.busy_w.sum()), 1),
                             "base_w": math.ceil(base_w * 10) / 10}
    if group:
        entry["group"] = group
    return entry


def _client(args: argparse.Namespace) -> tuple[Any, str]:
    try:
        import httpx
    except ModuleNotFoundError:
        raise ConfigError("coordinator", "httpx not installed", "pip install 'powerrl[coordinator]'") from None
    from powerrl.runtime.auth import TOKEN_ENV, check_url, read_token

    url = args.url
    token_file = args.token_file
    if args.config:
        spec = load_cluster(args.config)
        host = spec.config.api.listen
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url = url or f"http://{f'[{host}]' if ':' in host else host}:{spec.config.api.port}"
        token_file = token_file or spec.config.api.token_file
    url = url or f"http://127.0.0.1:{DEFAULT_PORT}"
    url = check_url(url, "--url")
    token = read_token(token_file, TOKEN_ENV, "--token-file")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=args.timeout_s), url


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    client, url = _client(args)
    try:
        with client:
            resp = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise PowerrlError(f"cannot reach the coordinator at {url} ({type(exc).__name__}: {exc}); is "
                           "'powerrl coordinator run' running there? (--url / --config)") from None
    try:
        data = resp.json()
    except ValueError:
        data = {"error": resp.text[:200]}
    if resp.status_code != 200:
        raise PowerrlError(f"coordinator at {url} refused ({resp.status_code}): {data.get('error')} -- "
                           f"{data.get('fix', '')}")
    return dict(data)


def _event(args: argparse.Namespace) -> int:
    kind = args.kind.replace("-", "_")
    body: dict[str, Any] = {"kind": kind}
    if kind == "grid_cut" and args.percent is None:
        raise ConfigError("--percent", None, "the share of the budget to shed, e.g. --percent 20")
    if kind == "cooling_failure" and args.within_s:
        raise ConfigError("--within-s", args.within_s, "no --within-s for a cooling failure (it is in force at once)")
    if kind != "clear":
        if args.percent is not None:
            if not 0 < args.percent < 100:
                raise ConfigError("--percent", args.percent, "a share in (0, 100)")
            body["percent"] = args.percent
        body["within_s"] = args.within_s
        if args.group:
            body["group"] = args.group
        if args.duration_s is not None:
            body["duration_s"] = args.duration_s
    elif args.id is not None:
        body["id"] = args.id
    answer = _call(args, "POST", "/v1/event", body)
    if args.json:
        print(json.dumps(answer))
    else:
        budget = answer.get("budget_w")
        print(f"event {answer['id']} ({answer['kind']}): round {answer['round']} sent new caps to "
              f"{answer['affected_nodes']} affected nodes" + (f"; budget {budget:.0f} W" if budget else "")
              + (f" in force within {answer['deadline_s']:g} s" if answer.get("deadline_s") else ""))
    return 0


def _status(args: argparse.Namespace) -> int:
    st = _call(args, "GET", f"/v1/status?nodes={'true' if args.nodes else 'false'}")
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"coordinator {st['name']}: round {st['round']} every {st['round_s']:g} s, allocator {st['allocator']}")
    ann = st.get("announced_budget_w")
    print(f"  budget {st['budget_w']:.0f} W" + (f" -> {ann:.0f} W in {st['deadline_in_s']:g} s" if ann else "")
          + f"; caps {st['caps_w']:.0f} W, counted {st['counted_w']:.0f} W, measured {st['measured_w']:.0f} W")
    print(f"  nodes {st['nodes']}: ok {st['ok']}, silent {st['silent']}, lost {st['lost']}, "
          f"never reported {st['never_reported']}; rejected messages {st['rejected']}")
    print(f"  round p50 {st['round_ms_p50']:.2f} ms, p99 {st['round_ms_p99']:.2f} ms; shield {st['shield_events']}")
    for ev in st.get("events", []):
        print(f"  event {ev['id']}: {ev['kind']} {ev['fraction'] * 100:g} %" + (f" of {ev['group']}" if ev['group']
                                                                               else ""))
    if st.get("parent"):
        print(f"  parent cap {st['parent']['cap_w']} W, in force {st['parent']['in_force_w']} W, "
              f"stale {st['parent']['stale']}")
    for name, m in (st.get("members") or {}).items():
        cap = m["cap_w"]
        print(f"  {name:<24} {m['state']:<6} prio {m['priority']} cap {cap if cap is None else round(cap, 1)} W "
              f"power {m['power_w']:.1f} W counted {m['counted_w']:.1f} W")
    return 0


def register(subparsers: Any) -> None:
    """Add ``powerrl coordinator``."""
    p = subparsers.add_parser("coordinator", help="split a facility power budget across nodes (cluster coordinator)",
                              description="The cluster coordinator: every round it takes node agents' reports and "
                              "assigns node caps with a ClusterBudget-v0 policy or baseline, always through the budget "
                              "shield. docs/coordinator.md has the API, the guarantees and the limitations.")
    sub = p.add_subparsers(dest="coordinator_command", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser("run", help="serve the coordinator of a cluster file",
                         description="Serve the coordinator (HTTP, loopback by default) until SIGTERM/SIGINT. "
                         "A restart reads the journal back, so no cap in force is forgotten.")
    run.add_argument("--config", required=True, metavar="CLUSTER.yaml", help="cluster file (kind: cluster)")
    run.add_argument("--listen", metavar="ADDR", help="override api.listen (anything but loopback needs a token)")
    run.add_argument("--port", type=port, help="override api.port (0: any free port)")
    run.add_argument("--journal", metavar="FILE", help="override journal")
    run.add_argument("--log", metavar="FILE", help="JSON-lines log (default: the file's log, or standard output)")
    run.set_defaults(func=_run)

    chk = sub.add_parser("check", help="validate a cluster file and build its allocator",
                         description="Validate the cluster file, build the allocator and the shield, read the "
                         "token; exit 1 when the budget cannot hold the guaranteed bases or auth is missing.")
    chk.add_argument("--config", required=True, metavar="CLUSTER.yaml")
    chk.set_defaults(func=_check)

    mem = sub.add_parser("member", help="print this coordinator's node entry for its parent's cluster file",
                         description="Print the nodes: entry (name, priority, summed idle_w and busy_w) that the "
                         "parent's cluster file needs for this rack coordinator.")
    mem.add_argument("--config", required=True, metavar="CLUSTER.yaml", help="this (child) coordinator's file")
    mem.add_argument("--priority", type=int, default=1, choices=range(5), help="priority in the parent (default 1)")
    mem.add_argument("--group", metavar="GROUP", help="the parent's group this coordinator sits in")
    mem.set_defaults(func=_member)

    def client_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", metavar="CLUSTER.yaml", help="take the address and token file from this file")
        q.add_argument("--url", metavar="URL", help=f"coordinator URL (default http://127.0.0.1:{DEFAULT_PORT})")
        q.add_argument("--token-file", metavar="FILE", help="shared token (else $POWERRL_COORDINATOR_TOKEN)")
        q.add_argument("--timeout-s", type=non_negative, default=5.0, help="HTTP timeout, s (default 5)")
        q.add_argument("--json", action="store_true", help="print the answer as JSON")

    ev = sub.add_parser("event", help="declare an emergency (grid-cut, cooling-failure) or clear one",
                        description="Declare an emergency to a running coordinator. It runs a round at once, so "
                        "every affected node gets its new cap with its next report (within one round).")
    ev.add_argument("kind", choices=("grid-cut", "cooling-failure", "clear"),
                    help="grid-cut: budget drops by --percent within --within-s; cooling-failure: --group's limit "
                    "(or the facility's) drops by --percent (default cooling_failure_cut) at once; clear: end --id "
                    "or every event")
    ev.add_argument("--percent", type=float, help="share to shed, %% (grid-cut: required)")
    ev.add_argument("--within-s", type=non_negative, default=0.0, help="grid-cut: seconds until in force (default 0)")
    ev.add_argument("--group", metavar="GROUP", help="cooling-failure: the rack/PDU that lost cooling")
    ev.add_argument("--duration-s", type=non_negative, help="end the event by itself after this long (default: clear)")
    ev.add_argument("--id", type=int, help="clear: the event id (default: all)")
    client_args(ev)
    ev.set_defaults(func=_event)

    st = sub.add_parser("status", help="print a running coordinator's state",
                        description="Budget, caps, member states, round latency, shield interventions, events.")
    st.add_argument("--nodes", action="store_true", help="also list every member")
    client_args(st)
    st.set_defaults(func=_status)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience for python -m
    """Run ``powerrl coordinator`` directly."""
    from powerrl.cli import main as cli_main

    return cli_main(["coordinator", *(argv if argv is not None else sys.argv[1:])])
