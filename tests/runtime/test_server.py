"""The coordinator's HTTP API in-process (httpx over ASGI, no sockets): grants, auth, size limits, rejections.

Every rejection must change nothing: each test snapshots the coordinator's member state, events and
status before the bad request and compares after (only the ``rejected`` counter may move).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from powerrl.errors import ConfigError
from powerrl.runtime.auth import MIN_TOKEN_CHARS, is_loopback, read_token
from powerrl.runtime.cluster import cluster_spec
from powerrl.runtime.coordinator import Coordinator
from powerrl.runtime.protocol import CapGrant, EventAnswer
from powerrl.runtime.server import create_app

TOKEN = "s3cret-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def clock(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.7e9 + self.t


def make_coord() -> Coordinator:
    spec = cluster_spec({
        "name": "srv", "budget_w": 1400.0, "round_s": 1.0, "levels": ["rack"],
        "groups": {"r0": {"level": "rack", "limit_w": 750.0}, "r1": {"level": "rack", "limit_w": 750.0}},
        "nodes": [{"name": "a", "count": 3, "group": "r0", "priority": 1, "idle_w": 100.0, "busy_w": 300.0},
                  {"name": "b", "count": 3, "group": "r1", "priority": 2, "idle_w": 100.0, "busy_w": 300.0}],
        "faults": {"lease_s": 2.0, "decay_s": 3.0, "node_timeout_s": 8.0}})
    t = FakeTime()
    return Coordinator(spec, journal=False, clock=t.clock, wall=t.wall)


@pytest.fixture
def coord() -> Coordinator:
    c = make_coord()
    # some history, so that "unchanged" means something: every member reported, two rounds ran
    for _ in range(2):
        for i, name in enumerate(c.spec.names):
            c.report(_rep(name, seq=c.seq[i] + 1, power_w=150.0))
        c.run_round()
    return c


@pytest.fixture
def app(coord: Coordinator) -> Any:
    return create_app(coord, TOKEN, max_body_bytes=MAX_BODY)


def _rep(node: str = "a-0", seq: int = 100, power_w: float = 150.0, **kw: Any) -> Any:
    from powerrl.runtime.protocol import NodeReport

    return NodeReport(node=node, seq=seq, power_w=power_w, load=0.5, boot_id="b", **kw)


def report_body(node: str = "a-0", seq: int = 100, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"node": node, "boot_id": "b", "seq": seq, "power_w": 120.0, "load": 0.4}
    body.update(kw)
    return body


def call(app: Any, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    """One request through the ASGI app (no sockets)."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
            return await client.request(method, path, headers=headers, **kw)

    return asyncio.run(go())


def snapshot(c: Coordinator) -> dict[str, Any]:
    """Everything a message could change, but the rejection counter."""
    st = c.status(nodes=True)
    for k in ("rejected", "round_ms_p50", "round_ms_p99"):
        st.pop(k)
    arrays = {k: getattr(c, k).copy() for k in ("last_report_s", "seq", "power_w", "load", "util", "temp_c", "held_w",
                                                  "held_round", "sent_w", "hold_w", "issued_w", "counted_w", "state")}
    return {"status": json.dumps(st, sort_keys=True, default=str), "arrays": arrays, "boot": list(c.boot_id),
            "round": c.round, "events": dict(c.events), "next_event_id": c.next_event_id}


def assert_unchanged(before: dict[str, Any], c: Coordinator) -> None:
    after = snapshot(c)
    assert after["status"] == before["status"]
    assert after["boot"] == before["boot"] and after["round"] == before["round"]
    assert after["events"] == before["events"] and after["next_event_id"] == before["next_event_id"]
    for k, a in before["arrays"].items():
        np.testing.assert_array_equal(after["arrays"][k], a, err_msg=k)


