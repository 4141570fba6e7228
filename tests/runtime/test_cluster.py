"""Cluster files (``kind: cluster``): the shipped example, count expansion, and one clear error per mistake.

Every error test checks the key path the message names and that the message says what would be
accepted (the fix), not just that loading fails.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from powerrl.cli import main
from powerrl.errors import ConfigError
from powerrl.model.profiles import get_profile
from powerrl.runtime.cluster import ClusterSpec, cluster_spec, load_cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "clusters" / "example.yaml"


def base(**over: Any) -> dict[str, Any]:
    """A minimal valid cluster mapping (two racks under one PDU), with top-level keys replaced."""
    data: dict[str, Any] = {
        "name": "t",
        "budget_w": 2000.0,
        "levels": ["rack", "pdu"],
        "groups": {"pdu0": {"level": "pdu", "limit_w": 2000.0},
                   "rack0": {"level": "rack", "parent": "pdu0", "limit_w": 1000.0},
                   "rack1": {"level": "rack", "parent": "pdu0", "limit_w": 1000.0}},
        "nodes": [{"name": "a", "count": 2, "group": "rack0", "idle_w": 100.0, "busy_w": 300.0},
                  {"name": "b", "count": 2, "group": "rack1", "priority": 2, "idle_w": 100.0, "busy_w": 300.0}],
    }
    data.update(over)
    return data


def error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cluster_spec(data)
    return info.value


# ---------------------------------------------------------------------------------------------------------------------
# The shipped example


def test_example_loads_sixteen_nodes_on_racks_and_pdus() -> None:
    spec = load_cluster(EXAMPLE)
    assert isinstance(spec, ClusterSpec)
    assert spec.n == 16
    assert spec.config.name == "hall-a"
    assert [lv.name for lv in spec.levels] == ["rack", "pdu"]
    assert spec.group_names == (("rack0", "rack1", "rack2", "rack3"), ("pdu0", "pdu1"))
    names = list(spec.names)
    assert names[:4] == ["db-0", "db-1", "web-0", "web-1"]
    assert names[4:8] == [f"api-{i}" for i in range(4)]
    assert names[-4:] == [f"batch-{i}" for i in range(4)]
    rack, pdu = spec.levels
    # db and web in rack0, api in rack1, ci in rack2, batch in rack3; rack0/1 under pdu0, rack2/3 under pdu1
    assert rack.group_of_node.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert pdu.group_of_node.tolist() == [0] * 8 + [1] * 8
    assert rack.limit_w.tolist() == [1100.0] * 4
    assert pdu.limit_w.tolist() == [2100.0] * 2
    assert spec.priority.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4]
    prof = get_profile("epyc7502")
    np.testing.assert_allclose(spec.idle_w, prof.idle_w)
    np.testing.assert_allclose(spec.busy_w, prof.busy_w)
    assert spec.index()["ci-2"] == 10
    assert spec.groups_of("pdu1").tolist() == [False] * 8 + [True] * 8
    assert spec.groups_of("rack0").sum() == 4


def test_config_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok")
    assert "example.yaml" in out


def test_config_check_rejects_a_bad_cluster_file_by_its_kind(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["nodes"][0]["group"] = "rack9"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "nodes[0].group" in out and "rack9" in out


# ---------------------------------------------------------------------------------------------------------------------
# Count expansion


def test_count_expands_to_numbered_names_without_padding_below_eleven() -> None:
    spec = cluster_spec(base(nodes=[{"name": "web", "count": 10, "idle_w": 100.0, "busy_w": 300.0}],
                             levels=[], groups={}))
    assert spec.names == tuple(f"web-{i}" for i in range(10))


def test_count_of_eleven_or_more_zero_pads_to_the_width_of_the_last_index() -> None:
    spec = cluster_spec(base(nodes=[{"name": "web", "count": 11, "idle_w": 100.0, "busy_w": 300.0}],
                             levels=[], groups={}))
    assert spec.names[0] == "web-00" and spec.names[9] == "web-09" and spec.names[10] == "web-10"
    spec = cluster_spec(base(nodes=[{"name": "w", "count": 101, "idle_w": 100.0, "busy_w": 300.0}],
                             levels=[], groups={}))
    assert spec.names[0] == "w-000" and spec.names[-1] == "w-100"


def test_count_one_keeps_the_name_and_nodes_keep_their_entry_settings() -> None:
    spec = cluster_spec(base(nodes=[{"name": "solo", "idle_w": 50.0, "busy_w": 250.0, "priority": 3},
                                    {"name": "pair", "count": 2, "profile": "epyc7502", "priority": 0}],
                             levels=[], groups={}))
    assert spec.names == ("solo", "pair-0", "pair-1")
    assert spec.priority.tolist() == [3, 0, 0]
    assert spec.idle_w[0] == 50.0 and spec.busy_w[0] == 250.0


def test_nodes_without_a_group_get_an_unlimited_none_group() -> None:
    data = base()
    data["nodes"].append({"name": "loose", "idle_w": 100.0, "busy_w": 300.0})
    spec = cluster_spec(data)
    rack, pdu = spec.levels
    assert spec.group_names[0][-1] == "(none)"
    assert rack.limit_w[rack.group_of_node[-1]] == np.inf
    assert pdu.limit_w[pdu.group_of_node[-1]] == np.inf


# ---------------------------------------------------------------------------------------------------------------------
# Errors: the key and the fix


def test_unknown_top_level_key_names_it_and_the_allowed_keys() -> None:
    exc = error(base(budget=1000))
    assert exc.key_path == "budget"
    assert "budget_w" in str(exc) and "allowed keys" in str(exc)


def test_unknown_node_key_names_the_node_entry() -> None:
    data = base()
    data["nodes"][1]["prio"] = 2
    exc = error(data)
    assert exc.key_path == "nodes[1].prio"
    assert "priority" in str(exc)


def test_unknown_group_of_a_node() -> None:
    data = base()
    data["nodes"][1]["group"] = "rack7"
    exc = error(data)
    assert exc.key_path == "nodes[1].group"
    assert exc.value == "rack7"
    assert "groups" in exc.expected


def test_node_in_a_group_of_an_outer_level_is_rejected() -> None:
    data = base()
    data["nodes"][0]["group"] = "pdu0"
    exc = error(data)
    assert "group" in exc.key_path and exc.value == "pdu0"
    assert "innermost" in exc.expected and "rack" in exc.expected


def test_group_level_must_be_one_of_the_levels() -> None:
    data = base()
    data["groups"]["row0"] = {"level": "row"}
    exc = error(data)
    assert exc.key_path == "groups.row0.level"
    assert "rack" in exc.expected and "pdu" in exc.expected


def test_parent_of_the_wrong_level() -> None:
    data = base()
    data["groups"]["rack2"] = {"level": "rack", "parent": "rack0"}
    exc = error(data)
    assert exc.key_path == "groups.rack2.parent"
    assert exc.value == "rack0"
    assert "'pdu'" in exc.expected


def test_parent_of_the_outermost_level_is_rejected() -> None:
    data = base()
    data["groups"]["pdu1"] = {"level": "pdu", "parent": "pdu0"}
    exc = error(data)
    assert exc.key_path == "groups.pdu1.parent"
    assert "outermost" in exc.expected


def test_unknown_parent_group() -> None:
    data = base()
    data["groups"]["rack1"]["parent"] = "pdu9"
    exc = error(data)
    assert exc.key_path == "groups.rack1.parent" and exc.value == "pdu9"


def test_two_entries_expanding_to_the_same_name_are_rejected() -> None:
    data = base(nodes=[{"name": "a", "count": 3, "idle_w": 100.0, "busy_w": 300.0},
                       {"name": "a-1", "idle_w": 100.0, "busy_w": 300.0}], levels=[], groups={})
    exc = error(data)
    assert "nodes" in exc.key_path
    assert exc.value == "a-1"
    assert "unique" in exc.expected


def test_same_name_twice_is_rejected() -> None:
    data = base(nodes=[{"name": "x", "idle_w": 100.0, "busy_w": 300.0},
                       {"name": "x", "idle_w": 100.0, "busy_w": 300.0}], levels=[], groups={})
    assert error(data).value == "x"


def test_profile_and_idle_w_together_are_rejected() -> None:
    data = base()
    data["nodes"][0] = {"name": "a", "profile": "epyc7502", "idle_w": 100.0}
    exc = error(data)
    assert exc.key_path.startswith("nodes[0]")
    assert "not both" in exc.expected


def test_neither_profile_nor_power_range_is_rejected() -> None:
    data = base()
    data["nodes"][0] = {"name": "a", "idle_w": 100.0}
    exc = error(data)
    assert exc.key_path.startswith("nodes[0]")
    assert "profile" in exc.expected and "busy_w" in exc.expected


@pytest.mark.parametrize("busy_w", [100.0, 99.0])
def test_busy_w_not_above_idle_w_is_rejected(busy_w: float) -> None:
    data = base()
    data["nodes"][1]["busy_w"] = busy_w
    exc = error(data)
    assert exc.key_path == "nodes[1].busy_w"
    assert "idle_w" in exc.expected


def test_unknown_profile_lists_the_shipped_ones() -> None:
    data = base()
    data["nodes"][0] = {"name": "a", "profile": "no-such-cpu"}
    exc = error(data)
    assert "no-such-cpu" in str(exc)
    assert "epyc7502" in str(exc)


@pytest.mark.parametrize("name", ["a b", "a/b", "-a", "", "x" * 129, "nöde", "a?b"])
def test_bad_node_name_characters(name: str) -> None:
    data = base()
    data["nodes"][0]["name"] = name
    exc = error(data)
    assert exc.key_path == "nodes[0].name"
    assert "letters, digits" in exc.expected


def test_bad_group_name_characters() -> None:
    data = base()
    data["groups"]["rack 2"] = {"level": "rack", "parent": "pdu0"}
    exc = error(data)
    assert exc.key_path == "groups.rack 2"


def test_node_timeout_shorter_than_lease_decay_and_two_rounds() -> None:
    exc = error(base(round_s=2.0, faults={"lease_s": 5.0, "decay_s": 30.0, "node_timeout_s": 38.9}))
    assert exc.key_path == "faults.node_timeout_s"
    assert "lease_s + decay_s + 2 rounds" in exc.expected
    least = float(re.search(r"= ([0-9.]+) s", exc.expected).group(1))  # type: ignore[union-attr]
    assert least >= 5.0 + 30.0 + 2 * 2.0
    # the bound it names is accepted, a hair below it is not
    spec = cluster_spec(base(round_s=2.0, faults={"lease_s": 5.0, "decay_s": 30.0, "node_timeout_s": least}))
    assert spec.config.faults.node_timeout_s == least
    assert error(base(round_s=2.0, faults={"lease_s": 5.0, "decay_s": 30.0, "node_timeout_s": least - 0.01})
                 ).key_path == "faults.node_timeout_s"


def test_default_faults_are_consistent() -> None:
    cfg = cluster_spec(base()).config
    f = cfg.faults
    assert f.node_timeout_s >= f.lease_s + f.decay_s + 2 * cfg.round_s


@pytest.mark.parametrize("url", ["10.0.0.1:8470", "ftp://10.0.0.1", "localhost:8470"])
def test_parent_url_without_http_is_rejected(url: str) -> None:
    exc = error(base(parent={"url": url, "name": "rack-a"}))
    assert exc.key_path == "parent.url"
    assert exc.value == url
    assert "http://" in exc.expected


def test_parent_section_is_accepted_and_its_name_checked() -> None:
    spec = cluster_spec(base(parent={"url": "https://10.0.0.1:8470", "name": "rack-a"}))
    assert spec.config.parent is not None and spec.config.parent.name == "rack-a"
    exc = error(base(parent={"url": "http://10.0.0.1:8470", "name": "rack a"}))
    assert exc.key_path == "parent.name"


def test_no_nodes_is_rejected() -> None:
    exc = error(base(nodes=[]))
    assert exc.key_path == "nodes"


def test_duplicate_levels_are_rejected() -> None:
    exc = error(base(levels=["rack", "rack"]))
    assert exc.key_path == "levels"


def test_out_of_range_values_name_the_key() -> None:
    assert error(base(budget_w=0)).key_path == "budget_w"
    data = base()
    data["nodes"][0]["priority"] = 5
    assert error(data).key_path == "nodes[0].priority"
    assert error(base(round_s=0.01)).key_path == "round_s"


def test_load_cluster_wants_kind_cluster(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["kind"] = "host"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    assert "kind" in str(info.value)


def test_errors_name_the_source_file(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    bad = copy.deepcopy(data)
    bad["nodes"][2]["busy_w"] = 10.0  # profile + busy_w
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    assert str(path) in str(info.value)
    assert "nodes[2]" in str(info.value)
