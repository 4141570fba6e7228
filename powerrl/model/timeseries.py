"""Shared loading helpers for the real-data time series (trace, carbon, weather).

Every reader here turns a problem with a data file into one :class:`~powerrl.errors.DataFileError`
that names the file, the 1-based row (CSV header = row 1) and the column, so that the CLI prints a
single line instead of a traceback.

Paths: ``shipped:<relative path>`` names a file shipped in ``powerrl/data/`` (for example
``shipped:carbon/US-CAL-CISO_2023_hourly.csv``); any other path is taken as given (relative paths
are relative to the current working directory).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import zoneinfo
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from powerrl.errors import ConfigError, DataFileError

SHIPPED_PREFIX = "shipped:"


def resolve_path(path: str) -> Path:
    """Filesystem path of ``path``; ``shipped:<rel>`` resolves inside the installed ``powerrl/data``.

    Args:
        path: a file path, or ``shipped:`` followed by a path relative to ``powerrl/data``.

    Returns:
        The resolved path (existence is checked by the readers).
    """
    if path.startswith(SHIPPED_PREFIX):
        rel = path[len(SHIPPED_PREFIX):].lstrip("/")
        return Path(str(resources.files("powerrl").joinpath("data", *rel.split("/"))))
    return Path(path)


def read_csv(path: str, *, encoding: str = "utf-8-sig") -> tuple[list[str], list[list[str]]]:
    """Read a CSV file into its header and data rows (all strings).

    Args:
        path: file path or ``shipped:`` path.
        encoding: text encoding; the default accepts UTF-8 with or without a byte-order mark (the
            Electricity Maps header contains U+2082, so a locale default such as latin-1 would garble it).

    Returns:
        ``(header, rows)``; data row ``i`` (0-based) is file row ``i + 2``.

    Raises:
        DataFileError: missing file, undecodable text, empty file or a row with too few fields.
    """
    p = resolve_path(path)
    if not p.is_file():
        raise DataFileError(path, "file not found (check the path; shipped files use 'shipped:<name>')")
    try:
        with p.open("r", encoding=encoding, newline="") as fh:
            table = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not valid {encoding} text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataFileError(path, f"malformed CSV: {exc}") from None
    if not table:
        raise DataFileError(path, "empty file: expected a header row and data rows", row=1)
    header = [h.strip() for h in table[0]]
    rows = [r for r in table[1:]]
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise DataFileError(path, "no data rows after the header", row=2)
    return header, rows


def column_index(path: str, header: Sequence[str], column: str) -> int:
    """Index of ``column`` in ``header``.

    Raises:
        DataFileError: the column is missing; the message lists the columns that exist.
    """
    try:
        return list(header).index(column)
    except ValueError:
        raise DataFileError(path, "column not found; the header has: " + ", ".join(repr(h) for h in header),
                            row=1, column=column) from None


def numeric_column(path: str, header: Sequence[str], rows: Sequence[Sequence[str]], column: str, *,
                   min_value: float | None = None, max_value: float | None = None) -> np.ndarray:
    """Parse one CSV column as finite floats.

    Args:
        path: file name used in error messages.
        header: column names.
        rows: data rows (strings); data row ``i`` is file row ``i + 2``.
        column: the column to parse.
        min_value: smallest allowed value (inclusive), or ``None``.
        max_value: largest allowed value (inclusive), or ``None``.

    Returns:
        ``float64`` array, one value per row.

    Raises:
        DataFileError: missing column, or an empty, non-numeric, NaN/inf or out-of-range value (with
            its 1-based row and the column).
    """
    idx = column_index(path, header, column)
    out = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        text = row[idx].strip() if idx < len(row) else ""
        try:
            value = float(text)
        except ValueError:
            shown = "an empty field" if not text else repr(text)
            raise DataFileError(path, f"{shown} is not a number", row=i + 2, column=column) from None
        if not math.isfinite(value):
            raise DataFileError(path, f"{text!r} is not a finite number", row=i + 2, column=column)
        if min_value is not None and value < min_value:
            raise DataFileError(path, f"{value!r} is below the allowed minimum {min_value!r}", row=i + 2,
                                column=column)
        if max_value is not None and value > max_value:
            raise DataFileError(path, f"{value!r} is above the allowed maximum {max_value!r}", row=i + 2,
                                column=column)
        out[i] = value
    return out


def zone(name: str, key_path: str = "timezone", source: str | None = None) -> dt.tzinfo:
    """The IANA time zone ``name`` (``"UTC"`` included).

    Raises:
        ConfigError: unknown zone name.
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(key_path, name, "an IANA time zone name such as 'UTC' or 'America/Los_Angeles'",
                          source) from None


def local_midnight_utc_s(date_text: str, tz_name: str, key_path: str = "start_date",
                         source: str | None = None) -> float:
    """UTC epoch seconds of local midnight of ``date_text`` (ISO ``YYYY-MM-DD``) in zone ``tz_name``.

    Raises:
        ConfigError: not an ISO date, or an unknown zone.
    """
    try:
        day = dt.date.fromisoformat(date_text)
    except (TypeError, ValueError):
        raise ConfigError(key_path, date_text, "an ISO date such as '2023-05-03'", source) from None
    tz = zone(tz_name, source=source)
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def iso_utc(t_utc_s: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` text of UTC epoch seconds (for messages and docs)."""
    return dt.datetime.fromtimestamp(float(t_utc_s), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
