"""Cluster files (``kind: cluster``): the coordinator's facility budget, power tree, nodes and settings.

A cluster file names every node the coordinator may cap, the power groups above them (innermost
level first, e.g. ``[rack, pdu]``; the facility budget is the root), each node's priority (0 =
Critical .. 4 = Background) and power range (a shipped server profile, or ``idle_w``/``busy_w``),
and how the coordinator runs (round, allocator, shield, faults, API, journal, optional parent).
``powerrl config check CLUSTER.yaml`` validates it; :func:`load_cluster` turns it into a
:class:`ClusterSpec` with per-node arrays.

Example (``configs/clusters/example.yaml``)::

    kind: cluster
    name: hall-a
    budget_w: 6000
    levels: [rack, pdu]
    groups:
      pdu0: {level: pdu, limit_w: 6000}
      rack0: {level: rack, parent: pdu0, limit_w: 3200}
    nodes:
      - {name: web, count: 8, group: rack0, priority: 1, profile: epyc7502}

A node entry with ``count: N`` expands to ``name-0 .. name-(N-1)``, zero-padded to the width of
``N - 1`` (``count: 20`` gives ``name-00 .. name-19``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from powerrl.config import from_dict, load_kind, spec
from powerrl.errors import ConfigError
from powerrl.runtime.auth import check_url
from powerrl.shield.budget import MAX_NODE_W, GroupLevel

#: Node and group names: what may appear in a URL path segment, a log line and a Prometheus label.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: Default API port (unassigned by IANA in the 8000s user range).
DEFAULT_PORT = 8470
#: Margin of ``node_timeout_s`` over a member's lease and decay, s: the member's lease starts when
#: the answer arrives, up to an HTTP timeout (the agent's default is 0.5 s) after the report.
TIMEOUT_MARGIN_S = 1.0


@dataclass(frozen=True)
class NodeEntry:
    """One node, or ``count`` alike nodes, of the cluster."""

    name: str = field(metadata=spec(doc="node name as its agent reports it; with count, the prefix"))
    count: int = field(default=1, metadata=spec(lo=1, hi=100_000, doc="expand to this many alike nodes"))
    group: str | None = field(default=None, metadata=spec(doc="innermost power group (e.g. its rack)"))
    priority: int = field(default=1, metadata=spec(
        lo=0, hi=4, doc="0 Critical, 1 Production, 2 Development, 3 Research, 4 Background"))
    profile: str | None = field(default=None, metadata=spec(doc="shipped server profile or profile YAML"))
    idle_w: float | None = field(default=None, metadata=spec(lo=0.0, hi=MAX_NODE_W, unit="W",
                                                             doc="idle power (instead of a profile)"))
    busy_w: float | None = field(default=None, metadata=spec(lo=0.0, lo_open=True, hi=MAX_NODE_W, unit="W",
                                                             doc="full-load power (instead of a profile)"))
    base_w: float | None = field(default=None, metadata=spec(lo=0.0, hi=MAX_NODE_W, unit="W", doc=(
        "guaranteed base instead of the shield's idle + base_frac[priority] (busy - idle); a rack "
        "coordinator's entry in its parent gives its summed bases (powerrl coordinator member)")))


@dataclass(frozen=True)
class GroupEntry:
    """A power group (a rack, a PDU, a row): its level, its parent group and its limit."""

    level: str = field(metadata=spec(doc="one of the cluster's levels"))
    limit_w: float | None = field(default=None, metadata=spec(lo=0.0, lo_open=True, unit="W",
                                                              doc="power limit; none = unlimited"))
    parent: str | None = field(default=None, metadata=spec(doc="group of the next level up"))


@dataclass(frozen=True)
class FaultConfig:
    """How silent nodes are counted and how long a cap holds without the coordinator."""

    lease_s: float = field(default=5.0, metadata=spec(lo=0.0, lo_open=True, hi=3600.0, unit="s", doc=(
        "a cap holds this long at the node after it arrived (sent with every cap)")))
    decay_s: float = field(default=30.0, metadata=spec(lo=0.0, hi=3600.0, unit="s", doc=(
        "then falls linearly to the node's guaranteed base over this long (sent with every cap)")))
    node_timeout_s: float = field(default=60.0, metadata=spec(lo=0.0, lo_open=True, unit="s", doc=(
        "a node silent this long is counted at its base (before that: at its maximum); at least "
        "lease_s + decay_s + 2 rounds")))


@dataclass(frozen=True)
class ApiConfig:
    """The coordinator's HTTP API."""

    listen: str = field(default="127.0.0.1", metadata=spec(
        doc="listen address; loopback by default, anything else needs a token"))
    port: int = field(default=DEFAULT_PORT, metadata=spec(lo=0, hi=65535, doc="TCP port (0: any free port)"))
    token_file: str | None = field(default=None, metadata=spec(
        doc="file holding the shared token (else $POWERRL_COORDINATOR_TOKEN)"))
    max_body_bytes: int = field(default=16384, metadata=spec(lo=256, hi=1 << 20, unit="B",
                                                             doc="larger requests are rejected (413)"))


