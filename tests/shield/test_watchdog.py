"""Watchdog: invalid actions, stale telemetry, controller errors and timeouts go to the fallback."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from powerrl.control import Controller, make_controller
from powerrl.errors import ConfigError
from powerrl.shield.config import WatchdogConfig
from powerrl.shield.watchdog import Watchdog, action_is_valid

MD = spaces.MultiDiscrete([11, 11])
BOX = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)


@pytest.mark.parametrize(("action", "space", "ok"), [
    (np.array([0, 10]), MD, True),
    (np.array([0, 11]), MD, False),
    (np.array([-1, 3]), MD, False),
    (np.array([1.5, 3.0]), MD, False),
    (np.array([np.nan, 3.0]), MD, False),
    (np.array([1, 2, 3]), MD, False),
    (np.array([0.0, 1.0, -1.0], dtype=np.float32), BOX, True),
    (np.array([0.0, 1.01, -1.0]), BOX, False),
    (np.array([0.0, np.inf, -1.0]), BOX, False),
    (np.array([0.0, np.nan, -1.0]), BOX, False),
    ("not an action", BOX, False),
])
def test_action_validity(action: object, space: spaces.Space, ok: bool) -> None:
    assert action_is_valid(action, space) is ok


class _Broken(Controller):
    def act(self, observation: np.ndarray) -> np.ndarray:
        raise RuntimeError("policy exploded")


class _Slow(Controller):
    def __init__(self, clock: list[float]) -> None:
        super().__init__(MD)
        self.clock = clock

    def act(self, observation: np.ndarray) -> np.ndarray:
        self.clock[0] += 1.0  # one "second" passes inside the call
        return np.array([5, 5])


class _Good(Controller):
    def act(self, observation: np.ndarray) -> np.ndarray:
        return np.array([7, 8])


def test_hold_fallback_repeats_the_last_applied_action() -> None:
    wd = Watchdog(WatchdogConfig(), MD)
    wd.reset(initial_action=np.array([10, 10]))
    action, events = wd.screen(np.array([99, 0]), None)
    assert events == {"invalid_action": 1} and list(action) == [10, 10]
    wd.record_applied(np.array([3, 4]))
    action, events = wd.screen(np.array([1, 1]), None, telemetry_age_s=5.0)
    assert events == {"stale_telemetry": 1} and list(action) == [3, 4]
    action, events = wd.screen(np.array([1, 1]), None, telemetry_age_s=0.1)
    assert events == {} and list(action) == [1, 1]


def test_controller_error_and_timeout_fall_back() -> None:
    clock = [0.0]
    wd = Watchdog(WatchdogConfig(controller_timeout_s=0.05), MD, clock=lambda: clock[0])
    wd.reset(initial_action=np.array([2, 2]))
    action, events = wd.decide(_Broken(MD), None)
    assert events == {"controller_error": 1} and list(action) == [2, 2]
    action, events = wd.decide(_Slow(clock), None)
    assert events == {"controller_timeout": 1} and list(action) == [2, 2]
    action, events = wd.decide(_Good(MD), None)
    assert events == {} and list(action) == [7, 8]


def test_named_fallback_controller_decides() -> None:
    wd = Watchdog(WatchdogConfig(fallback="random"), MD)
    wd.reset(seed=3)
    action, events = wd.screen(np.array([np.nan, 1.0]), None)
    assert events == {"invalid_action": 1} and action_is_valid(action, MD)


def test_lowest_fallback_is_the_minimum_of_any_space() -> None:
    from powerrl.control import make_controller

    assert make_controller("lowest", MD).act(None).tolist() == [0, 0]
    assert make_controller("lowest", BOX).act(None).tolist() == [-1.0, -1.0, -1.0]
    wd = Watchdog(WatchdogConfig(fallback="lowest"), MD)
    wd.reset()
    action, events = wd.screen(np.array([np.inf, 1.0]), None)
    assert events == {"invalid_action": 1} and action.tolist() == [0, 0]


def test_unknown_fallback_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="watchdog.fallback = 'ondemandd'.*'hold' or a registered controller"):
        Watchdog(WatchdogConfig(fallback="ondemandd"), MD)


def test_random_controller_is_registered_seeded_and_in_space() -> None:
    a = make_controller("random", BOX)
    b = make_controller("random", BOX)
    a.reset(5)
    b.reset(5)
    xs = [a.act(None) for _ in range(20)]
    ys = [b.act(None) for _ in range(20)]
    assert all(np.array_equal(x, y) for x, y in zip(xs, ys, strict=True))
    assert all(BOX.contains(x) for x in xs)
    with pytest.raises(ConfigError, match="a registered controller: .*random"):
        make_controller("no-such", BOX)


def test_counters_give_tensorboard_scalars() -> None:
    from powerrl.shield.events import ShieldCounters

    c = ShieldCounters()
    c.add({"passive": 2}, True)
    c.add({}, False)
    c.add({"passive": 1, "budget": 5}, True)
    assert c.scalars() == {"shield/intervention_rate": 2 / 3, "shield/budget": 5 / 3, "shield/passive": 1.0}
    assert c.as_dict()["by_reason"] == {"budget": 5, "passive": 3}
    c.add({"invalid_action": 1}, 1, decisions=16)  # one step of a 16-copy vector env, one row invalid
    assert c.intervention_rate() == 3 / 19
