"""Node power caps handed down by a coordinator (or an operator), and what happens when it goes quiet.

A cap arrives with the time it was issued. It holds for ``lease_s``; if no newer cap arrives by
then (coordinator unreachable), the agent keeps it and lowers it linearly to the node's guaranteed
base over ``decay_s``, so a cluster budget that counted this node at its base stays safe without the
coordinator. A cap at or below the base (an emergency cut) is kept as it is: raising it could breach
the budget the cut protects.

The file protocol (``<state_dir>/cap.json``, written atomically by ``powerrl agent cap`` and read by
the agent on ``SIGUSR1`` and once per period) is ``{"cap_w": W or null, "issued_s": epoch seconds,
"lease_s": s or null}``; ``cap_w: null`` clears the cap, ``lease_s: null`` makes it hold until replaced
(an operator's cap), and a missing ``lease_s`` means the agent's ``agent.caps.lease_s``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerrl.errors import ConfigError
from powerrl.hw.safety import write_atomically

CAP_FILE = "cap.json"


@dataclass
class CapLease:
    """The coordinator's node cap (W) as a function of time.

    Args:
        base_w: the node's guaranteed base (W): where a stale cap decays to.
        lease_s: how long a cap holds after it was issued (s).
        decay_s: how long the fall to the base takes after the lease ran out (s; 0 = at once).
    """

    base_w: float
    lease_s: float
    decay_s: float
    cap_w: float = math.inf
    issued_s: float = -math.inf
    cap_lease_s: float = math.inf

    def set(self, cap_w: float | None, issued_s: float, lease_s: float | None = None) -> None:
        """A new cap (None clears it) issued at ``issued_s`` (s, the clock :meth:`value` is asked on).

        ``lease_s`` overrides the default lease for this cap (``inf``: it holds until replaced).
        """
        self.cap_w = math.inf if cap_w is None else float(cap_w)
        self.issued_s = float(issued_s)
        self.cap_lease_s = self.lease_s if lease_s is None else float(lease_s)

    def take(self, grant: Any, received_s: float) -> None:
        """A coordinator's grant (:class:`powerrl.runtime.protocol.CapGrant`) received at ``received_s``.

        The grant carries its own base, lease and decay: the coordinator counts a silent member at
        that base once the lease and decay it sent have run out, so the holder must follow them.
        """
        self.base_w, self.lease_s, self.decay_s = float(grant.base_w), float(grant.lease_s), float(grant.decay_s)
        self.set(grant.cap_w, received_s, grant.lease_s)

    def value(self, now_s: float) -> float:
        """The cap in force at ``now_s`` (W; inf = none)."""
        cap = self.cap_w
        if not math.isfinite(cap) or cap <= self.base_w:
            return cap
        late = now_s - self.issued_s - self.cap_lease_s
        if late <= 0:
            return cap
        if self.decay_s <= 0 or late >= self.decay_s:
            return self.base_w
        return cap - (cap - self.base_w) * late / self.decay_s

    def stale(self, now_s: float) -> bool:
        """Whether the lease ran out (the cap is decaying or at the base)."""
        return math.isfinite(self.cap_w) and now_s - self.issued_s > self.cap_lease_s


def write_cap_file(state_dir: Path, cap_w: float | None, issued_s: float | None = None,
                   lease_s: float | None = None) -> Path:
    """Write ``cap.json`` atomically (temp file, fsync, rename); ``lease_s=None``: the cap holds until replaced."""
    if cap_w is not None and not (math.isfinite(cap_w) and cap_w > 0):
        raise ConfigError("cap_w", cap_w, "a positive number of watts (or clear the cap)")
    if lease_s is not None and not (math.isfinite(lease_s) and lease_s > 0):
        raise ConfigError("lease_s", lease_s, "a positive number of seconds (or none: no expiry)")
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / CAP_FILE
    payload = {"cap_w": cap_w, "issued_s": time.time() if issued_s is None else issued_s, "lease_s": lease_s}
    write_atomically(path, json.dumps(payload))
    return path


def read_cap_file(path: Path) -> tuple[float | None, float, float | None] | None:
    """``(cap_w, issued_s, lease_s)`` from ``cap.json``; None when absent.

    ``lease_s`` is None for the agent's default and inf for no expiry. Raises ConfigError on a bad file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(str(path), None, f"a readable UTF-8 JSON cap file ({exc})") from None
    try:
        data = json.loads(text)
        cap = data["cap_w"]
        issued = float(data["issued_s"])
        if isinstance(cap, bool) or isinstance(data["issued_s"], bool):
            raise ValueError("true/false is not a number")
        if cap is not None:
            cap = float(cap)
            if not (math.isfinite(cap) and cap > 0):
                raise ValueError(f"cap_w {cap}")
        lease: float | None = None
        if "lease_s" in data:
            lease = math.inf if data["lease_s"] is None else float(data["lease_s"])
            if not lease > 0:
                raise ValueError(f"lease_s {lease}")
        if not math.isfinite(issued):
            raise ValueError(f"issued_s {issued}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(str(path), text[:80], f'{{"cap_w": watts or null, "issued_s": epoch seconds}} ({exc})') \
            from None
    return cap, issued, lease