@dataclass(frozen=True)
class ParentConfig:
    """A parent coordinator this one reports to as one member (Dynamo-style hierarchy)."""

    url: str = field(metadata=spec(doc="parent base URL, e.g. http://10.0.0.1:8470"))
    name: str = field(metadata=spec(doc="this coordinator's member name in the parent's cluster file"))
    token_file: str | None = field(default=None, metadata=spec(
        doc="file holding the parent's token (else $POWERRL_PARENT_TOKEN)"))
    timeout_s: float = field(default=0.5, metadata=spec(lo=0.0, lo_open=True, hi=30.0, unit="s",
                                                        doc="HTTP timeout of one report"))


@dataclass(frozen=True)
class ClusterConfig:
    """A whole cluster file (``kind: cluster``)."""

    name: str = field(metadata=spec(doc="coordinator name (logs, metrics, journal)"))
    budget_w: float = field(metadata=spec(lo=0.0, lo_open=True, unit="W", doc="facility power budget"))
    nodes: list[NodeEntry] = field(metadata=spec(doc="the nodes (or member coordinators) to cap"))
    levels: list[str] = field(default_factory=list, metadata=spec(doc="group levels, innermost first"))
    groups: dict[str, GroupEntry] = field(default_factory=dict, metadata=spec(doc="power groups by name"))
    round_s: float = field(default=1.0, metadata=spec(lo=0.05, hi=60.0, unit="s", doc="allocation round"))
    allocator: str = field(default="priority_proportional", metadata=spec(doc=(
        "registered ClusterBudget-v0 baseline (equal_share, proportional, priority_proportional, "
        "efficiency, dynamo) or a ClusterBudget-v0 policy: .onnx path or shipped name clusterbudget-v0")))
    shield: str = field(default="default", metadata=spec(doc="shipped shield name or YAML path"))
    cooling_failure_cut: float = field(default=0.3, metadata=spec(lo=0.0, lo_open=True, hi=1.0, doc=(
        "share of a group's limit a cooling failure takes away (until cleared)")))
    faults: FaultConfig = field(default_factory=FaultConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    journal: str = field(default="run/powerrl-coordinator/journal.json", metadata=spec(
        doc="round journal, written before caps go out; read back on restart"))
    log: str | None = field(default=None, metadata=spec(doc="JSON-lines log file (default: standard output)"))
    parent: ParentConfig | None = field(default=None, metadata=spec(doc="report to a parent coordinator"))


@dataclass(frozen=True, eq=False)
class ClusterSpec:
    """A validated cluster: the config plus per-node arrays in node order.

    Attributes:
        config: the file's settings.
        names: node names, in the order of every array.
        priority: ``[n]`` int64 priority per node.
        idle_w, busy_w: ``[n]`` node power range, W.
        base_w: ``[n]`` guaranteed base set in the file, W (NaN: the shield's rule by priority).
        levels: :class:`GroupLevel` per level, innermost first, limits in W (+inf = unlimited).
        group_names: per level, the group names in index order (``"(none)"``: nodes without a group).
        source: the file it came from.
    """

    config: ClusterConfig
    names: tuple[str, ...]
    priority: np.ndarray
    idle_w: np.ndarray
    busy_w: np.ndarray
    base_w: np.ndarray
    levels: tuple[GroupLevel, ...]
    group_names: tuple[tuple[str, ...], ...]
    source: str | None = None

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.names)

    def index(self) -> dict[str, int]:
        """Node name -> position."""
        return {name: i for i, name in enumerate(self.names)}

    def groups_of(self, group: str) -> np.ndarray:
        """Boolean ``[n]`` mask of the nodes in group ``group`` (any level); ConfigError if unknown."""
        for level, names in zip(self.levels, self.group_names, strict=True):
            if group in names and group != "(none)":
                return level.group_of_node == names.index(group)
        known = sorted({g for names in self.group_names for g in names if g != "(none)"})
        raise ConfigError("group", group, "a group of the cluster file (" + ", ".join(known[:20])
                          + (", ..." if len(known) > 20 else "") + ")")


