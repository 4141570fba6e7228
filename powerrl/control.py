"""One controller interface for every decision-maker, and the registry that names them.

RL policies, rule-based baselines, the oracle and stress controllers all implement
:class:`Controller` (``reset(seed)``, ``act(observation) -> action``), so ``powerrl compare``, the
shield's fallback and the node agent never name a concrete controller: they call
:func:`make_controller` with a registered name and the env's spaces.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.errors import ConfigError


class Controller(ABC):
    """Maps an observation to an action of ``action_space``; deterministic given ``reset(seed)``.

    Args:
        action_space: the env's (single) action space.
        observation_space: the env's (single) observation space, for controllers that read fields.
    """

    #: Registered name (set by :func:`register`).
    name: str = ""

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None) -> None:
        self.action_space = action_space
        self.observation_space = observation_space

    def reset(self, seed: int | None = None) -> None:  # noqa: B027 - optional hook, stateless by default
        """Start a new episode; ``seed`` fixes any randomness."""

    @abstractmethod
    def act(self, observation: np.ndarray) -> Any:
        """The action for ``observation``."""


ControllerFactory = Callable[..., Controller]
_REGISTRY: dict[str, ControllerFactory] = {}


def register(name: str) -> Callable[[type[Controller]], type[Controller]]:
    """Class decorator registering a :class:`Controller` subclass under ``name``."""

    def deco(cls: type[Controller]) -> type[Controller]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"controller name {name!r} is already registered by {_REGISTRY[name]!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def controller_names() -> tuple[str, ...]:
    """Registered controller names, sorted."""
    return tuple(sorted(_REGISTRY))


def make_controller(name: str, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                    **params: Any) -> Controller:
    """Instantiate the controller registered as ``name`` for these spaces.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the registered names) or a
            parameter is not accepted.
    """
    if name not in _REGISTRY:
        raise ConfigError("controller", name, "a registered controller: " + ", ".join(controller_names()))
    try:
        return _REGISTRY[name](action_space, observation_space, **params)
    except TypeError as exc:
        raise ConfigError(f"controller.{name}", params, f"parameters {name} accepts ({exc})") from None


@register("random")
class RandomController(Controller):
    """Uniform over the action space (for stress runs of the shield); seeded by :meth:`reset`.

    Samples from its own copy of the space, so two random controllers never share a generator.
    """

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None) -> None:
        super().__init__(copy.deepcopy(action_space), observation_space)

    def reset(self, seed: int | None = None) -> None:
        """Reseed the action space's generator."""
        self.action_space.seed(seed)

    def act(self, observation: np.ndarray) -> Any:
        """A uniform sample of the action space."""
        return self.action_space.sample()


@register("lowest")
class LowestController(Controller):
    """Every action at its minimum: lowest P-states, idle caps, lowest ceilings, coldest supply, no deferral.

    The conservative fallback for the shield's watchdog (``watchdog.fallback: lowest``): least power
    and heat whatever the observation, at the cost of performance.
    """

    def act(self, observation: np.ndarray) -> Any:
        """The minimum of the action space."""
        space = self.action_space
        if isinstance(space, spaces.MultiDiscrete):
            return np.asarray(space.start, dtype=space.dtype) * np.ones(space.shape, dtype=space.dtype)
        if isinstance(space, spaces.Discrete):
            return int(space.start)
        if isinstance(space, spaces.Box):
            return space.low.copy()
        raise TypeError(f"lowest: unsupported action space {space}")
