"""Every API route states its response contract, so /docs is complete: a Pydantic `response_model`,
or (files, streams, 204s) a response class with its media type documented.  The HTML pages and
static files of the web UI are not API routes (they are left out of the schema)."""
from __future__ import annotations

from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.server.app import create_app
from api.server.settings import ServerSettings


def _api_routes(routes):
    """The app's APIRoutes; FastAPI >= 0.16x keeps an included router as one node holding its routes."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):
            yield from _api_routes(r.original_router.routes)
        elif hasattr(r, "routes"):
            yield from _api_routes(r.routes)


def _documented(route: APIRoute) -> bool:
    if route.response_model is not None:
        return True
    if route.status_code == 204:
        return True  # no body to describe
    cls = route.response_class
    if isinstance(cls, DefaultPlaceholder) or issubclass(cls, JSONResponse):
        return False
    content = (route.responses.get(200) or route.responses.get("200") or {}).get("content")
    return bool(content)  # e.g. {"text/csv": {}}, {"image/jpeg": {}}


def _app():
    return create_app(ServerSettings())


def test_every_api_route_has_a_response_contract():
    app = _app()
    routes = [r for r in _api_routes(app.routes) if r.include_in_schema]
    assert len(routes) > 60  # the walk reached into the included routers
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if not _documented(r)]
    assert missing == []


def test_left_out_routes_are_only_web_pages_and_static_files():
    hidden = [r.path for r in _api_routes(_app().routes) if not r.include_in_schema]
    assert hidden and all(p == "/" or p == "/web" or p.startswith("/web/") for p in hidden)
    assert not any(p.startswith("/web/api/") for p in hidden)


def test_openapi_describes_every_json_answer():
    """What /docs renders: each JSON success response has a schema, not an empty `{}`."""
    spec = _app().openapi()
    empty = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                if not code.startswith("2") or code == "204":
                    continue
                json_body = resp.get("content", {}).get("application/json")
                if json_body is not None and not json_body.get("schema"):
                    empty.append(f"{method.upper()} {path} {code}")
    assert empty == []
