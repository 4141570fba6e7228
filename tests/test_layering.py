"""The package's dependencies point one way (../shared/ARCHITECTURE.md: runtime, eval -> agents,
baselines -> shield -> model, hw, _core; envs may use model, _core, hw, shield), and the node agent
never needs the training extra."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "powerrl"

#: package -> packages it must never import (at module level or inside functions).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "_core": ("hw", "shield", "envs", "baselines", "eval", "agents", "runtime"),
    "model": ("hw", "shield", "envs", "baselines", "eval", "agents", "runtime"),
    "hw": ("shield", "envs", "baselines", "eval", "agents", "runtime"),
    "shield": ("envs", "baselines", "eval", "agents", "runtime"),
    "envs": ("baselines", "eval", "agents", "runtime"),
    "baselines": ("eval", "agents", "runtime"),
    "runtime": ("agents",),  # torch lives there: a node runs without the training extra
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_the_wrong_way(package: str) -> None:
    bad = []
    for path in sorted((PKG / package).rglob("*.py")) + sorted((PKG / package).rglob("*.pyx")):
        if path.suffix == ".pyx":
            continue  # Cython: checked by the build; none of them import powerrl packages above _core
        for mod in _imports(path):
            parts = mod.split(".")
            if parts[0] == "powerrl" and len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    assert not bad, "\n".join(bad)
