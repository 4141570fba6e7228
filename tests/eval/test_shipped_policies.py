"""The trained policies shipped in powerrl/data/policies: metadata, spaces, and their place in ``all``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from powerrl.eval.controllers import SHIPPED_POLICIES, controllers_for
from powerrl.eval.policy_file import PolicyFileController
from powerrl.eval.runner import VECTOR_ENVS

ENVS = {"nodedvfs-v0": "powerrl/NodeDVFS-v0", "clusterbudget-v0": "powerrl/ClusterBudget-v0",
        "datacenter-v0": "powerrl/Datacenter-v0"}


@pytest.mark.parametrize(("stem", "env_id"), sorted(ENVS.items()))
def test_shipped_policy_drives_its_default_env(stem: str, env_id: str) -> None:
    path = SHIPPED_POLICIES / f"{stem}.onnx"
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["env_id"] == env_id and meta["training_command"].startswith("powerrl train")
    venv = VECTOR_ENVS[env_id](2)
    assert meta["observation_dim"] == venv.single_observation_space.shape[0]
    ctrl = PolicyFileController(path, venv.single_action_space, venv.single_observation_space)
    obs, _ = venv.reset(seed=0)
    acts = ctrl.act_batch(obs)
    assert all(venv.single_action_space.contains(a) for a in acts)
    assert np.isfinite(np.asarray(acts, dtype=float)).all()


def test_all_includes_shipped_policies_only_where_they_fit() -> None:
    specs = controllers_for("powerrl/NodeDVFS-v0", ["all"], {}, observation_dim=18)
    assert [s.label for s in specs if s.kind == "policy"] == ["nodedvfs-v0"]
    other_size = controllers_for("powerrl/NodeDVFS-v0", ["all"], {}, observation_dim=10)  # n_domains 1
    assert not [s for s in other_size if s.kind == "policy"]
    assert [s for s in other_size if s.kind == "baseline"]


def test_a_shipped_policy_named_explicitly_is_not_filtered_silently() -> None:
    path = str(SHIPPED_POLICIES / "nodedvfs-v0.onnx")
    specs = controllers_for("powerrl/NodeDVFS-v0", ["all", path], {}, observation_dim=10)
    assert [s.ref for s in specs if s.kind == "policy"] == [path]  # kept: building it then fails loudly
