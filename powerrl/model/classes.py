"""Workload classes and job priorities.

A workload class fixes how one request (or one batch work chunk) looks to the simulator: its mean
service time on a node at ``f_max``, its latency objective and whether it may be deferred in time.
How memory-bound each class is lives with the power model (``powerrl.model.power.CLASS_MEM_BOUND``),
so the two tables are not duplicated.

Numbers and where they come from:

- ``interactive``: user-facing request serving (web search leaves, RPC front ends). Dean & Barroso,
  "The Tail at Scale", CACM 56(2), 2013, use a server with a typical 10 ms response as their running
  example and argue the 99th percentile is what users feel; user-facing services target end-to-end
  responses of a few hundred ms. We take 10 ms mean service at ``f_max`` and a 200 ms p99 SLA
  (M/M/1 p99 = ln(100)·S/(1-rho) reaches 200 ms at rho ~ 0.77 at ``f_max``, so DVFS has headroom at
  typical utilisation and loses it near saturation).
- ``compute``: CPU-heavy request work (inference, transcoding, compression): 50 ms per request,
  p99 SLA 1 s (ten times the interactive budget, the same rho threshold ~ 0.77).
- ``memory``: memory-bandwidth-heavy request work (in-memory analytics, key-value scans): 20 ms per
  request, p99 SLA 500 ms (rho threshold ~ 0.82).
- ``batch``: throughput work split into 1 s chunks with a deadline rather than a latency target; its
  ``sla_ms`` is the deadline, 8 h, the window over which carbon-aware shifting is evaluated in
  ``shared/data/SOURCES.md`` (shifting a 1 h job within 8 h saves ~17 % carbon in CAISO).
- ``idle``: no offered work. Service time 1 ms only so that formulas stay finite; its ``sla_ms`` is one
  day, i.e. never binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Job priority; a lower number is more important (budget cuts hit the highest numbers first)."""

    CRITICAL = 0
    PRODUCTION = 1
    DEVELOPMENT = 2
    RESEARCH = 3
    BACKGROUND = 4


class WorkloadClass(StrEnum):
    """Names of the workload classes (the strings used in configs, logs and docs)."""

    COMPUTE = "compute"
    MEMORY = "memory"
    INTERACTIVE = "interactive"
    BATCH = "batch"
    IDLE = "idle"


@dataclass(frozen=True)
class ClassSpec:
    """Latency/deadline parameters of one workload class.

    Attributes:
        name: class name, one of :class:`WorkloadClass`.
        service_ms: mean service time of one request (or work chunk) on one node at ``f_max``, ms.
        sla_ms: p99 latency objective in ms; for ``batch`` the completion deadline in ms.
        deferrable: whether the work may be shifted in time (carbon-aware deferral).
    """

    name: str
    service_ms: float
    sla_ms: float
    deferrable: bool


MS_PER_HOUR = 3_600_000.0

WORKLOAD_CLASSES: dict[str, ClassSpec] = {
    "compute": ClassSpec("compute", service_ms=50.0, sla_ms=1000.0, deferrable=False),
    "memory": ClassSpec("memory", service_ms=20.0, sla_ms=500.0, deferrable=False),
    "interactive": ClassSpec("interactive", service_ms=10.0, sla_ms=200.0, deferrable=False),
    "batch": ClassSpec("batch", service_ms=1000.0, sla_ms=8.0 * MS_PER_HOUR, deferrable=True),
    "idle": ClassSpec("idle", service_ms=1.0, sla_ms=24.0 * MS_PER_HOUR, deferrable=True),
}
"""Class table keyed by class name (plain strings; ``WorkloadClass`` members compare equal to them)."""


def class_spec(name: str) -> ClassSpec:
    """The :class:`ClassSpec` of class ``name``.

    Raises:
        ValueError: unknown class; the message lists the known ones.
    """
    try:
        return WORKLOAD_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown workload class {name!r}: use one of {', '.join(WORKLOAD_CLASSES)}") from None
