"""JSON that is always JSON: non-finite numbers are written and read as null.

Python's `json` writes `NaN` and `Infinity`, which no other JSON reader (nor Starlette's responses)
accepts. Requests are refused with them at the door (`ltxtune.api.budget`); these two functions
keep anything stored readable anyway, including rows written before that check existed.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **options)


def loads(text: str | bytes) -> Any:
    return finite(json.loads(text, parse_constant=lambda _: None))
