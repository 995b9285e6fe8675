"""FastAPI dependencies: the server state (warehouse handle) and the caller's identity and scope.

Route functions declare what they need:

    def route(state: State, who: Reader): ...    # any valid token
    def route(state: State, who: Writer): ...    # scope write or admin
    def route(state: State, who: Admin): ...
    def route(intake: IntakeDep): ...            # client paths, URLs, uploads -> bytes (api/intake.py)
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ANONYMOUS_ADMIN, Principal, require
from api.intake import IntakeDep  # noqa: F401  (re-exported: the one way routes reach client files and URLs)

from .errors import NotReady
from .state import ServerState

_bearer = HTTPBearer(auto_error=False, description="client_id:client_secret from `pixql token create`")


def get_state(request: Request) -> ServerState:
    state = getattr(request.app.state, "pixql", None)
    if state is None:
        raise NotReady("the warehouse is not open yet")
    return state


State = Annotated[ServerState, Depends(get_state)]


def principal(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if not state.settings.auth:
        return ANONYMOUS_ADMIN
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    return state.verifier.verify(header)


def needs(scope: str):
    def dependency(who: Annotated[Principal, Depends(principal)]) -> Principal:
        require(who, scope)
        return who

    dependency.__name__ = f"needs_{scope}"
    return dependency


Reader = Annotated[Principal, Depends(needs("read"))]
Writer = Annotated[Principal, Depends(needs("write"))]
Admin = Annotated[Principal, Depends(needs("admin"))]


def model_ready(state: ServerState) -> None:
    if not state.model_ready.wait(timeout=0):
        raise NotReady("the model is still loading; retry shortly")
    if state.model_error:
        raise NotReady(f"the model failed to load: {state.model_error}")
