"""Watchdog: stale telemetry, bad actions and controller faults hand the decision to a fallback.

The fallback is a registered controller (``WatchdogConfig.fallback``) or ``hold``, which repeats
the last action the shield applied (the safe choice when nothing else is known: it already passed
every check). Whatever decides, the shield's filter still has the last word.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.control import Controller, controller_names, make_controller
from powerrl.errors import ConfigError
from powerrl.shield.config import WatchdogConfig

HOLD = "hold"


def valid_rows(actions: Any, space: spaces.Space, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``n`` actions of ``space`` as float64 ``[n, *space.shape]``, and which rows are valid.

    A row is valid when it is real, finite and inside the space (integral for discrete spaces).
    Never raises on values: strings, objects, complex numbers, ragged lists and a wrong shape give
    a NaN batch with every row invalid. Spaces other than Box, MultiDiscrete and Discrete raise
    ``TypeError``.
    """
    shape = (n, *tuple(space.shape or ()))
    try:
        raw = np.asarray(actions)
        batch = raw.astype(np.float64) if raw.dtype.kind in "biuf" else None
    except (TypeError, ValueError):
        batch = None
    if batch is None or batch.shape != shape:
        return np.full(shape, np.nan), np.zeros(n, dtype=bool)
    flat = batch.reshape(n, -1)
    if raw.dtype.kind in "biu" and isinstance(space, spaces.MultiDiscrete | spaces.Discrete):
        # Integers are integral and finite: only the range needs checking (the common, hot path).
        nvec = space.nvec if isinstance(space, spaces.MultiDiscrete) else np.asarray(space.n)
        start = np.asarray(space.start).reshape(-1)
        ints = raw.reshape(n, -1)
        in_space = np.asarray(((ints >= start) & (ints < start + nvec.reshape(-1))).all(axis=1))
        return batch, in_space
    if isinstance(space, spaces.MultiDiscrete | spaces.Discrete):
        nvec = space.nvec if isinstance(space, spaces.MultiDiscrete) else np.asarray(space.n)
        lo = np.broadcast_to(np.asarray(space.start, dtype=np.float64), nvec.shape).reshape(-1)
        hi = lo + nvec.reshape(-1) - 1.0
        with np.errstate(invalid="ignore"):
            ok = (flat == np.round(flat)).all(axis=1)
    elif isinstance(space, spaces.Box):
        lo, hi = space.low.reshape(-1), space.high.reshape(-1)
        ok = np.ones(n, dtype=bool)
    else:
        raise TypeError(f"unsupported action space {space}")
    ok &= np.isfinite(flat).all(axis=1) & (flat >= lo).all(axis=1) & (flat <= hi).all(axis=1)
    return batch, ok


def action_is_valid(action: Any, space: spaces.Space) -> bool:
    """True when ``action`` is real, finite numbers of the space's shape, inside ``space``.

    Never raises: strings, objects, complex numbers and ragged lists are simply invalid.
    """
    if not isinstance(space, spaces.Box | spaces.MultiDiscrete | spaces.Discrete):
        try:
            return bool(space.contains(action))
        except (TypeError, ValueError):
            return False
    try:
        arr = np.asarray(action)
    except (TypeError, ValueError):
        return False
    return bool(valid_rows(arr[None], space, 1)[1][0])


class Watchdog:
    """Screens every decision and substitutes the fallback's when something is wrong.

    Args:
        cfg: watchdog settings (telemetry age limit, controller timeout, fallback name).
        action_space: the action space decisions must lie in.
        observation_space: passed to the fallback controller.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, cfg: WatchdogConfig, action_space: spaces.Space,
                 observation_space: spaces.Space | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.cfg = cfg
        self.action_space = action_space
        self.clock = clock
        self.fallback: Controller | None = None
        if cfg.fallback != HOLD:
            if cfg.fallback not in controller_names():
                raise ConfigError("watchdog.fallback", cfg.fallback,
                                  f"'{HOLD}' or a registered controller: " + ", ".join(controller_names()))
            self.fallback = make_controller(cfg.fallback, action_space, observation_space)
        self.last_safe: Any = None

    def reset(self, seed: int | None = None, initial_action: Any = None) -> None:
        """New episode: reseed the fallback; ``initial_action`` is what ``hold`` repeats first."""
        if self.fallback is not None:
            self.fallback.reset(seed)
        self.last_safe = initial_action

    def record_applied(self, action: Any) -> None:
        """Remember the action the shield applied (what ``hold`` repeats)."""
        self.last_safe = action

    def fallback_action(self, observation: Any) -> Any:
        """The fallback's decision for ``observation``; ``hold`` when a named fallback fails too."""
        if self.fallback is not None:
            try:
                action = self.fallback.act(observation)
            except Exception:  # noqa: BLE001 - the fallback must not stop the loop either
                action = None
            if action is not None and action_is_valid(action, self.action_space):
                return action
        if self.last_safe is None:
            raise RuntimeError("hold fallback has no applied action yet: call reset(initial_action=...) first")
        return self.last_safe

    def screen(self, action: Any, observation: Any, telemetry_age_s: float = 0.0) -> tuple[Any, dict[str, int]]:
        """Pass ``action`` through, or the fallback's when telemetry is stale or the action is invalid."""
        if telemetry_age_s > self.cfg.max_telemetry_age_s or not np.isfinite(telemetry_age_s):
            return self.fallback_action(observation), {"stale_telemetry": 1}
        if not action_is_valid(action, self.action_space):
            return self.fallback_action(observation), {"invalid_action": 1}
        return action, {}

    def decide(self, controller: Controller, observation: Any, telemetry_age_s: float = 0.0
               ) -> tuple[Any, dict[str, int]]:
        """Ask ``controller``; an exception or a late answer (``controller_timeout_s``) goes to the fallback.

        Python cannot pre-empt a call, so a slow controller still runs to its end; its late answer
        is discarded and the fallback's is used for this period.
        """
        if telemetry_age_s > self.cfg.max_telemetry_age_s or not np.isfinite(telemetry_age_s):
            return self.fallback_action(observation), {"stale_telemetry": 1}
        start = self.clock()
        try:
            action = controller.act(observation)
        except Exception:  # noqa: BLE001 - any controller fault must fall back, never stop the loop
            return self.fallback_action(observation), {"controller_error": 1}
        if self.clock() - start > self.cfg.controller_timeout_s:
            return self.fallback_action(observation), {"controller_timeout": 1}
        return self.screen(action, observation)
