"""What every CLI command shares, written once: the workspace, error handling, JSON output, progress.

The CLI is a thin layer.  A command is a function that calls one facade method and returns its
result; :func:`command` turns it into a Typer command that does the rest around it:

* adds ``-w/--workspace`` (when the function takes ``ws`` or ``session``) and ``--json``;
* opens the Workspace once (the root callback puts a :class:`Session` in the Typer context) and
  closes it after the call, before anything is printed;
* feeds a Rich progress bar to a function that takes ``progress`` (off under ``--json``);
* prints the result as strict JSON under ``--json``, else hands it to its view (cli/views.py);
* prints a :class:`~micromarketing.errors.MicromarketingError`, or a failed Spark job
  (:func:`~micromarketing.workspace.engine_error`), as one line and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from micromarketing.errors import MicromarketingError
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace, engine_error

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

# Parameters a command function may take that the CLI supplies rather than the user.
_SUPPLIED = ("ws", "session", "progress")


class Session:
    """The workspace of one command: the root callback's ``-w`` (or the command's own), opened
    on first use and closed when the command's work is done."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._workspace: Workspace | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace.open(self.path)
        return self._workspace

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None


def root_callback(ctx: typer.Context, workspace: WorkspaceOption = None) -> None:
    """Find small, well-defined customer groups, reach each, and prove what it earned."""
    _show_core_warnings()
    ctx.obj = Session(workspace)


def command(
    *,
    view: Callable[..., None] | None = None,
    as_json: Callable[[Any], Any] | None = None,
    json_option: bool = True,
    exit_code: Callable[[Any], int] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """``func`` made into a Typer command function (see the module docstring); register the
    result with ``app.command(name)``.

    ``view(result, **named)`` prints the result for people; it receives by name any of the
    command's arguments it declares as keyword-only parameters.  ``as_json`` shapes the
    result for ``--json`` (default: the result itself); ``exit_code(result)`` ends the command
    with that code after the output when it is not 0.
    """

    def wrap(func: Callable[..., Any]) -> Callable[..., None]:
        signature = inspect.signature(func, eval_str=True)
        supplied = [p for p in _SUPPLIED if p in signature.parameters]
        user_params = [p for p in signature.parameters.values() if p.name not in _SUPPLIED]
        needs_workspace = "ws" in supplied or "session" in supplied
        extra = [_keyword("typer_context", typer.Context, None)]
        if needs_workspace:
            extra.append(_keyword("workspace", WorkspaceOption, None))
        if json_option:
            extra.append(_keyword("json_output", JsonOption, False))
        view_args = _keyword_only(view)

        @wraps(func)
        def run(**kwargs: Any) -> None:
            _show_core_warnings()
            ctx = kwargs.pop("typer_context")
            workspace = kwargs.pop("workspace", None)
            json_output = kwargs.pop("json_output", False)
            session = _session(ctx, workspace)
            try:
                with progress_bar(not json_output) if "progress" in supplied else nullcontext() as bar:
                    given = {"progress": bar} if bar is not None else {}
                    if "session" in supplied:
                        given["session"] = session
                    if "ws" in supplied:
                        given["ws"] = session.workspace
                    result = func(**given, **kwargs)
                session.close()
                if json_output:
                    print_json(as_json(result) if as_json else result)
                elif view is not None:
                    view(result, **{k: kwargs[k] for k in view_args})
            except MicromarketingError as exc:
                _print_error(exc)
                raise typer.Exit(2) from None
            except Exception as exc:
                failed = engine_error(exc)  # a Spark job that failed: one line, the trace is in the log
                if failed is None:
                    raise
                _print_error(failed)
                raise typer.Exit(2) from None
            finally:
                session.close()
            if exit_code is not None and (code := exit_code(result)):
                raise typer.Exit(code)

        params = [*user_params, *extra]
        run.__signature__ = signature.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap


def _print_error(exc: MicromarketingError) -> None:
    # escaped: messages quote user text such as "[clv] margn"; soft_wrap: one line stays one line
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _keyword_only(view: Callable[..., None] | None) -> list[str]:
    if view is None:
        return []
    params = inspect.signature(view).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _session(ctx: typer.Context, workspace: Path | None) -> Session:
    """The root callback's session (a ``-w`` typed after the command wins), or a new one when a
    command group is invoked on its own (as the tests do)."""
    session = ctx.find_object(Session)
    if session is None:
        return Session(workspace)
    source = ctx.get_parameter_source("workspace")
    if source is not None and source.name == "COMMANDLINE":  # else the root's -w or environment
        session.path = workspace
    return session


class _StderrLine(logging.Handler):
    """The core's warnings (e.g. "waiting for … to release …") as plain stderr lines."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(escape(self.format(record)), markup=True, highlight=False, soft_wrap=True)


def _show_core_warnings() -> None:
    core = logging.getLogger("micromarketing")
    if not any(isinstance(h, _StderrLine) for h in core.handlers):
        core.addHandler(_StderrLine(logging.WARNING))


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

    Result models, dataclasses and frames (as records) are made plain, and so are dates, decimals
    and numpy scalars; ``NaN`` is not JSON and ``jq`` rejects it.
    """
    sys.stdout.write(json.dumps(_finite(payload), default=_json_default, indent=2, allow_nan=False) + "\n")


def json_mode(result: Any) -> Any:
    """A result model (or a list of them) as Pydantic dumps it for JSON (timestamps end in ``Z``)."""
    if isinstance(result, list):
        return [r.model_dump(mode="json") for r in result]
    return result.model_dump(mode="json")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (Python or numpy) replaced by None, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "model_dump"):
        return _finite(value.model_dump(mode="python"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _finite(dataclasses.asdict(value))
    if isinstance(value, pd.DataFrame):
        return _finite(value.astype(object).where(value.notna(), None).to_dict(orient="records"))
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
