"""Per-sample cost, CPU overhead and write + read-back latency of the native sampler/actuator.

On a fake 64-CPU, 2-socket tree (``powerrl hw fake-sysfs``): every sensor of the node
(64 ``scaling_cur_freq``, 8 RAPL ``energy_uj``, thermal zones, hwmon, ``/proc/stat``) is read

* by the Cython sampler (``NativeSampler.sample_once``: pre-opened descriptors, ``pread``, no GIL),
* by the pure-Python reader (open/read/close per file, what a Python agent would write), and
* by the pure-Python reader on pre-opened descriptors (``os.pread``), the fairest Python baseline,

then the sampler thread runs at 100 ms for ``--duration`` s and its CPU time is read back, and the
actuator writes 64 ``scaling_setspeed`` values in one batch with read-back.

Goals (issue 8): sampler >= 5x cheaper per sample than the pure-Python reader; CPU overhead at 100 ms
<= 0.1 % of one core. Run: ``python benchmarks/sampler_overhead.py [--duration 10] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from powerrl.hw.actuator import Actuator, cpufreq_targets
from powerrl.hw.cpufreq import Cpufreq
from powerrl.hw.fake import make_fake_sysfs
from powerrl.hw.safety import SafeWriter
from powerrl.hw.sensors import PyReader, Sampler, discover_sensors


def per_call_s(fn, min_time_s: float = 1.0, repeats: int = 5) -> float:
    """Best-of-``repeats`` mean time of one ``fn()`` call, each repeat lasting about ``min_time_s``."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time_s / repeats:
            break
        n *= 2
    best = dt / n
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--sockets", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sampling at --period for the CPU share")
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="powerrl-bench-") as tmp:
        root = make_fake_sysfs(Path(tmp) / "node", cpus=args.cpus, sockets=args.sockets)
        sensors = discover_sensors(root)
        py = PyReader(root, sensors)
        pyp = PyReader(root, sensors, preopened=True)
        s = Sampler(root, sensors, period_s=args.period, capacity=max(1024, int(args.duration / args.period) + 16))
        native_s = per_call_s(s.native.sample_once)
        python_s = per_call_s(py.sample)
        python_pre_s = per_call_s(pyp.sample)
        np.testing.assert_allclose(s.sample_once(), py.sample(), equal_nan=True)  # same numbers

        s.close()
        pyp.close()
        # The thread at the real period: its CPU time includes the cost of waking up every period and
        # of cold caches after each sleep, which the hot loop above does not see. An empty sampler
        # (no sensors) run alongside separates the wake-up cost of this machine from the reads.
        s = Sampler(root, sensors, period_s=args.period, capacity=max(1024, int(args.duration / args.period) + 16))
        empty = Sampler(root, [], period_s=args.period, capacity=max(1024, int(args.duration / args.period) + 16))
        s.start()
        empty.start()
        time.sleep(args.duration)
        s.stop()
        empty.stop()
        st = s.stats()
        st_empty = empty.stats()
        s.close()
        empty.close()

        with SafeWriter(root, install_handlers=False) as w:
            cf = Cpufreq(root)
            pols = cf.policies()
            for p in pols:
                cf.set_governor(w, p, "userspace")
            act = Actuator(root, w, cpufreq_targets(pols, "scaling_setspeed"))
            values = [np.full(len(pols), f) for f in (1400.0, 1600.0)]
            k = [0]

            def batch() -> None:
                act.apply(values[k[0] & 1])
                k[0] += 1

            batch_s = per_call_s(batch, 0.5)
            single_s = per_call_s(lambda: w.write(pols[0].attr("scaling_setspeed"), 1400000 + 200000 * (k[0] & 1))
                                  or k.__setitem__(0, k[0] + 1), 0.5)
            act.close()

    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "sensors": len(sensors),
        "native_sample_us": native_s * 1e6,
        "python_sample_us": python_s * 1e6,
        "python_preopened_sample_us": python_pre_s * 1e6,
        "speedup_vs_python": python_s / native_s,
        "speedup_vs_python_preopened": python_pre_s / native_s,
        "thread_samples": st.samples,
        "thread_missed": st.missed,
        "thread_cpu_share_pct": 100.0 * st.cpu_share,
        "thread_wall_s": st.wall_s,
        "estimated_cpu_share_pct": 100.0 * native_s / args.period,
        "thread_us_per_sample": 1e6 * st.cpu_time_s / max(st.samples, 1),
        "empty_thread_cpu_share_pct": 100.0 * st_empty.cpu_share,
        "empty_thread_us_per_wake": 1e6 * st_empty.cpu_time_s / max(st_empty.samples, 1),
        "actuate_batch_us": batch_s * 1e6,
        "actuate_targets": len(pols),
        "actuate_per_target_us": batch_s * 1e6 / len(pols),
        "python_write_readback_us": single_s * 1e6,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['sensors']} sensors on a fake {args.cpus}-CPU, {args.sockets}-socket tree")
    print(f"per sample: native {out['native_sample_us']:.1f} us | python open/read {out['python_sample_us']:.1f} us "
          f"({out['speedup_vs_python']:.1f}x) | python pread {out['python_preopened_sample_us']:.1f} us "
          f"({out['speedup_vs_python_preopened']:.1f}x)")
    print(f"sampler thread at {args.period * 1e3:.0f} ms for {st.wall_s:.1f} s: {st.samples} samples, "
          f"{st.missed} missed, "
          f"CPU {out['thread_cpu_share_pct']:.4f} % of a core ({out['thread_us_per_sample']:.0f} us per sample with "
          f"cold caches; hot-loop estimate {out['estimated_cpu_share_pct']:.4f} %)")
    print(f"empty sampler (wake-ups only) on this machine: {out['empty_thread_cpu_share_pct']:.4f} % of a core "
          f"({out['empty_thread_us_per_wake']:.0f} us per wake-up)")
    print(f"actuator: {len(pols)} setspeed writes + read-back in {out['actuate_batch_us']:.1f} us "
          f"({out['actuate_per_target_us']:.2f} us/target); Python SafeWriter write + read-back "
          f"{out['python_write_readback_us']:.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
