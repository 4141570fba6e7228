"""Exceptions shared across powerrl.

Every user-facing error derives from :class:`PowerrlError` so that the CLI can print it as one
clear line (what was wrong, the bad value, how to fix it) instead of a traceback.
"""

from __future__ import annotations

from typing import Any


class PowerrlError(Exception):
    """Base class of errors whose message is meant for the user, not a traceback."""


class ConfigError(PowerrlError, ValueError):
    """A configuration value is missing, unknown or out of range.

    Args:
        key_path: dotted path of the offending key, e.g. ``env.nodes[3].idle_w``.
        value: the value found (``repr`` is shown).
        expected: what would have been accepted (a range, a list of choices, a type).
        source: the file the value came from, when known.
    """

    def __init__(self, key_path: str, value: Any, expected: str, source: str | None = None) -> None:
        self.key_path = key_path
        self.value = value
        self.expected = expected
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key_path or '<root>'} = {value!r} is invalid: expected {expected}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its arguments, so it crosses process boundaries (compare's worker processes).
        return (type(self), (self.key_path, self.value, self.expected, self.source))


class DataFileError(PowerrlError, ValueError):
    """A data file (trace, carbon, weather, SPECpower) cannot be parsed.

    The message names the file, the 1-based row (header = row 1) and the column.
    """

    def __init__(self, path: str, problem: str, row: int | None = None, column: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.row = row
        self.column = column
        loc = path
        if row is not None:
            loc += f", row {row}"
        if column is not None:
            loc += f", column {column!r}"
        super().__init__(f"{loc}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem, self.row, self.column))
