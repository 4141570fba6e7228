import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def scenario_file(tmp_path: Path):
    """Write a small scenario YAML (a few minutes of one env) and return its path."""

    def write(body: str, name: str = "tiny.yaml") -> Path:
        p = tmp_path / name
        p.write_text("kind: scenario\n" + textwrap.dedent(body), encoding="utf-8")
        return p

    return write
