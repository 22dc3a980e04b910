"""The campaign file: a YAML document validated into :class:`CampaignSpec`.

Every mistake is one :class:`~micromarketing.errors.InvalidInputError` whose lines each name the
file, the line in it and the key path (``spring.yaml line 12: segments[0].variants[1].share:
...``).  Checking happens in two steps: :func:`load_spec` checks the file's own shape (types,
unknown keys, shares summing to 1, dates), :func:`check_references` checks it against the
workspace (segments, templates and the parts their channel needs, offers).  The budget is checked
by the plan (:func:`check_budget`), which knows the cost.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select

from micromarketing.errors import InvalidInputError
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Segment

Channel = Literal["email", "sms", "webhook", "direct_mail", "audience"]
CHANNELS: tuple[str, ...] = ("email", "sms", "webhook", "direct_mail", "audience")
#: The template parts each channel needs: every tuple lists alternatives, all tuples must be met.
REQUIRED_PARTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "email": (("subject",), ("html", "text")),
    "sms": (("sms",),),
    "webhook": (("text", "sms", "html"),),
    "direct_mail": (),
    "audience": (),
}
#: Channels whose variants may leave out the template (the recipient list is the message).
TEMPLATE_OPTIONAL = ("direct_mail", "audience")
SHARE_TOLERANCE = 1e-6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


EXAMPLE_CAMPAIGN = """\
# A campaign: which segments, which variants (template, offer, channel, share), how many members
# are held out as control, the budget and how long outcomes are attributed to a message.
name: spring_winback
objective: conversion            # conversion | revenue | retention
attribution_days: 7
control_share: 0.10              # per segment, held out and never contacted
budget: 5000
# send_window: {start: 2026-07-01T09:00:00Z, end: 2026-07-03T18:00:00Z}
segments:
  - segment: lapsed_vip
    variants:
      - {name: a, template: seasonal_picks, offer: spring10, channel: email, share: 0.5}
      - {name: b, template: seasonal_picks, channel: email, share: 0.5}
  - segment: eco_runners
    variants:
      - {name: a, template: seasonal_picks, offer: spring10, channel: email, share: 0.5}
      - {name: b, template: seasonal_picks, channel: email, share: 0.5}
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendWindow(_Strict):
    """When messages may go out (UTC instants; a time zone is required)."""

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone, e.g. 2026-07-01T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self


class VariantSpec(_Strict):
    """One arm of a segment: a template and an optional offer on one channel, with its share."""

    name: str = Field(min_length=1, max_length=64)
    channel: Channel = "email"
    template: str | None = None
    offer: str | None = None
    share: float = Field(gt=0, le=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or value in ("control", "global_holdout"):
            raise ValueError("use letters, digits, '_', '-' or '.' (not 'control' or 'global_holdout')")
        return value

    @model_validator(mode="after")
    def _has_template(self) -> VariantSpec:
        if self.template is None and self.channel not in TEMPLATE_OPTIONAL:
            raise ValueError(f"variants on the {self.channel} channel need a template")
        return self


class SegmentSpec(_Strict):
    """A segment of the campaign and its variants (shares sum to 1)."""

    segment: str = Field(min_length=1)
    control_share: float | None = Field(default=None, ge=0, lt=1)
    variants: list[VariantSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares(self) -> SegmentSpec:
        total = math.fsum(v.share for v in self.variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"variant shares sum to {total:g}, not 1")
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant name(s) used twice: {', '.join(dup)}")
        return self


class CampaignSpec(_Strict):
    """A campaign file's content (the shape of issue #13, plus ``priority``, ``transactional``)."""

    name: str
    description: str = ""
    objective: Literal["conversion", "revenue", "retention"] = "conversion"
    attribution_days: int = Field(default=7, ge=1, le=365)
    control_share: float = Field(default=0.1, ge=0, lt=1)
    budget: float | None = Field(default=None, ge=0)
    priority: int = Field(default=0, ge=-1000, le=1000)
    transactional: bool = False
    send_window: SendWindow | None = None
    # A topic of [preferences] topics: people who left it in the preference centre are not
    # contacted (the channel's marketing consent is still needed).  None: marketing in general.
    topic: str | None = Field(default=None, min_length=1, max_length=64)
    segments: list[SegmentSpec] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _distinct_segments(self) -> CampaignSpec:
        names = [s.segment for s in self.segments]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"segment(s) listed twice: {', '.join(dup)} (give one entry several variants)")
        return self

    def control_share_of(self, segment: SegmentSpec) -> float:
        """The segment's control share (its own, else the campaign's)."""
        return self.control_share if segment.control_share is None else segment.control_share

    @property
    def sha256(self) -> str:
        """Fingerprint of the validated content (formatting and comments do not change it)."""
        content = self.model_dump(mode="json", exclude={"topic"} if self.topic is None else set())
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))  # pre-topic specs: same
        return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate the campaign file at ``path``; raises one error listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path}: is a directory, expected a campaign YAML file") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_spec(text, str(path))


