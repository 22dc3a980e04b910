"""Preview a template for one customer and check it for every member of a segment (nothing sent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from micromarketing.errors import NotFoundError, TemplateError, TemplateLimitError
from micromarketing.personalize.render import (
    LIMIT_FAILURES_BEFORE_STOP,
    RenderedMessage,
    render_for_customers,
)
from micromarketing.store.context import StoreContext


def preview_template(
    ctx: StoreContext,
    name: str,
    customer_id: str,
    *,
    k: int = 5,
    version: int | None = None,
    segment: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RenderedMessage:
    """Render template ``name`` for one real customer; raises :class:`TemplateError` on failure."""
    for message in render_for_customers(
        ctx, name, [customer_id], k=k, version=version, segment=segment, extra=extra
    ):
        return message
    raise NotFoundError(f"customer {customer_id!r} not found")


@dataclass
class CheckReport:
    """What ``template check`` found: recipients, rendered, and each failure (customer, reason)."""

    template: str
    segment: str
    recipients: int
    rendered: int
    failures: list[dict[str, Any]]
    sms_over_160: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def failure_groups(self) -> list[dict[str, Any]]:
        """Failures grouped by part, line and reason, most frequent first, each with one example."""
        groups: dict[str, dict[str, Any]] = {}
        for f in self.failures:
            key = f"{f['part'] or '?'} line {f['line']}: {f['reason']}"
            group = groups.setdefault(key, {"reason": key, "count": 0, "example": f["customer_id"]})
            group["count"] += 1
        return sorted(groups.values(), key=lambda g: -g["count"])


def check_template(
    ctx: StoreContext,
    name: str,
    segment: str,
    *,
    k: int = 5,
    version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    max_failures: int = 1000,
) -> CheckReport:
    """Render ``name`` for every member of ``segment`` without sending; report every failure.

    Failures with the same reason are all listed (up to ``max_failures``) so that a field missing
    for some customers shows how many it affects.
    """
    failures: list[TemplateError] = []
    rendered = 0
    long_sms = 0
    try:
        for message in render_for_customers(
            ctx, name, segment, k=k, version=version, extra=extra, errors="collect", failures=failures
        ):
            rendered += 1
            if message.sms is not None and len(message.sms) > 160:
                long_sms += 1
    except TemplateLimitError as exc:
        raise TemplateLimitError(
            f"{exc.reason}; stopped after {LIMIT_FAILURES_BEFORE_STOP} members hit the limit "
            f"({rendered} rendered before)",
            template=exc.template,
            part=exc.part,
            customer_id=exc.customer_id,
        ) from None
    listed = [
        {"customer_id": f.customer_id, "part": f.part, "line": f.line, "reason": f.reason, "message": str(f)}
        for f in failures[:max_failures]
    ]
    return CheckReport(name, segment, rendered + len(failures), rendered, listed, long_sms)
