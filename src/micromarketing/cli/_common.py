"""What every CLI command shares: the workspace option, error handling, JSON output, progress bars.

The CLI is a thin layer: it parses arguments, calls the Workspace, and formats the result.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from micromarketing.errors import MicromarketingError
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (default: $MICROMARKETING_WORKSPACE, else the current directory).",
        envvar="MICROMARKETING_WORKSPACE",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print user errors without a traceback and exit with code 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _show_core_warnings()
        try:
            return func(*args, **kwargs)
        except MicromarketingError as exc:
            # escaped: messages quote user text such as "[clv] margn"; soft_wrap: one line stays one line
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


class _StderrLine(logging.Handler):
    """The core's warnings (e.g. "waiting for … to release …") as plain stderr lines."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(escape(self.format(record)), markup=True, highlight=False, soft_wrap=True)


def _show_core_warnings() -> None:
    core = logging.getLogger("micromarketing")
    if not any(isinstance(h, _StderrLine) for h in core.handlers):
        core.addHandler(_StderrLine(logging.WARNING))


@contextmanager
def open_workspace(path: Path | None) -> Iterator[Workspace]:
    ws = Workspace.open(path)
    try:
        yield ws
    finally:
        ws.close()


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressCallback]:
    """A Rich progress bar fed by the core's ``(step, done, total)`` callback (stderr)."""
    if not enabled:
        yield lambda step, done, total: None
        return
    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err_console, transient=False,
    ) as progress:

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total or None)
            progress.update(tasks[step], completed=done, total=total or None)

        yield report


def print_json(payload: Any) -> None:
    """Write ``payload`` as strict JSON on stdout: a missing number (NaN, ±inf) is ``null``.

    Dates, decimals and numpy scalars are made plain; ``NaN`` is not JSON and ``jq`` rejects it.
    """
    sys.stdout.write(json.dumps(_finite(payload), default=_json_default, indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (Python or numpy) replaced by None, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "model_dump"):
        return _finite(value.model_dump(mode="python"))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
