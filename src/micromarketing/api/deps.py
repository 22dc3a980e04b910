"""How the server shares one workspace with the CLI: hold it while serving, let go when asked.

DuckDB allows one process per warehouse file, and opening it costs far more than a lookup (the
schema check, the first queries), so opening it per request would miss the latency target by an
order of magnitude.  The server therefore keeps one :class:`Workspace` open and serves requests
one at a time through it (:class:`WorkspaceHolder`; a DuckDB connection is not shared between
threads).  A CLI command that finds the warehouse held waits for it (``[warehouse]
lock_timeout``) and leaves a *waiting file* beside it; the server notices the file after the
request in progress (or within :data:`WATCH_INTERVAL` when idle), closes the workspace and does
not reopen it while the file is there, so the command gets in.  Requests that arrive meanwhile
wait (for the command, then for the warehouse the same way commands do) and answer 503 with
``Retry-After`` if it stays busy past ``lock_timeout``; the first request after the command
reopens the workspace and sees what it wrote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from micromarketing.workspace import Workspace, engine_error

WATCH_INTERVAL = 0.05  # seconds between checks for a waiting command while the server is idle


class WorkspaceHolder:
    """One open workspace, used by one request at a time and released to a waiting command."""

    def __init__(self, root: Path, warehouse_threads: int = 0) -> None:
        self.root = root
        self.warehouse_threads = warehouse_threads  # [server] warehouse_threads (0: the workspace's)
        self._ws: Workspace | None = None
        self._released: Workspace | None = None  # closed; still knows where its warehouse is
        self._gate = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @contextmanager
    def use(self) -> Iterator[Workspace]:
        """The open workspace, for the duration of one request."""
        with self._gate:
            if self._ws is None:
                self._yield_to_waiting_commands()
                self._ws = Workspace.open(self.root, warehouse_threads=self.warehouse_threads)
            try:
                yield self._ws
            finally:
                if self._ws is not None and self._ws.others_waiting():
                    self._release()

    def _release(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            ws.close()
            self._released = ws

    def _yield_to_waiting_commands(self) -> None:
        """Do not reopen while the command we let go for still waits (it retries with backoff,
        up to a second apart); past ``lock_timeout`` open anyway and let the lock wait decide."""
        released, self._released = self._released, None
        if released is None:
            return
        deadline = time.monotonic() + released.settings.warehouse.lock_timeout
        while released.others_waiting() and time.monotonic() < deadline:
            time.sleep(WATCH_INTERVAL)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            ws = self._ws
            if ws is None or not ws.others_waiting():
                continue
            if self._gate.acquire(blocking=False):  # busy: the request in progress releases it
                try:
                    self._release()
                finally:
                    self._gate.release()

    def start(self) -> None:
        """Start watching for commands that wait for the warehouse."""
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="workspace-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop watching and close the workspace."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._gate:
            self._release()


def holder(request: Request) -> WorkspaceHolder:
    return request.app.state.holder


def workspace(request: Request) -> Iterator[Workspace]:
    """Dependency: the workspace, held for this request (see the module docstring).

    A Spark job that fails under the request becomes the one-line :class:`EngineError` the CLI
    prints (503: the engine, not the request, is at fault); the problem handler logs it and
    answers a generic line (:data:`~micromarketing.api.problems.ENGINE_FAILED`)."""
    with holder(request).use() as ws:
        try:
            yield ws
        except Exception as exc:
            failed = engine_error(exc)
            if failed is None:
                raise
            raise failed from exc


WS = Annotated[Workspace, Depends(workspace)]
