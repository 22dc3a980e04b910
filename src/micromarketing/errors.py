"""The errors a user can cause, and the HTTP status each one answers with.

Every exception here carries a message that names what was wrong (file, row, field, rule and
position).  The CLI prints them without a traceback and exits with code 2; the REST API answers
with the class's ``http_status`` (the mapping is written once, here, as a class attribute).
Anything else escaping the core is a bug.
"""

from __future__ import annotations


class MicromarketingError(Exception):
    """Base class of every error a user can cause."""

    http_status: int = 400


class InvalidInputError(MicromarketingError):
    """A request's own values are invalid (bad option, bad value, bad file content)."""

    http_status = 422


class ConfigError(InvalidInputError):
    """The workspace settings (micromarketing.toml or environment) are invalid."""


class IngestError(InvalidInputError):
    """A file cannot be ingested at all (unknown kind, unreadable, missing required columns)."""


class RuleError(InvalidInputError):
    """A segment rule is invalid; the message names line, column and what was expected."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(f"line {line}, col {column}: {message}")
        self.line = line
        self.column = column
        self.reason = message


class TemplateError(InvalidInputError):
    """A template cannot be stored or rendered; the message names the template, part and line."""

    def __init__(
        self,
        message: str,
        *,
        template: str = "",
        part: str = "",
        line: int | None = None,
        customer_id: str | None = None,
    ) -> None:
        where = template + (f"/{part}" if part else "") + (f" line {line}" if line else "")
        who = f" (customer {customer_id})" if customer_id else ""
        super().__init__(f"template {where}: {message}{who}" if where else message + who)
        self.template = template
        self.part = part
        self.line = line
        self.customer_id = customer_id
        self.reason = message


class TemplateSecurityError(TemplateError):
    """A template tried to reach something the sandbox forbids."""


class TemplateLimitError(TemplateError):
    """A render went past a ``[render]`` limit (operations, time, output size)."""


class NotFoundError(MicromarketingError):
    """A named object (customer, segment, model, template) does not exist."""

    http_status = 404


class WorkspaceError(NotFoundError):
    """The workspace is missing or not initialised."""


class ConflictError(MicromarketingError):
    """The request conflicts with what exists (name taken, workspace already there)."""

    http_status = 409


class DataError(MicromarketingError):
    """The stored data cannot support the request (e.g. no transactions before the as-of date)."""

    http_status = 409


class ModelError(MicromarketingError):
    """A statistical model cannot be fitted or used (too little data, no fitted model)."""

    http_status = 409


class PolicyError(MicromarketingError):
    """A request breaks a guard: protected attributes, segment-size minimums, consent."""

    http_status = 403


class BackendUnsupportedError(MicromarketingError):
    """The command cannot run on the configured warehouse engine yet (e.g. on Spark)."""

    http_status = 501


class EngineError(MicromarketingError):
    """The warehouse engine failed while running a query (a Spark job failed, the cluster went away)."""

    http_status = 503


class BusyError(MicromarketingError):
    """The workspace is locked by another command and did not free up in time."""

    http_status = 503
