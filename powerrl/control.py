"""One controller interface for every decision-maker, and the registry that names them.

RL policies, rule-based baselines, the oracle and stress controllers all implement
:class:`Controller` (``reset(seed)``, ``act(observation) -> action``), so ``powerrl compare``, the
shield's fallback and the node agent never name a concrete controller: they call
:func:`make_controller` with a registered name and the env's spaces.

Controllers that need facts the observation does not carry (the P-state table, node priorities and
power ranges, a carbon forecast) receive a :class:`ControlTarget` at construction; the simulator
builds one with :func:`powerrl.envs.target.control_target`, the node agent from the hardware.
Batched evaluation calls :meth:`Controller.act_batch` with one row per copy and the copies' trace
times.
"""

from __future__ import annotations

import copy
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from powerrl.errors import ConfigError

#: Carbon forecast: ``(time_s [B], offsets_s [H]) -> gCO2/kWh [B, H]`` at trace times ``time_s + offsets_s``.
CarbonForecast = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class ControlTarget:
    """What a controller may know about the system it drives beyond the observation (static facts).

    Units are the env's: a *unit* is a frequency domain (NodeDVFS-v0), a node (ClusterBudget-v0)
    or a rack (Datacenter-v0). Arrays are read-only.

    Attributes:
        env_id: the env the spaces belong to (e.g. ``powerrl/NodeDVFS-v0``).
        dt_s: control period, s.
        n_units: units per observation.
        unit_fields: names of the per-unit observation fields, in order (unit-major layout:
            unit 0's fields, then unit 1's, ...).
        global_fields: names of the fields after the per-unit block.
        freqs_mhz: P-state frequencies, ascending (MHz); index = P-state.
        idle_w: idle power per unit, W (``[n_units]``).
        busy_w: power per unit at full load and f_max, W (``[n_units]``).
        busy_w_at_pstate: compute-bound full-load power per unit and P-state, W (``[n_units, n_pstates]``).
        priority: priority level per unit (0 = Critical .. 4 = Background), or None.
        group: power group (PDU) per unit, or None; ``group_limit_w`` its limit, W.
        base_frac: guaranteed base per priority as a fraction of busy power (the shield's), or None.
        config: the env config object (for env-specific ranges: supply setpoints, deferral window).
        carbon_forecast: an honest carbon forecast (same time yesterday), or None.
        carbon_actual: the recorded carbon intensity (future included): for the clairvoyant oracle only.
        extras: anything else env-specific (documented where it is set).
    """

    env_id: str
    dt_s: float
    n_units: int
    unit_fields: tuple[str, ...]
    global_fields: tuple[str, ...]
    freqs_mhz: np.ndarray
    idle_w: np.ndarray
    busy_w: np.ndarray
    busy_w_at_pstate: np.ndarray
    priority: np.ndarray | None = None
    group: np.ndarray | None = None
    group_limit_w: np.ndarray | None = None
    base_frac: np.ndarray | None = None
    config: Any = None
    carbon_forecast: CarbonForecast | None = None
    carbon_actual: CarbonForecast | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pstates(self) -> int:
        """Number of P-states."""
        return int(len(self.freqs_mhz))

    def unit(self, observations: np.ndarray, name: str) -> np.ndarray:
        """Per-unit field ``name`` of a batch of observations: ``[B, n_units]`` (a view)."""
        k = len(self.unit_fields)
        j = self._index(self.unit_fields, name)
        obs = np.asarray(observations)
        return obs[:, : self.n_units * k].reshape(obs.shape[0], self.n_units, k)[:, :, j]

    def glob(self, observations: np.ndarray, name: str) -> np.ndarray:
        """Global field ``name`` of a batch of observations: ``[B]``."""
        j = self._index(self.global_fields, name)
        return np.asarray(observations)[:, self.n_units * len(self.unit_fields) + j]

    def _index(self, names: tuple[str, ...], name: str) -> int:
        try:
            return names.index(name)
        except ValueError:
            raise KeyError(f"{self.env_id} observations have no field {name!r}; fields: {', '.join(names)}") from None