def _check_name(name: str, key: str, source: str | None) -> None:
    if not NAME_RE.match(name):
        raise ConfigError(key, name, "1-128 characters of letters, digits, '_', '.', ':' or '-', starting with "
                          "a letter or digit", source)


def _expand(entry: NodeEntry) -> list[str]:
    if entry.count == 1:
        return [entry.name]
    width = len(str(entry.count - 1))
    return [f"{entry.name}-{i:0{width}d}" for i in range(entry.count)]


def _node_power(entry: NodeEntry, key: str, source: str | None) -> tuple[float, float]:
    if entry.profile is not None:
        if entry.idle_w is not None or entry.busy_w is not None:
            raise ConfigError(key + ".profile", entry.profile, "either a profile or idle_w and busy_w, not both",
                              source)
        from powerrl.model.profiles import get_profile

        prof = get_profile(entry.profile)
        return float(prof.idle_w), float(prof.busy_w)
    if entry.idle_w is None or entry.busy_w is None:
        raise ConfigError(key, entry.name, "a profile: name, or both idle_w and busy_w (W)", source)
    if not entry.busy_w > entry.idle_w:
        raise ConfigError(key + ".busy_w", entry.busy_w, f"more than idle_w = {entry.idle_w} W", source)
    return float(entry.idle_w), float(entry.busy_w)


def _build_levels(cfg: ClusterConfig, node_group: list[str | None], source: str | None
                  ) -> tuple[tuple[GroupLevel, ...], tuple[tuple[str, ...], ...]]:
    """Group index per node per level, following each group's parent chain outwards."""
    levels = list(cfg.levels)
    if len(set(levels)) != len(levels):
        raise ConfigError("levels", levels, "distinct level names, innermost first (e.g. [rack, pdu])", source)
    for lv in levels:
        _check_name(lv, "levels", source)
    for gname, g in cfg.groups.items():
        _check_name(gname, f"groups.{gname}", source)
        if g.level not in levels:
            raise ConfigError(f"groups.{gname}.level", g.level, "one of levels " + str(levels), source)
        depth = levels.index(g.level)
        if g.parent is None:
            continue
        parent = cfg.groups.get(g.parent)
        if parent is None:
            raise ConfigError(f"groups.{gname}.parent", g.parent, "a group named in groups:", source)
        if depth + 1 >= len(levels) or parent.level != levels[depth + 1]:
            nxt = levels[depth + 1] if depth + 1 < len(levels) else None
            raise ConfigError(f"groups.{gname}.parent", g.parent,
                              f"a group of level {nxt!r}, the level after {g.level!r}" if nxt else
                              f"no parent: {g.level!r} is the outermost level", source)
    out_levels: list[GroupLevel] = []
    out_names: list[tuple[str, ...]] = []
    n = len(node_group)
    # The group of each node at each level: its own group at its level, then the parent chain.
    chain: list[list[str | None]] = [[None] * n for _ in levels]
    for i, own in enumerate(node_group):
        cur = own
        while cur is not None:
            chain[levels.index(cfg.groups[cur].level)][i] = cur
            cur = cfg.groups[cur].parent
    for k, lv in enumerate(levels):
        names = sorted({g for g in chain[k] if g is not None} | {g for g, e in cfg.groups.items() if e.level == lv})
        if any(g is None for g in chain[k]):
            names.append("(none)")
        idx = {g: j for j, g in enumerate(names)}
        group_of_node = np.array([idx[g if g is not None else "(none)"] for g in chain[k]], dtype=np.int64)
        limit = np.array([math.inf if g == "(none)" or cfg.groups[g].limit_w is None else cfg.groups[g].limit_w
                          for g in names], dtype=np.float64)
        out_levels.append(GroupLevel(lv, group_of_node, limit))
        out_names.append(tuple(names))
    return tuple(out_levels), tuple(out_names)


