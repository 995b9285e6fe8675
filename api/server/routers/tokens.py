"""`/api/v1/tokens` (admin): create, list and revoke API tokens while the server runs.

`pixql token create` does the same from the shell when no server holds the warehouse.
"""
from __future__ import annotations

from fastapi import APIRouter

from api import auth

from ..deps import Admin, State
from ..errors import NotFound
from ..models import TokenCreated, TokenInfo, TokenRequest

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(body: TokenRequest, state: State, who: Admin):
    """The secret is in this response only; the server keeps its hash."""
    with state.wh.write_lock:
        client_id, secret = auth.create_token(state.cursor(), body.name, body.scope)
    return TokenCreated(client_id=client_id, client_secret=secret, name=body.name, scope=body.scope,
                        access_token=f"{client_id}:{secret}")


@router.get("", response_model=list[TokenInfo])
def list_tokens(state: State, who: Admin):
    return auth.list_tokens(state.cursor())


@router.delete("/{client_id}", status_code=204)
def revoke_token(client_id: str, state: State, who: Admin):
    with state.wh.write_lock:
        found = auth.revoke_token(state.cursor(), client_id)
    if not found:
        raise NotFound(f"no active token {client_id!r}")
    state.verifier.forget(client_id)
