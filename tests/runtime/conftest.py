"""Shared fixtures for node-agent tests: a fake tree, its fake kernel as a process, agent processes, broken policies.

Every process started here is registered with :func:`procs` and killed (SIGKILL) at teardown, whatever
the test did, so a failing test never leaves a fake kernel or an agent behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from powerrl.hw.fake import STATE_DIR, make_fake_sysfs
from powerrl.hw.sysfs import FAKE_MARKER, SysfsRoot

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HOST = REPO / "configs" / "hosts" / "example.yaml"
SHIPPED_META = REPO / "powerrl" / "data" / "policies" / "nodedvfs-v0.json"
#: Generous start-up deadline: a subprocess imports numpy, gymnasium and onnxruntime (slow on a loaded CI box).
START_S = 60.0


def powerrl_cmd(*args: str) -> list[str]:
    """The ``powerrl`` command line, run by this interpreter from this checkout (as tests/hw do)."""
    return [sys.executable, "-m", "powerrl.cli", *args]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def wait_until(fn: Callable[[], Any], timeout_s: float, what: str, diag: Callable[[], str] = lambda: "",
               poll_s: float = 0.01) -> Any:
    """Poll ``fn`` until it returns something truthy (returned) or ``timeout_s`` passes (fails with ``diag()``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{diag()}")
        time.sleep(poll_s)


def _tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path.name} absent)"
    return "\n".join(lines[-n:]) or f"({path.name} empty)"


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """:func:`wait_until`, for test modules (this conftest cannot be imported: tests/ is not a package)."""
    return wait_until


