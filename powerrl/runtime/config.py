"""The ``agent:`` section of a host file: how the node agent runs (period, shield, fallback, outputs).

A host file (``kind: host``) has the hardware mapping at the top level (:mod:`powerrl.hw.host`) and
the agent's settings under ``agent:``; ``powerrl config check HOST.yaml`` validates both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerrl.config import from_dict, join_key, load_kind, spec
from powerrl.errors import ConfigError
from powerrl.hw.host import HostConfig, host_config
from powerrl.runtime.auth import TOKEN_ENV, check_url, needs_token, read_token

#: Environment variable holding the coordinator token when ``agent.coordinator.token_file`` is not set.


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus exposition: loopback by default (the metrics name the node's power and temperatures)."""

    address: str = field(default="127.0.0.1", metadata=spec(doc="listen address; 0.0.0.0 exposes it to the network"))
    port: int = field(default=9464, metadata=spec(lo=0, hi=65535, doc="TCP port; 0 = no metrics endpoint"))


@dataclass(frozen=True)
class CapLeaseConfig:
    """What a coordinator cap does when the coordinator goes quiet."""

    lease_s: float = field(default=5.0, metadata=spec(lo=0.0, lo_open=True, unit="s",
                                                        doc="a cap holds this long after it was last refreshed"))
    decay_s: float = field(default=30.0, metadata=spec(
        lo=0.0, unit="s", doc="then falls linearly to the guaranteed base over this long"))


@dataclass(frozen=True)
class CoordinatorClientConfig:
    """Where the agent reports its power and gets its cap (``powerrl coordinator``); no URL = no coordinator."""

    url: str | None = field(default=None, metadata=spec(
        doc="coordinator base URL, e.g. http://coordinator:8470 (null: no coordinator; --coordinator overrides)"))
    node: str | None = field(default=None, metadata=spec(
        doc="this node's name in the cluster file (default: the host file's name, else the host name)"))
    token_file: str | None = field(default=None, metadata=spec(
        doc=f"file holding the shared bearer token (default: the {TOKEN_ENV} environment variable)"))
    report_s: float = field(default=1.0, metadata=spec(
        lo=0.05, hi=60.0, unit="s", doc="report period until the coordinator's first answer sets its own"))
    timeout_s: float = field(default=0.5, metadata=spec(
        lo=0.0, lo_open=True, hi=60.0, unit="s", doc="one report's HTTP timeout (connect, send and answer)"))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """A URL, when set, must be http(s)."""
        if self.url is not None:
            check_url(self.url, join_key(path, "url"), source)


def coordinator_token(cfg: CoordinatorClientConfig, url: str, source: str | None = None) -> str | None:
    """The bearer token for ``url``: ``token_file``'s content, else ``$POWERRL_COORDINATOR_TOKEN``, else None.

    Read once when the agent starts. Raises ConfigError when the token file is missing, unreadable or empty,
    and when plain HTTP to another machine would go without a token (anyone on the path could send caps).
    """
    token = read_token(cfg.token_file, TOKEN_ENV, "agent.coordinator.token_file", source, min_chars=1)
    if token is None and needs_token(url):
        raise ConfigError("agent.coordinator.url", url,
                          f"a token for plain HTTP to another machine: set agent.coordinator.token_file (or "
                          f"{TOKEN_ENV}) to the coordinator's token, or use a loopback/https URL", source)
    return token


@dataclass(frozen=True)
class AgentConfig:
    """The node agent's settings (the ``agent:`` section of a host file)."""

    period_ms: float = field(default=100.0, metadata=spec(lo=10.0, hi=60_000.0, unit="ms", doc="control period"))
    shield: str = field(default="default", metadata=spec(doc="shipped shield name or YAML path"))
    fallback: str = field(default="schedutil", metadata=spec(
        doc="registered controller deciding when the policy fails, times out or sensors are stale"))
    controller_timeout_ms: float = field(default=20.0, metadata=spec(
        lo=0.0, lo_open=True, unit="ms", doc="a policy answer later than this is replaced by the fallback's"))
    policy_thread: bool = field(default=True, metadata=spec(
        doc="run the policy on its own thread, so even a hung policy gives way to the fallback within the "
            "period (costs a thread hand-off per tick, ~0.1-0.3 ms; false: inline, a hang holds the loop "
            "until hang_s)"))
    hang_s: float = field(default=2.0, metadata=spec(
        lo=0.0, lo_open=True, unit="s", doc="no completed tick for this long: restore the kernel's own settings"))
    log: str | None = field(default=None, metadata=spec(doc="JSON-lines log file (default: standard output)"))
    log_every: int = field(default=10, metadata=spec(
        lo=1, doc="log one tick in this many (ticks with shield events, fallbacks or cap changes are always logged)"))
    state_dir: str = field(default="run/powerrl", metadata=spec(doc="status, pid and cap files, under the root"))
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    caps: CapLeaseConfig = field(default_factory=CapLeaseConfig)
    coordinator: CoordinatorClientConfig = field(default_factory=CoordinatorClientConfig)

    @property
    def period_s(self) -> float:
        """Control period, s."""
        return self.period_ms / 1000.0


@dataclass(frozen=True)
class HostFile:
    """A whole host file: the hardware mapping and the agent's settings."""

    host: HostConfig
    agent: AgentConfig
    path: str | None = None


def host_file(data: dict[str, Any] | None = None, source: str | None = None) -> HostFile:
    """Validate a host file's mapping (both sections)."""
    data = dict(data or {})
    agent = from_dict(AgentConfig, data.get("agent"), path="agent", source=source)
    return HostFile(host_config(data, source), agent, source)


def load_host_file(path: str | Path) -> HostFile:
    """Load and validate a host file (``kind: host``)."""
    return host_file(load_kind(path, "host"), str(path))