def assert_error(resp: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    data = resp.json()
    assert data["api"] == 1 and data["error"] and data["fix"]
    text = data["error"] + " " + data["fix"]
    for n in needles:
        assert n in text, (n, data)
    return dict(data)


# ---------------------------------------------------------------------------------------------------------------------
# The happy path


def test_valid_report_gets_a_grant_and_updates_the_member(app: Any, coord: Coordinator) -> None:
    resp = call(app, "POST", "/v1/report", headers=AUTH, json=report_body(cap_w=200.0, cap_round=2, temp_c=55.0))
    assert resp.status_code == 200, resp.text
    grant = CapGrant.model_validate_json(resp.content)
    assert grant.node == "a-0" and grant.round == coord.round
    assert grant.cap_w == coord.sent_w[0]
    assert grant.cap_w <= coord.issued_w[0] + 1e-9  # the round's cap, or less: no rise above the 200 W it holds
    assert grant.base_w == pytest.approx(coord.base_w[0])
    assert (grant.lease_s, grant.decay_s, grant.report_every_s) == (2.0, 3.0, 1.0)
    assert coord.seq[0] == 100 and coord.power_w[0] == 120.0 and coord.temp_c[0] == 55.0
    assert coord.held_w[0] == 200.0 and coord.held_round[0] == 2
    assert coord.rejected == 0


def test_health_needs_no_token(app: Any, coord: Coordinator) -> None:
    resp = call(app, "GET", "/v1/health")
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "api": 1, "name": "srv", "round": coord.round}


def test_status_requires_the_token(app: Any, coord: Coordinator) -> None:
    assert_error(call(app, "GET", "/v1/status"), 401, "Bearer")
    resp = call(app, "GET", "/v1/status", headers=AUTH)
    assert resp.status_code == 200
    st = resp.json()
    assert st["name"] == "srv" and st["nodes"] == 6 and st["round"] == coord.round and "members" not in st
    resp = call(app, "GET", "/v1/status?nodes=true", headers=AUTH)
    members = resp.json()["members"]
    assert set(members) == set(coord.spec.names)
    assert members["b-2"]["state"] == "ok"


def test_status_is_strict_json_with_unreported_members_and_no_parent() -> None:
    c = make_coord()  # nobody reported: inf ages, NaN caps
    resp = call(create_app(c, TOKEN), "GET", "/v1/status?nodes=true", headers=AUTH)
    assert resp.status_code == 200
    st = json.loads(resp.text, parse_constant=lambda x: pytest.fail(f"non-JSON constant {x}"))
    assert st["members"]["a-0"]["cap_w"] is None and st["never_reported"] == 6


def test_event_grid_cut_and_clear(app: Any, coord: Coordinator) -> None:
    resp = call(app, "POST", "/v1/event", headers=AUTH, json={"kind": "grid_cut", "percent": 20, "within_s": 5})
    assert resp.status_code == 200, resp.text
    ans = EventAnswer.model_validate_json(resp.content)
    assert ans.kind == "grid_cut" and ans.budget_w == pytest.approx(1120.0) and ans.deadline_s == pytest.approx(5.0)
    assert ans.round == coord.round and ans.affected_nodes == 6
    assert set(coord.events) == {ans.id}
    resp = call(app, "POST", "/v1/event", headers=AUTH, json={"kind": "clear", "id": ans.id})
    assert resp.status_code == 200 and coord.events == {}


def test_no_token_configured_lets_requests_through(coord: Coordinator) -> None:
    app = create_app(coord, None, max_body_bytes=MAX_BODY)
    assert call(app, "POST", "/v1/report", json=report_body()).status_code == 200
    assert call(app, "GET", "/v1/status").status_code == 200


# ---------------------------------------------------------------------------------------------------------------------
# Authentication


@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer wrong-token-0123456789abc"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer "},
    {"X-Token": TOKEN},
])
@pytest.mark.parametrize("path", ["/v1/report", "/v1/event"])
def test_missing_or_wrong_token_is_401_and_changes_nothing(app: Any, coord: Coordinator,
                                                          headers: dict[str, str] | None, path: str) -> None:
    before = snapshot(coord)
    rejected = coord.rejected
    body = report_body(seq=999, power_w=10.0) if path == "/v1/report" else {"kind": "grid_cut", "percent": 50}
    resp = call(app, "POST", path, headers=headers, json=body)
    assert_error(resp, 401, "Authorization: Bearer")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert_unchanged(before, coord)
    assert coord.rejected == rejected + 1