class Procs:
    """Registry of the processes a test started; :meth:`kill_all` runs at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.items: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def spawn(self, args: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``args`` in its own session with stdout and stderr to ``<tmp>/<name>.out``."""
        self._n += 1
        out = self.tmp / f"{name}-{self._n}.out"
        with open(out, "wb") as fh:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                 env=subprocess_env(), cwd=self.tmp, start_new_session=True)
        self.items.append(p)
        return p, out

    def powerrl(self, *args: str, name: str = "powerrl") -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``powerrl ARGS...`` (this checkout's, run by this interpreter)."""
        return self.spawn(powerrl_cmd(*args), name)

    def kill_all(self) -> None:
        for p in reversed(self.items):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
                pass


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Processes started by the test: always killed at teardown."""
    reg = Procs(tmp_path)
    try:
        yield reg
    finally:
        reg.kill_all()


@pytest.fixture
def tree_overrides() -> dict[str, Any]:
    """FakeSpec fields to change in the tree's marker (parametrize this name to heat faster, load less, ...)."""
    return {}


@pytest.fixture
def fake_tree(tmp_path: Path, tree_overrides: dict[str, Any]) -> SysfsRoot:
    """8 CPUs on 2 sockets, acpi-cpufreq (2 domains, Intel RAPL, x86_pkg_temp), load 0.6."""
    root = make_fake_sysfs(tmp_path / "node", cpus=8, sockets=2, driver="acpi-cpufreq", load=0.6)
    if tree_overrides:
        marker = root.root / FAKE_MARKER
        info = json.loads(marker.read_text(encoding="utf-8"))
        unknown = set(tree_overrides) - set(info)
        assert not unknown, f"not FakeSpec fields: {unknown}"
        info.update(tree_overrides)
        marker.write_text(json.dumps(info, indent=1), encoding="utf-8")
        root = SysfsRoot(root.root)
    return root


class FakeKernelProc:
    """A ``powerrl hw fake-kernel`` process on a tree."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, root: SysfsRoot, period_s: float) -> None:
        self.proc, self.out, self.root, self.period_s = proc, out, root, period_s
        self.state = root.root / STATE_DIR

    def wait_running(self, timeout_s: float = START_S) -> None:
        """Until the kernel steps (it writes its pid file before the first step)."""
        wait_until(lambda: (self.state / "pid").exists() or self.proc.poll() is not None, timeout_s,
                   "the fake kernel to start", self.tail)
        assert self.proc.poll() is None, f"the fake kernel exited with {self.proc.returncode}\n{self.tail()}"

    def set_inlet(self, celsius: float) -> None:
        (self.state / "inlet").write_text(f"{celsius}\n", encoding="ascii")

    def set_load(self, load: float) -> None:
        (self.state / "load").write_text(f"{load}\n", encoding="ascii")

    def tail(self, n: int = 10) -> str:
        return (f"--- fake kernel output ---\n{_tail(self.out, n)}\n--- fake kernel errors.log ---\n"
                f"{_tail(self.state / 'errors.log', n)}")


@pytest.fixture
def fake_kernel(fake_tree: SysfsRoot, procs: Procs) -> FakeKernelProc:
    """``powerrl hw fake-kernel TREE --period 0.1`` running (started, not yet waited for: see wait_running)."""
    proc, out = procs.spawn(powerrl_cmd("hw", "fake-kernel", str(fake_tree.root), "--period", "0.1"), "fake-kernel")
    return FakeKernelProc(proc, out, fake_tree, 0.1)


@pytest.fixture
def host_yaml(tmp_path: Path, fake_tree: SysfsRoot) -> Path:
    """configs/hosts/example.yaml on the fake tree, logging every tick, no metrics endpoint."""
    data = yaml.safe_load(EXAMPLE_HOST.read_text(encoding="utf-8"))
    data["name"] = "hil"
    data["root"] = str(fake_tree.root)
    agent = data.setdefault("agent", {})
    agent["log_every"] = 1
    agent["metrics"] = {"address": "127.0.0.1", "port": 0}
    agent["hang_s"] = 10.0  # not under test here: a loaded CI box must not trip the hang watchdog
    path = tmp_path / "host.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class AgentProc:
    """A ``powerrl agent run`` process and its JSON-lines log."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, log: Path, period_s: float,
                 kernel: FakeKernelProc | None) -> None:
        self.proc, self.out, self.log, self.period_s, self.kernel = proc, out, log, period_s, kernel

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every complete log line so far (a line being written is skipped), optionally of one event."""
        try:
            text = self.log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or obj.get("event") == kind:
                out.append(obj)
        return out

    def ticks(self) -> list[dict[str, Any]]:
        return self.events("tick")

    def last_tick(self) -> int:
        t = self.ticks()
        return int(t[-1]["tick"]) if t else 0

    def tail(self, n: int = 12) -> str:
        s = (f"--- agent log {self.log.name} (last {n}) ---\n{_tail(self.log, n)}\n"
             f"--- agent output ---\n{_tail(self.out, n)}")
        if self.kernel is not None:
            s += "\n" + self.kernel.tail(5)
        return s

    def wait(self, fn: Callable[[], Any], what: str, timeout_s: float = 10.0,
             diag: Callable[[], str] | None = None) -> Any:
        """Poll ``fn`` until truthy (returned); fails with ``diag()`` and the log tail at the deadline, or at once
        if the agent died."""
        def probe() -> Any:
            got = fn()
            if not got and self.proc.poll() is not None:
                pytest.fail(f"the agent exited with {self.proc.returncode} while waiting for {what}\n{self.tail()}")
            return got

        return wait_until(probe, timeout_s, what, lambda: (diag() + "\n" if diag else "") + self.tail())

    def wait_event(self, kind: str, timeout_s: float = START_S) -> dict[str, Any]:
        return self.wait(lambda: next(iter(self.events(kind)), None), f"a {kind!r} event", timeout_s)

    def wait_tick(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Until tick ``n`` is logged; returns every tick line so far."""
        return self.wait(lambda: (t := self.ticks()) and t[-1]["tick"] >= n and t, f"tick {n}", timeout_s)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def exit_code(self, timeout_s: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the agent did not exit within {timeout_s:g} s\n{self.tail()}")


@pytest.fixture
def start_agent(tmp_path: Path, procs: Procs, host_yaml: Path, fake_tree: SysfsRoot,
                fake_kernel: FakeKernelProc) -> Callable[..., AgentProc]:
    """Start ``powerrl agent run --host HOST --root TREE --period-ms 100 --metrics-port 0 --log FILE`` (+ options).

    ``apply`` adds ``--apply``; ``controller`` a baseline name, ``policy`` an ONNX path (neither: the shipped
    policy); ``duration_s`` ``--duration-s``. Waits until the fake kernel runs and the agent logged its start.
    """
    count = [0]

    def start(*, apply: bool = True, controller: str | None = None, policy: str | Path | None = None,
              duration_s: float | None = None, wait_start: bool = True) -> AgentProc:
        count[0] += 1
        log = tmp_path / f"agent-{count[0]}.jsonl"
        args = ["agent", "run", "--host", str(host_yaml), "--root", str(fake_tree.root), "--period-ms", "100",
                "--metrics-port", "0", "--log", str(log)]
        if apply:
            args.append("--apply")
        if controller is not None:
            args += ["--controller", controller]
        if policy is not None:
            args += ["--policy", str(policy)]
        if duration_s is not None:
            args += ["--duration-s", str(duration_s)]
        proc, out = procs.spawn(powerrl_cmd(*args), f"agent-{count[0]}")
        agent = AgentProc(proc, out, log, 0.1, fake_kernel)
        fake_kernel.wait_running()  # started together: both import numpy meanwhile
        if wait_start:
            agent.wait_event("start")
        return agent

    return start


def write_broken_policy(directory: Path, kind: str = "nan", name: str = "broken") -> Path:
    """An exported-policy pair ``NAME.onnx`` + ``NAME.json`` that passes every load-time check but misbehaves.

    The graph maps ``obs`` float32 ``[N, 18]`` to ``action`` float32: ``nan`` answers NaN for every P-state
    (``obs * NaN`` sliced to ``[N, 2]``); ``wrong_shape`` answers ``[N, 3]`` (three P-states for two domains).
    The metadata is the shipped nodedvfs-v0's (env id, observation size, action nvec), so the agent accepts it.
    """
    onnx = pytest.importorskip("onnx", reason="building a broken ONNX policy needs the onnx package")
    from onnx import TensorProto, helper, numpy_helper

    width = {"nan": 2, "wrong_shape": 3}[kind]
    init = [numpy_helper.from_array(np.array([np.nan], dtype=np.float32), "nan"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
            numpy_helper.from_array(np.array([width], dtype=np.int64), "ends"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    nodes = [helper.make_node("Mul", ["obs", "nan"], ["scaled"]),
             helper.make_node("Slice", ["scaled", "starts", "ends", "axes"], ["action"])]
    if kind == "wrong_shape":
        # Finite numbers (0 * obs + 1): only the shape is wrong.
        init[0] = numpy_helper.from_array(np.array([0.0], dtype=np.float32), "nan")
        init.append(numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"))
        nodes = [helper.make_node("Mul", ["obs", "nan"], ["zero"]),
                 helper.make_node("Add", ["zero", "one"], ["scaled"]), nodes[1]]
    graph = helper.make_graph(nodes, f"broken-{kind}",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 18])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", width])],
                              initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project supports
    onnx.checker.check_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    onnx.save(model, str(path))
    meta = json.loads(SHIPPED_META.read_text(encoding="utf-8"))
    meta.update({"training_command": f"tests/runtime/conftest.py write_broken_policy({kind!r})", "run": None,
                 "checkpoint": None})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def broken_policy(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: ``broken_policy("nan" | "wrong_shape")`` -> path of a misbehaving ONNX policy (skips without onnx)."""
    return lambda kind="nan": write_broken_policy(tmp_path / "policies", kind, f"broken-{kind}")
