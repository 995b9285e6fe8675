"""The PixQL HTTP API: a FastAPI app serving one warehouse.

`create_app(settings)` builds the app; `api/cli/serve.py` runs it on uvicorn.
Resources live in `routers/` (one module per resource, listed in
`routers.ROUTERS`); request and response shapes in `models.py`; the
warehouse handle and auth as dependencies in `deps.py`.
"""
from .app import create_app
from .settings import ServerSettings

__all__ = ["create_app", "ServerSettings"]
