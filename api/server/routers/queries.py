"""`/api/v1/queries`: submit SQL, poll its status, page its rows (JSON), download them (CSV, Parquet), stop it.

The same handlers answer PixQL's clients (snake_case, rows in `results`) and the
Coactive SDK (camelCase twins, rows in `result`): see `models.QueryResponse`.
`v0_router` serves the tutorial's older generated SDK (`/api/v0/queries`) with them too.
"""
from __future__ import annotations

import asyncio

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel

from api.auth import Principal, require
from warehouse import catalog
from warehouse.errors import Gone
from warehouse.queries import FINAL, QueryConflict, QueryNotFound

from .. import deps
from ..deps import Reader, State
from ..state import ServerState
from ..errors import NotFound
from ..models import CoactiveQueryResult, QueryList, QueryRequest, QueryResponse, QueryResults, QueryStatus
from ..models_coactive import SERVER_USER, paged_meta

router = APIRouter(prefix="/api/v1/queries", tags=["queries"])
v0_router = APIRouter(prefix="/api/v0/queries", tags=["queries"])


async def _state(request: Request) -> ServerState:
    return deps.get_state(request)


async def _reader(state: Annotated[ServerState, Depends(_state)],
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(deps._bearer)]) -> Principal:
    """`deps.Reader` for the hot routes (submit, poll), run on the event loop: FastAPI runs a
    plain-`def` dependency in its thread pool, and on a busy 2-core machine each of those hops
    costs more than the token check itself (a cached hash; a catalog read every few seconds)."""
    who = deps.principal(state, credentials)
    require(who, "read")
    return who


FastState = Annotated[ServerState, Depends(_state)]
FastReader = Annotated[Principal, Depends(_reader)]


def _settle(fut: asyncio.Future, error: BaseException | None) -> None:
    if not fut.done():
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(None)


class DownloadUrl(BaseModel):
    """The SDK's `QueryResultsDownloadUrl`; the URL takes the same bearer token as this call."""

    queryId: str
    downloadUrl: str
    query_id: str
    download_url: str


class Deleted(BaseModel):
    query_id: str
    queryId: str
    deleted: bool


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


def _send(model: QueryResponse, status_code: int = 200) -> Response:
    """The model as JSON, as FastAPI would write it, without its second validation of the whole body
    (a query's hot path: every poll of every client)."""
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


def _response(state, rec: dict, offset: int | None = None, limit: int | None = None,
              path: str | None = None) -> QueryResponse:
    body = {k: rec[k] for k in QueryResponse.model_fields if k in rec and k != "results"}
    body["dataset_uuid"] = catalog.dataset_uuid(state.cursor(), rec["dataset_id"]) or rec["dataset_id"] or ""
    body["created_user_id"] = rec.get("owner") or SERVER_USER
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
        meta = paged_meta(path or f"/api/v1/queries/{rec['query_id']}", offset, limit, total)
        body["result"] = CoactiveQueryResult(meta=meta.model_dump(by_alias=True), data=rows)
    elif rec["status"] == "Error":
        body["result"] = CoactiveQueryResult(error=rec["error"])
    return QueryResponse(**body)


@router.post("", status_code=201, response_model=QueryResponse, response_model_exclude_none=False)
@v0_router.post("", status_code=201, response_model=QueryResponse, response_model_exclude_none=False)
async def submit_query(
    request: Request,
    body: QueryRequest,
    state: FastState,
    who: FastReader,
    wait: float = Query(0, ge=0, le=30, description="Answer once the query is final (up to this many seconds), "
                        "with its first page: one round trip instead of a POST and a GET."),
    limit: int = Query(100, ge=0, le=10_000, description="Rows of that first page (with `wait`)."),
):
    """Queue one SELECT; poll `GET /api/v1/queries/{query_id}` until `status` is `Complete`
    (or pass `wait` to get the final record and its first page in this answer).
    `dataset_id` (or `datasetId`) is a dataset's name or UUID."""
    dataset = body.dataset_id
    if dataset:
        try:
            dataset = catalog.resolve_dataset(state.cursor(), dataset)
        except NotFound:
            pass  # the engine refuses it as before: a 400 naming dataset_id
    loop = asyncio.get_running_loop()
    committed = loop.create_future()
    # The INSERT commits on the engine's committer thread; this coroutine is woken then,
    # without a thread of the pool blocked on it.  Nothing is answered before it is durable.
    rec, _ = state.engine.begin(body.query, dataset, body.embedding_id, owner=who.client_id,
                                then=lambda row, error: loop.call_soon_threadsafe(_settle, committed, error))
    try:
        await committed
    except Exception:
        state.engine.abandon(rec["query_id"])
        raise
    if wait:
        qid = rec["query_id"]
        await _await_final(state, qid, wait)
        answer = await _answer(state, who, qid, 0, limit, f"/api/v1/queries/{qid}")
        return _send(answer, 201)
    return _send(_response(state, rec), 201)


