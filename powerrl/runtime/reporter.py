"""The node agent's side of the coordinator protocol (:mod:`powerrl.runtime.protocol`, v1).

:class:`CoordinatorReporter` is a daemon thread owned by :class:`~powerrl.runtime.agent.NodeAgent`.
Every ``report_every_s`` (the configured ``agent.coordinator.report_s`` until the coordinator's
first answer, then the answer's ``report_every_s``) it POSTs a :class:`NodeReport` to
``{url}/v1/report`` over one keep-alive connection, and keeps the :class:`CapGrant` it gets back for
the agent's loop to take (:meth:`CoordinatorReporter.take_grant`): this thread never writes hardware,
it only wakes the loop, which applies the cap between periods.

A failure (refused connection, timeout, an HTTP error, an answer that does not parse or names another
node) never reaches the agent: it is counted, logged once when the coordinator becomes unreachable
(and once when it is back, or once per distinct rejection such as a bad token), and the next report
tries again. Meanwhile nothing is done on purpose: the last cap's lease runs out and the cap decays to
the guaranteed base by itself (:class:`~powerrl.runtime.caps.CapLease`), which is what a coordinator
that counts a long-silent (lost) node at its base relies on.

Importing this module imports ``httpx`` and ``pydantic`` (the ``agent`` extra): the agent imports it
only when a coordinator URL is configured.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from powerrl.errors import ConfigError
from powerrl.runtime.protocol import API_PREFIX, API_VERSION, AUTH_HEADER, CapGrant, NodeReport
from powerrl.shield.budget import MAX_NODE_W

#: Bounds on the report period a coordinator may ask for, s: faster floods it, slower outlives leases.
MIN_REPORT_S = 0.05
MAX_REPORT_S = 60.0
#: Longest server error text kept (the status file and one log line carry it).
MAX_ERROR_CHARS = 500


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


class _Mean:
    """Running mean of the finite values given (NaN and inf are skipped: a failed sensor)."""

    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def add(self, v: float | None) -> None:
        if v is not None and math.isfinite(v):
            self.total += v
            self.n += 1

    def value(self) -> float | None:
        return self.total / self.n if self.n else None


def _server_error(resp: httpx.Response) -> str:
    """The server's own words for a refused report (its ``error`` and ``fix`` fields, else the body)."""
    text = resp.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        said = [body[key] if isinstance(body[key], str) else json.dumps(body[key], separators=(",", ":"))
                for key in ("error", "detail", "fix") if body.get(key)]
        if said:
            text = "; ".join(said)  # the coordinator answers {"error": ..., "fix": ...}
    text = " ".join(text.split()) or resp.reason_phrase
    return text[:MAX_ERROR_CHARS]


