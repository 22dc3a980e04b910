"""The base of the result models the core returns (kept in each package's ``results.py``).

One convention for what leaves the core: ``--json``, the REST API and the web pages serialise the
same Pydantic objects the same way, and a missing number is ``None`` (JSON ``null``), never NaN.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, field_validator


class Result(BaseModel):
    """A result model: a non-finite float given to any field becomes ``None``."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_nan(cls, value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
