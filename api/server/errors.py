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


def install(app: FastAPI) -> None:
    @app.exception_handler(SandboxError)
    async def _sandbox(request: Request, e: SandboxError):
        return _json(400, e.reason, line=e.line, col=e.col)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, e: AuthError):
        return _json(401, str(e))

    @app.exception_handler(ScopeError)
    async def _scope(request: Request, e: ScopeError):
        return _json(403, str(e))

    @app.exception_handler(FileNotFoundError)
    async def _gone(request: Request, e: FileNotFoundError):
        # e.g. a result file or an asset's image deleted behind the server's back
        return _json(404, f"file not found: {e.filename or e}")

    @app.exception_handler(PermissionError)
    async def _perm(request: Request, e: PermissionError):
        return _json(403, str(e))

    @app.exception_handler(QueryNotFound)
    async def _qnf(request: Request, e: QueryNotFound):
        return _json(404, f"unknown query id {e.args[0]!r}")

    @app.exception_handler(NotFound)
    async def _nf(request: Request, e: NotFound):
        return _json(404, str(e))

    @app.exception_handler(QueryConflict)
    async def _qc(request: Request, e: QueryConflict):
        return _json(409, str(e))

    @app.exception_handler(Conflict)
    async def _c(request: Request, e: Conflict):
        return _json(409, str(e))

    @app.exception_handler(TooLarge)
    async def _tl(request: Request, e: TooLarge):
        return _json(413, str(e))

    @app.exception_handler(QueueFull)
    async def _qf(request: Request, e: QueueFull):
        return JSONResponse({"detail": str(e)}, status_code=429, headers={"Retry-After": "1"})

    @app.exception_handler(NotReady)
    async def _nr(request: Request, e: NotReady):
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})

    from concepts import ConceptNotFound

    @app.exception_handler(ConceptNotFound)
    async def _cnf(request: Request, e: ConceptNotFound):
        return _json(404, str(e))

    @app.exception_handler(ValueError)
    async def _value(request: Request, e: ValueError):
        return _json(400, str(e))