def cluster_spec(data: dict[str, Any] | None, source: str | None = None) -> ClusterSpec:
    """Validate a cluster file's mapping (without ``kind``) into a :class:`ClusterSpec`."""
    cfg = from_dict(ClusterConfig, data or {}, source=source)
    _check_name(cfg.name, "name", source)
    if cfg.parent is not None:
        _check_name(cfg.parent.name, "parent.name", source)
        check_url(cfg.parent.url, "parent.url", source)
    f = cfg.faults
    least_timeout_s = f.lease_s + f.decay_s + 2 * cfg.round_s + TIMEOUT_MARGIN_S
    if f.node_timeout_s < least_timeout_s:
        # A node counted at its base before its cap has decayed there could still draw more.
        raise ConfigError("faults.node_timeout_s", f.node_timeout_s,
                          f">= lease_s + decay_s + 2 rounds + {TIMEOUT_MARGIN_S:g} s = {least_timeout_s:g} s (a "
                          "silent node's cap must have decayed to its base before it is counted there)", source)
    if cfg.groups and not cfg.levels:
        raise ConfigError("levels", [], "the group levels, innermost first (e.g. levels: [rack, pdu]), since "
                          "groups: are given", source)
    names: list[str] = []
    groups: list[str | None] = []
    prio: list[int] = []
    idle: list[float] = []
    busy: list[float] = []
    bases: list[float] = []
    if not cfg.nodes:
        raise ConfigError("nodes", [], "at least one node", source)
    for k, entry in enumerate(cfg.nodes):
        key = f"nodes[{k}]"
        _check_name(entry.name, key + ".name", source)
        if entry.group is not None and entry.group not in cfg.groups:
            raise ConfigError(key + ".group", entry.group, "a group named in groups:", source)
        if entry.group is not None and cfg.groups[entry.group].level != cfg.levels[0]:
            raise ConfigError(key + ".group", entry.group, f"a group of the innermost level {cfg.levels[0]!r} "
                              f"(it is a {cfg.groups[entry.group].level!r})", source)
        i_w, b_w = _node_power(entry, key, source)
        if entry.base_w is not None and entry.base_w > b_w:
            raise ConfigError(key + ".base_w", entry.base_w, f"at most busy_w = {b_w:g} W", source)
        for name in _expand(entry):
            _check_name(name, key + f".name (expanded to {name!r} by count)", source)
            names.append(name)
            bases.append(math.nan if entry.base_w is None else float(entry.base_w))
            groups.append(entry.group)
            prio.append(entry.priority)
            idle.append(i_w)
            busy.append(b_w)
    seen: set[str] = set()
    for k, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"nodes (node {k})", name, "unique node names (rename or change count)", source)
        seen.add(name)
    levels, group_names = _build_levels(cfg, groups, source)
    return ClusterSpec(cfg, tuple(names), np.array(prio, dtype=np.int64), np.array(idle), np.array(busy),
                       np.array(bases), levels, group_names, source)


def load_cluster(path: str | Path) -> ClusterSpec:
    """Load and validate a cluster file (``kind: cluster``)."""
    return cluster_spec(load_kind(path, "cluster"), str(path))