def parse_spec(text: str, source: str = "<campaign>") -> CampaignSpec:
    """Validate campaign YAML ``text``; ``source`` names it in errors (usually the file path)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInputError(f"{source}{where}: invalid YAML: {problem}") from None
    return spec_from_mapping(data, source, node)


def spec_from_mapping(data: Any, source: str = "<campaign>", node: yaml.Node | None = None) -> CampaignSpec:
    """Validate a campaign given as a mapping (a form's fields, parsed YAML); errors name the key
    (and its line, when ``node`` is the YAML it came from)."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{source}: expected a mapping of keys (name, segments, ...) at the top")
    try:
        return CampaignSpec.model_validate(dict(data))
    except ValidationError as exc:
        lines = [_describe(err, node, source) for err in exc.errors()]
        raise InvalidInputError("\n".join(dict.fromkeys(lines))) from None


def key_path(loc: Sequence[str | int]) -> str:
    """``("segments", 0, "variants", 1, "share")`` -> ``segments[0].variants[1].share``."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _describe(err: Any, node: yaml.Node | None, source: str) -> str:
    loc = tuple(k for k in err["loc"] if not (isinstance(k, str) and k.startswith("function-")))
    where = key_path(loc) or "(top level)"
    line = _line_of(node, loc)
    prefix = f"{source}" + (f" line {line}" if line else "") + f": {where}"
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        choices = list(model.model_fields) if model else []
        hint = difflib.get_close_matches(str(loc[-1]), choices, n=1, cutoff=0.6)
        also = f" (did you mean '{hint[0]}'?)" if hint else f" (known keys: {', '.join(choices)})"
        return f"{prefix}: unknown key{also}"
    message = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or err["type"] == "missing" else f" (got {_short(got)})"
    return f"{prefix}: {message}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    model: type[BaseModel] = CampaignSpec
    nested = {"send_window": SendWindow, "segments": SegmentSpec, "variants": VariantSpec}
    for key in loc:
        if isinstance(key, int):
            continue
        if key not in model.model_fields or key not in nested:
            return None
        model = nested[key]
    return model


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (the deepest one that exists)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    child = v
                    line = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        node = child
    return line


# ---------------------------------------------------------------------------------------------
# against the workspace
# ---------------------------------------------------------------------------------------------
def check_references(ctx: StoreContext, spec: CampaignSpec, source: str = "<campaign>") -> None:
    """Every segment, template and offer the spec names exists, and each template has the parts
    its channel needs; raises one :class:`InvalidInputError` listing every problem."""
    from micromarketing.personalize.offers import list_offers
    from micromarketing.personalize.templates import get_template, list_templates

    with ctx.ops.session() as session:  # names only: no segment sizes to compute
        segments = set(session.scalars(select(Segment.name)))
    templates = {t.name: t for t in list_templates(ctx) if t.kind == "message"}
    offers = {o.name for o in list_offers(ctx)}
    problems: list[str] = []

    def unknown(kind: str, name: str, known: set[str], where: str) -> str:
        hint = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        also = (
            f" (did you mean '{hint[0]}'?)"
            if hint
            else (f" (known: {', '.join(sorted(known)[:20])})" if known else f" (no {kind}s stored yet)")
        )
        return f"{source}: {where}: unknown {kind} '{name}'{also}"

    for i, seg in enumerate(spec.segments):
        if seg.segment not in segments:
            problems.append(unknown("segment", seg.segment, segments, f"segments[{i}].segment"))
        for j, variant in enumerate(seg.variants):
            where = f"segments[{i}].variants[{j}]"
            if variant.template is not None:
                if variant.template not in templates:
                    problems.append(
                        unknown("template", variant.template, set(templates), f"{where}.template")
                    )
                else:
                    parts = set(get_template(ctx, variant.template).parts)
                    for alternatives in REQUIRED_PARTS[variant.channel]:
                        if not parts & set(alternatives):
                            need = " or ".join(alternatives)
                            problems.append(
                                f"{source}: {where}.template: template '{variant.template}' has no "
                                f"{need} part, which the {variant.channel} channel needs "
                                f"(it has: {', '.join(sorted(parts)) or 'none'})"
                            )
            if variant.offer is not None and variant.offer not in offers:
                problems.append(unknown("offer", variant.offer, offers, f"{where}.offer"))
    topics = ctx.settings.preferences.topics
    if spec.topic is not None and spec.topic not in topics:
        known = f"known: {', '.join(topics)}" if topics else "none are configured"
        problems.append(
            f"{source}: topic: unknown topic '{spec.topic}' ([preferences.topics] in micromarketing.toml; "
            f"{known})"
        )
    if spec.topic is not None and spec.transactional:
        problems.append(f"{source}: topic: a transactional campaign has no topic (it is exempt from consent)")
    if problems:
        raise InvalidInputError("\n".join(problems))


def check_budget(spec: CampaignSpec, cost: float, source: str = "<campaign>") -> None:
    """Refuse a plan whose cost exceeds the spec's ``budget`` (no budget: no limit)."""
    if spec.budget is not None and cost > spec.budget + 1e-9:
        raise InvalidInputError(
            f"{source}: budget: {spec.budget:g} is below the plan's cost {cost:.2f} "
            "(raise the budget, drop a costly variant or channel, or narrow the segments)"
        )
