"""Every resource's router, in the order they appear in /docs.

Adding a resource is one line: write `routers/<name>.py` exposing
`router = APIRouter(prefix="/api/v1/<name>", tags=["<name>"])` and append
`<name>.router` to ROUTERS below (import it with the others).
"""
from __future__ import annotations

from . import assets, classify, concepts, datasets, health, ingestion, moderation, queries, tokens
from . import insights, search
from . import coactive_assets, coactive_unsupported
from . import erasure
from api.web import router as web_page  # the browser UI: HTML shells + static files (api/web)

ROUTERS = [
    health.router,
    queries.router,
    queries.v0_router,
    classify.router,
    concepts.router,
    search.router,
    datasets.router,
    coactive_assets.router,
    ingestion.router,
    assets.router,
    tokens.router,
    moderation.router,
    insights.router,
    coactive_unsupported.router,
    erasure.router,
    web_page,
]
