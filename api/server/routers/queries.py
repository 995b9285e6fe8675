"""`/api/v1/queries`: submit SQL, poll its status, page its rows (JSON), download them (CSV, Parquet), stop it."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from warehouse.errors import Gone
from warehouse.queries import FINAL, QueryConflict, QueryNotFound

from ..deps import Reader, State
from ..errors import NotFound
from ..models import QueryList, QueryRequest, QueryResponse, QueryResults, QueryStatus

router = APIRouter(prefix="/api/v1/queries", tags=["queries"])


def _visible(state, who, qid: str) -> dict:
    rec = state.engine.record(qid)
    if who.scope != "admin" and rec["owner"] != who.client_id:
        raise QueryNotFound(qid)  # other users' queries do not exist for you
    return rec


def _readable(state, who, qid: str) -> dict:
    """A visible record whose result is still served: a withdrawn one (erasure, retention) is 410 with why."""
    rec = _visible(state, who, qid)
    if rec.get("withdrawn"):
        raise Gone(f"the result of query {qid} is gone: {rec['withdrawn']}")
    return rec


def _response(state, rec: dict, offset: int | None = None, limit: int | None = None) -> QueryResponse:
    body = {k: rec[k] for k in QueryResponse.model_fields if k in rec and k != "results"}
    if rec["status"] == "Complete" and offset is not None:
        names, rows = state.engine.page(rec["query_id"], offset, limit)
        total = rec["total_row_count"] or 0
        types = {c["name"]: c["type"] for c in rec["columns"] or []}
        end = offset + len(rows)
        body["results"] = QueryResults(
            columns=names,
            column_types=[types.get(n, "") for n in names],
            offset=offset,
            limit=limit,
            next_offset=end if end < total else None,
            data=rows,
        )
    return QueryResponse(**body)


@router.post("", status_code=201, response_model=QueryResponse, response_model_exclude_none=False)
def submit_query(body: QueryRequest, state: State, who: Reader):
    """Queue one SELECT; poll `GET /api/v1/queries/{query_id}` until `status` is `Complete`."""
    rec = state.engine.submit(body.query, body.dataset_id, body.embedding_id, owner=who.client_id)
    return _response(state, rec)


@router.get("", response_model=QueryList)
def list_queries(
    state: State,
    who: Reader,
    status: QueryStatus | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
):
    owner = None if who.scope == "admin" else who.client_id
    recs, total = state.engine.list(status, owner if state.settings.auth else None, offset, limit)
    return QueryList(queries=[_response(state, r) for r in recs], total=total, offset=offset, limit=limit)


async def _await_final(state, query_id: str, timeout: float) -> None:
    """Long poll without holding a worker thread: watch the engine's in-memory status."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        if state.engine.recent_status(query_id) in FINAL:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.1)


@router.get("/{query_id}", response_model=QueryResponse)
async def get_query(
    query_id: str,
    state: State,
    who: Reader,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=0, le=10_000),
    wait: float = Query(0, ge=0, le=30, description="Long poll: wait up to this many seconds for a final status."),
):
    """Status and, once `Complete`, rows `offset`..`offset+limit` of the result."""
    rec = await run_in_threadpool(_readable, state, who, query_id)
    if wait and rec["status"] not in FINAL:
        await _await_final(state, query_id, wait)
        rec = await run_in_threadpool(_readable, state, who, query_id)
    return await run_in_threadpool(_response, state, rec, offset, limit)


@router.post("/{query_id}/stop", response_model=QueryResponse)
def stop_query(query_id: str, state: State, who: Reader):
    """Interrupt a queued or running query (`Stopping`, then `Stopped`); 409 if already finished."""
    _visible(state, who, query_id)
    return _response(state, state.engine.stop(query_id))


@router.get("/{query_id}/csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "A header row, then every row."}})
def query_csv(query_id: str, state: State, who: Reader):
    """All rows of a complete query as CSV, streamed."""
    rec = _readable(state, who, query_id)
    if rec["status"] != "Complete":
        raise QueryConflict(f"query {query_id} is {rec['status']}; CSV is available once it is Complete")
    return StreamingResponse(
        state.engine.iter_csv(query_id),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{query_id}.csv"'},
    )


PARQUET = "application/vnd.apache.parquet"


@router.get("/{query_id}/parquet", response_class=FileResponse,
            responses={200: {"content": {PARQUET: {}}, "description": "The result file, as the worker wrote it."}})
def query_parquet(query_id: str, state: State, who: Reader):
    """All rows of a complete query as the Parquet file the engine keeps: exact column types (the client reads it)."""
    rec = _readable(state, who, query_id)
    if rec["status"] != "Complete":
        raise QueryConflict(f"query {query_id} is {rec['status']}; Parquet is available once it is Complete")
    path = state.engine.result_path(query_id)
    if not path.is_file():  # deleted behind the server's back: say so rather than fail mid-response
        raise NotFound(f"the result file of query {query_id} is gone")
    return FileResponse(path, media_type=PARQUET, filename=f"{query_id}.parquet")