class CoordinatorReporter:
    """Reports this node to the coordinator and keeps the cap it answers with.

    Args:
        url: the coordinator's base URL (``http(s)://host:port``, no ``/v1``).
        node: this node's name in the cluster file.
        token: the shared bearer token (None: no ``Authorization`` header).
        priority: the host file's priority (informational: the cluster file decides).
        report_s: report period until the first answer sets one, s.
        timeout_s: one report's HTTP timeout, s.
        wake: called (from this thread) after a new grant is stored: the agent wakes its loop.
        emit: writes one JSON log line (the agent's log); called from this thread.
        held_cap: the coordinator cap the agent holds now and its round (W, inf: none); reported as
            ``cap_w``/``cap_round``. None: the last grant taken (:meth:`take_grant`) as it arrived.
        transport: an httpx transport (tests: ``httpx.MockTransport``); None: the network.
        clock: wall clock, s (default :func:`time.time`); a grant's lease counts from its receipt.
    """

    def __init__(self, url: str, node: str, *, token: str | None = None, priority: int | None = None,
                 report_s: float = 1.0, timeout_s: float = 0.5, wake: Callable[[], None] | None = None,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 held_cap: Callable[[], tuple[float, int]] | None = None,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] | None = None) -> None:
        if not _node_ok(node):
            raise ConfigError("agent.coordinator.node", node, "a node name as in the cluster file (letters, digits, "
                              "'_.:-', at most 128 characters): set agent.coordinator.node")
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}{API_PREFIX}/report"
        self.node = node
        self.priority = priority
        # A fresh id per reporter: seq restarts at 0 with it, and the coordinator ignores a seq not above
        # the last one it saw under the same boot_id (a second agent in one process must not look like a replay).
        self.boot_id = secrets.token_hex(8)
        self.seq = 0
        self.report_every_s = _clamp(float(report_s), MIN_REPORT_S, MAX_REPORT_S)
        self.timeout_s = float(timeout_s)
        self._wake = wake or (lambda: None)
        self._emit = emit or (lambda obj: None)
        self._held_cap = held_cap
        self._clock = clock
        headers = {"Content-Type": "application/json", "User-Agent": f"powerrl-agent/{API_VERSION}"}
        if token:
            headers[AUTH_HEADER] = f"Bearer {token}"
        self.client = httpx.Client(transport=transport, timeout=self.timeout_s, headers=headers)
        self._lock = threading.Lock()  # observations, the pending grant and the state read by summaries
        self._power, self._load, self._util, self._temp = _Mean(), _Mean(), _Mean(), _Mean()
        self._last: tuple[float, float, float | None, float | None] | None = None  # last reported power..temp
        self._pending: tuple[CapGrant, float] | None = None
        self._taken: CapGrant | None = None  # the last grant the agent took
        self.last_grant: CapGrant | None = None
        self.last_grant_wall_s: float | None = None
        self.grants = 0  # answers taken
        self.errors = 0
        self.last_error: str | None = None
        self.reachable: bool | None = None  # None: no answer yet
        self._state_key: str | None = None  # what was logged last: "ok", "down" or "rejected"
        self._rejections_logged: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    # -- the agent's side (its loop thread) -----------------------------------------------------------
    def observe(self, power_w: float, load: float, util: float, temp_c: float | None) -> None:
        """One tick's node power (W), offered load, busy fraction and hottest temperature (degC); NaN: unknown."""
        with self._lock:
            self._power.add(power_w)
            self._load.add(load)
            self._util.add(util)
            self._temp.add(temp_c)

    def take_grant(self) -> tuple[CapGrant, float] | None:
        """The grant that arrived since the last call and its receipt time (wall s), or None; it is now held."""
        with self._lock:
            got, self._pending = self._pending, None
            if got is not None:
                self._taken = got[0]
            return got

    # -- the reporting thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start reporting on a daemon thread (the first report after one period: a mean needs ticks)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="powerrl-agent-reporter", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic()
        while True:
            # Absolute deadlines: a slow answer shortens the next wait instead of stretching the period.
            deadline += self.report_every_s
            if self._stop.wait(max(0.0, deadline - time.monotonic())):
                return
            try:
                self.report_once()
            except Exception as exc:  # noqa: BLE001 - whatever goes wrong, the thread and the agent go on
                self._failed(f"{type(exc).__name__}: {exc}", None)
            if time.monotonic() - deadline > self.report_every_s:
                deadline = time.monotonic()  # far behind (a stall): start afresh rather than burst

    def build_report(self) -> NodeReport | None:
        """The report of the interval since the last one (None before the agent's first reading)."""
        with self._lock:
            power_w = self._power.value()
            if power_w is not None:
                load = self._load.value()
                self._last = (power_w, 0.0 if load is None else load, self._util.value(), self._temp.value())
            elif self._last is None:
                return None  # nothing measured yet: a 0 W report would misinform the coordinator
            # else no tick this interval (a stalled loop): the last known values again
            self._power, self._load, self._util, self._temp = _Mean(), _Mean(), _Mean(), _Mean()
            power, load, util, temp = self._last
            seq = self.seq
            self.seq += 1
            taken = self._taken
        if self._held_cap is not None:
            # The agent's lease in force (lower than the grant once decaying): what the node may draw now.
            held_w, held_round = self._held_cap()
        else:
            held_w, held_round = (math.inf, -1) if taken is None else (taken.cap_w, taken.round)
        with self._lock:
            pending = self._pending
        if pending is not None and math.isfinite(held_w) and pending[0].cap_w > held_w:
            # A grant the loop has not applied yet will be in force soon: report the larger one.
            held_w, held_round = pending[0].cap_w, pending[0].round
        held = held_w if math.isfinite(held_w) else None
        # Clamped into the schema's ranges: an odd sensor value must not make every report invalid.
        return NodeReport(node=self.node, boot_id=self.boot_id, seq=seq, power_w=_clamp(power, 0.0, MAX_NODE_W),
                          load=_clamp(load, 0.0, 16.0), util=None if util is None else _clamp(util, 0.0, 1.0),
                          temp_c=None if temp is None else _clamp(temp, -60.0, 200.0), priority=self.priority,
                          cap_w=None if held is None else _clamp(held, 0.0, MAX_NODE_W),
                          cap_round=max(held_round, -1) if held is not None else -1)

    def report_once(self) -> CapGrant | None:
        """Send one report now; the grant it got (also stored for :meth:`take_grant`), None on any failure."""
        report = self.build_report()
        if report is None:
            return None
        try:
            resp = self.client.post(self.endpoint, content=report.model_dump_json())
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, None)
            return None
        if resp.status_code != 200:
            self._failed(f"HTTP {resp.status_code}: {_server_error(resp)}", resp.status_code)
            return None
        grant = self._parse(resp)
        if grant is None:
            return None
        received = self._now()
        with self._lock:
            self._pending = (grant, received)
            self.last_grant, self.last_grant_wall_s = grant, received
            self.report_every_s = _clamp(grant.report_every_s, MIN_REPORT_S, MAX_REPORT_S)
            self.grants += 1
        self._ok()
        self._wake()
        return grant

    def _parse(self, resp: httpx.Response) -> CapGrant | None:
        try:
            data = json.loads(resp.content)
        except ValueError as exc:
            self._failed(f"the answer is not JSON ({exc})", None)
            return None
        if isinstance(data, dict) and data.get("api") != API_VERSION:
            self._failed(f"the coordinator speaks protocol api {data.get('api')!r}, this agent {API_VERSION}: "
                         "run matching powerrl versions", None)
            return None
        try:
            grant = CapGrant.model_validate_json(resp.content)
        except ValidationError as exc:
            self._failed(f"invalid answer: {' '.join(str(exc).split())[:MAX_ERROR_CHARS]}", None)
            return None
        if grant.node != self.node:
            self._failed(f"the answer is for node {grant.node!r}, not {self.node!r}", None)
            return None
        return grant

    def _ok(self) -> None:
        with self._lock:
            changed = self._state_key != "ok"
            self._state_key = "ok"
            self.reachable = True
            self._rejections_logged.clear()
        if changed:
            self._emit({"event": "coordinator_reachable", "url": self.url, "node": self.node})

    def _failed(self, error: str, status: int | None) -> None:
        """Count a failed report; log only a change of state (or a rejection not logged yet)."""
        rejected = status is not None and 400 <= status < 500
        with self._lock:
            self.errors += 1
            self.last_error = error
            self.reachable = False
            if rejected:
                # A rejection names its fix (a bad token, an unknown node): each distinct one is logged once.
                log = error not in self._rejections_logged
                self._rejections_logged.add(error)
                self._state_key = "rejected"
            else:
                log = self._state_key != "down"
                self._state_key = "down"
        if log:
            obj: dict[str, Any] = {"event": "coordinator_rejected" if rejected else "coordinator_unreachable",
                                   "url": self.url, "error": error}
            if status is not None:
                obj["status"] = status
            self._emit(obj)

    def state(self) -> dict[str, Any]:
        """What the status file shows: URL, reachability, the last grant, report and error counts."""
        with self._lock:
            g = self.last_grant
            return {"url": self.url, "node": self.node, "boot_id": self.boot_id, "reachable": self.reachable,
                    "reports": self.seq, "grants": self.grants, "errors": self.errors, "last_error": self.last_error,
                    "report_every_s": self.report_every_s,
                    "last_grant": None if g is None else {
                        "cap_w": g.cap_w, "round": g.round, "base_w": g.base_w, "lease_s": g.lease_s,
                        "decay_s": g.decay_s, "emergencies": list(g.emergencies), "received": self.last_grant_wall_s}}

    def close(self) -> None:
        """Stop the thread (a report in flight ends within the timeout) and close the connection."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout_s + 1.0)
        self.client.close()


def _node_ok(node: str) -> bool:
    try:
        NodeReport(node=node, seq=0, power_w=0.0)
    except ValidationError:
        return False
    return True
