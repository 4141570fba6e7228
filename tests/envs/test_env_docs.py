"""docs/envs.md is generated from the env docstrings and must not drift from them."""

from __future__ import annotations

from pathlib import Path

from powerrl.envs import ENV_IDS, HW_ENV_IDS
from powerrl.envs.cli import env_docs_markdown

DOC = Path(__file__).parents[2] / "docs" / "envs.md"


def test_env_docs_are_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == env_docs_markdown(), (
        "docs/envs.md is stale: run 'powerrl docs envs --out docs/envs.md' (or 'make docs')")


def test_every_env_docstring_has_the_gymnasium_sections() -> None:
    text = env_docs_markdown()
    for section in ("Description", "Action Space", "Observation Space", "Rewards", "Starting State",
                    "Episode End", "Arguments", "Version History"):
        assert text.count(f"### {section}") == len(ENV_IDS) + len(HW_ENV_IDS), section
