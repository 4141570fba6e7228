"""Envs run on a user's own utilisation CSV named in YAML; a bad file fails with its row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from powerrl.envs.config import load_env_config
from powerrl.envs.node_dvfs import NodeDVFSEnv
from powerrl.errors import DataFileError


def write_trace(path: Path, values: list[float]) -> None:
    lines = ["timestamp,cpu_pct"] + [f"{i},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def test_env_runs_on_a_user_trace_from_yaml(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_trace(tmp_path / "cpu.csv", list(rng.uniform(20, 80, 2 * 96)))  # 2 days of 15-minute rows
    cfg_file = tmp_path / "env.yaml"
    cfg_file.write_text(
        "kind: env\nid: powerrl/NodeDVFS-v0\ndt_s: 1.0\nepisode_s: 600\nsplit: heldout\n"
        f"trace:\n  path: {tmp_path / 'cpu.csv'}\n  column: cpu_pct\n  interval_s: 900\n  scale: 0.01\n"
        "  heldout_days: 1\n")
    env_id, cfg = load_env_config(cfg_file)
    assert env_id == "powerrl/NodeDVFS-v0" and cfg.trace.interval_s == 900.0
    env = NodeDVFSEnv(config=cfg)
    obs, info = env.reset(seed=0)
    assert 86400.0 <= info["time_s"] < 2 * 86400.0  # held-out = day 2
    for _ in range(20):
        obs, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    assert env.core.trace.rows_per_day == 96


def test_bad_user_trace_names_row_and_column(tmp_path: Path) -> None:
    write_trace(tmp_path / "cpu.csv", [50.0] * 10 + [float("nan")] + [50.0] * 85)
    with pytest.raises(DataFileError) as exc:
        NodeDVFSEnv(trace={"path": str(tmp_path / "cpu.csv"), "column": "cpu_pct", "interval_s": 900,
                           "scale": 0.01, "heldout_days": 0})
    assert "row 12" in str(exc.value) and "cpu_pct" in str(exc.value)