def test_token_is_checked_before_the_body_is_parsed(app: Any, coord: Coordinator) -> None:
    """An unauthenticated oversized or malformed body is a 401, not a 413/422: nothing about it is looked at."""
    before = snapshot(coord)
    assert call(app, "POST", "/v1/report", content=b"x" * (MAX_BODY * 4)).status_code == 401
    assert call(app, "POST", "/v1/report", content=b"{not json",
                headers={"Content-Type": "application/json"}).status_code == 401
    assert_unchanged(before, coord)


# ---------------------------------------------------------------------------------------------------------------------
# Size


def test_body_over_the_limit_with_content_length_is_413_and_changes_nothing(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    rejected = coord.rejected
    body = json.dumps(report_body(seq=999, boot_id="x" * 10)).encode()
    body += b" " * (MAX_BODY + 1 - len(body))  # valid JSON, one byte too many
    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json"}, content=body)
    assert_error(resp, 413, str(MAX_BODY), "max_body_bytes")
    assert_unchanged(before, coord)
    assert coord.rejected == rejected + 1
    # exactly at the limit is fine
    ok = json.dumps(report_body(seq=1000)).encode()
    ok += b" " * (MAX_BODY - len(ok))
    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json"}, content=ok)
    assert resp.status_code == 200, resp.text


def test_content_length_that_is_not_a_number_is_rejected(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json", "Content-Length": "x"},
                content=json.dumps(report_body(seq=999)).encode())
    assert resp.status_code in (400, 413)
    assert_unchanged(before, coord)


async def _chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    head = b'{"node": "a-0", "seq": 999, "power_w": 10.0, "boot_id": "'
    yield head
    sent = len(head)
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def test_chunked_body_over_the_limit_is_413_and_changes_nothing(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    rejected = coord.rejected
    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json"},
                content=_chunks(MAX_BODY * 3))
    assert "content-length" not in {k.lower() for k in resp.request.headers}
    assert_unchanged(before, coord)  # (this part holds today)
    assert_error(resp, 413, str(MAX_BODY))
    assert coord.rejected == rejected + 1


def test_chunked_body_within_the_limit_is_accepted(app: Any, coord: Coordinator) -> None:
    async def small() -> AsyncIterator[bytes]:
        text = json.dumps(report_body(seq=5000)).encode()
        for k in range(0, len(text), 16):
            yield text[k:k + 16]

    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json"}, content=small())
    assert resp.status_code == 200, resp.text
    assert coord.seq[0] == 5000


# ---------------------------------------------------------------------------------------------------------------------
# Schema


@pytest.mark.parametrize(("content", "field"), [
    (b'{"node": "a-0", "seq": 1', "body"),  # malformed JSON
    (b"[]", "body"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "bogus": 1}', "bogus"),  # unknown field
    (b'{"node": "a-0", "seq": 1, "power_w": NaN}', "power_w"),
    (b'{"node": "a-0", "seq": 1, "power_w": Infinity}', "power_w"),
    (b'{"node": "a-0", "seq": 1, "power_w": -5}', "power_w"),
    (b'{"node": "a-0", "seq": 1, "power_w": 1e10}', "power_w"),
    (b'{"node": "a-0", "seq": "one", "power_w": 10}', "seq"),
    (b'{"node": "a-0", "seq": -1, "power_w": 10}', "seq"),
    (b'{"node": "a-0", "seq": 1, "power_w": "10 W"}', "power_w"),
    (b'{"node": 7, "seq": 1, "power_w": 10}', "node"),
    (b'{"seq": 1, "power_w": 10}', "node"),
    (b'{"node": "a-0", "power_w": 10}', "seq"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "load": 17}', "load"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "cap_w": NaN}', "cap_w"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "util": 1.5}', "util"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "temp_c": -100}', "temp_c"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "boot_id": "' + b"b" * 65 + b'"}', "boot_id"),
    (('{"node": "' + "n" * 129 + '", "seq": 1, "power_w": 10}').encode(), "node"),
    (b'{"node": "a/0", "seq": 1, "power_w": 10}', "node"),
    (b'{"node": "a-0", "seq": 1, "power_w": 10, "priority": 9}', "priority"),
])
def test_bad_message_is_422_naming_the_field_and_changes_nothing(app: Any, coord: Coordinator, content: bytes,
                                                                 field: str) -> None:
    before = snapshot(coord)
    rejected = coord.rejected
    resp = call(app, "POST", "/v1/report", headers={**AUTH, "Content-Type": "application/json"}, content=content)
    data = assert_error(resp, 422, field, "nothing was changed")
    assert data["detail"][0]["field"] == field
    assert_unchanged(before, coord)
    assert coord.rejected == rejected + 1


