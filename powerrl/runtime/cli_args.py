"""argparse value types shared by ``powerrl agent`` and ``powerrl coordinator`` (clean errors, no traceback)."""

from __future__ import annotations

import argparse
import math


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: none, or any free port, as the option says)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is outside 0-65535")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (seconds, percents)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value
