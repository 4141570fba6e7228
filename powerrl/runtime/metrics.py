"""Prometheus metrics of the node agent (``prometheus-client``, the ``agent`` extra).

Served on ``agent.metrics.address:port`` (127.0.0.1:9464 by default: the metrics reveal the node's
power and load, so they stay on loopback unless the operator opens them). Names follow the
Prometheus conventions (base units, ``_total`` for counters): ``powerrl_agent_power_watts{domain}``,
``powerrl_agent_energy_joules`` (cumulative RAPL energy), ``powerrl_agent_temperature_celsius{domain}``,
``powerrl_agent_pstate{domain}``, ``powerrl_agent_cap_watts{domain}``,
``powerrl_agent_decisions_total{source}`` (policy or fallback), ``powerrl_agent_fallbacks_total{reason}``,
``powerrl_agent_shield_interventions_total`` and ``powerrl_agent_shield_events_total{reason}``,
``powerrl_agent_tick_seconds`` (sample to actuation, histogram), ``powerrl_agent_loop_lateness_seconds``
(wake-up after the deadline, histogram), ``powerrl_agent_missed_deadlines_total``; with a coordinator,
``powerrl_agent_coordinator_cap_watts`` (its node cap in force, NaN: none) and
``powerrl_agent_coordinator_errors_total`` (failed reports).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from powerrl.errors import ConfigError

#: Histogram buckets, s: 50 us .. 100 ms (tick latency goal 1 ms, period 100 ms).
LATENCY_BUCKETS_S = (5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)


class AgentMetrics:
    """The agent's metrics in their own registry, optionally served over HTTP.

    Args:
        n_domains: frequency domains (label values ``0 .. n-1``).
        node: node name (a constant label).
        address, port: where to serve; ``port=0`` registers the metrics without serving them.
    """

    def __init__(self, n_domains: int, node: str, address: str = "127.0.0.1", port: int = 0) -> None:
        try:
            import prometheus_client as pc
        except ModuleNotFoundError:
            raise ConfigError("agent.metrics.port", port, "0, or prometheus-client installed "
                              "(pip install 'powerrl[agent]')") from None
        self.registry = reg = pc.CollectorRegistry()
        labels = {"node": node}
        self._g = {}
        for name, doc in (("power_watts", "domain power over the last period"),
                          ("temperature_celsius", "domain package temperature"),
                          ("pstate", "P-state index applied"), ("cap_watts", "power cap in force (absent: none)"),
                          ("utilisation_ratio", "domain CPU busy share")):
            self._g[name] = pc.Gauge(f"powerrl_agent_{name}", doc, ["node", "domain"], registry=reg)
        self.energy = pc.Gauge("powerrl_agent_energy_joules", "cumulative energy of the RAPL package zones",
                               ["node"], registry=reg).labels(**labels)
        self.decisions = pc.Counter("powerrl_agent_decisions", "decisions by who made them", ["node", "source"],
                                    registry=reg)
        self.fallbacks = pc.Counter("powerrl_agent_fallbacks", "fallback decisions by reason", ["node", "reason"],
                                    registry=reg)
        self.interventions = pc.Counter("powerrl_agent_shield_interventions", "decisions the shield changed",
                                        ["node"], registry=reg).labels(**labels)
        self.shield_events = pc.Counter("powerrl_agent_shield_events", "shield events by reason (units affected)",
                                        ["node", "reason"], registry=reg)
        self.tick = pc.Histogram("powerrl_agent_tick_seconds", "sample to actuation", ["node"],
                                 buckets=LATENCY_BUCKETS_S, registry=reg).labels(**labels)
        self.lateness = pc.Histogram("powerrl_agent_loop_lateness_seconds", "wake-up after the deadline", ["node"],
                                     buckets=LATENCY_BUCKETS_S, registry=reg).labels(**labels)
        self.missed = pc.Counter("powerrl_agent_missed_deadlines", "periods skipped because a tick ran late",
                                 ["node"], registry=reg).labels(**labels)
        self.coordinator_cap = pc.Gauge("powerrl_agent_coordinator_cap_watts",
                                        "the coordinator's node cap in force (NaN: none)", ["node"],
                                        registry=reg).labels(**labels)
        self.coordinator_errors = pc.Counter("powerrl_agent_coordinator_errors",
                                             "failed reports to the coordinator (unreachable, refused, bad answer)",
                                             ["node"], registry=reg).labels(**labels)
        self.coordinator_cap.set(float("nan"))
        self.node = node
        self._dom = {name: [g.labels(node, str(d)) for d in range(n_domains)] for name, g in self._g.items()}
        self.server: Any = None
        if port:
            try:
                self.server = pc.start_http_server(port, addr=address, registry=reg)
            except (OSError, OverflowError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError("agent.metrics.port", port, f"a free port on {address} ({why}); "
                                  "pick another or set 0 to turn metrics off") from None

    def domains(self, name: str, values: np.ndarray) -> None:
        """Set per-domain gauge ``name`` (NaN leaves a gauge at NaN, which Prometheus shows as such)."""
        for g, v in zip(self._dom[name], values.tolist(), strict=True):
            g.set(v)

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            server, thread = self.server if isinstance(self.server, tuple) else (self.server, None)
            server.shutdown()
            server.server_close()  # the listening socket, now rather than at garbage collection
            if thread is not None:
                thread.join(timeout=2.0)
            self.server = None
