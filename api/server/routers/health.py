"""Liveness (`/health`) and readiness (`/ready`: warehouse open, default model loaded)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request):
    state = getattr(request.app.state, "pixql", None)
    if state is None:
        return JSONResponse({"status": "starting", "warehouse": False, "model": False}, status_code=503)
    model = state.model_ready.is_set() and state.model_error is None
    body = {
        "status": "ready" if model else "starting",
        "warehouse": str(state.wh.root),
        "model": model,
        "model_error": state.model_error,
        "auth": state.settings.auth,
    }
    return JSONResponse(body, status_code=200 if model else 503)
