from __future__ import annotations

from pathlib import Path

import pytest

from powerrl.hw.fake import make_fake_sysfs
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sysfs import SysfsRoot


@pytest.fixture
def fake(tmp_path: Path) -> SysfsRoot:
    """8 CPUs on 2 sockets, acpi-cpufreq (table frequencies, userspace governor, Intel RAPL)."""
    return make_fake_sysfs(tmp_path / "node", cpus=8, sockets=2, driver="acpi-cpufreq")


@pytest.fixture
def writer(fake: SysfsRoot):
    w = SafeWriter(fake, install_handlers=False)
    yield w
    w.close()
