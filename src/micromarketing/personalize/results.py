"""The result models of personalisation that leave the core: stored template versions."""

from __future__ import annotations

from pydantic import ConfigDict

from micromarketing.results import Result


class TemplateInfo(Result):
    """A stored template version: name, version, kind (message | block), its parts by name
    (subject, html, text, sms) and the variables they read."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    kind: str
    parts: dict[str, str]
    variables: list[str] = []
