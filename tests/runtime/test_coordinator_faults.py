"""Coordinator hardening: stale boots, implausible power, journal write failures, health, member bases, check."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from powerrl.errors import ConfigError
from powerrl.runtime.cluster import cluster_spec
from powerrl.runtime.coordinator import Coordinator, StaleReport
from powerrl.runtime.coordinator_cli import member_entry
from powerrl.runtime.protocol import EventRequest, NodeReport
from powerrl.runtime.server import create_app

IDLE_W, BUSY_W = 100.0, 300.0
FAULTS = {"lease_s": 2.0, "decay_s": 3.0, "node_timeout_s": 8.0}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def clock(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.7e9 + self.t


def spec(budget_w: float = 700.0, **over: Any) -> Any:
    data: dict[str, Any] = {"name": "h", "budget_w": budget_w, "round_s": 1.0, "faults": FAULTS,
                            "nodes": [{"name": "n", "count": 3, "priority": 2, "idle_w": IDLE_W, "busy_w": BUSY_W}]}
    data.update(over)
    return cluster_spec(data)


def coordinator(tmp_path: Path | None = None, **over: Any) -> tuple[Coordinator, Clock, list[dict[str, Any]]]:
    c = Clock()
    logged: list[dict[str, Any]] = []
    journal: Any = False if tmp_path is None else tmp_path / "journal.json"
    return Coordinator(spec(**over), journal=journal, clock=c.clock, wall=c.wall, log=logged.append), c, logged


def rep(node: str, seq: int, boot: str = "b1", power_w: float = 150.0, cap_w: float | None = None) -> NodeReport:
    return NodeReport(node=node, boot_id=boot, seq=seq, power_w=power_w, load=0.5, cap_w=cap_w)


def warm(coord: Coordinator, clock: Clock, rounds: int = 3) -> None:
    """Every member reports the cap it was last sent, and a round runs, ``rounds`` times."""
    for _ in range(rounds):
        for i, name in enumerate(coord.spec.names):
            held = None if math.isnan(coord.sent_w[i]) else float(coord.sent_w[i])
            coord.report(rep(name, int(coord.seq[i]) + 1, boot=coord.boot_id[i] or "b1", cap_w=held))
        coord.run_round()
        clock.t += 1.0


def test_a_report_from_an_older_boot_is_stale_and_never_lowers_what_the_member_may_hold() -> None:
    coord, clock, logged = coordinator()
    warm(coord, clock)
    coord.report(rep("n-0", 0, boot="b2", cap_w=None))  # the agent restarted: uncapped
    assert math.isinf(coord.hold_w[0])
    # A delayed report of the old process says it held a low cap: refused, the hold stays.
    before_power = coord.power_w[0]
    with pytest.raises(StaleReport, match="earlier boot"):
        coord.report(rep("n-0", 99, boot="b1", power_w=10.0, cap_w=110.0))
    assert math.isinf(coord.hold_w[0]) and coord.boot_id[0] == "b2" and coord.power_w[0] == before_power
    assert any(e["event"] == "stale_boot" and e["boot_id"] == "b1" for e in logged)


def test_a_new_boot_reporting_a_lower_cap_keeps_the_previous_hold_until_its_next_report() -> None:
    coord, clock, _ = coordinator()
    warm(coord, clock)
    old_hold = float(coord.hold_w[0])
    coord.report(rep("n-0", 0, boot="b2", cap_w=120.0))  # new process: starts at its base, says 120 W
    assert coord.hold_w[0] >= old_hold  # the old process's cap may still be in force
    coord.report(rep("n-0", 1, boot="b2", cap_w=float(coord.sent_w[0])))
    assert coord.hold_w[0] <= max(120.0, float(coord.sent_w[0])) + 1e-9


def test_implausible_power_is_clamped_and_does_not_floor_the_facility() -> None:
    coord, clock, logged = coordinator(budget_w=800.0)
    warm(coord, clock)
    caps_before = coord.issued_w.copy()
    coord.report(rep("n-1", int(coord.seq[1]) + 1, power_w=50_000.0, cap_w=float(coord.sent_w[1])))
    assert coord.power_w[1] == pytest.approx(coord.node_max_w[1]) and coord.implausible == 1
    assert any(e["event"] == "implausible_power" for e in logged)
    summary = coord.run_round()
    assert "infeasible" not in summary["shield"]
    # The other members keep caps well above their emergency floors.
    assert (coord.issued_w[[0, 2]] >= 0.8 * caps_before[[0, 2]]).all()


def test_a_failed_journal_write_sends_nothing_new_and_an_event_rolls_back(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    coord, clock, logged = coordinator(tmp_path)
    warm(coord, clock)
    issued, rnd = coord.issued_w.copy(), coord.round

    def full_disk(*_a: Any, **_k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("powerrl.runtime.coordinator.write_atomically", full_disk)
    with pytest.raises(OSError):
        coord.run_round()
    assert coord.round == rnd
    np.testing.assert_array_equal(coord.issued_w, issued)
    assert any(e["event"] == "journal_write_failed" for e in logged)
    with pytest.raises(OSError):
        coord.declare(EventRequest(kind="grid_cut", percent=20, within_s=5))
    assert coord.events == {} and coord.next_event_id == 1
    # Over HTTP: 503 naming the journal, and nothing changed.
    app = create_app(coord, None)
    resp = _call(app, "POST", "/v1/event", json={"kind": "grid_cut", "percent": 20, "within_s": 5})
    assert resp.status_code == 503 and "journal" in resp.json()["error"] and coord.events == {}


def test_journal_round_is_the_round_whose_caps_it_holds(tmp_path: Path) -> None:
    coord, clock, _ = coordinator(tmp_path)
    warm(coord, clock, rounds=2)
    doc = json.loads((tmp_path / "journal.json").read_text(encoding="utf-8"))
    assert doc["round"] == coord.round
    assert doc["nodes"]["n-0"][3] == pytest.approx(coord.issued_w[0])


def _call(app: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def test_health_is_503_when_rounds_stop() -> None:
    coord, _, _ = coordinator()
    app = create_app(coord, None, round_loop=True)

    async def go() -> tuple[int, int, bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            # No lifespan under ASGITransport: the round task never started, so rounds "stopped".
            r = await client.get("/v1/health")
            h = await client.head("/v1/health")
            return r.status_code, h.status_code, r.json()["ok"]

    status, head, ok = asyncio.run(go())
    assert status == 503 and head == 503 and ok is False


def test_health_answers_head_and_get_without_the_round_loop() -> None:
    coord, _, _ = coordinator()
    app = create_app(coord, "t" * 20)
    assert _call(app, "HEAD", "/v1/health").status_code == 200
    assert _call(app, "GET", "/v1/health").json()["ok"] is True


def test_member_base_w_overrides_the_priority_rule_and_the_member_entry_carries_the_rack_bases() -> None:
    s = spec(nodes=[{"name": "rack-a", "priority": 4, "idle_w": 300.0, "busy_w": 900.0, "base_w": 640.0},
                    {"name": "rack-b", "priority": 4, "idle_w": 300.0, "busy_w": 900.0}], budget_w=1500.0)
    coord = Coordinator(s, journal=False)
    assert coord.base_w[0] == pytest.approx(640.0) and coord.base_w[1] == pytest.approx(300.0)  # Background: idle
    child = spec(parent={"url": "http://127.0.0.1:1", "name": "rack-a"},
                 nodes=[{"name": "db", "count": 2, "priority": 0, "idle_w": IDLE_W, "busy_w": BUSY_W}])
    entry = member_entry(child, priority=1, group=None)
    bases = Coordinator(child, journal=False).base_w.sum()  # Critical: idle + 0.5 (busy - idle) = 200 W each
    assert entry["base_w"] >= bases and entry["base_w"] == pytest.approx(400.0, abs=0.1)
    assert entry["idle_w"] == 200.0 and entry["busy_w"] == 600.0


@pytest.mark.parametrize(("over", "key"), [
    ({"groups": {"r": {"level": "rack"}}}, "levels"),
    ({"nodes": [{"name": "a" * 127, "count": 2, "idle_w": 1.0, "busy_w": 2.0}]}, "expanded"),
    ({"nodes": [{"name": "n", "idle_w": 100.0, "busy_w": 300.0, "base_w": 400.0}]}, "base_w"),
    ({"faults": {"lease_s": 5.0, "decay_s": 30.0, "node_timeout_s": 37.5}}, "node_timeout_s"),
])
def test_bad_cluster_files_name_the_key(over: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec(**over)
    assert key in str(err.value)


def test_a_silent_member_that_returns_is_never_sent_more_than_it_reports_holding() -> None:
    coord, clock, _ = coordinator(budget_w=900.0)
    warm(coord, clock)
    clock.t += 2.5  # n-0 silent (others report)
    for i, name in enumerate(coord.spec.names[1:], start=1):
        coord.report(rep(name, int(coord.seq[i]) + 1, cap_w=float(coord.sent_w[i])))
    coord.run_round()
    assert coord.state[0] == 1
    # Its lease decayed meanwhile: it reports a lower cap than it was last sent, and gets no more than that.
    decayed = float(coord.base_w[0]) + 1.0
    grant = coord.report(rep("n-0", int(coord.seq[0]) + 1, cap_w=decayed))
    assert grant.cap_w <= decayed + 1e-9


def test_check_flags_a_group_whose_guaranteed_bases_exceed_its_limit(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from powerrl.cli import main

    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "cluster", "name": "tight", "budget_w": 2000.0, "levels": ["rack"],
        "groups": {"r0": {"level": "rack", "limit_w": 300.0}},
        "nodes": [{"name": "db", "count": 2, "group": "r0", "priority": 0, "idle_w": IDLE_W, "busy_w": BUSY_W}]}))
    assert main(["coordinator", "check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "rack r0: guaranteed bases 400 W exceed its limit 300 W" in out


def test_a_member_that_holds_no_cap_is_counted_at_its_maximum_and_does_not_freeze_the_others() -> None:
    """A dry-run agent reports no cap forever: pinned at its busy power, the others still rise to their share."""
    coord, clock, _ = coordinator(budget_w=800.0)
    for r in range(8):
        for i, name in enumerate(coord.spec.names):
            held = None if i == 0 or math.isnan(coord.sent_w[i]) else float(coord.sent_w[i])
            coord.report(rep(name, r, cap_w=held))
        coord.run_round()
        clock.t += 1.0
    assert coord.counted_w[0] == pytest.approx(coord.node_max_w[0])
    # The others share what is left of the budget after n-0's 300 W (less the 2 % reserve) -- not frozen
    # at what they held when the allocation started.
    room = 800.0 * 0.98 - coord.node_max_w[0]
    assert coord.issued_w[1:].sum() == pytest.approx(room, rel=1e-3)
    # Their caps plus n-0's maximum fit the budget.
    assert coord.issued_w[1:].sum() + coord.node_max_w[0] <= 800.0


def test_a_stale_report_is_409_over_http_and_changes_nothing() -> None:
    coord, clock, _ = coordinator()
    warm(coord, clock)
    app = create_app(coord, None)
    body = {"node": "n-0", "boot_id": "b1", "seq": 0, "power_w": 10.0, "load": 0.1, "cap_w": 105.0}
    before = (coord.hold_w.copy(), coord.sent_w.copy(), coord.power_w.copy())
    resp = _call(app, "POST", "/v1/report", json=body)
    assert resp.status_code == 409 and "not newer" in resp.json()["error"] and resp.json()["fix"]
    for a, b in zip(before, (coord.hold_w, coord.sent_w, coord.power_w), strict=True):
        np.testing.assert_array_equal(a, b)


def test_after_a_restart_nobody_is_lost_before_a_lease_sent_before_the_crash_could_decay(tmp_path: Path) -> None:
    """Journal writes failed for longer than node_timeout_s while answers still went out: on restart the
    journal's contact times are old, but the members may hold caps received just before the crash."""
    coord, clock, _ = coordinator(tmp_path)
    warm(coord, clock)
    clock.t += 100.0  # the journal's last contact is now 100 s old (> node_timeout_s = 8 s)
    restarted = Coordinator(coord.spec, journal=tmp_path / "journal.json", clock=clock.clock, wall=clock.wall)
    state, counted = restarted.classify(clock.t)
    assert (state == 1).all() and (counted == restarted.node_max_w).all()  # silent: at their maximum
    clock.t += FAULTS["lease_s"] + FAULTS["decay_s"] + 1.5
    state, _ = restarted.classify(clock.t)
    assert (state == 2).all()  # only now can their caps have decayed to their bases


def test_a_bad_parent_token_stops_the_start_not_the_round_task(tmp_path: Path) -> None:
    from powerrl.runtime.server import ParentLink

    child = spec(parent={"url": "http://10.0.0.1:8470", "name": "rack-a", "token_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="parent.token_file"):
        ParentLink(Coordinator(child, journal=False))
    no_token = spec(parent={"url": "http://10.0.0.1:8470", "name": "rack-a"})
    with pytest.raises(ConfigError, match="non-loopback parent"):
        ParentLink(Coordinator(no_token, journal=False))


def test_event_and_status_find_an_ipv6_loopback_coordinator(tmp_path: Path) -> None:
    import argparse

    import yaml

    from powerrl.runtime.coordinator_cli import _client

    path = tmp_path / "v6.yaml"
    path.write_text(yaml.safe_dump({"kind": "cluster", "name": "v6", "budget_w": 500.0,
                                    "api": {"listen": "::1", "port": 18471},
                                    "nodes": [{"name": "n", "idle_w": IDLE_W, "busy_w": BUSY_W}]}))
    args = argparse.Namespace(url=None, token_file=None, config=str(path), timeout_s=1.0)
    client, url = _client(args)
    client.close()
    assert url == "http://[::1]:18471"
