"""One router per REST resource, all under ``/api/v1``.

:data:`ROUTERS` names their modules, in the order the OpenAPI document lists them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from typing import Any

ROUTERS = ("health", "customers", "segments", "templates", "clv", "profiles", "campaigns", "measurement",
           "privacy", "keys")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: numpy scalars unwrapped, NaN/inf as None, dataclasses as dicts,
    naive timestamps marked UTC."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if hasattr(value, "model_dump"):
        return plain(value.model_dump())
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # the stores keep UTC; SQLite hands it back naive
    if isinstance(value, datetime | date | str | bool | int) or value is None:
        return value
    if hasattr(value, "item") and not isinstance(value, float):  # numpy scalar
        value = value.item()
        if not isinstance(value, float):
            return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