def test_bad_event_message_is_422(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    for body in ({"kind": "meteor"}, {"kind": "grid_cut", "percent": 100}, {"kind": "grid_cut", "percent": -1},
                 {"kind": "grid_cut", "percent": 10, "within_s": -1}, {"kind": "clear", "id": -3},
                 {"kind": "grid_cut", "percent": 10, "extra": True}):
        resp = call(app, "POST", "/v1/event", headers=AUTH, json=body)
        assert resp.status_code == 422, (body, resp.text)
    assert_unchanged(before, coord)


# ---------------------------------------------------------------------------------------------------------------------
# Unknown nodes, paths, events


def test_unknown_node_is_404_and_changes_nothing(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    resp = call(app, "POST", "/v1/report", headers=AUTH, json=report_body(node="zz-9"))
    data = assert_error(resp, 404, "zz-9", "cluster file")
    assert data["node"] == "zz-9"
    assert_unchanged(before, coord)


@pytest.mark.parametrize("path", ["/v2/report", "/v0/report", "/report", "/v1/reports", "/"])
def test_unknown_path_is_404_naming_v1(app: Any, path: str) -> None:
    resp = call(app, "POST", path, headers=AUTH, json=report_body())
    assert_error(resp, 404, "v1", "/v1/report")


def test_wrong_method_is_405(app: Any) -> None:
    assert_error(call(app, "GET", "/v1/report", headers=AUTH), 405, "POST /v1/report")


def test_event_grid_cut_without_percent_is_400_and_changes_nothing(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    assert_error(call(app, "POST", "/v1/event", headers=AUTH, json={"kind": "grid_cut"}), 400, "percent")
    assert_unchanged(before, coord)


def test_event_for_an_unknown_group_is_400_and_changes_nothing(app: Any, coord: Coordinator) -> None:
    before = snapshot(coord)
    resp = call(app, "POST", "/v1/event", headers=AUTH, json={"kind": "cooling_failure", "group": "r9"})
    assert_error(resp, 400, "r9", "r0")
    resp = call(app, "POST", "/v1/event", headers=AUTH, json={"kind": "clear", "id": 42})
    assert_error(resp, 400, "42")
    assert_unchanged(before, coord)


# ---------------------------------------------------------------------------------------------------------------------
# Tokens and addresses


def test_read_token(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n", encoding="utf-8")
    assert read_token(str(f), "NO_SUCH_ENV_VAR", "api.token_file") == TOKEN
    monkeypatch.setenv("POWERRL_TEST_TOKEN", "  " + TOKEN + " ")
    assert read_token(None, "POWERRL_TEST_TOKEN", "api.token_file") == TOKEN
    monkeypatch.delenv("POWERRL_TEST_TOKEN")
    assert read_token(None, "POWERRL_TEST_TOKEN", "api.token_file") is None
    f.write_text("short", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(MIN_TOKEN_CHARS)):
        read_token(str(f), "X", "api.token_file")
    with pytest.raises(ConfigError, match="api.token_file"):
        read_token(str(tmp_path / "missing"), "X", "api.token_file")


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("127.3.4.5", True), ("0.0.0.0", False), ("10.0.0.1", False),
                                            ("::", False), ("example.com", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_grant_numbers_are_finite(app: Any) -> None:
    resp = call(app, "POST", "/v1/report", headers=AUTH, json=report_body(seq=7777))
    data = resp.json()
    assert all(math.isfinite(data[k]) for k in ("cap_w", "base_w", "lease_s", "decay_s", "report_every_s"))
