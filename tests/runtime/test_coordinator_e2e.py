"""End to end with real processes: a facility coordinator over two rack coordinators, members over HTTP.

Rounds are 0.2 s and leases 1 s so that a grid cut, a killed parent and its restart fit in seconds.
Members are simulated in the test (a thread per rack, each member holding its cap like the agent's
CapLease), so what the nodes would draw is known at every instant.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from powerrl.runtime.caps import CapLease

START_S = 60.0  # a subprocess's imports, on a loaded CI box

TOKEN = "e2e-token-0123456789abcdef"
ROUND_S = 0.2
FAULTS = {"lease_s": 1.0, "decay_s": 1.0, "node_timeout_s": 4.0}
IDLE_W, BUSY_W = 100.0, 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Member:
    """One simulated node: holds its cap like the agent (lease, then decay to the base) and reports it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lease: CapLease | None = None
        self.round = -1
        self.seq = 0

    def cap_w(self, now: float) -> float | None:
        return None if self.lease is None else self.lease.value(now)

    def report(self, client: httpx.Client) -> None:
        now = time.time()
        cap = self.cap_w(now)
        body = {"node": self.name, "boot_id": "sim", "seq": self.seq, "power_w": min(BUSY_W, cap or BUSY_W),
                "load": 1.0, "cap_w": cap, "cap_round": self.round}
        self.seq += 1
        try:
            resp = client.post("/v1/report", json=body)
        except httpx.HTTPError:
            return  # coordinator down: the lease decays by itself
        if resp.status_code != 200:
            return
        g = resp.json()
        if self.lease is None:
            self.lease = CapLease(g["base_w"], g["lease_s"], g["decay_s"])
        self.lease.base_w, self.lease.decay_s = g["base_w"], g["decay_s"]
        self.lease.set(g["cap_w"], time.time(), g["lease_s"])
        self.round = g["round"]


class Rack:
    """Members of one rack coordinator, reporting every round on a thread."""

    def __init__(self, url: str, names: list[str]) -> None:
        self.members = [Member(n) for n in names]
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for m in self.members:
                m.report(self.client)
            self.stop.wait(ROUND_S)

    def held_w(self, now: float) -> float:
        return sum(m.cap_w(now) or BUSY_W for m in self.members)


