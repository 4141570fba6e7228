"""Rule-based controllers (Linux governors, kernel thermal governors, power capping, carbon deferral) and the oracle.

Importing the package registers every baseline with :mod:`powerrl.control`, so
``make_controller("schedutil", ...)`` and ``powerrl compare --controllers schedutil`` find them.
"""

from powerrl.baselines import allocation, carbon, governors, oracle, thermal_governors  # noqa: F401 - register
