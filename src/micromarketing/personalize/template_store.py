"""Template storage: versions of message templates and shared blocks in the operations store.

A *message template* (name without a dot) has up to four parts — ``subject``, ``html``, ``text``
and ``sms`` — and a *shared block* (name with a file suffix, e.g. ``header.html``) has one
``source``.  Blocks shipped in ``personalize/templates/`` are the defaults; a workspace block of
the same name overrides them.  Every version is compiled in the sandbox and checked against the
render limits before it is stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2
from jinja2 import meta
from sqlalchemy import func, select

from micromarketing.config import RenderSettings
from micromarketing.errors import NotFoundError, TemplateError
from micromarketing.personalize.results import TemplateInfo
from micromarketing.personalize.sandbox import (
    BLOCK_NAME,
    DEFAULT_BLOCKS_DIR,
    default_blocks,
    make_environment,
    static_problems,
)
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Template
from micromarketing.store.versions import next_version

PARTS = ("subject", "html", "text", "sms")
EXAMPLES_DIR = DEFAULT_BLOCKS_DIR / "examples"
EXAMPLE_TEMPLATE = "seasonal_picks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def part_for_file(path: str | os.PathLike[str]) -> str:
    """Which message part a file holds, from its name: ``*.subject``, ``*.html``, ``*.sms``, ``*.txt``.

    ``subject.txt`` and ``sms.txt`` are recognised by their stem as well.
    """
    p = Path(path)
    stem, suffix = p.stem.lower(), p.suffix.lower()
    if suffix == ".subject" or stem == "subject":
        return "subject"
    if suffix == ".sms" or stem == "sms":
        return "sms"
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in (".txt", ".text"):
        return "text"
    raise TemplateError(
        f"{p}: cannot tell which part this file is (name it *.subject, *.html, *.txt or *.sms)"
    )


def add_template(
    ctx: StoreContext, name: str, parts: Mapping[str, str] | Iterable[str | os.PathLike[str]]
) -> TemplateInfo:
    """Store a new version of message template ``name`` from part texts or files; returns it.

    ``parts`` maps part names (subject, html, text, sms) to Jinja source, or lists files whose
    names say the part (see :func:`part_for_file`).  Every part is compiled in the sandbox and
    every included block must exist, so a broken template is refused with its file and line.
    """
    if not _NAME.match(name):
        raise TemplateError(f"invalid template name {name!r}: use letters, digits, '_' or '-'")
    texts = _read_parts(parts)
    unknown = sorted(set(texts) - set(PARTS))
    if unknown:
        raise TemplateError(f"unknown template part(s) {', '.join(unknown)} (use {', '.join(PARTS)})")
    if not texts:
        raise TemplateError(f"template {name!r} has no parts")
    blocks = stored_blocks(ctx)
    env = make_environment({**{f"{name}#{p}": s for p, s in texts.items()}, **blocks})
    variables: set[str] = set()
    for part, source in texts.items():
        variables |= _check_source(env, f"{name}#{part}", source, name, part, ctx.settings.render)
    return _store(ctx, name, "message", texts, sorted(variables))


def add_block(
    ctx: StoreContext, path_or_name: str | os.PathLike[str], source: str | None = None
) -> TemplateInfo:
    """Store a new version of a shared block (``header.html``, ``product_card.html``, …).

    Called with a file path, the block is named after the file; with a name and ``source``, the
    text is stored directly.  The block is compiled in the sandbox first.
    """
    name = Path(path_or_name).name
    if source is None:
        source = _read_text(Path(path_or_name))
    if not BLOCK_NAME.match(name):
        raise TemplateError(f"invalid block name {name!r}: use NAME.html or NAME.txt")
    env = make_environment({name: source, **stored_blocks(ctx)})
    variables = _check_source(env, name, source, name, "", ctx.settings.render)
    return _store(ctx, name, "block", {"source": source}, sorted(variables))


def install_examples(ctx: StoreContext) -> TemplateInfo:
    """Store the shipped example campaign template (``seasonal_picks``) in the workspace."""
    files = sorted(p for p in EXAMPLES_DIR.iterdir() if p.stem == EXAMPLE_TEMPLATE)
    return add_template(ctx, EXAMPLE_TEMPLATE, files)


def get_template(ctx: StoreContext, name: str, version: int | None = None) -> TemplateInfo:
    """The stored template (or block) ``name`` at ``version`` (default: latest)."""
    with ctx.ops.session() as s:
        q = select(Template).where(Template.name == name)
        q = q.where(Template.version == version) if version else q.order_by(Template.version.desc())
        row = s.scalars(q.limit(1)).first()
        if row is None:
            known = sorted(set(s.scalars(select(Template.name))))
            hint = f" (known: {', '.join(known[:20])})" if known else " (none stored yet: `template add`)"
            raise NotFoundError(
                f"no template named {name!r}" + (f" version {version}" if version else "") + hint
            )
        return _info(row)


def list_templates(ctx: StoreContext) -> list[TemplateInfo]:
    """Latest version of every stored template and block, by name."""
    with ctx.ops.session() as s:
        latest = (
            select(Template.name, func.max(Template.version).label("v")).group_by(Template.name).subquery()
        )
        rows = s.scalars(
            select(Template)
            .join(latest, (Template.name == latest.c.name) & (Template.version == latest.c.v))
            .order_by(Template.name)
        )
        return [_info(row) for row in rows]


def _info(row: Template) -> TemplateInfo:
    """A stored row as its model: the kind and variables are kept beside the parts."""
    parts = dict(row.parts or {})
    kind = str(parts.pop("_kind", "message"))
    variables = list(parts.pop("_variables", []))
    return TemplateInfo(name=row.name, version=row.version, kind=kind, parts=parts, variables=variables)


def _store(
    ctx: StoreContext, name: str, kind: str, parts: dict[str, str], variables: list[str]
) -> TemplateInfo:
    with ctx.ops.session() as s:
        version = next_version(s, "template", name)
        s.add(Template(name=name, version=version, parts={**parts, "_kind": kind, "_variables": variables}))
    ctx.audit("template.add", name, {"version": version, "kind": kind})
    return TemplateInfo(name=name, version=version, kind=kind, parts=parts, variables=variables)


def stored_blocks(ctx: StoreContext) -> dict[str, str]:
    return {i.name: i.parts["source"] for i in list_templates(ctx) if i.kind == "block"}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_parts(parts: Mapping[str, str] | Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    if isinstance(parts, Mapping):
        return {str(k): str(v) for k, v in parts.items()}
    texts: dict[str, str] = {}
    for f in parts:
        part = part_for_file(f)
        if part in texts:
            raise TemplateError(f"{f}: a second file for part {part!r}")
        texts[part] = _read_text(Path(f))
    return texts


def _check_source(
    env: jinja2.Environment, key: str, source: str, name: str, part: str, limits: RenderSettings
) -> set[str]:
    """Compile ``source``, check its includes exist and that nothing in it is certain to break a
    render limit; returns the variables it reads."""
    try:
        ast = env.parse(source, name=key)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error: {exc.message}", template=name, part=part, line=exc.lineno
        ) from None
    problems = static_problems(ast, limits)
    if problems:
        raise TemplateError("exceeds the render limits: " + "; ".join(problems), template=name, part=part)
    for included in meta.find_referenced_templates(ast):
        if included is None:
            continue
        try:
            env.get_template(included)
        except jinja2.TemplateNotFound:
            known = ", ".join(sorted(set(default_blocks()) | {k for k in env.loader.sources if "#" not in k}))  # type: ignore[union-attr]
            raise TemplateError(
                f"includes unknown block {included!r} (known: {known})", template=name, part=part
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}", template=included, line=exc.lineno) from None
    return set(meta.find_undeclared_variables(ast))
