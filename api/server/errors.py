"""HTTP answers for the error hierarchy of `warehouse.errors` (its `KINDS` table gives the status).

400 bad input (sandbox refusals with their position), 401/403 auth, 404 unknown
id, 409 conflicting state, 413 too large, 422 unusable content or schema
(FastAPI's own), 429 too many queued queries, 503 not ready.  Anything else is a
bug: 500 with a generic message, its traceback in the server log.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from warehouse.errors import Conflict, NotFound, PixqlError, TooLarge, Unavailable, kind_of  # noqa: F401
from warehouse.sandbox import SandboxError

log = logging.getLogger("pixql.server")
INTERNAL = "internal server error (the server log has the details)"


class NotReady(Unavailable):
    """The encoder or warehouse is still loading."""


def _json(status: int, detail: str, retry_after: bool = False, **extra) -> JSONResponse:
    body = {"detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if retry_after:
        headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=status, headers=headers or None)


def response_for(e: BaseException) -> JSONResponse:
    kind = kind_of(e)
    if kind is None or kind.status >= 500 and not kind.retry_after:
        # Not the caller's fault, and the message may show internals: say so, log the rest.
        if kind is not None:  # outside the hierarchy Starlette re-raises it for uvicorn to log
            log.error("internal error: %s: %s", type(e).__name__, e, exc_info=e)
        return _json(500, INTERNAL)
    if isinstance(e, SandboxError):
        return _json(kind.status, e.reason, line=e.line, col=e.col)
    return _json(kind.status, str(e), retry_after=kind.retry_after)


def install(app: FastAPI) -> None:
    @app.exception_handler(PixqlError)
    async def _pixql(request: Request, e: PixqlError):
        return response_for(e)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        # A bug (a ValueError from deep down is one too): Starlette's ServerErrorMiddleware
        # sends this answer, then re-raises for uvicorn to log the traceback.
        return response_for(e)
