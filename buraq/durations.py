"""Durations as people write them in pipeline files: ``30s``, ``5m``, ``1h``, ``250ms``, ``2.5``."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

# Kept in step with parse_duration; the JSON Schema uses it so editors flag bad values too.
DURATION_REGEX = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"


def parse_duration(value: object) -> float:
    """Return seconds for a number or a string like ``30s``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a duration (it must be a finite number of seconds, 0 or more)")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h, 250ms or seconds)")
