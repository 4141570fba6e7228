"""Deploy the shipped NodeDVFS policy to a (fake) node: dry run, then --apply through a cooling failure.

The node is a fake sysfs tree with the kernel's layout, driven by powerrl's simulator on a thread
(docs/hardware.md); the agent is the real one (`powerrl agent run` runs the same NodeAgent). On a
real node, drop the fake tree and the kernel thread and use root "/" (docs/deploy.md).
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
from pathlib import Path

from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.runtime.agent import NodeAgent
from powerrl.runtime.config import load_host_file

HOST = Path(__file__).resolve().parents[1] / "configs" / "hosts" / "example.yaml"


def run_for(agent: NodeAgent, seconds: float) -> list[dict]:
    """Run the agent's loop on this thread for ``seconds`` and return its JSON log lines."""
    agent.run(duration_s=seconds)
    assert isinstance(agent.log, io.StringIO)
    return [json.loads(line) for line in agent.log.getvalue().splitlines()]


with tempfile.TemporaryDirectory() as tmp:
    tree = Path(tmp) / "node"
    make_fake_sysfs(tree, cpus=16, sockets=2, load=0.3)
    # A small heat sink (2 s instead of ~18 s, docs/hardware.md: parameters live in the marker file),
    # so the cooling failure below heats the packages within this short demo.
    marker = tree / ".powerrl-fake-sysfs.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "tau_sink_s": 2.0}))
    kernel = FakeKernel(tree)
    stop_kernel = kernel.start_thread(period_s=0.1)
    host = load_host_file(HOST)
    policy_path = "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
    original = (tree / policy_path).read_text().strip()

    # 1. Dry run: decide and log, write nothing.
    dry = NodeAgent(host, str(Path(__file__).resolve().parents[1] / "powerrl/data/policies/nodedvfs-v0.onnx"),
                    root=str(tree), log=io.StringIO(), metrics_port=0)
    ticks = [e for e in run_for(dry, 2.0) if e["event"] == "tick"]
    print(f"dry run: {len(ticks)} logged ticks, last decision {ticks[-1]['applied']} by {ticks[-1]['source']}; "
          f"scaling_max_freq still {(tree / policy_path).read_text().strip()} kHz (was {original})")

    # 2. --apply, with a cooling failure after a second: the inlet jumps to 95 degC.
    agent = NodeAgent(host, str(Path(__file__).resolve().parents[1] / "powerrl/data/policies/nodedvfs-v0.onnx"),
                      apply=True, root=str(tree), log=io.StringIO(), metrics_port=0)
    threading.Timer(1.5, lambda: (tree / ".powerrl-fake-kernel" / "inlet").write_text("95")).start()
    log = run_for(agent, 5.0)
    ticks = [e for e in log if e["event"] == "tick"]
    acted = [t for t in ticks if t["events"]]
    hottest_c = max(max(t["temp_c"]) for t in ticks)
    print(f"apply: {agent.ticks} ticks, tick latency p50 {agent.summary()['tick_ms']['p50']:.2f} ms; "
          f"P-states {ticks[0]['applied']} -> {ticks[-1]['applied']}, hottest {hottest_c:.1f} degC")
    print(f"shield acted on {len(acted)} ticks: " + (", ".join(sorted({k for t in acted for k in t['events']})) or "-"))
    stop = [e for e in log if e["event"] == "stop"][0]
    print(f"stopped: settings restored = {stop['restored']}; scaling_max_freq back to "
          f"{(tree / policy_path).read_text().strip()} kHz")
    stop_kernel.set()
