"""Routes of the web page: the HTML shells, the static files, and two helpers the page needs.

The shells carry no warehouse data, so the browser can load them without a
header; everything they show comes from `/api/v1/...` calls the page makes with
the session's bearer token.  The two JSON helpers here (`/web/api/...`) sit
behind the API's own auth dependencies.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.server.deps import Reader, State
from api.server.errors import NotFound
from api.server.models import Session
from api.server.models_moderation import WebQueue

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(tags=["web page"])

# The screens, in the order of the navigation bar: (path, template, title).
SCREENS = [
    ("/web/dashboard", "dashboard.html", "Dashboard"),
    ("/web/queue", "queue.html", "Review queue"),
    ("/web/sql", "sql.html", "SQL console"),
    ("/web/concepts", "concepts.html", "Concepts"),
]

_MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Third-party files shipped with the package (each with its licence), served from static/vendor/<lib>/.
VENDOR = STATIC / "vendor"


def _page(request: Request, template: str, title: str, **context) -> HTMLResponse:
    nav = [{"path": p, "title": t} for p, _, t in SCREENS]
    return templates.TemplateResponse(
        request, template, {"title": title, "nav": nav, "active": request.url.path, **context},
        # The shells change with the code, not the data; never cache them across upgrades.
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/", include_in_schema=False)
def root():
    return RedirectResponse("/web/queue")


@router.get("/web", include_in_schema=False)
@router.get("/web/", include_in_schema=False)
def web_root():
    return RedirectResponse("/web/queue")


@router.get("/web/login", include_in_schema=False, response_class=HTMLResponse)
def login_page(request: Request):
    return _page(request, "login.html", "Log in")


@router.get("/web/dashboard", include_in_schema=False, response_class=HTMLResponse)
def dashboard_page(request: Request):
    return _page(request, "dashboard.html", "Dashboard")


@router.get("/web/videos/{video_id}", include_in_schema=False, response_class=HTMLResponse)
def video_page(request: Request, video_id: str):
    return _page(request, "video.html", "Video timeline", video_id=video_id)


@router.get("/web/queue", include_in_schema=False, response_class=HTMLResponse)
def queue_page(request: Request):
    return _page(request, "queue.html", "Review queue")


@router.get("/web/sql", include_in_schema=False, response_class=HTMLResponse)
def sql_page(request: Request):
    return _page(request, "sql.html", "SQL console")


@router.get("/web/concepts", include_in_schema=False, response_class=HTMLResponse)
def concepts_page(request: Request):
    return _page(request, "concepts.html", "Concepts")


@router.get("/web/concepts/{name}", include_in_schema=False, response_class=HTMLResponse)
def concept_page(request: Request, name: str):
    return _page(request, "concept.html", f"Concept {name}", concept=name)


@router.get("/web/static/{name}", include_in_schema=False)
def static(name: str):
    # A flat directory and a name without separators: nothing outside STATIC is reachable.
    path = STATIC / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    return FileResponse(path, media_type=_MEDIA.get(path.suffix), headers={"Cache-Control": "no-cache"})


@router.get("/web/static/vendor/{lib}/{name}", include_in_schema=False)
def vendored(lib: str, name: str):
    path = VENDOR / lib / name
    if any(c in lib + name for c in "/\\") or lib.startswith(".") or name.startswith(".") or not path.is_file():
        raise NotFound(f"no vendored file {lib}/{name}")
    # Versioned by the package, large, and never edited in place: let the browser keep it a day.
    media = _MEDIA.get(path.suffix, "text/plain; charset=utf-8")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/web/api/session", response_model=Session)
def session(state: State, who: Reader):
    """Who the bearer token belongs to; the login form calls it to check a token."""
    return {"client_id": who.client_id, "name": who.name, "scope": who.scope, "auth": state.settings.auth}


@router.get("/web/api/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def thumbnail_by_path(state: State, who: Reader, path: str = Query(..., min_length=1),
                      size: int = Query(256, ge=16, le=1024)):
    """The thumbnail of the asset stored at `path`, for result rows that carry a path but no id.

    Only paths the warehouse already holds resolve; any other path is a 404, so
    this never reads a file the catalog does not know.
    """
    from api.server.routers.assets import thumbnail_bytes

    from warehouse import catalog

    asset_id = catalog.asset_id_at_path(state.cursor(), path)
    if asset_id is None:
        raise NotFound(f"no asset at path {path!r}")
    data = thumbnail_bytes(state, asset_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/web/api/queue", response_model=WebQueue, response_model_exclude_unset=True)
def review_queue(state: State, who: Reader,
                 status: Literal["approved", "rejected", "review", "any"] | None = Query("review"),
                 dataset: str | None = None, category: str | None = None, policy: str | None = None,
                 offset: int = Query(0, ge=0), limit: int = Query(24, ge=1, le=500),
                 drill: Literal["flagged", "decided", "overturned"] | None = None,
                 since: date | None = None, until: date | None = None, day: date | None = None,
                 decision: str | None = None):
    """The moderation queue with the page's filters (category, policy) and each video's worst keyframe.

    With `drill` (and `since`, `until`, `day`, `category`, `decision`), only the
    subjects behind that dashboard chart point, whatever their status now;
    `category` then names the chart's top-level category, not a queue filter.
    """
    from . import insights
    from .queue import queue

    st = None if status == "any" else status
    ids = None
    if drill:
        s, u = insights.period(since, until)
        ids = insights.subjects(state.cursor(), drill, s, u, dataset or None, day, category or None, decision or None)
        st, category = None, None
    out = queue(state.cursor(), st, dataset or None, category or None, policy or None, offset, limit, ids)
    out["drill"] = drill
    return out
