"""The FastAPI application: REST resources under ``/api/v1``, the public customer routes, one error shape.

``create_app(root)`` serves the workspace at ``root`` (see :mod:`micromarketing.api.deps` for how
it shares the workspace with CLI commands).  The OpenAPI document at ``/openapi.json`` lists the
REST routes and the public customer routes; every error response in it is a problem detail.
Routers passed as ``pages`` (the web dashboard, mounted at ``/``) are served but left out of it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import micromarketing
from micromarketing.api import problems, public
from micromarketing.api.deps import WorkspaceHolder
from micromarketing.api.problems import Problem, problem_response
from micromarketing.api.ratelimit import RateLimiter
from micromarketing.api.routers import ROUTERS
from micromarketing.workspace import WORKSPACE_ENV, Workspace

API_PREFIX = "/api/v1"


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by ``Content-Length`` or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now and tell the app the client went away: it stops reading, and
                    # whatever it answers to that is dropped below.
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope.get("path", ""), 413, f"the request body is larger than {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


def create_app(
    workspace_root: str | os.PathLike[str],
    *,
    rate_limit: int | None = None,
    max_body_bytes: int | None = None,
    pages: Sequence[APIRouter] = (),
) -> FastAPI:
    """The app serving the workspace at ``workspace_root``.

    ``rate_limit`` (requests per minute per key) and ``max_body_bytes`` default to the workspace's
    ``[server]`` settings; ``pages`` are routers served outside the OpenAPI document."""
    root = Path(workspace_root).resolve()
    with Workspace.open(root) as ws:  # fails early, with the CLI's message, on a non-workspace
        server = ws.settings.server
    holder = WorkspaceHolder(root, server.warehouse_threads)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(
        title="micromarketing",
        version=micromarketing.__version__,
        summary="Segments, segments of one, templates, campaigns, measurement, privacy and customer "
        "preferences over one workspace.",
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.limiter = RateLimiter(server.rate_limit if rate_limit is None else rate_limit)
    problems.install(app)
    body_limit = server.max_body_bytes if max_body_bytes is None else max_body_bytes
    app.add_middleware(BodyLimit, max_bytes=body_limit)

    for name in ROUTERS:
        app.include_router(importlib.import_module(f"micromarketing.api.routers.{name}").router,
                           prefix=API_PREFIX)
    app.include_router(public.router)
    for router in pages:
        app.include_router(router, include_in_schema=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_openapi(
                get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def from_environment() -> FastAPI:
    """The app for ``$MICROMARKETING_WORKSPACE`` (else the current directory): uvicorn's factory.

    The web dashboard's pages are mounted at ``/`` (imported by name: the API does not depend on it)."""
    dashboard = importlib.import_module("micromarketing.web").router
    return create_app(os.environ.get(WORKSPACE_ENV) or ".", pages=[dashboard])


def _problem_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Every operation's error responses become problem details (FastAPI documents its own 422)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            public_route = not path.startswith(API_PREFIX)
            statuses = problems.ERROR_STATUSES
            if path == f"{API_PREFIX}/health":
                statuses = (413, 429)
            elif public_route:
                statuses = (404, 413, 422, 429, 503)
            for status, entry in problems.error_responses(statuses).items():
                responses[str(status)] = entry
            if public_route or path == f"{API_PREFIX}/health":
                operation["security"] = []
    return schema
