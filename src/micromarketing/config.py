"""Workspace settings: ``micromarketing.toml`` overlaid by ``MICROMARKETING_*`` environment variables.

Nested settings use a double underscore in the environment, e.g.
``MICROMARKETING_WAREHOUSE__BACKEND=spark`` or ``MICROMARKETING_CLV__MARGIN=0.3``; a list or a whole
table is written as JSON (``MICROMARKETING_SEGMENTS__SENSITIVE_FIELDS='["gender", "age"]'``).

Every problem is a :class:`~micromarketing.errors.ConfigError` whose lines each name their source:
``/shop/micromarketing.toml: [clv] margn: unknown key (did you mean 'margin'?)`` or
``environment MICROMARKETING_WAREHOUSE__THREADS: ...``.  Unknown keys are errors in the file and
in variables of a known table; other ``MICROMARKETING_*`` variables (``MICROMARKETING_WORKSPACE``,
secrets named by a ``*_env`` setting) are not settings and are left alone.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from micromarketing.errors import ConfigError

SETTINGS_FILE = "micromarketing.toml"
ENV_PREFIX = "MICROMARKETING_"
ENV_NESTED = "__"
OPS_DIALECTS = ("sqlite", "postgresql")
_MEMORY = re.compile(
    r"\s*(\d+(?:\.\d+)?)\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib|kilobytes|megabytes|gigabytes|terabytes)\s*",
    re.IGNORECASE,
)


Env = dict[tuple[str, ...], tuple[str, Any]]  # key path -> (variable name, value)


class _Section(BaseModel):
    """A table of the settings file: unknown keys are errors (a typo is never ignored)."""

    model_config = ConfigDict(extra="forbid")


class WarehouseSettings(_Section):
    """Where the analytical tables live and which engine runs the queries."""

    backend: Literal["duckdb", "spark"] = "duckdb"
    path: str = "warehouse.duckdb"
    spark_master: str = "local[2]"  # passed through as is: local[N], spark://host:port, yarn, k8s://…
    spark_warehouse_dir: str = "spark-warehouse"  # relative to the workspace, or a URI (s3a://, hdfs://)
    database: str = "micromarketing"  # the Spark catalog database holding the tables (created if missing)
    table_format: Literal["parquet", "delta", "iceberg"] = "parquet"  # Spark tables' storage format
    spark_conf: dict[str, str] = Field(default_factory=dict)  # handed to the session builder unchanged
    tables: dict[str, str] = Field(default_factory=dict)  # logical table -> existing catalog table
    threads: int | None = Field(default=None, ge=1, le=1024)
    memory_limit: str | None = None  # a DuckDB size: 4GB, 512MB, 1.5GiB
    lock_timeout: float = Field(default=30.0, ge=0, le=86_400)  # seconds to wait for a busy warehouse

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _MEMORY.fullmatch(value)
        if not match or float(match.group(1)) <= 0:
            raise ValueError("expected a positive size with a unit such as '4GB', '512MB' or '1.5GiB'")
        return value.strip()


class OpsSettings(_Section):
    """The transactional store: SQLite file by default, any SQLAlchemy URL otherwise."""

    url: str = "sqlite:///ops.sqlite"

    @field_validator("url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; expected e.g. 'sqlite:///ops.sqlite' or 'postgresql://user@host/db'"
            ) from None
        backend = url.get_backend_name()
        if backend not in OPS_DIALECTS:
            hint = difflib.get_close_matches(backend, OPS_DIALECTS, n=1, cutoff=0.5)
            also = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ValueError(f"unsupported database '{backend}'{also}; use one of: {', '.join(OPS_DIALECTS)}")
        return value


class ClvSettings(_Section):
    """Economic assumptions that turn expected purchases into a lifetime value."""

    margin: float = Field(default=0.3, gt=0, le=1)
    annual_discount_rate: float = Field(default=0.1, ge=0, lt=1)
    horizon_months: int = Field(default=12, ge=1, le=120)


class SegmentSettings(_Section):
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


class IngestSettings(_Section):
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


# -- delivery channels and the public server URL ---------------------------------------------
class RetryPolicy(_Section):
    """Exponential backoff with full jitter (AWS's "full jitter": a uniform delay between 0 and
    ``min(max_delay, base_delay * multiplier ** (attempt - 1))``), up to ``max_attempts``.

    ``attempt`` counts the attempts already made, so after the first failure ``attempt`` is 1.
    Deterministic for a seeded ``random.Random``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=5, ge=1)
    base_delay_seconds: float = Field(default=60.0, gt=0)
    max_delay_seconds: float = Field(default=3600.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` attempts used up the budget (the message becomes failed)."""
        return attempt >= self.max_attempts

    def delay_seconds(self, attempt: int, rng: random.Random) -> float:
        """The jittered wait after ``attempt`` failed attempts (≥ 1)."""
        cap = min(self.max_delay_seconds, self.base_delay_seconds * self.multiplier ** max(0, attempt - 1))
        return rng.uniform(0.0, cap)

    def next_attempt_at(self, attempt: int, now: datetime, rng: random.Random) -> datetime | None:
        """When to try again after ``attempt`` failed attempts, or None when exhausted."""
        if self.exhausted(attempt):
            return None
        return now + timedelta(seconds=self.delay_seconds(attempt, rng))



def secret_from_env(variable: str | None, *, required: bool = False) -> str | None:
    """The value of environment variable ``variable`` (None when unset or ``variable`` is None);
    raises ConfigError naming the variable when ``required`` and unset."""
    value = os.environ.get(variable) if variable else None
    if required and not value:
        raise ConfigError(f"environment variable {variable} is not set")
    return value or None


class EmailSettings(_Section):
    """``[channels.email]``: the SMTP relay, the sender and optional DKIM signing."""

    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    sender: str = "marketing@localhost"
    sender_name: str | None = None
    starttls: bool = False
    username: str | None = None
    password_env: str = "MICROMARKETING_SMTP_PASSWORD"
    timeout_seconds: float = Field(default=30.0, gt=0)
    dkim_key_path: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    rate_per_second: float | None = Field(default=None, gt=0)
    unsubscribe_mailto: str | None = None  # default: unsubscribe@{sender domain}

    @property
    def sender_domain(self) -> str:
        """The domain of ``sender`` (used for Message-ID and the default DKIM domain)."""
        return self.sender.rpartition("@")[2] or "localhost"

    @property
    def dkim_enabled(self) -> bool:
        """True when a DKIM key is configured (``campaign plan`` warns when it is not)."""
        return bool(self.dkim_key_path)


class WebhookSettings(_Section):
    """``[channels.webhook]``: where JSON deliveries go, signed with the Standard Webhooks secret
    (``whsec_…``) from ``secret_env``."""

    url: str | None = None
    secret_env: str = "MICROMARKETING_WEBHOOK_SECRET"
    timeout_seconds: float = Field(default=10.0, gt=0)


class SmsSettings(_Section):
    """``[channels.sms]``: an SMS provider reached through a signed webhook."""

    url: str | None = None
    secret_env: str = "MICROMARKETING_SMS_WEBHOOK_SECRET"
    sender_id: str | None = None
    default_country_code: str | None = Field(default=None, pattern=r"^[1-9]\d{0,2}$")
    cost_per_segment: float = Field(default=0.05, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


class OutboxSettings(_Section):
    """``[channels.outbox]``: how delivery workers share the outbox.

    A worker claims ``batch_size`` due messages at a time under a lease of ``lease_seconds``
    (renewed while it works); a crashed worker's messages are taken over once it expires.
    ``poll_seconds`` is how often ``deliver --follow`` looks for newly due messages."""

    batch_size: int = Field(default=500, ge=1, le=10_000)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)


class ChannelsSettings(_Section):
    """``[channels]``: one table per channel, the retry policy and the outbox the workers share."""

    email: EmailSettings = Field(default_factory=EmailSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)


class ServerSettings(_Section):
    """``[server]``: the URL the public routes (``/u/{token}``) are reached at, and the env var
    holding the token secret (else a per-workspace secret file is created on first use)."""

    public_url: str = "http://127.0.0.1:8000"
    secret_env: str = "MICROMARKETING_SERVER__SECRET"
    # REST API limits: requests per minute per API key (public routes: per client address; 0 = off)
    # and the largest request body accepted (413 above it)
    rate_limit: int = Field(default=600, ge=0, le=1_000_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=1_073_741_824)
    # DuckDB threads of the server's warehouse connection (0: ``[warehouse] threads``).  The server
    # answers one request at a time, and a point lookup pays for scheduling threads it cannot use:
    # one thread cut the server's CPU per segment-of-one request from 6.5 to 5.4 ms at 1M
    # customers, and a 1M-customer segment preview took the same 3.2 s with 1 or 2 threads.
    warehouse_threads: int = Field(default=1, ge=0, le=1024)


class RenderSettings(_Section):
    """``[render]``: the budget of one message's render (all parts together), so no template
    can run for minutes or allocate gigabytes; see :mod:`micromarketing.personalize.sandbox`."""

    max_operations: int = Field(default=200_000, ge=100)
    max_seconds: float = Field(default=2.0, gt=0)
    max_output_chars: int = Field(default=500_000, ge=1_000)


class MeasureSettings(_Section):
    """``[measure]``: how outcomes are attributed to campaign messages and how lifts are tested.

    ``attribution``: ``last_touch`` credits an order to the latest campaign message before it
    (a control member's "touch" is its assignment); ``any_touch`` credits every campaign whose
    window holds it.  The cost of a delivered message is the one ``campaign plan`` uses
    (``[campaigns] email_cost`` and the other channels' costs)."""

    attribution: Literal["last_touch", "any_touch"] = "last_touch"
    retention_days: int = Field(default=90, ge=1, le=3660)
    pre_period_days: int = Field(default=90, ge=1, le=3660)  # CUPED covariate: spend before the touch
    adjustment: Literal["bh", "holm", "none"] = "bh"
    min_share: float = Field(default=0.05, ge=0, lt=1)  # allocate: least budget share of any arm
    draws: int = Field(default=4000, ge=100, le=1_000_000)  # allocate: posterior draws


_CLOCK = r"([01]\d|2[0-3]):[0-5]\d"


class PolicySettings(_Section):
    """``[policy]``: the contact policy every marketing message passes (plan and send time).

    ``quiet_hours`` is a local-time window ``"HH:MM-HH:MM"`` (may cross midnight; ``""`` = off)
    in the recipient's time zone, else ``timezone``; a message due inside it is deferred to the
    window's end.  ``frequency_cap`` is ``"N/Dd"``: at most N marketing messages per person and
    channel in the last D local calendar days (``""`` = off)."""

    quiet_hours: str = Field(default="21:00-08:00", pattern=rf"^({_CLOCK}-{_CLOCK})?$")
    frequency_cap: str = Field(default="2/7d", pattern=r"^([0-9]{1,4}/[1-9][0-9]{0,3}d)?$")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown IANA time zone; expected e.g. 'Europe/Paris' or 'UTC'") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _not_empty_window(cls, value: str) -> str:
        if value and value[:5] == value[6:]:
            raise ValueError("quiet hours start and end at the same time; use \"\" to switch them off")
        return value


class CampaignSettings(_Section):
    """``[campaigns]``: the optional global holdout, a workspace-wide share of customers that no
    marketing campaign contacts (so the whole programme's lift can be measured), re-drawn every
    ``holdout_period_days`` days (periods counted from 1970-01-01, UTC); the cost of a message
    per channel that ``campaign plan`` adds up; the detectable-lift bound of its warning."""

    global_holdout_share: float = Field(default=0.0, ge=0, lt=1)
    holdout_period_days: int = Field(default=90, ge=1, le=3660)
    # What one message costs per channel (SMS: [channels.sms] cost_per_segment × segments).
    # Defaults: a typical e-mail service provider's price per message and a postcard's print and
    # postage, so that ROI and budgets mean something before they are configured.
    email_cost: float = Field(default=0.002, ge=0)
    webhook_cost: float = Field(default=0.0, ge=0)
    direct_mail_cost: float = Field(default=0.8, ge=0)  # print and postage per piece
    audience_cost: float = Field(default=0.0, ge=0)
    # Segments whose relative minimum detectable lift exceeds this are "too small to measure".
    max_detectable_lift: float = Field(default=0.5, gt=0)

    def message_costs(self, sms_segment_cost: float) -> dict[str, float]:
        """The cost of one message per channel (an SMS counted as one segment)."""
        return {
            "email": self.email_cost,
            "webhook": self.webhook_cost,
            "sms": sms_segment_cost,
            "direct_mail": self.direct_mail_cost,
            "audience": self.audience_cost,
        }


class PrivacySettings(_Section):
    """``[privacy]``: the retention rules ``privacy retain`` applies (unset: keep forever)."""

    events_max_age_months: int | None = Field(default=24, ge=1, le=1200)
    transactions_max_age_months: int | None = Field(default=None, ge=1, le=1200)
    # Customers with no order, event, consent record or signup within this many years are erased
    # (without a suppression entry: they did not ask, a later re-ingest may bring them back).
    inactive_customer_years: int | None = Field(default=None, ge=1, le=100)
    quarantine_max_age_days: int | None = Field(default=90, ge=1, le=36_500)


_TOPIC = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class PreferenceSettings(_Section):
    """``[preferences]``: what the preference centre offers besides channels.

    ``topics`` maps each topic's name (what a campaign spec's ``topic`` names and the consent
    ledger's ``purpose`` records) to the label customers see, in the order shown:
    ``[preferences.topics]`` then ``newsletter = "Our monthly newsletter"``."""

    topics: dict[str, str] = Field(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, label in value.items():
            if not _TOPIC.fullmatch(name):
                raise ValueError(f"topic {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
                                 "starting with a letter")
            if name == "marketing":
                raise ValueError("topic 'marketing' is the channel consent itself; name topics otherwise")
            if not label.strip() or len(label) > 200:
                raise ValueError(f"topic {name!r}: the label must be 1 to 200 characters")
        return value


class Settings(_Section):
    """All settings of one workspace."""

    currency: str = "USD"
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    clv: ClvSettings = Field(default_factory=ClvSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    channels: ChannelsSettings = Field(default_factory=ChannelsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    preferences: PreferenceSettings = Field(default_factory=PreferenceSettings)


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``root/micromarketing.toml`` (if present), then let the environment override it.

    ``environ`` defaults to ``os.environ``.  Raises :class:`ConfigError` whose lines each name the
    file and key, or the variable, that holds a bad value.
    """
    path = root / SETTINGS_FILE
    data = _read_toml(path) if path.exists() else {}
    env = _read_environment(os.environ if environ is None else environ, _secret_variables(data))
    for key_path, (_name, value) in env.items():
        _set_path(data, key_path, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(err, env, path) for err in exc.errors())) from None
    _check_paths(root, settings, env, path)
    return settings


def write_default_settings(root: Path) -> Path:
    """Write the default ``micromarketing.toml`` that a user can edit."""
    path = root / SETTINGS_FILE
    path.write_text(
        tomli_w.dumps(Settings.model_construct().model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    return path


# --------------------------------------------------------------------------------------------
# reading the two sources
# --------------------------------------------------------------------------------------------
def _read_toml(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, column {col}); "
            "save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _read_environment(environ: Mapping[str, str], secrets: set[str]) -> Env:
    """Key path -> (variable, value) of the ``MICROMARKETING_*`` variables that are settings.

    Lists and tables are parsed as JSON, scalars stay text (the model converts them).

    A variable whose first part is no setting is not ours (``MICROMARKETING_WORKSPACE``, a secret
    named by a ``*_env`` setting) unless it is nested and its table is a near miss of a known one
    (``MICROMARKETING_WAREHOUS__THREADS``): then it is a typo and an error.
    """
    out: Env = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in secrets:
            continue
        key_path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_NESTED))
        fields = Settings.model_fields
        if key_path[0] not in fields:
            hint = difflib.get_close_matches(key_path[0], list(fields), n=1, cutoff=0.75)
            if len(key_path) > 1 and hint:
                raise ConfigError(
                    f"environment {name}: unknown table '{key_path[0]}' "
                    f"(did you mean {ENV_PREFIX}{hint[0].upper()}{ENV_NESTED}…?)"
                )
            continue
        out[key_path] = (name, _env_value(name, environ[name], _annotation_at(key_path)))
    return out


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    """A variable's value: JSON for lists and tables, the text itself for a scalar."""
    if not _is_structured(annotation):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"environment {name}: not valid JSON ({exc.msg} at column {exc.colno}); lists and tables "
            """are written as JSON, e.g. '["gender", "age"]' or '{"margin": 0.25}'"""
        ) from None


def _secret_variables(data: dict[str, Any]) -> set[str]:
    """Variable names that ``*_env`` settings (defaults or the file) point at: secrets, not settings."""
    names: set[str] = set()

    def visit(model: type[BaseModel], values: Any) -> None:
        values = values if isinstance(values, dict) else {}
        for key, info in model.model_fields.items():
            sub = _model_of(info.annotation)
            if sub is not None:
                visit(sub, values.get(key))
            elif key.endswith("_env"):
                value = values.get(key, info.default)
                if isinstance(value, str):
                    names.add(value.upper())

    visit(Settings, data)
    return names


# --------------------------------------------------------------------------------------------
# the model's shape
# --------------------------------------------------------------------------------------------
def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _is_structured(annotation: Any) -> bool:
    annotation = _strip_optional(annotation)
    return _model_of(annotation) is not None or typing.get_origin(annotation) in (list, dict, tuple, set)


def _annotation_at(key_path: tuple[str, ...]) -> Any:
    """The annotation of the field at ``key_path`` (None when the path leaves the model)."""
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for key in key_path:
        if model is None or key not in model.model_fields:
            return None
        annotation = model.model_fields[key].annotation
        model = _model_of(annotation)
    return annotation


def _model_at(key_path: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Settings
    for key in key_path:
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return None
        model = _model_of(model.model_fields[key].annotation)
    return model


def _leaf_paths(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out += _leaf_paths(value, (*prefix, str(key)))
        else:
            out.append((*prefix, str(key)))
    return out


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in key_path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    old = node.get(key_path[-1])
    both_tables = isinstance(old, dict) and isinstance(value, dict)
    node[key_path[-1]] = _deep_merge(old, value) if both_tables else value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------
def _where(loc: tuple[str | int, ...]) -> str:
    """``("clv", "margin")`` -> ``[clv] margin``; list positions are shown as ``[0]``."""
    names = [str(k) for k in loc if isinstance(k, str)]
    last = names[-1] if names else ""
    index = "".join(f"[{k}]" for k in loc[loc.index(last) + 1 :]) if last in loc else ""
    table = names[:-1]
    return (f"[{'.'.join(table)}] " if table else "") + last + index


def _label(loc: tuple[str | int, ...], env: Env, path: Path) -> tuple[str, bool]:
    """Where the value at ``loc`` came from, and whether that is one variable naming ``loc`` itself.

    ``environment MICROMARKETING_CLV__MARGIN`` for a variable holding the value; ``environment
    MICROMARKETING_CLV: margn`` for a key inside a variable holding a JSON table; else the file.
    """
    keys = tuple(str(k) for k in loc)
    for n in range(len(keys), 0, -1):
        if keys[:n] in env:
            name = env[keys[:n]][0]
            rest = loc[n:]
            return (f"environment {name}" + (f": {_where(rest)}" if rest else ""), not rest)
    for key_path, (name, _value) in env.items():
        if key_path[: len(keys)] == keys:
            return f"environment {name}", True
    return f"{path}: {_where(loc)}", False


def _describe(err: Any, env: Env, path: Path) -> str:
    """One line for one validation error: its source, then what is wrong with the value."""
    loc = tuple(err["loc"])
    label, is_variable = _label(loc, env, path)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        choices = list(model.model_fields) if model is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), choices, n=1, cutoff=0.6)
        if hint and is_variable:
            name = ENV_PREFIX + ENV_NESTED.join(str(k).upper() for k in (*loc[:-1], hint[0]))
            also = f" (did you mean {name}?)"
        elif hint:
            also = f" (did you mean '{hint[0]}'?)"
        else:
            also = f" (known keys: {', '.join(choices)})" if choices else ""
        return f"{label}: unknown key{also}"
    message = str(err["msg"])
    message = message.removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_short(got)})"
    return f"{label}: {message}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_paths(root: Path, settings: Settings, env: Env, path: Path) -> None:
    """The warehouse file and a SQLite operations store must be in directories that exist.

    A clear error rather than creating the directory: a typo in a path should not silently
    scatter a new, empty warehouse somewhere else.
    """
    problems: list[str] = []
    if settings.warehouse.backend == "duckdb":
        parent = (root / settings.warehouse.path).parent
        if not parent.is_dir():
            label = _label(("warehouse", "path"), env, path)[0]
            problems.append(f"{label}: directory {parent} does not exist (create it or fix the path)")
    url = make_url(settings.ops.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        parent = (root / url.database).parent
        if not parent.is_dir():
            label = _label(("ops", "url"), env, path)[0]
            problems.append(f"{label}: directory {parent} does not exist (create it or fix the URL)")
    if problems:
        raise ConfigError("\n".join(problems))
