from __future__ import annotations

import errno

import pytest

from powerrl.hw.errors import (
    HwBusyError,
    HwError,
    HwInvalidValueError,
    HwNoDataError,
    HwPermissionError,
    HwUnsupportedError,
    from_oserror,
)
from powerrl.hw.fake import make_fake_sysfs
from powerrl.hw.sysfs import SysfsRoot


def test_paths_stay_under_root(fake: SysfsRoot) -> None:
    assert fake.path("sys/class").is_relative_to(fake.root)
    with pytest.raises(HwError, match="relative"):
        fake.path("/etc/passwd")
    with pytest.raises(HwError, match="relative"):
        fake.path("sys/../../etc/passwd")


def test_missing_root_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(HwError, match="not a directory"):
        SysfsRoot(tmp_path / "nope")


def test_reads_keep_kernel_quirks(fake: SysfsRoot) -> None:
    p = "sys/devices/system/cpu/cpufreq/policy0"
    assert fake.read_text(f"{p}/scaling_available_governors").endswith("schedutil ")
    assert fake.read_words(f"{p}/scaling_available_governors")[-1] == "schedutil"
    assert fake.read_str(f"{p}/scaling_setspeed") == "<unsupported>"
    assert fake.try_int(f"{p}/scaling_setspeed") is None
    with pytest.raises(HwError, match="not an integer"):
        fake.read_int(f"{p}/scaling_setspeed")
    with pytest.raises(HwUnsupportedError, match="ENOENT"):
        fake.read_str(f"{p}/no_such_attribute")


def test_simulated_non_root_sees_kernel_permissions(fake: SysfsRoot) -> None:
    user = SysfsRoot(fake.root, uid=1000)
    energy = "sys/class/powercap/intel-rapl:0/energy_uj"
    assert oct(fake.path(energy).stat().st_mode & 0o777) == "0o400"
    ok, why = user.access(energy)
    assert not ok and "0400" in why
    with pytest.raises(HwPermissionError, match="EACCES"):
        user.read_int(energy)
    with pytest.raises(HwPermissionError):
        user.write_text("sys/class/thermal/cooling_device0/cur_state", "1")
    assert user.read_int("sys/class/thermal/thermal_zone0/temp") > 0  # 0444 stays readable
    assert fake.read_int(energy) == 0  # root reads it


def test_store_hook_rejects_like_the_driver(fake: SysfsRoot) -> None:
    p = "sys/devices/system/cpu/cpufreq/policy0"
    with pytest.raises(HwInvalidValueError, match="EINVAL"):
        fake.write_text(f"{p}/scaling_setspeed", "1800000")  # governor is not userspace
    with pytest.raises(HwInvalidValueError):
        fake.write_text(f"{p}/scaling_governor", "turbo")
    with pytest.raises(HwInvalidValueError):
        fake.write_text("sys/class/thermal/cooling_device0/cur_state", "4")  # max_state 3
    with pytest.raises(HwPermissionError, match="read-only"):
        fake.write_text(f"{p}/cpuinfo_max_freq", "1")  # kernfs: no store(), EACCES even for root
    fake.write_text(f"{p}/scaling_governor", "userspace")
    assert fake.read_int(f"{p}/scaling_setspeed") == fake.read_int(f"{p}/scaling_cur_freq")


@pytest.mark.parametrize(("code", "cls"), [(errno.EINVAL, HwInvalidValueError), (errno.EACCES, HwPermissionError),
                                           (errno.ENODATA, HwNoDataError), (errno.ENOSYS, HwUnsupportedError),
                                           (errno.EBUSY, HwBusyError), (errno.EIO, HwError)])
def test_errno_maps_to_exception(code: int, cls: type) -> None:
    exc = from_oserror(OSError(code, "x"), "/sys/x", "write", "5")
    assert type(exc) is cls and exc.errno == code and "/sys/x" in str(exc) and "'5'" in str(exc)


def test_fake_tree_refuses_non_empty_dir(tmp_path) -> None:
    (tmp_path / "x").write_text("keep")
    with pytest.raises(HwError, match="not empty"):
        make_fake_sysfs(tmp_path, cpus=2, sockets=1)
    with pytest.raises(HwError, match="divisible"):
        make_fake_sysfs(tmp_path / "y", cpus=3, sockets=2)
