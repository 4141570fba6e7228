"""The cluster coordinator's rounds, in process: caps by priority, a grid cut, a silent node, a restart.

No network here: the coordinator (powerrl/runtime/coordinator.py) is driven directly with a fake clock,
and twelve simulated node agents hold their caps the way the real agent does (a lease, then a decay
to the guaranteed base). `powerrl coordinator run` puts the same object behind HTTP (docs/coordinator.md).

Run: .venv/bin/python examples/coordinator_rounds.py
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from powerrl.runtime.caps import CapLease
from powerrl.runtime.cluster import cluster_spec
from powerrl.runtime.coordinator import Coordinator
from powerrl.runtime.protocol import EventRequest, NodeReport

# -- a small hall: 12 EPYC 7502 nodes on two racks, Critical to Background ------------------------------
PRIORITIES = ["Critical", "Production", "Development", "Research", "Background"]
spec = cluster_spec({
    "name": "example", "budget_w": 2800.0, "round_s": 1.0, "levels": ["rack"],
    "groups": {"rack0": {"level": "rack", "limit_w": 1500.0}, "rack1": {"level": "rack", "limit_w": 1500.0}},
    "nodes": [{"name": "db", "count": 2, "group": "rack0", "priority": 0, "profile": "epyc7502"},
              {"name": "web", "count": 4, "group": "rack0", "priority": 1, "profile": "epyc7502"},
              {"name": "ci", "count": 3, "group": "rack1", "priority": 2, "profile": "epyc7502"},
              {"name": "batch", "count": 3, "group": "rack1", "priority": 4, "profile": "epyc7502"}],
    "faults": {"lease_s": 5.0, "decay_s": 10.0, "node_timeout_s": 20.0},
})


class FakeTime:
    t = 0.0

    def clock(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.8e9 + self.t


class Agent:
    """A node agent: draws min(demand, cap), reports what it holds, applies the cap it gets back."""

    def __init__(self, name: str, demand_w: float) -> None:
        self.name, self.demand_w, self.seq, self.lease, self.round = name, demand_w, 0, None, -1

    def cap_w(self, wall: float) -> float:
        return math.inf if self.lease is None else self.lease.value(wall)

    def report(self, coord: Coordinator, wall: float) -> None:
        cap = self.cap_w(wall)
        grant = coord.report(NodeReport(node=self.name, boot_id="x", seq=self.seq, power_w=min(self.demand_w, cap),
                                        load=self.demand_w / 315.4, cap_w=None if math.isinf(cap) else cap,
                                        cap_round=self.round))
        self.seq += 1
        if self.lease is None:
            self.lease = CapLease(grant.base_w, grant.lease_s, grant.decay_s)
        self.lease.set(grant.cap_w, wall, grant.lease_s)
        self.round = grant.round


def table(title: str, coord: Coordinator, agents: list[Agent], wall: float) -> None:
    print(f"\n{title}: budget {coord.budget_w(wall)[0]:.0f} W, caps in force "
          f"{sum(a.cap_w(wall) for a in agents):.0f} W")
    for p, name in enumerate(PRIORITIES):
        members = [i for i in range(coord.n) if coord.spec.priority[i] == p]
        if members:
            caps = [agents[i].cap_w(wall) for i in members]
            print(f"  {name:<12} {len(members)} nodes, cap {min(caps):6.1f} .. {max(caps):6.1f} W "
                  f"(base {coord.base_w[members[0]]:.1f} W)")


time = FakeTime()
journal = Path(tempfile.mkdtemp()) / "journal.json"
coord = Coordinator(spec, journal=journal, clock=time.clock, wall=time.wall)
agents = [Agent(name, demand_w=300.0) for name in spec.names]  # everyone wants nearly busy power


def rounds(n: int, skip: frozenset[str] = frozenset()) -> None:
    for _ in range(n):
        for a in agents:
            if a.name not in skip:
                a.report(coord, time.wall())
        coord.run_round()
        time.t += 1.0


rounds(5)
table("steady state (priority_proportional through the budget shield; rack0's 1500 W limit binds its "
      "Critical and Production nodes, so rack1's Development nodes get more)", coord, agents, time.wall())

# -- a grid operator's demand-response call: 20 % within 5 s -------------------------------------------
answer = coord.declare(EventRequest(kind="grid_cut", percent=20, within_s=5))
print(f"\ngrid cut declared: event {answer.id}, budget {answer.budget_w:.0f} W within {answer.deadline_s:g} s")
rounds(6)
table("after the cut's deadline (Background cut first, Critical never below its base)", coord, agents, time.wall())

# -- a node goes silent: counted at its maximum until it times out, then at its base ---------------------
rounds(4, skip=frozenset({"web-0"}))
i = coord.index["web-0"]
print(f"\nweb-0 silent for 4 s: state {('ok', 'silent', 'lost')[coord.state[i]]}, counted at "
      f"{coord.counted_w[i]:.1f} W (its maximum)")
rounds(18, skip=frozenset({"web-0"}))
print(f"web-0 silent for 22 s: state {('ok', 'silent', 'lost')[coord.state[i]]}, counted at "
      f"{coord.counted_w[i]:.1f} W; its own agent decayed to {agents[i].cap_w(time.wall()):.1f} W")

# -- the coordinator restarts from its journal: the cut and every cap are still known -------------------
restarted = Coordinator(spec, journal=journal, clock=time.clock, wall=time.wall)
print(f"\nrestarted from {journal.name}: recovered {restarted.recovered}, round {restarted.round}, "
      f"events {[e.kind for e in restarted.events.values()]}, budget {restarted.budget_w(time.wall())[0]:.0f} W")
coord = restarted
rounds(3)
table("three rounds after the restart", coord, agents, time.wall())
