"""Fit-error distribution of the node power model over every SPECpower result, and the EPYC 7502
frequency-scaling check. Run: python benchmarks/calibration_fit.py"""

from __future__ import annotations

import time

from powerrl.model import power
from powerrl.model import profiles as P
from powerrl.model.cli import distribution_table, fit_all, format_distribution


def main() -> None:
    t0 = time.perf_counter()
    results = fit_all(P.read_specpower())
    elapsed = time.perf_counter() - t0
    print(f"SPECpower fit: max relative error over idle + 10 load levels ({len(results)} results, "
          f"{elapsed:.1f} s)")
    print(format_distribution(distribution_table(results)))

    print("\nShipped profiles")
    rows = P.read_specpower()
    for name, prof in sorted(P.shipped_profiles().items()):
        if name == "epyc7502":
            err = prof.fit_max_rel_error
        else:
            err = P.profile_report(prof, P.find_row(rows, prof.result_id)).max_rel_error
        print(f"  {name:<26} {prof.result_id:<46} max {err:6.2%}  r={prof.shape_r:.3f} w={prof.wake_share:.3f}")

    fm = P.derive_frequency_model()
    print(f"\nFrequency model from EPYC 7502: static_share={fm.static_share:.3f} v0(AC)={fm.vf_intercept:.3f} "
          f"v0(RAPL core)={fm.vf_intercept_rapl:.3f} m(memory_copy)={fm.mem_bound_memory:.3f}")
    d = P.read_epyc()
    prof = P.get_profile("epyc7502")
    top = len(prof.pstates_mhz) - 1
    print(f"{'kernel':<12} {'class':<8} {'f_mhz':>6} {'measured':>9} {'model':>7} {'error':>7}")
    for kernel, cls in (("compute", "compute"), ("memory_copy", "memory")):
        m = power.CLASS_MEM_BOUND[cls]
        for f in (1500.0, 2200.0):
            meas = d.ac(kernel, f) / d.ac(kernel, 2500.0)
            mod = float(prof.power_w(1.0, prof.pstates_mhz.index(f), m) / prof.power_w(1.0, top, m))
            print(f"{kernel:<12} {cls:<8} {f:>6.0f} {meas:>9.4f} {mod:>7.4f} {mod / meas - 1:>+7.2%}")


if __name__ == "__main__":
    main()
