"""powerrl: reinforcement-learning control of datacenter power.

Importing :mod:`powerrl` registers the Gymnasium environments (``powerrl/NodeDVFS-v0``,
``powerrl/ClusterBudget-v0``, ``powerrl/Datacenter-v0``) so that ``gymnasium.make`` finds them.
It never imports torch: the training extra is only needed by :mod:`powerrl.agents`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register() -> None:
    try:
        from powerrl.envs import register_envs
    except ImportError:  # the envs package is being built; the rest of powerrl still imports
        return
    register_envs()


_register()
