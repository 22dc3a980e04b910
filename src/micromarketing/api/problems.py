"""Every error the API answers with is an RFC 9457 problem detail (``application/problem+json``).

The core's errors carry their HTTP status (``MicromarketingError.http_status``); framework errors
(unknown route, wrong method, invalid parameters) and anything unexpected (500, logged with its
traceback, never shown) are turned into the same shape here, once.  A failure of the warehouse
engine (503) is logged in full and answered with one generic line: its message names server
paths (the Spark log, data files) that no client, least of all the key-less public routes, sees.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from micromarketing.errors import BusyError, EngineError, MicromarketingError, RuleError

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_BUSY = 2  # seconds a client should wait before retrying a busy workspace
ENGINE_FAILED = "the warehouse engine failed (the error is logged on the server)"
log = logging.getLogger("micromarketing.api")


class Problem(BaseModel):
    """RFC 9457 problem details; extra members (``errors``, ``line``, ``column``) add detail."""

    type: str = Field(default="about:blank", description="URI naming the kind of problem")
    title: str
    status: int
    detail: str = ""
    instance: str = Field(default="", description="the request path the problem occurred at")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="invalid request fields (422 only)"
    )
    line: int | None = Field(default=None, description="rule errors: line of the problem")
    column: int | None = Field(default=None, description="rule errors: column of the problem")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


class ApiProblem(Exception):
    """A problem raised by the API layer itself (401, 403, 413, 429), with optional headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def problem_response(
    request_path: str,
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """A problem+json response; ``about:blank`` problems take the status phrase as title."""
    title = HTTPStatus(status).phrase if type_ == "about:blank" else _title(type_)
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": request_path}
    body.update({k: v for k, v in extra.items() if v is not None})
    return ProblemResponse(jsonable_encoder(body), status_code=status, headers=headers)


def _slug(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__.removesuffix("Error")).lower() or "error"


def _title(type_: str) -> str:
    return type_.rsplit(":", 1)[-1].replace("-", " ").capitalize()


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem detail."""

    @app.exception_handler(MicromarketingError)
    async def core_error(request: Request, exc: MicromarketingError) -> ProblemResponse:
        headers = {"Retry-After": str(RETRY_AFTER_BUSY)} if isinstance(exc, BusyError) else None
        extra: dict[str, Any] = {}
        if isinstance(exc, RuleError):
            extra = {"line": exc.line, "column": exc.column}
        detail = str(exc)
        if isinstance(exc, EngineError):
            log.error("warehouse engine failed on %s %s: %s", request.method, request.url.path, exc)
            detail = ENGINE_FAILED
        return problem_response(
            request.url.path,
            exc.http_status,
            detail,
            type_=f"urn:micromarketing:problem:{_slug(type(exc))}",
            headers=headers,
            **extra,
        )

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> ProblemResponse:
        return problem_response(request.url.path, exc.status, exc.detail, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        return problem_response(request.url.path, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(request.url.path, 422, where or "invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ProblemResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(request.url.path, 500, "internal error (logged on the server)")


ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 503)


def error_responses(statuses: tuple[int, ...] = ERROR_STATUSES) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status answers with a :class:`Problem`."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
