"""The errors a user can cause.

Every exception here carries a message that names what was wrong (file, row, field, rule and
position).  The CLI prints them without a traceback and exits with code 2; the REST API maps them
to 4xx responses.  Anything else escaping the core is a bug.
"""

from __future__ import annotations


class MicromarketingError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(MicromarketingError):
    """The workspace settings (micromarketing.toml or environment) are invalid."""


class WorkspaceError(MicromarketingError):
    """The workspace is missing, not initialised, or already exists."""


class IngestError(MicromarketingError):
    """A file cannot be ingested at all (unknown kind, unreadable, missing required columns)."""


class DataError(MicromarketingError):
    """The stored data cannot support the request (e.g. no transactions before the as-of date)."""


class NotFoundError(MicromarketingError):
    """A named object (customer, segment, model, template) does not exist."""


class ModelError(MicromarketingError):
    """A statistical model cannot be fitted or used (too little data, no fitted model)."""


class RuleError(MicromarketingError):
    """A segment rule is invalid; the message names line, column and what was expected."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(f"line {line}, col {column}: {message}")
        self.line = line
        self.column = column
        self.reason = message


class PolicyError(MicromarketingError):
    """A request breaks a guard: protected attributes, segment-size minimums, consent."""
