"""The node agent's coordinator client: reports, grants, the coordinator lease, failures and configuration.

Every HTTP exchange goes through ``httpx.MockTransport`` (no sockets); agents run on a fake sysfs tree
stepped in-process, and the lease clock is injected, so nothing here waits for a lease to run out.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("pydantic")

from powerrl.cli import main  # noqa: E402 - after the skips: the reporter needs httpx and pydantic
from powerrl.errors import ConfigError  # noqa: E402
from powerrl.hw.fake import FakeKernel, make_fake_sysfs  # noqa: E402
from powerrl.runtime.agent import NodeAgent  # noqa: E402
from powerrl.runtime.caps import write_cap_file  # noqa: E402
from powerrl.runtime.config import (  # noqa: E402
    TOKEN_ENV,
    CoordinatorClientConfig,
    HostFile,
    coordinator_token,
    host_file,
    load_host_file,
)
from powerrl.runtime.protocol import CapGrant  # noqa: E402
from powerrl.runtime.reporter import CoordinatorReporter  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOST = REPO / "configs" / "hosts" / "example.yaml"
POWERCAP = "sys/class/powercap"
URL = "http://127.0.0.1:8470"
DT = 0.1
ORIGINAL_UW = 230_000_000
T0 = 1_700_000_000.0


# -- a scripted coordinator -----------------------------------------------------------------------------
class FakeCoordinator:
    """An ``httpx.MockTransport`` handler: records each request and answers what the test queued.

    ``answers`` items are an ``httpx.Response``, an exception to raise (a network failure) or a
    :class:`CapGrant`; the last one repeats once the queue is down to it.
    """

    def __init__(self, *answers: Any) -> None:
        self.answers: list[Any] = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        ans = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(ans, BaseException):
            raise ans
        if isinstance(ans, CapGrant):
            return httpx.Response(200, content=ans.model_dump_json())
        assert isinstance(ans, httpx.Response)
        return ans

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    @property
    def transport(self) -> Any:
        return httpx.MockTransport(self)


def grant(cap_w: float, *, node: str = "n1", round: int = 7, base_w: float = 120.0, lease_s: float = 5.0,
          decay_s: float = 10.0, report_every_s: float = 1.0, emergencies: tuple[str, ...] = ()) -> CapGrant:
    return CapGrant(node=node, round=round, cap_w=cap_w, base_w=base_w, lease_s=lease_s, decay_s=decay_s,
                    report_every_s=report_every_s, emergencies=emergencies)


def refused(request: httpx.Request | None = None) -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


def reporter(coord: FakeCoordinator, **kw: Any) -> tuple[CoordinatorReporter, list[dict[str, Any]]]:
    """A standalone reporter on ``coord``; returns it and the list its log lines go to."""
    logged: list[dict[str, Any]] = []
    kw.setdefault("token", "s3cret")
    rep = CoordinatorReporter(URL, "n1", priority=2, emit=logged.append, transport=coord.transport, **kw)
    return rep, logged


# -- the standalone reporter ---------------------------------------------------------------------------
def test_a_report_carries_the_interval_means_and_the_token() -> None:
    coord = FakeCoordinator(grant(250.0, report_every_s=0.5))
    rep, _ = reporter(coord)
    assert rep.report_once() is None and coord.requests == []  # nothing measured yet: no 0 W report
    rep.observe(200.0, 0.5, 0.4, 60.0)
    rep.observe(220.0, 0.7, math.nan, 64.0)  # a failed util reading is skipped, not averaged as 0
    got = rep.report_once()
    assert got is not None and got.cap_w == 250.0
    (req,) = coord.requests
    assert req.method == "POST" and str(req.url) == f"{URL}/v1/report"
    assert req.headers["Authorization"] == "Bearer s3cret"
    assert req.headers["Content-Type"] == "application/json"
    body = json.loads(req.content)
    assert body == {"node": "n1", "boot_id": rep.boot_id, "seq": 0, "power_w": pytest.approx(210.0),
                    "load": pytest.approx(0.6), "util": pytest.approx(0.4), "temp_c": pytest.approx(62.0),
                    "priority": 2, "cap_w": None, "cap_round": -1}
    assert rep.report_every_s == 0.5  # the coordinator's round from now on


def test_the_report_period_follows_the_grant_within_bounds() -> None:
    coord = FakeCoordinator(grant(250.0, report_every_s=0.001), grant(250.0, report_every_s=3600.0))
    rep, _ = reporter(coord, report_s=2.0)
    assert rep.report_every_s == 2.0
    rep.observe(100.0, 0.5, 0.5, None)
    rep.report_once()
    assert rep.report_every_s == 0.05
    rep.report_once()
    assert rep.report_every_s == 60.0


def test_seq_increases_every_report_and_boot_id_is_stable() -> None:
    coord = FakeCoordinator(grant(250.0), refused(), grant(250.0))
    rep, _ = reporter(coord)
    for _ in range(3):
        rep.observe(100.0, 0.5, 0.5, 50.0)
        rep.report_once()
    bodies = coord.bodies()
    assert [b["seq"] for b in bodies] == [0, 1, 2]  # a failed report counts too: seq never repeats
    assert {b["boot_id"] for b in bodies} == {rep.boot_id} and len(rep.boot_id) == 16
    int(rep.boot_id, 16)
    other, _ = reporter(FakeCoordinator(grant(1.0)))
    # A second reporter restarts seq at 0: it must not share a boot_id, or its reports would read as replays.
    assert other.boot_id != rep.boot_id and other.seq == 0


def test_a_stalled_interval_repeats_the_last_values() -> None:
    coord = FakeCoordinator(grant(250.0))
    rep, _ = reporter(coord)
    rep.observe(180.0, 0.3, 0.2, None)
    rep.report_once()
    rep.report_once()  # no tick in between
    a, b = coord.bodies()
    assert b["power_w"] == a["power_w"] == pytest.approx(180.0) and b["seq"] == 1 and b["temp_c"] is None


def test_the_held_cap_is_reported_from_the_grant_taken() -> None:
    coord = FakeCoordinator(grant(250.0, round=3), grant(240.0, round=4))
    rep, _ = reporter(coord)
    rep.observe(100.0, 0.5, 0.5, None)
    rep.report_once()
    g, received = rep.take_grant() or (None, None)
    assert g is not None and g.round == 3 and received == pytest.approx(time.time(), abs=5)
    assert rep.take_grant() is None  # taken once
    rep.report_once()
    assert coord.bodies()[1]["cap_w"] == 250.0 and coord.bodies()[1]["cap_round"] == 3


@pytest.mark.parametrize("answer, needle", [
    (grant(250.0, node="n2"), "for node 'n2'"),
    (httpx.Response(200, json={**json.loads(grant(250.0).model_dump_json()), "api": 2}), "api 2"),
    (httpx.Response(200, content=b"<html>proxy</html>"), "not JSON"),
    (httpx.Response(200, json={"api": 1, "node": "n1", "cap_w": -5}), "invalid answer"),
])
def test_a_bad_answer_is_rejected_and_nothing_is_handed_on(answer: Any, needle: str) -> None:
    woke = []
    rep, logged = reporter(FakeCoordinator(answer), wake=lambda: woke.append(1))
    rep.observe(100.0, 0.5, 0.5, None)
    assert rep.report_once() is None
    assert rep.take_grant() is None and woke == [] and rep.last_grant is None
    assert rep.errors == 1 and needle in (rep.last_error or "")
    assert [e["event"] for e in logged] == ["coordinator_unreachable"] and needle in logged[0]["error"]


def test_failures_are_logged_once_per_state_change() -> None:
    bad_token = httpx.Response(401, json={"error": "missing or wrong bearer token",
                                          "fix": "set agent.coordinator.token_file to the coordinator's token"})
    unknown = httpx.Response(404, json={"error": "node 'n1' is not in cluster 'lab'", "fix": "add it"})
    coord = FakeCoordinator(refused(), httpx.ReadTimeout("timed out"), httpx.Response(503, text="busy"),
                            grant(250.0), grant(250.0), bad_token, bad_token, unknown, refused(), grant(250.0))
    rep, logged = reporter(coord)
    for _ in range(10):
        rep.observe(100.0, 0.5, 0.5, None)
        rep.report_once()  # never raises, whatever the answer
    events = [(e["event"], e.get("status")) for e in logged]
    assert events == [("coordinator_unreachable", None), ("coordinator_reachable", None),
                      ("coordinator_rejected", 401), ("coordinator_rejected", 404),
                      ("coordinator_unreachable", None), ("coordinator_reachable", None)]
    assert "Connection refused" in logged[0]["error"]
    # The server's own words, with the fix it names.
    assert "wrong bearer token" in logged[2]["error"] and "agent.coordinator.token_file" in logged[2]["error"]
    assert rep.errors == 7 and rep.reachable is True and rep.grants == 3
    assert rep.state()["errors"] == 7 and rep.state()["last_grant"]["cap_w"] == 250.0


def test_the_thread_reports_every_period_and_stops_on_close() -> None:
    coord = FakeCoordinator(grant(250.0, report_every_s=0.05))
    woke: list[int] = []
    rep, _ = reporter(coord, report_s=0.05, wake=lambda: woke.append(1))
    rep.observe(100.0, 0.5, 0.5, None)
    rep.start()
    deadline = time.monotonic() + 5.0
    while len(coord.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    rep.close()
    n = len(coord.requests)
    assert n >= 3 and len(woke) == rep.grants >= 3
    time.sleep(0.1)
    assert len(coord.requests) == n  # stopped


# -- the reporter inside the agent -------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    make_fake_sysfs(d, cpus=8, sockets=2, driver="acpi-cpufreq")
    return d


@pytest.fixture
def kernel(tree: Path) -> FakeKernel:
    return FakeKernel(tree, load=0.5)


def coordinated(host: HostFile, **kw: Any) -> HostFile:
    ccfg = dataclasses.replace(CoordinatorClientConfig(url=URL, node="n1"), **kw)
    return dataclasses.replace(host, agent=dataclasses.replace(host.agent, coordinator=ccfg))


@pytest.fixture
def make_agent(tree: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., NodeAgent]]:
    """Agents on ``tree`` reporting to a :class:`FakeCoordinator` (closed at teardown)."""
    monkeypatch.setenv(TOKEN_ENV, "env-token")
    made: list[NodeAgent] = []

    def make(coord: FakeCoordinator, *, apply: bool = True, controller: str = "schedutil", **ccfg: Any) -> NodeAgent:
        hf = coordinated(load_host_file(HOST), **ccfg)
        agent = NodeAgent(hf, controller, apply=apply, root=str(tree), log=io.StringIO(), metrics_port=0,
                          coordinator_transport=coord.transport)
        agent.node.fixed_dt_s = DT
        made.append(agent)
        return agent

    yield make
    for a in made:
        a.close()


def limits(tree: Path) -> list[int]:
    return [int((tree / f"{POWERCAP}/intel-rapl:{z}/constraint_0_power_limit_uw").read_text().strip())
            for z in range(2)]


def split_uw(agent: NodeAgent, node_cap_w: float) -> list[int]:
    """The node cap split over the packages by busy power, floored to whole W (what the agent writes)."""
    busy = np.asarray(agent.target.busy_w)
    return [int(math.floor(w)) * 1_000_000 for w in node_cap_w * busy / busy.sum()]


def ticks(agent: NodeAgent, kernel: FakeKernel, n: int) -> None:
    for _ in range(n):
        agent.tick()
        kernel.step(DT)


def events(agent: NodeAgent, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]  # type: ignore[attr-defined]
    return [e for e in lines if e["event"] == kind]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Wall clock the agent and the reporter read (``time.time``), advanced by the test."""
    now = [T0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_a_grant_reaches_rapl_between_periods(tree: Path, kernel: FakeKernel, make_agent: Callable[..., NodeAgent],
                                              clock: list[float]) -> None:
    coord = FakeCoordinator(grant(200.0, round=7, base_w=120.0, lease_s=4.0, decay_s=8.0))
    agent = make_agent(coord)
    assert agent.reporter is not None and agent.reporter.node == "n1"
    ticks(agent, kernel, 3)
    # Before the first answer the node holds its guaranteed base (split over the two packages).
    assert sum(limits(tree)) == pytest.approx(agent.base_w * 1e6, abs=2e6)
    assert agent.reporter.report_once() is not None
    body = coord.bodies()[0]
    assert coord.requests[0].headers["Authorization"] == "Bearer env-token"
    # Node power: the sum over domains of the ticks' readings (the first tick has no rate yet).
    assert 10.0 < body["power_w"] < 500.0 and 0.0 <= body["util"] <= 1.0 and body["load"] >= 0.0
    assert body["priority"] == agent.host.host.priority and body["temp_c"] is not None
    assert agent._cap_signal  # the loop is woken, as by SIGUSR1
    assert agent.cap_tick() is not None  # what the woken loop runs
    assert limits(tree) == split_uw(agent, 200.0)
    lease = agent.coord_caps
    assert (lease.cap_w, lease.base_w, lease.lease_s, lease.decay_s, lease.issued_s) == (200.0, 120.0, 4.0, 8.0, T0)
    assert agent.coord_round == 7 and math.isinf(agent.caps.cap_w)  # the operator's lease is untouched
    assert events(agent, "coordinator_cap")[-1]["cap_w"] == 200.0
    assert events(agent, "cap_applied")[-1]["written"] is True
    # The same cap again refreshes the lease without a write or a log line.
    clock[0] = T0 + 1.0
    agent.reporter.report_once()
    assert agent.cap_tick() is None and agent.coord_caps.issued_s == T0 + 1.0
    assert len(events(agent, "coordinator_cap")) == 1
    # The next report says which cap arrived.
    agent.reporter.report_once()
    assert coord.bodies()[-1]["cap_w"] == 200.0 and coord.bodies()[-1]["cap_round"] == 7
    st = agent.summary()
    assert st["cap"]["in_force_w"] == 200.0 and st["cap"]["node_cap_w"] is None
    co = st["coordinator"]
    assert co["url"] == URL and co["reachable"] is True and co["cap_w"] == 200.0 and co["round"] == 7
    assert co["in_force_w"] == 200.0 and co["errors"] == 0 and co["last_grant"]["base_w"] == 120.0


def test_a_silent_coordinator_leaves_the_cap_to_decay_to_the_grants_base(
        tree: Path, kernel: FakeKernel, make_agent: Callable[..., NodeAgent], clock: list[float]) -> None:
    coord = FakeCoordinator(grant(300.0, base_w=120.0, lease_s=5.0, decay_s=10.0), refused())
    agent = make_agent(coord)
    ticks(agent, kernel, 2)
    agent.reporter.report_once()
    agent.cap_tick()
    assert limits(tree) == split_uw(agent, 300.0)
    # The coordinator goes down: reports fail, nothing is done, the lease runs out on its own.
    for dt in (1.0, 2.0, 3.0):
        clock[0] = T0 + dt
        assert agent.reporter.report_once() is None
    assert agent.reporter.errors == 3 and len(events(agent, "coordinator_unreachable")) == 1
    assert agent.cap_tick() is None  # a failure hands nothing to the loop
    clock[0] = T0 + 5.0 + 5.0  # half-way through the decay
    ticks(agent, kernel, 1)
    assert agent.coord_caps.value(clock[0]) == pytest.approx(210.0)
    assert limits(tree) == split_uw(agent, 210.0)
    assert agent.summary()["coordinator"]["stale"] is True
    clock[0] = T0 + 100.0
    ticks(agent, kernel, 1)
    assert limits(tree) == split_uw(agent, 120.0)  # the grant's base, not the agent's own
    assert agent.summary()["coordinator"]["reachable"] is False


def test_the_operator_cap_and_the_coordinator_cap_combine_as_the_lower(
        tree: Path, kernel: FakeKernel, make_agent: Callable[..., NodeAgent], clock: list[float]) -> None:
    coord = FakeCoordinator(grant(300.0), grant(150.0))
    agent = make_agent(coord)
    ticks(agent, kernel, 2)
    assert limits(tree) == split_uw(agent, agent.base_w)  # before any answer: the guaranteed base
    agent.reporter.report_once()  # 300 W
    assert agent.cap_tick() is not None and agent.coord_caps.cap_w == 300.0
    assert limits(tree) == split_uw(agent, 300.0)
    write_cap_file(agent.state, 200.0, issued_s=T0)  # the operator's, held until replaced: now the lower
    assert agent.cap_tick() is not None
    assert limits(tree) == split_uw(agent, 200.0)
    agent.reporter.report_once()  # 150 W: now the lower
    assert agent.cap_tick() is not None
    assert limits(tree) == split_uw(agent, 150.0)
    write_cap_file(agent.state, None, issued_s=T0)
    os.utime(agent.state / "cap.json", (T0 + 1, T0 + 1))
    ticks(agent, kernel, 1)  # the operator's cap cleared: the coordinator's stays
    assert math.isinf(agent.caps.cap_w) and limits(tree) == split_uw(agent, 150.0)
    assert agent.summary()["cap"]["in_force_w"] == 150.0


def test_the_running_loop_applies_a_grant_through_its_wake_up(tree: Path, make_agent: Callable[..., NodeAgent]) -> None:
    kernel = FakeKernel(tree, load=0.5)
    stop = kernel.start_thread(0.02)
    # Two caps: even if a slow first tick took the first grant itself, the second comes through the wake-up.
    coord = FakeCoordinator(grant(180.0, round=2, report_every_s=0.05), grant(170.0, round=3, report_every_s=0.05))
    try:
        agent = make_agent(coord, report_s=0.05)
        agent.tick()  # the first reading has no rates: the loop's first tick then has a power to report
        agent.period_s = 0.3  # two ticks: the cap is written by the wake-up, between them
        assert agent.run(duration_s=0.25) == 0
    finally:
        stop.set()
    assert len(coord.requests) >= 2
    assert events(agent, "coordinator")[0]["url"] == URL
    assert events(agent, "coordinator_reachable")
    assert [e["cap_w"] for e in events(agent, "coordinator_cap")] == [180.0, 170.0]
    applied = events(agent, "cap_applied")  # only cap_tick, the wake-up's write, logs this
    busy = np.asarray(agent.target.busy_w)
    assert applied and applied[-1]["cap_w"] == [round(w, 1) for w in 170.0 * busy / busy.sum()]
    assert agent.reporter is None  # closed with the agent


def test_metrics_show_the_coordinator_cap_and_errors(tree: Path, kernel: FakeKernel,
                                                     make_agent: Callable[..., NodeAgent]) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from powerrl.runtime.metrics import AgentMetrics

    agent = make_agent(FakeCoordinator(refused(), grant(210.0)))
    agent.metrics = AgentMetrics(agent.node.n, "test", port=0)
    ticks(agent, kernel, 2)
    agent.reporter.report_once()
    agent.reporter.report_once()
    ticks(agent, kernel, 1)
    text = prometheus_client.generate_latest(agent.metrics.registry).decode()
    assert 'powerrl_agent_coordinator_cap_watts{node="test"} 210.0' in text
    assert 'powerrl_agent_coordinator_errors_total{node="test"} 1.0' in text


def test_status_shows_the_coordinator(tree: Path, kernel: FakeKernel, make_agent: Callable[..., NodeAgent],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    agent = make_agent(FakeCoordinator(grant(190.0, round=5)), apply=False)
    ticks(agent, kernel, 2)
    agent.reporter.report_once()
    agent.cap_tick()
    agent.write_status()
    assert main(["agent", "status", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"coordinator {URL} as n1: reachable; last grant 190.0 W (round 5" in out
    assert "coordinator cap in force 190.0 W" in out


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["ftp://coordinator:8470", "coordinator:8470", "http://", "http://c:99999",
                                 "http://c:8470/?x=1"])
def test_a_bad_coordinator_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"agent\.coordinator\.url .*http://"):
        host_file({"agent": {"coordinator": {"url": url}}}, "host.yaml")


def test_coordinator_settings_are_range_checked() -> None:
    with pytest.raises(ConfigError, match=r"agent\.coordinator\.report_s"):
        host_file({"agent": {"coordinator": {"url": URL, "report_s": 0.01}}})
    with pytest.raises(ConfigError, match=r"agent\.coordinator\.tokenfile"):
        host_file({"agent": {"coordinator": {"tokenfile": "x"}}})
    hf = host_file({"agent": {"coordinator": {"url": URL + "/", "node": "n7", "report_s": 2}}})
    assert hf.agent.coordinator == CoordinatorClientConfig(url=URL + "/", node="n7", report_s=2.0)
    assert host_file({}).agent.coordinator.url is None


def test_the_token_comes_from_the_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    remote = "http://coordinator.lab:8470"
    with pytest.raises(ConfigError, match="set agent.coordinator.token_file"):
        coordinator_token(CoordinatorClientConfig(url=remote), remote)
    assert coordinator_token(CoordinatorClientConfig(url=URL), URL) is None  # loopback: no token needed
    assert coordinator_token(CoordinatorClientConfig(), "https://coordinator.lab") is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert coordinator_token(CoordinatorClientConfig(), remote) == "from-env"
    tok = tmp_path / "token"
    tok.write_text("from-file\n", encoding="utf-8")
    assert coordinator_token(CoordinatorClientConfig(token_file=str(tok)), remote) == "from-file"
    with pytest.raises(ConfigError, match=r"agent\.coordinator\.token_file .*readable"):
        coordinator_token(CoordinatorClientConfig(token_file=str(tmp_path / "missing")), remote)
    tok.write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        coordinator_token(CoordinatorClientConfig(token_file=str(tok)), remote)


def test_the_agent_refuses_a_missing_token_file_or_a_bad_override(tree: Path, tmp_path: Path) -> None:
    host = load_host_file(HOST)
    with pytest.raises(ConfigError, match="token_file"):
        NodeAgent(coordinated(host, token_file=str(tmp_path / "nope")), "schedutil", root=str(tree),
                  log=io.StringIO(), metrics_port=0)
    with pytest.raises(ConfigError, match="--coordinator"):
        NodeAgent(host, "schedutil", root=str(tree), log=io.StringIO(), metrics_port=0,
                  coordinator_url="coordinator:8470")
    with pytest.raises(ConfigError, match=r"agent\.coordinator\.node"):
        NodeAgent(coordinated(host, node="bad name"), "schedutil", root=str(tree), log=io.StringIO(),
                  metrics_port=0)
    agent = NodeAgent(host, "schedutil", root=str(tree), log=io.StringIO(), metrics_port=0,
                      coordinator_url="http://localhost:9/")
    try:
        assert agent.reporter is not None and agent.reporter.endpoint == "http://localhost:9/v1/report"
        assert agent.reporter.node == agent.name
    finally:
        agent.close()


def test_run_coordinator_flag_reaches_the_agent(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["agent", "run", "--host", str(HOST), "--root", str(tree), "--controller", "schedutil",
                 "--metrics-port", "0", "--coordinator", "ftp://c:1", "--duration-s", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--coordinator" in err and "Traceback" not in err


def test_without_a_coordinator_the_agent_needs_neither_httpx_nor_pydantic(tree: Path) -> None:
    script = f"""
import io, sys
sys.modules["httpx"] = None  # an import of either now fails, as where they are not installed
sys.modules["pydantic"] = None
from powerrl.errors import ConfigError
from powerrl.runtime.agent import NodeAgent
from powerrl.runtime.config import load_host_file
host = load_host_file({str(HOST)!r})
agent = NodeAgent(host, "schedutil", root={str(tree)!r}, log=io.StringIO(), metrics_port=0)
agent.tick(); agent.tick()
assert agent.reporter is None and agent.summary()["coordinator"] is None
agent.close()
try:
    NodeAgent(host, "schedutil", root={str(tree)!r}, log=io.StringIO(), metrics_port=0,
              coordinator_url="http://127.0.0.1:8470")
except ConfigError as exc:
    assert "powerrl[agent]" in str(exc), exc
else:
    raise AssertionError("an agent with a coordinator started without httpx")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_dry_run_agent_reports_that_it_holds_no_cap(tree: Path, kernel: FakeKernel,
                                                      make_agent: Callable[..., NodeAgent]) -> None:
    """A cap it does not write is no cap: the coordinator must count the node at what it can draw."""
    coord = FakeCoordinator(grant(200.0), grant(200.0))
    agent = make_agent(coord, apply=False)
    ticks(agent, kernel, 2)
    agent.reporter.report_once()
    assert agent.cap_tick() is not None or agent.coord_caps.cap_w == 200.0  # taken, not written
    agent.reporter.report_once()
    body = coord.bodies()[-1]
    assert body["cap_w"] is None and body["cap_round"] == -1
