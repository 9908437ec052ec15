"""Field types that both the model spec and the source configs are built from.

It imports nothing from the package, so `ml_platform.spec` and `ml_platform.core.sources` can both use it
without importing each other.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)\s*$")
_DURATION_UNITS = {
    "ms": "milliseconds",
    "s": "seconds",
    "m": "minutes",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
}


def parse_duration(value: Any) -> timedelta:
    """'26h', '2d', '90m', '1w', '10s', '500ms' (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("a duration such as '10s', '30m', '26h', '2d' or '1w'")
    amount, unit = match.groups()
    return timedelta(**{_DURATION_UNITS[unit]: float(amount)})


# In the spec's JSON Schema (`ml-platform schema`) a duration is what a spec author writes, not ISO 8601.
_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _DURATION.pattern, "examples": ["10s", "30m", "26h", "2d", "1w"]},
        {"type": "number", "description": "seconds"},
    ]
}

Duration = Annotated[timedelta, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]


class StrictModel(BaseModel):
    """A spec section: unknown fields are errors (a typo must not pass silently) and a parsed spec never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