class Controller(ABC):  # noqa: B024 - abstract by contract: act() or act_batch(), checked in __init__
    """Maps an observation to an action of ``action_space``; deterministic given ``reset(seed)``.

    Subclasses implement :meth:`act` (one observation) or :meth:`act_batch` (a batch of rows, each
    row an independent copy with its own state), or both; each defaults to the other.

    Args:
        action_space: the env's (single) action space.
        observation_space: the env's (single) observation space, for controllers that read fields.
        target: static facts about the controlled system (:class:`ControlTarget`); controllers with
            :attr:`needs_target` refuse to start without one.
    """

    #: Registered name (set by :func:`register`).
    name: str = ""
    #: Env ids this controller can drive; empty = any env.
    env_ids: tuple[str, ...] = ()
    #: Needs a :class:`ControlTarget`.
    needs_target: bool = False
    #: Uses knowledge of the future (the oracle): never deployable, quoted as a bound.
    clairvoyant: bool = False

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None) -> None:
        cls = type(self)
        if cls.act is Controller.act and cls.act_batch is Controller.act_batch:
            raise TypeError(f"{cls.__name__} must implement act() or act_batch()")
        if self.needs_target and target is None:
            raise ConfigError(f"controller.{self.name or cls.__name__}", None,
                              "a ControlTarget (build one with powerrl.envs.target.control_target(env))")
        if self.env_ids and target is not None and target.env_id not in self.env_ids:
            raise ConfigError(f"controller.{self.name or cls.__name__}", target.env_id,
                              "an env it drives: " + ", ".join(self.env_ids))
        self.action_space = action_space
        self.observation_space = observation_space
        self.target = target

    def reset(self, seed: int | None = None, batch: int = 1) -> None:  # noqa: B027 - stateless by default
        """Start a new episode for ``batch`` copies; ``seed`` fixes any randomness."""

    def bind(self, env: Any, copies: np.ndarray) -> None:  # noqa: B027 - only clairvoyant controllers look
        """Clairvoyant controllers only: read the future from ``env`` (the unwrapped vector env).

        Batch row ``i`` drives the env's copy ``copies[i]``. Called by the evaluation harness after
        every reset; deployable controllers never get the env.
        """

    def act(self, observation: np.ndarray) -> Any:
        """The action for one observation."""
        return self.act_batch(np.asarray(observation)[None], None)[0]

    def act_batch(self, observations: np.ndarray, time_s: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch ``[B, obs_dim]`` of copies (row ``i`` is copy ``i``, after ``reset(batch=B)``).

        ``time_s`` (``[B]``, s since trace row 0) is the trace time of each copy's next step, for
        controllers that look up forecasts; None where unknown.
        """
        return np.stack([np.asarray(self.act(o)) for o in np.asarray(observations)])


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


def controller_class(name: str) -> type[Controller]:
    """The class registered as ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the registered names).
    """
    if name not in _REGISTRY:
        raise ConfigError("controller", name, "a registered controller: " + ", ".join(controller_names()))
    return _REGISTRY[name]  # type: ignore[return-value]


def make_controller(name: str, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                    target: ControlTarget | None = None, **params: Any) -> Controller:
    """Instantiate the controller registered as ``name`` for these spaces (and ``target``).

    Raises:
        ConfigError: ``name`` is not registered (the message lists the registered names), a
            parameter is not accepted, or the controller cannot drive ``target``'s env.
    """
    cls = controller_class(name)
    try:
        return cls(action_space, observation_space, target=target, **params)
    except TypeError as exc:
        raise ConfigError(f"controller.{name}", params, f"parameters {name} accepts ({exc})") from None


@register("random")
class RandomController(Controller):
    """Uniform over the action space (for stress runs of the shield); seeded by :meth:`reset`.

    Samples from its own copy of the space, so two random controllers never share a generator.
    """

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None,
                 target: ControlTarget | None = None) -> None:
        super().__init__(copy.deepcopy(action_space), observation_space, target)

    def reset(self, seed: int | None = None, batch: int = 1) -> None:
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
