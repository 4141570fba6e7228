"""Property tests: the native sampler and the pure-Python reader agree on any file content and counter path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerrl.hw import sensors as S
from powerrl.hw.sensors import PyReader, Sensor
from powerrl.hw.sysfs import SysfsRoot

sampler_mod = pytest.importorskip("powerrl._core.sampler", reason="Cython core not built")

texts = st.one_of(
    st.integers(-(2**62), 2**62).map(lambda v: f"{v}\n"),
    st.integers(0, 10**9).map(lambda v: f"  {v} \n"),
    st.sampled_from(["<unsupported>\n", "\n", "", "12 34\n", "1e5\n", "-\n", "+7\n", "cpu  1 2 3\n",
                     "cpu  5 0 5 90 0 0 0 0 0 0\n", "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1\n", "0x10\n"]),
    st.text(alphabet="0123456789 -+\nabc", max_size=20),
)


def _native(root: SysfsRoot, sensors: list[Sensor]):
    fds = [os.open(root.path(s.rel), os.O_RDONLY) for s in sensors]
    nat = sampler_mod.NativeSampler(fds, [s.kind for s in sensors], [s.scale for s in sensors],
                                    [s.wrap_raw for s in sensors], capacity=8)
    return nat, fds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.lists(texts, min_size=1, max_size=4))
def test_same_parse_on_any_text(tmp_path: Path, seq: list[str]) -> None:
    root = SysfsRoot(tmp_path)
    f = tmp_path / "attr"
    f.write_text(seq[0])
    sensors = [Sensor("g", "attr", S.GAUGE, 1e-3), Sensor("c", "attr", S.COUNTER, 1e-6, 1000),
               Sensor("u", "attr", S.PROCSTAT_UTIL, 1.0)]
    nat, fds = _native(root, sensors)
    py = PyReader(root, sensors)
    try:
        for text in seq:
            f.write_text(text)
            nat.sample_once()
            a = nat.latest()[1]
            b = py.sample()
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(nat.err_count, py.err_count)
            np.testing.assert_array_equal(nat.last_errno, py.last_errno)
    finally:
        for fd in fds:
            os.close(fd)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.integers(0, 999), min_size=2, max_size=30), wrap=st.integers(1000, 5000))
def test_counter_unwrap_matches_true_energy(tmp_path: Path, steps: list[int], wrap: int) -> None:
    root = SysfsRoot(tmp_path)
    f = tmp_path / "energy_uj"
    total = 0
    f.write_text("0\n")
    sensors = [Sensor("e", "energy_uj", S.COUNTER, 1e-6, wrap)]
    nat, fds = _native(root, sensors)
    py = PyReader(root, sensors)
    try:
        nat.sample_once()
        py.sample()
        for d in steps:  # each step < one range, so at most one wrap between samples
            total += d
            f.write_text(f"{total % (wrap + 1)}\n")
            nat.sample_once()
            a = nat.latest()[1][0]
            assert a == py.sample()[0]
            assert a == pytest.approx(total * 1e-6, abs=1e-12)
    finally:
        os.close(fds[0])
