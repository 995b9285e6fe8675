"""`create_app`: the FastAPI application, its lifespan (open/close the warehouse) and routers."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import errors
from .routers import ROUTERS
from .settings import ServerSettings

log = logging.getLogger("pixql.server")

DESCRIPTION = """Visual SQL over your own images.

Submit SQL with `POST /api/v1/queries`, poll `GET /api/v1/queries/{query_id}` until
`status` is `Complete`, then read `results.data`.  Authenticate with
`Authorization: Bearer <client_id>:<client_secret>` (create one with `pixql token create`).
"""


def create_app(settings: ServerSettings | None = None, state=None) -> FastAPI:
    """Build the app.  The warehouse opens in the lifespan, so importing this opens nothing."""
    settings = settings or ServerSettings()
    settings.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .state import ServerState

        app.state.pixql = state or ServerState(settings)
        try:
            yield
        finally:
            app.state.pixql.close()
            app.state.pixql = None

    app = FastAPI(title="PixQL", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.pixql = None
    errors.install(app)
    from api import intake

    intake.install(app, lambda: int(settings.max_upload_mb * 1024 * 1024))
    for router in ROUTERS:
        app.include_router(router)
    return app