@router.get("", response_model=QueryList)
def list_queries(
    request: Request,
    state: State,
    who: Reader,
    status: QueryStatus | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
    ids: list[str] | None = Query(None, description="Only these query ids (unknown ones are left out)."),
):
    owner = None if who.scope == "admin" else who.client_id
    owner = owner if state.settings.auth else None
    if ids:
        recs = []
        for qid in dict.fromkeys(ids):
            try:
                rec = state.engine.record(qid)
            except QueryNotFound:
                continue
            if (owner is None or rec["owner"] == owner) and (status is None or rec["status"] == status):
                recs.append(rec)
        total = len(recs)
        recs = recs[offset:offset + limit]
    else:
        recs, total = state.engine.list(status, owner, offset, limit)
    out = [_response(state, r) for r in recs]
    meta = paged_meta(request.url.path, offset, limit, total, [("created_dt", "desc")], status=status, ids=ids)
    return QueryList(queries=out, total=total, offset=offset, limit=limit, data=out,
                     meta=meta.model_dump(by_alias=True))


async def _await_final(state, query_id: str, timeout: float) -> None:
    """Long poll without holding a worker thread: woken by the engine the instant the query ends."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def wake() -> None:  # from the engine's thread
        loop.call_soon_threadsafe(lambda: ended.done() or ended.set_result(None))

    cancel = state.engine.on_final(query_id, wake)
    try:
        await asyncio.wait_for(ended, timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        cancel()


@router.get("/{query_id}", response_model=QueryResponse)
@v0_router.get("/{query_id}", response_model=QueryResponse)
async def get_query(
    request: Request,
    query_id: str,
    state: FastState,
    who: FastReader,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=0, le=10_000),
    wait: float = Query(0, ge=0, le=30, description="Long poll: wait up to this many seconds for a final status."),
    exclude_results: bool = Query(False, description="Status only, no rows (the SDK's exclude_results)."),
):
    """Status and, once `Complete`, rows `offset`..`offset+limit` of the result (in `results` and `result`)."""
    rows_from = None if exclude_results else offset
    body = await _answer(state, who, query_id, rows_from, limit, request.url.path, final_only=bool(wait))
    if body is None:
        await _await_final(state, query_id, wait)
        body = await _answer(state, who, query_id, rows_from, limit, request.url.path)
    return _send(body)


async def _answer(state, who, query_id: str, offset: int | None, limit: int, path: str,
                  final_only: bool = False) -> QueryResponse | None:
    """The record and, once final, its page; None if `final_only` and it is not final yet.

    On the event loop when the page comes from memory (the record is one indexed catalog
    read): a hop to the thread pool costs more than that.  A page read from the result
    file goes to the pool."""
    rec = _readable(state, who, query_id)
    if final_only and rec["status"] not in FINAL:
        return None
    if rec["status"] == "Complete" and offset is not None and not state.engine.has_inline(query_id):
        return await run_in_threadpool(_response, state, rec, offset, limit, path)
    return _response(state, rec, offset, limit, path)


@router.post("/{query_id}/stop", response_model=QueryResponse)
def stop_query(query_id: str, state: State, who: Reader):
    """Interrupt a queued or running query (`Stopping`, then `Stopped`); 409 if already finished."""
    _visible(state, who, query_id)
    return _response(state, state.engine.stop(query_id))


@router.delete("/{query_id}", response_model=Deleted)
def delete_query(query_id: str, state: State, who: Reader):
    """Forget a query: its record and its result file go (a running one is stopped first)."""
    _visible(state, who, query_id)
    state.engine.delete(query_id)
    return Deleted(query_id=query_id, queryId=query_id, deleted=True)


@router.get("/{query_id}/csv/url", response_model=DownloadUrl)
def query_csv_url(query_id: str, request: Request, state: State, who: Reader):
    """Where to download the CSV (the SDK's get_results_download_url): send the same token there."""
    rec = _readable(state, who, query_id)
    if rec["status"] != "Complete":
        raise QueryConflict(f"query {query_id} is {rec['status']}; CSV is available once it is Complete")
    url = str(request.url_for("query_csv", query_id=query_id))
    return DownloadUrl(queryId=query_id, downloadUrl=url, query_id=query_id, download_url=url)


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
