"""Sense and actuate a (fake) node through the real code path, top to bottom.

Makes a fake sysfs tree, runs its fake kernel (driven by powerrl's simulator) in a thread, samples it
with the native sampler, and sets the CPU frequency policy through the SafeWriter (allowlist,
read-back, restore journal): first the performance governor, then every policy pinned to a middle
frequency under the userspace governor. Leaving the `with` block restores every setting.
Run: .venv/bin/python examples/fake_node_sample_and_actuate.py   (no root, no real sysfs needed)
"""

import tempfile
import time

from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.fake import FakeKernel, make_fake_sysfs
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sensors import Sampler
from powerrl.hw.sysfs import SysfsRoot


def package_power_w(sampler: Sampler) -> float:
    time.sleep(1.5)  # let the fake kernel's power settle and the sampler fill a window
    return sampler.window(1.0)["package-0.energy_j"]["rate"]


with tempfile.TemporaryDirectory() as tmp:
    make_fake_sysfs(tmp, cpus=8, sockets=1, driver="acpi-cpufreq")
    stop_kernel = FakeKernel(tmp, load=0.3).start_thread(0.05)
    root = SysfsRoot(tmp)
    cf = Cpufreq(root)
    policies = cf.policies()
    middle_mhz = policies[0].available_freqs_mhz[len(policies[0].available_freqs_mhz) // 2]
    try:
        with Sampler(root, period_s=0.1) as sampler, SafeWriter(root) as writer:
            for p in policies:
                cf.set_governor(writer, p, "performance")
            fast_w = package_power_w(sampler)
            for p in policies:
                cf.set_governor(writer, p, "userspace")
                cf.set_setspeed_mhz(writer, p, middle_mhz)
            slow_w = package_power_w(sampler)
        print(f"package power, performance governor:   {fast_w:6.1f} W")
        print(f"package power, pinned at {middle_mhz:.0f} MHz:     {slow_w:6.1f} W")
        print(f"governor after the SafeWriter closed:  {cf.governor(policies[0])} (restored)")
    finally:
        stop_kernel.set()