def _cluster(path: Path, name: str, budget_w: float, nodes: list[dict[str, Any]], port: int,
             parent: dict[str, Any] | None = None) -> Path:
    data: dict[str, Any] = {"kind": "cluster", "name": name, "budget_w": budget_w, "round_s": ROUND_S,
                            "faults": FAULTS, "nodes": nodes, "journal": str(path.parent / f"{name}.journal.json"),
                            "log": str(path.parent / f"{name}.log"),
                            "api": {"listen": "127.0.0.1", "port": port, "token_file": str(path.parent / "token")}}
    if parent:
        data["parent"] = parent
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _status(url: str, nodes: bool = False) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/status?nodes={str(nodes).lower()}", headers={"Authorization": f"Bearer {TOKEN}"},
                  timeout=2.0)
    r.raise_for_status()
    return dict(r.json())


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _log(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_hierarchy_grid_cut_parent_crash_and_restart(tmp_path: Path, procs: Any, wait_for: Any) -> None:
    wait_until = wait_for
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    ports = {k: free_port() for k in ("top", "a", "b")}
    urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    node = {"idle_w": IDLE_W, "busy_w": BUSY_W}
    rack_nodes = {"a": [{"name": "a", "count": 3, "priority": 1, **node}],
                  "b": [{"name": "b", "count": 3, "priority": 4, **node}]}
    # The parent sees each rack as one member with the racks' summed power range (coordinator member).
    top = _cluster(tmp_path / "top.yaml", "top", 1500.0,
                   [{"name": f"rack-{k}", "priority": 1 if k == "a" else 4, "idle_w": 3 * IDLE_W, "busy_w": 3 * BUSY_W}
                    for k in ("a", "b")], ports["top"])
    racks = {k: _cluster(tmp_path / f"rack-{k}.yaml", f"rack-{k}", 3 * BUSY_W, rack_nodes[k], ports[k],
                         parent={"url": urls["top"], "name": f"rack-{k}", "token_file": str(tmp_path / "token")})
             for k in ("a", "b")}
    member = procs.powerrl("coordinator", "member", "--config", str(racks["a"]), name="member")[0]
    assert member.wait(timeout=START_S) == 0
    top_proc, top_out = procs.powerrl("coordinator", "run", "--config", str(top), name="top")
    for k in ("a", "b"):
        procs.powerrl("coordinator", "run", "--config", str(racks[k]), name=f"rack-{k}")
    for k, url in urls.items():
        wait_until(lambda url=url: _up(url), START_S, f"coordinator {k} to serve", lambda: top_out.read_text())
    sims = {k: Rack(urls[k], [f"{k}-{i}" for i in range(3)]) for k in ("a", "b")}
    for r in sims.values():
        r.thread.start()
    try:
        # Every member holds a cap, and both racks are ok members of the parent.
        wait_until(lambda: all(m.lease is not None for r in sims.values() for m in r.members), 20, "first caps")
        wait_until(lambda: _status(urls["top"])["ok"] == 2, 20, "racks reporting to the parent")
        wait_until(lambda: all(_status(urls[k])["parent"]["cap_w"] for k in ("a", "b")), 20, "parent caps")
        time.sleep(6 * ROUND_S)
        total = sum(r.held_w(time.time()) for r in sims.values())
        assert total <= 1500.0 + 1e-6, f"members hold {total} W over the 1500 W facility budget"

        # A grid cut at the parent: 30 % within 1.2 s. By the deadline every member's cap fits.
        ans = httpx.post(f"{urls['top']}/v1/event", json={"kind": "grid_cut", "percent": 30, "within_s": 1.2},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2.0).json()
        assert ans["budget_w"] == pytest.approx(1050.0)
        time.sleep(1.2 + 2 * ROUND_S)
        worst = 0.0
        for _ in range(10):
            worst = max(worst, sum(r.held_w(time.time()) for r in sims.values()))
            time.sleep(ROUND_S / 2)
        assert worst <= 1050.0 + 1e-6, f"after the cut's deadline members hold {worst} W > 1050 W"
        # Background rack b gave more than Production rack a.
        st_a, st_b = _status(urls["a"]), _status(urls["b"])
        assert st_a["budget_w"] > st_b["budget_w"]

        # The parent dies: the racks' budgets (and so their members' caps) decay to the parent's bases.
        os.kill(top_proc.pid, signal.SIGKILL)
        top_proc.wait(timeout=10)
        wait_until(lambda: all(_status(urls[k])["parent"]["stale"] for k in ("a", "b")), 10, "stale parent caps")
        time.sleep(FAULTS["lease_s"] + FAULTS["decay_s"] + 3 * ROUND_S)
        for k in ("a", "b"):
            st = _status(urls[k])
            assert st["parent"]["in_force_w"] <= st["parent"]["cap_w"] + 1e-6
        held_down = sum(r.held_w(time.time()) for r in sims.values())
        assert held_down <= 1050.0 + 1e-6

        # Restarted on its journal: the cut is still in force, and the facility stays within it.
        top_proc, top_out = procs.powerrl("coordinator", "run", "--config", str(top), name="top2")
        wait_until(lambda: _up(urls["top"]), START_S, "the restarted parent")
        st = _status(urls["top"])
        assert st["recovered"] is True
        assert [e["kind"] for e in st["events"]] == ["grid_cut"]
        assert st["budget_w"] == pytest.approx(1050.0)
        t_end = time.monotonic() + 8 * ROUND_S
        worst = 0.0
        while time.monotonic() < t_end:
            worst = max(worst, sum(r.held_w(time.time()) for r in sims.values()))
            time.sleep(ROUND_S / 4)
        assert worst <= 1050.0 + 1e-6, f"across the restart members held {worst} W > 1050 W"
        assert any(e.get("event") == "journal_recovered" for e in _log(tmp_path / "top.log"))
    finally:
        for r in sims.values():
            r.stop.set()
            r.thread.join(timeout=5)
    # SIGTERM: a clean exit.
    top_proc.send_signal(signal.SIGTERM)
    assert top_proc.wait(timeout=20) == 0, top_out.read_text()


# -- a real node agent on a fake node, under a real coordinator ---------------------------------------
ORIGINAL_LIMIT_UW = 230_000_000  # the fake tree's package PL1 (tests/runtime/test_hil.py)
#: The fake RAPL keeps whole watts per package: two packages round a node cap down by up to 2 W.
RAPL_QUANTUM_W = 2.0


def _rapl_limits_w(root: Any) -> list[float]:
    from powerrl.hw.host import bind_host, load_host_config

    out = []
    for d in bind_host(load_host_config(root.host_yaml), root.tree).domains:
        c = next(c for c in d.rapl.constraints if c.name == "long_term")
        out.append(root.tree.read_int(c.attr(d.rapl.rel, "power_limit_uw")) / 1e6)
    return out


def test_agent_takes_caps_over_http_and_decays_to_its_base_when_the_coordinator_dies(
        tmp_path: Path, procs: Any, fake_tree: Any, fake_kernel: Any, host_yaml: Path, wait_for: Any) -> None:
    wait_until = wait_for
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster = _cluster(tmp_path / "cluster.yaml", "hall", 250.0,
                       [{"name": "hil", "priority": 1, "profile": "epyc7502"}], port)
    data = yaml.safe_load(cluster.read_text(encoding="utf-8"))
    data["faults"] = {"lease_s": 0.6, "decay_s": 0.6, "node_timeout_s": 3.0}
    cluster.write_text(yaml.safe_dump(data), encoding="utf-8")
    host = yaml.safe_load(host_yaml.read_text(encoding="utf-8"))
    host["agent"]["coordinator"] = {"url": url, "token_file": str(tmp_path / "token"), "report_s": ROUND_S}
    host_yaml.write_text(yaml.safe_dump(host, sort_keys=False), encoding="utf-8")

    class Node:
        tree = fake_tree

    Node.host_yaml = host_yaml  # type: ignore[attr-defined]
    coord, coord_out = procs.powerrl("coordinator", "run", "--config", str(cluster), name="coordinator")
    wait_until(lambda: _up(url) or coord.poll() is not None, START_S, "the coordinator", lambda: coord_out.read_text())
    assert coord.poll() is None, coord_out.read_text()
    log = tmp_path / "agent.jsonl"
    agent, agent_out = procs.powerrl("agent", "run", "--host", str(host_yaml), "--root", str(fake_tree.root),
                                     "--controller", "powersave", "--apply", "--metrics-port", "0", "--log", str(log),
                                     name="agent")
    fake_kernel.wait_running()

    def diag() -> str:
        return agent_out.read_text() + "\n" + (log.read_text() if log.exists() else "")[-3000:]

    # The coordinator's cap reaches the RAPL limits, split over the two equal packages.
    wait_until(lambda: _status(url)["ok"] == 1, START_S, "the agent's first report", diag)

    def cap_now() -> float:
        return float(_status(url, nodes=True)["members"]["hil"]["cap_w"])

    wait_until(lambda: -RAPL_QUANTUM_W <= sum(_rapl_limits_w(Node)) - cap_now() <= 0, 20,
               "RAPL limits summing to the coordinator's cap", diag)
    member = _status(url, nodes=True)["members"]["hil"]
    # Settled at the budget less the shield's reserve (245 W), so that the cut below is a change.
    wait_until(lambda: 240.0 <= sum(_rapl_limits_w(Node)) <= 245.0, 20, "caps settled at 245 W", diag)

    # A grid cut: caps within the cut budget (less the shield's 2 % reserve) are in RAPL within about a round.
    t0 = time.monotonic()
    ans = httpx.post(f"{url}/v1/event", json={"kind": "grid_cut", "percent": 20},
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2.0).json()
    assert ans["budget_w"] == pytest.approx(200.0)
    wait_until(lambda: sum(_rapl_limits_w(Node)) <= 200.0 * 0.98, 10, "the cut cap in RAPL", diag)
    reach_s = time.monotonic() - t0
    assert reach_s < ROUND_S + 1.0, f"the cut took {reach_s:.2f} s to reach RAPL (round {ROUND_S} s)"

    # Settled within the cut (raise gating may first cut deeper, until the cut is acknowledged).
    wait_until(lambda: 190.0 <= sum(_rapl_limits_w(Node)) <= 196.0, 10, "caps settled at 196 W", diag)

    # The coordinator dies: the agent holds the cap for its lease, then decays to its guaranteed base.
    os.kill(coord.pid, signal.SIGKILL)
    coord.wait(timeout=10)

    def logged(kind: str) -> bool:
        return any(json.loads(line).get("event") == kind for line in log.read_text(encoding="utf-8").splitlines())

    wait_until(lambda: logged("coordinator_unreachable"), 10, "coordinator_unreachable in the agent's log", diag)
    base_w = member["base_w"]
    wait_until(lambda: -RAPL_QUANTUM_W <= sum(_rapl_limits_w(Node)) - base_w <= 0, 10,
               f"RAPL limits decayed to the base {base_w} W", diag)

    # SIGTERM: the agent restores the firmware limits.
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0, diag()
    assert _rapl_limits_w(Node) == [ORIGINAL_LIMIT_UW / 1e6] * 2
