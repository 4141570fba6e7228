"""A controller on its own thread, so a stuck policy cannot hold the control loop past its deadline.

Python cannot interrupt a call into onnxruntime, so checking the time after ``act()`` returns (the
shield's :class:`~powerrl.shield.watchdog.Watchdog`) lets a policy that hangs for seconds hold the
loop for seconds. Here the loop hands the observation to a worker thread and waits at most the
timeout: a late answer is discarded and the fallback decides this period; while the stuck call is
still running, every period goes to the fallback at once (``controller_busy``) and the first
answer after it returns is discarded. onnxruntime releases the GIL while it computes, so the loop
runs meanwhile. Costs a thread hand-off per period (tens of microseconds).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from powerrl.control import Controller


class ControllerThread:
    """Runs ``controller.act`` on a daemon thread; :meth:`act` waits at most ``timeout_s``.

    Args:
        controller: the controller to run (its ``act`` is only ever called from the worker thread).
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self._req: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        self._resp: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()
        self._seq = 0
        self._pending = False  # a request whose answer has not been received yet
        self._thread = threading.Thread(target=self._work, name="powerrl-agent-policy", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._req.get()
            if item is None:
                return
            seq, obs = item
            try:
                self._resp.put((seq, self.controller.act(obs), None))
            except Exception as exc:  # noqa: BLE001 - any policy fault goes to the fallback, never up
                self._resp.put((seq, None, exc))

    def _drain(self) -> None:
        """Take answers that arrived late; the pending request is done when its answer is among them."""
        while True:
            try:
                seq, _, _ = self._resp.get_nowait()
            except queue.Empty:
                return
            if seq == self._seq:
                self._pending = False

    def act(self, observation: Any, timeout_s: float) -> tuple[Any, str | None]:
        """The controller's action within ``timeout_s``: ``(action, None)``, or ``(None, reason)``.

        ``reason`` is ``controller_timeout``, ``controller_busy`` (the previous call is still
        running) or ``controller_error``.
        """
        if self._pending:
            self._drain()
            if self._pending:
                return None, "controller_busy"
        self._seq += 1
        self._pending = True
        self._req.put((self._seq, observation))
        try:
            while True:
                seq, action, exc = self._resp.get(timeout=timeout_s)
                if seq == self._seq:
                    break
        except queue.Empty:
            return None, "controller_timeout"
        self._pending = False
        if exc is not None:
            return None, "controller_error"
        return action, None

    def close(self) -> None:
        """Stop the worker after its current call (it is a daemon thread: a stuck call never blocks exit)."""
        self._req.put(None)
