"""The coordinator's wire protocol, version 1: what node agents (and child coordinators) send and get back.

Every message is JSON over HTTP, under the path prefix ``/v1``. Schemas reject unknown fields,
wrong types, non-finite numbers and out-of-range values, so a message either parses whole or
changes nothing (the server answers 422 naming the field). Units are SI with the unit in the name.

``POST /v1/report`` (a :class:`NodeReport`) is the only call a member makes: it states what the
node draws and holds, and the answer (a :class:`CapGrant`) is its cap for now. Members report once
per ``report_every_s`` (the coordinator's round), so a new cap -- an emergency cut included --
reaches every member within one round of being decided.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from powerrl.shield.budget import MAX_NODE_W

#: Protocol version: the path prefix (``/v1``) and the ``api`` field of every answer.
API_VERSION = 1
API_PREFIX = f"/v{API_VERSION}"
#: Header carrying the shared token: ``Authorization: Bearer <token>``.
AUTH_HEADER = "Authorization"

NodeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                                description="node name as in the cluster file")]
Watts = Annotated[float, Field(ge=0.0, le=MAX_NODE_W, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NodeReport(_Strict):
    """What a member reports each round.

    ``cap_w``/``cap_round`` are the coordinator cap the member holds now (null/-1: none), so the
    coordinator knows which of its caps arrived. ``seq`` increases with every report of one member
    process; a report with a ``seq`` not above the last one seen (and the same ``boot_id``) is a
    replay or reordering and is ignored.
    """

    node: NodeName
    boot_id: str = Field(default="", max_length=64, description="changes when the member restarts")
    seq: int = Field(ge=0, le=2**62)
    power_w: Watts = Field(description="power drawn over the last round, W")
    load: float = Field(default=0.0, ge=0.0, le=16.0, allow_inf_nan=False,
                        description="offered work / capacity at f_max over the last round (demand)")
    util: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False,
                               description="busy fraction at the running frequency (default min(load, 1))")
    temp_c: float | None = Field(default=None, ge=-60.0, le=200.0, allow_inf_nan=False,
                                 description="hottest package temperature, degC")
    priority: int | None = Field(default=None, ge=0, le=4, description="informational: the cluster file decides")
    cap_w: Watts | None = Field(default=None, description="coordinator cap held now, W (null: none)")
    cap_round: int = Field(default=-1, ge=-1, le=2**62, description="round of the cap held (-1: none)")


class CapGrant(_Strict):
    """The answer to a report: the member's cap, how long it holds, and where it decays to."""

    api: Literal[1] = 1
    node: str
    round: int = Field(description="round that decided this cap")
    cap_w: float = Field(description="the member's cap, W")
    base_w: float = Field(description="guaranteed base: where the cap decays without the coordinator, W")
    lease_s: float = Field(description="the cap holds this long after it arrived, s")
    decay_s: float = Field(description="then falls linearly to base_w over this long, s")
    report_every_s: float = Field(description="report again after this long, s")
    emergencies: tuple[str, ...] = Field(default=(), description="emergencies in force (grid_cut, ...)")

    @field_validator("cap_w", "base_w", "lease_s", "decay_s", "report_every_s")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("a finite number >= 0")
        return v


class EventRequest(_Strict):
    """An emergency declared by an operator or the facility (``powerrl coordinator event``).

    * ``grid_cut``: the facility budget drops by ``percent`` % within ``within_s`` s (a grid
      operator's demand-response call); the shield phases caps in to fit before the deadline.
    * ``cooling_failure``: the power limit of ``group`` (or of the facility, when none) drops by
      ``percent`` % (default: the cluster's ``cooling_failure_cut``) at once.
    * ``clear``: ends event ``id`` (or every event, when none).

    ``duration_s`` ends an event by itself (none: until cleared).
    """

    kind: Literal["grid_cut", "cooling_failure", "clear"]
    percent: float | None = Field(default=None, gt=0.0, lt=100.0, allow_inf_nan=False)
    within_s: float = Field(default=0.0, ge=0.0, le=86400.0, allow_inf_nan=False)
    group: NodeName | None = None
    duration_s: float | None = Field(default=None, gt=0.0, le=30 * 86400.0, allow_inf_nan=False)
    id: int | None = Field(default=None, ge=0, description="for clear: the event to end")


class EventAnswer(_Strict):
    """What an accepted event does."""

    api: Literal[1] = 1
    id: int
    kind: str
    budget_w: float | None = Field(default=None, description="facility budget once in force, W")
    deadline_s: float | None = Field(default=None, description="seconds from now until it is in force")
    affected_nodes: int
    round: int = Field(description="the round that sent the new caps out")
