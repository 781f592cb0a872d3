"""Durations as Prometheus writes them (``90s``, ``5m``, ``1h30m``), read and written.

Flags, the YAML file, upstream's ``granularity`` and the backfill all use them.
"""

from __future__ import annotations

import re

from exporter.core.logs import mask_value

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                   "y": 31536000}


def parse_duration(text: str | int | float) -> float:
    """Parse a Prometheus-style duration (``90s``, ``5m``, ``1h30m``) into seconds.

    Bare numbers are seconds, which is what people type in YAML.
    """
    if isinstance(text, bool):
        raise ValueError("must be a duration such as 90s, 5m or 2h")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = text.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            seconds = float(value)
        else:
            parts = _DURATION_PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value:
                raise ValueError(f"{mask_value(value)} is not a duration such as 90s, 5m or 2h")
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way they are written in flags (``300`` -> ``5m``)."""
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
