"""Who holds the warehouse, and waiting for it: DuckDB allows one process per database file.

When a command opens the warehouse it records itself in a small *holder file* beside it
(``warehouse.duckdb.holder``: command line, pid, start time), removed when it closes.  A second
command that finds the file locked (DuckDB's ``Could not set lock on file``) retries with backoff
for up to ``[warehouse] lock_timeout`` seconds, saying once whom it waits for, then raises
:class:`~micromarketing.errors.BusyError` naming the holder, like git's ``index.lock`` message.

The waiting message goes to the ``micromarketing.store`` logger at WARNING level, not to stdout:
the core never prints.  While it waits it also leaves a *waiting file*
(``warehouse.duckdb.waiting.<pid>``) so that a long-lived holder that can let go, the API
server, does (:func:`others_waiting`).

Logging is the hook every interface already has: the CLI prints it as a
plain stderr line, a server logs it, and a library user with no logging set up still sees it on
stderr (Python's last-resort handler).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from micromarketing.errors import BusyError

log = logging.getLogger("micromarketing.store")

HOLDER_SUFFIX = ".holder"
WAITING_SUFFIX = ".waiting."  # warehouse.duckdb.waiting.<pid>: a process waits for the file
_LOCK_MESSAGE = "Could not set lock on file"
_DUCKDB_PID = re.compile(r"\(PID (\d+)\)")
T = TypeVar("T")


def holder_path(db_path: Path) -> Path:
    """The holder file of the database at ``db_path``."""
    return db_path.with_name(db_path.name + HOLDER_SUFFIX)


def current_command() -> str:
    """This process's command line, as a user would type it (``micromarketing ingest tx.csv``)."""
    argv = list(sys.argv) or ["python"]
    return shlex.join([Path(argv[0]).name or "python", *argv[1:]])


def write_holder(db_path: Path) -> None:
    """Record this process as the holder of ``db_path`` (best effort: never fails a command)."""
    info = {"command": current_command(), "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()}
    try:
        tmp = holder_path(db_path).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(holder_path(db_path))
    except OSError:
        pass


def remove_holder(db_path: Path) -> None:
    """Remove the holder file if this process wrote it."""
    info = read_holder(db_path)
    if info is not None and info.get("pid") == os.getpid():
        try:
            holder_path(db_path).unlink()
        except OSError:
            pass


def read_holder(db_path: Path) -> dict[str, Any] | None:
    """The holder file's record, or None when there is none (or it cannot be read)."""
    try:
        info = json.loads(holder_path(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe_holder(db_path: Path, error: BaseException | None = None) -> str:
    """``micromarketing ingest tx.csv (pid 123, since 2026-12-02 21:13:05 UTC)``, or the best guess.

    A holder file whose process has gone is stale (a killed command); then the pid DuckDB reports
    in its lock error is all we know.
    """
    info = read_holder(db_path)
    if info is not None and isinstance(info.get("pid"), int) and _alive(info["pid"]):
        since = str(info.get("started_at", ""))
        try:
            since = datetime.fromisoformat(since).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except ValueError:
            pass
        return f"{info.get('command', 'another command')} (pid {info['pid']}, since {since})"
    match = _DUCKDB_PID.search(str(error or ""))
    return f"another process (pid {match.group(1)})" if match else "another process"


def is_lock_error(error: BaseException) -> bool:
    """Whether ``error`` is DuckDB's "another process holds this file" error."""
    return _LOCK_MESSAGE in str(error)


def wait_for(
    connect: Callable[[], T],
    db_path: Path,
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``connect()``, retried with backoff while another process holds ``db_path``.

    Logs once (WARNING, ``micromarketing.store``) whom it waits for; after ``timeout`` seconds
    raises :class:`BusyError` naming the holder.  Errors other than the lock error propagate.
    """
    deadline = clock() + timeout
    delay = 0.05
    announced = False
    try:
        while True:
            try:
                return connect()
            except Exception as exc:  # duckdb.IOException; ibis passes it through
                if not is_lock_error(exc):
                    raise
                remaining = deadline - clock()
                if remaining <= 0:
                    raise BusyError(
                        f"{db_path} is busy: {describe_holder(db_path, exc)} still holds it after "
                        f"waiting {timeout:g}s; run the command again when that one has finished "
                        "(or raise [warehouse] lock_timeout)"
                    ) from None
                if not announced:
                    holder = describe_holder(db_path, exc)
                    log.warning("waiting for %s to release %s (up to %gs)", holder, db_path, timeout)
                    _mark_waiting(db_path)
                    announced = True
                sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)
    finally:
        if announced:
            _unmark_waiting(db_path)


def _waiting_path(db_path: Path, pid: int) -> Path:
    return db_path.with_name(f"{db_path.name}{WAITING_SUFFIX}{pid}")


def _mark_waiting(db_path: Path) -> None:
    """Say that this process waits for ``db_path``, so a holder that can let go (the API server)
    does (best effort)."""
    try:
        _waiting_path(db_path, os.getpid()).touch()
    except OSError:
        pass


def _unmark_waiting(db_path: Path) -> None:
    try:
        _waiting_path(db_path, os.getpid()).unlink(missing_ok=True)
    except OSError:
        pass


def others_waiting(db_path: Path) -> bool:
    """Whether another live process waits for ``db_path`` (see :func:`wait_for`)."""
    for marker in db_path.parent.glob(f"{db_path.name}{WAITING_SUFFIX}*"):
        pid_text = marker.name.rsplit(WAITING_SUFFIX, 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _alive(int(pid_text)):
            return True
    return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
