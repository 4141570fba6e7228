"""Shared fixtures of the NodeDVFS governor tests: one held-out env and its control target per module.

Helpers that tests call directly live in ``_governor_helpers.py`` (importable: this folder is on the path).
"""

import gymnasium as gym
import pytest

import powerrl  # noqa: F401 - registers the envs
from powerrl.envs.target import control_target


@pytest.fixture(scope="module")
def env():
    e = gym.make("powerrl/NodeDVFS-v0", split="heldout", episode_s=30)
    yield e
    e.close()


@pytest.fixture(scope="module")
def target(env):
    return control_target(env)
