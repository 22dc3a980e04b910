"""Workspace settings: ``micromarketing.toml`` overlaid by ``MICROMARKETING_*`` environment variables.

Nested settings use a double underscore in the environment, e.g.
``MICROMARKETING_WAREHOUSE__BACKEND=spark`` or ``MICROMARKETING_CLV__MARGIN=0.3``.
"""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, Field, PositiveFloat, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from micromarketing.errors import ConfigError

SETTINGS_FILE = "micromarketing.toml"


class WarehouseSettings(BaseModel):
    """Where the analytical tables live and which engine runs the queries."""

    backend: Literal["duckdb", "spark"] = "duckdb"
    path: str = "warehouse.duckdb"
    spark_master: str = "local[2]"
    spark_warehouse_dir: str = "spark-warehouse"
    threads: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None


class OpsSettings(BaseModel):
    """The transactional store: SQLite file by default, any SQLAlchemy URL otherwise."""

    url: str = "sqlite:///ops.sqlite"


class ClvSettings(BaseModel):
    """Economic assumptions that turn expected purchases into a lifetime value."""

    margin: float = Field(default=0.3, gt=0, le=1)
    annual_discount_rate: float = Field(default=0.1, ge=0, lt=1)
    horizon_months: int = Field(default=12, ge=1, le=120)


class SegmentSettings(BaseModel):
    """Guards against over-segmentation and discriminatory targeting."""

    min_size: int = Field(default=50, ge=1)
    sensitive_fields: list[str] = Field(
        default_factory=lambda: [
            "gender",
            "ethnicity",
            "race",
            "religion",
            "health",
            "sexual_orientation",
            "disability",
            "political_opinion",
        ]
    )


class IngestSettings(BaseModel):
    """Rules applied to incoming rows."""

    currencies: list[str] = Field(
        default_factory=lambda: ["USD", "EUR", "GBP", "CHF", "CAD", "AUD", "JPY", "SEK", "DKK", "NOK", "PLN"]
    )
    quarantine_dir: str = "quarantine"
    # Plausible ranges: a row outside them is quarantined with the field and the bound.
    min_date: date = date(1900, 1, 1)  # no date or timestamp before this floor
    max_future: str = Field(default="1d", pattern=r"^[0-9]+[dhm]$")  # tolerance after ingest time
    max_amount: float = Field(default=1e9, gt=0)  # amounts and prices up to this bound
    # The workspace currency: set by `init --currency`; unset, the stored transactions (or the
    # first transactions ingested) fix it.  Rows in another currency are quarantined unless
    # ``fx`` names a rate into the workspace currency (``fx = {USD = 0.92}``).
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    fx: dict[str, PositiveFloat] = Field(default_factory=dict)

    @property
    def max_future_delta(self) -> timedelta:
        """``max_future`` ("1d", "12h", "30m") as a timedelta."""
        unit = {"d": "days", "h": "hours", "m": "minutes"}[self.max_future[-1]]
        return timedelta(**{unit: int(self.max_future[:-1])})


class Settings(BaseSettings):
    """All settings of one workspace."""

    model_config = SettingsConfigDict(env_prefix="MICROMARKETING_", env_nested_delimiter="__", extra="forbid")

    currency: str = "USD"
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    clv: ClvSettings = Field(default_factory=ClvSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)


def load_settings(root: Path) -> Settings:
    """Read ``root/micromarketing.toml`` (if present), then let the environment override it."""
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        # Init kwargs win over the environment in pydantic-settings; we want the opposite,
        # so read the environment first and merge the file underneath it.
        env_only = Settings().model_dump(exclude_unset=True)
        return Settings(**_deep_merge(data, env_only))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_format_validation(exc)}") from None


def write_default_settings(root: Path) -> Path:
    """Write the default ``micromarketing.toml`` that a user can edit."""
    path = root / SETTINGS_FILE
    path.write_text(
        tomli_w.dumps(Settings.model_construct().model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    return path


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
