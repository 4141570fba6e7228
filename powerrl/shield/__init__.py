"""Hard-coded safety shields: trip points, emergency caps, budget projection, rate limits, watchdog.

Whatever a controller proposes, the shield filters it into an action that keeps every zone below its
hot trip point and every power group within its budget (``docs/shield.md``). The same objects guard
the simulator envs, the node agent and the cluster coordinator.
"""
