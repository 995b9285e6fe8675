"""Exceptions from the layers below, mapped to the status codes users expect.

400 bad input (including sandbox refusals, with position), 401/403 auth, 404
unknown id, 409 conflicting state, 413 too large, 422 schema (FastAPI's own),
429 too many queued queries, 503 not ready.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.auth import AuthError, ScopeError
from warehouse.queries import QueryConflict, QueryNotFound, QueueFull
from warehouse.sandbox import SandboxError


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


class TooLarge(ValueError):
    pass


class NotReady(RuntimeError):
    pass


def _json(status: int, detail: str, **extra) -> JSONResponse:
    body = {"detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _plain(status: int):
    async def handler(request: Request, e: Exception):
        return _json(status, str(e))

    return handler


def install(app: FastAPI) -> None:
    from concepts import ConceptNotFound

    # Exceptions whose message is the whole answer.  Starlette picks the handler
    # of the most specific class, so ValueError is only the fallback for 400.
    plain = [
        (AuthError, 401), (ScopeError, 403), (PermissionError, 403),
        (NotFound, 404), (ConceptNotFound, 404),
        (QueryConflict, 409), (Conflict, 409), (TooLarge, 413), (ValueError, 400),
    ]
    for exc, status in plain:
        app.add_exception_handler(exc, _plain(status))

    @app.exception_handler(SandboxError)
    async def _sandbox(request: Request, e: SandboxError):
        return _json(400, e.reason, line=e.line, col=e.col)

    @app.exception_handler(FileNotFoundError)
    async def _gone(request: Request, e: FileNotFoundError):
        # e.g. a result file or an asset's image deleted behind the server's back
        return _json(404, f"file not found: {e.filename or e}")

    @app.exception_handler(QueryNotFound)
    async def _qnf(request: Request, e: QueryNotFound):
        return _json(404, f"unknown query id {e.args[0]!r}")

    @app.exception_handler(QueueFull)
    async def _qf(request: Request, e: QueueFull):
        return JSONResponse({"detail": str(e)}, status_code=429, headers={"Retry-After": "1"})

    @app.exception_handler(NotReady)
    async def _nr(request: Request, e: NotReady):
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})
