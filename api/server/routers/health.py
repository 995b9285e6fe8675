"""Liveness (`/health`) and readiness (`/ready`: warehouse open, default model loaded)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health():
    return {"status": "ok"}


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready yet."}})
def ready(request: Request):
    state = getattr(request.app.state, "pixql", None)
    if state is None:
        return JSONResponse({"status": "starting", "warehouse": False, "model": False}, status_code=503)
    if not state.settings.load_model:
        model = "lazy"  # --lazy-model: loaded by the first request that needs it
    elif state.model_error:
        model = "error"
    else:
        model = "loaded" if state.model_ready.is_set() else "loading"
    ok = model in ("loaded", "lazy")
    body = {
        "status": "ready" if ok else "starting",
        "warehouse": str(state.wh.root),
        "model": model,
        "model_error": state.model_error,
        "auth": state.settings.auth,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
