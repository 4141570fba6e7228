"""Build every standalone C test in tests/c under ASan and UBSan and run it.

The kernels are header-only, so the same code the Cython extension runs is exercised without Python,
with the sanitizers catching out-of-bounds access and undefined behaviour. Skipped when no C compiler
with sanitizer support is available.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORE = HERE.parents[1] / "powerrl" / "_core"
SOURCES = sorted(HERE.glob("test_*.c"))
FLAGS = ["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@functools.cache
def _sanitizer_problem(cc: str) -> str | None:
    """Why a trivial program cannot be built and run with the sanitizers here (None if it can)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("int main(void) { return 0; }\n")
        build = subprocess.run([cc, *FLAGS, str(src), "-o", str(Path(tmp) / "probe")], capture_output=True, text=True)
        if build.returncode != 0:
            return build.stderr.strip()[:300]
        run = subprocess.run([str(Path(tmp) / "probe")], capture_output=True, text=True)
        return None if run.returncode == 0 else (run.stderr.strip()[:300] or f"exit {run.returncode}")


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_c_header_under_sanitizers(source: Path, tmp_path: Path) -> None:
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler on PATH")
    problem = _sanitizer_problem(cc)
    if problem is not None:
        pytest.skip(f"ASan/UBSan unavailable with {cc}: {problem}")
    exe = tmp_path / source.stem
    build = subprocess.run([cc, *FLAGS, f"-I{CORE}", str(source), "-o", str(exe), "-lm", "-lpthread"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stdout + run.stderr
