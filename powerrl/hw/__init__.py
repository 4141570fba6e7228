"""Real-node backends: the only package touching sysfs, procfs and NVML.

Start with :class:`~powerrl.hw.sysfs.SysfsRoot` (every path under a configurable root), read with
:mod:`~powerrl.hw.cpufreq`, :mod:`~powerrl.hw.rapl`, :mod:`~powerrl.hw.thermal`,
:mod:`~powerrl.hw.procstat`, :mod:`~powerrl.hw.perf` and :mod:`~powerrl.hw.nvml`, sample with
:class:`~powerrl.hw.sensors.Sampler`, write only through :class:`~powerrl.hw.safety.SafeWriter`
(and :class:`~powerrl.hw.actuator.Actuator` for batches). :mod:`~powerrl.hw.fake` builds a fake
tree and kernel for tests and demos. See docs/hardware.md.
"""
