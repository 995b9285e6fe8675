"""`/api/v1/datasets`: datasets with their counts (paged), create/get/update, their images and videos;
`/api/v1/tables`: the user views with their columns.

A dataset is addressed by its name or its UUID (`catalog.resolve_dataset`).  The
answers carry PixQL's fields and the Coactive SDK's `Dataset` fields side by
side (see `models.Dataset`); the list is Coactive's paged `{meta, data}`.
Adding assets and replacing their metadata are in `coactive_assets.py`.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError

from warehouse import catalog
from warehouse.errors import Invalid

from ..deps import Reader, State, Writer
from ..models import Dataset, DatasetList, IngestErrorOut, Table
from ..models_coactive import SERVER_USER, DatasetCreate, DatasetUpdate, Image, PagedImages, PagedVideos, Video, \
    paged_meta

router = APIRouter(prefix="/api/v1", tags=["datasets"])


def _tables(state) -> list[Table]:
    cur = state.cursor()
    out = []
    for name in state.engine.user_views():
        cols = cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [name],
        ).fetchall()
        out.append(Table(name=name, columns=[{"name": c, "type": t} for c, t in cols]))
    return out


def _status(r: dict) -> str:
    if r["ingesting"]:
        return "Initializing"
    return "Ready" if r["asset_count"] else "Incomplete"


def _dataset(r: dict, tables: list[Table]) -> Dataset:
    return Dataset(
        dataset_id=r["name"], name=r["name"], dataset_uuid=r["dataset_uuid"], description=r["description"],
        default_encoder=r["encoder"], created_dt=r["created_dt"], updated_dt=r["updated_dt"],
        created_user_id=r["created_by"] or SERVER_USER, updated_user_id=r["updated_by"] or r["created_by"] or SERVER_USER,
        asset_count=r["asset_count"], image_count=r["image_count"], video_count=r["video_count"],
        encoders=r["encoders"] or [], error_count=r["error_count"], status=_status(r), tables=tables)


def _one(state, ref: str) -> Dataset:
    con = state.cursor()
    name = catalog.resolve_dataset(con, ref)
    rows, _ = catalog.dataset_records(con, name)
    return _dataset(rows[0], _tables(state))


@router.get("/datasets", response_model=DatasetList)
def list_datasets(request: Request, state: State, who: Reader, offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=10_000)):
    """Datasets, oldest first, as Coactive's paged `{meta, data}`."""
    rows, total = catalog.dataset_records(state.cursor(), offset=offset, limit=limit)
    tables = _tables(state)
    meta = paged_meta(request.url.path, offset, limit, total, [("created_dt", "asc")])
    return DatasetList(meta=meta.model_dump(by_alias=True), data=[_dataset(r, tables) for r in rows])


def _refuse(field: str, msg: str):
    raise RequestValidationError([{"loc": ["body", field], "msg": msg, "type": "value_error"}])


@router.post("/datasets", status_code=201, response_model=Dataset)
def create_dataset(body: DatasetCreate, state: State, who: Writer):
    """An empty dataset (the SDK's dataset.create); add assets with POST /datasets/{id}/assets.

    Its encoder is the one given (a PixQL encoder spec) or the server's default; Coactive's
    encoder names (`multimodal`, ...) name no PixQL encoder and mean the default."""
    from encoders import DEFAULT_ENCODER, check_encoder_spec
    from ingest.pipeline import validate_dataset_name

    if body.credentials_id:
        _refuse("credentialsId", "credentials are not supported: PixQL reads storage with the server's own rights")
    validate_dataset_name(body.name)
    encoder = body.encoder
    if encoder is None or encoder.startswith("multimodal"):
        encoder = DEFAULT_ENCODER
    try:
        encoder = check_encoder_spec(encoder, state.settings.path_roots)
    except (KeyError, ValueError, PermissionError, FileNotFoundError) as e:
        _refuse("encoder", str(e))
    con = state.cursor()
    with state.wh.transaction(con=con):
        if catalog.dataset_exists(con, body.name):
            raise Invalid(f"dataset {body.name!r} already exists")
        catalog.ensure_dataset(con, body.name, encoder, body.description, created_by=who.name)
    return _one(state, body.name)


@router.get("/datasets/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, state: State, who: Reader):
    """One dataset, by name or UUID."""
    return _one(state, dataset_id)


@router.patch("/datasets/{dataset_id}", response_model=Dataset)
def update_dataset(dataset_id: str, body: DatasetUpdate, state: State, who: Writer):
    """Change the description.  A new name is refused (400): the name is the key of the dataset's
    rows and files, so renaming is not supported yet; the UUID is what stays stable."""
    con = state.cursor()
    name = catalog.resolve_dataset(con, dataset_id)
    if body.name is not None and body.name != name:
        raise Invalid(f"renaming dataset {name!r} is not supported; its name is the key of its rows and files")
    description = body.description if "description" in body.model_fields_set else \
        catalog.dataset_records(con, name)[0][0]["description"]
    with state.wh.transaction(con=con):
        catalog.update_dataset(con, name, description, who.name)
    return _one(state, name)


def _metadata(raw) -> dict | None:
    if raw is None:
        return None
    return raw if isinstance(raw, dict) else json.loads(raw)


@router.get("/datasets/{dataset_id}/images", response_model=PagedImages)
def dataset_images(dataset_id: str, request: Request, state: State, who: Reader, offset: int = Query(0, ge=0),
                   limit: int = Query(100, ge=1, le=10_000)):
    """The dataset's images (not keyframes), in ingest order, with their current metadata."""
    con = state.cursor()
    name = catalog.resolve_dataset(con, dataset_id)
    rows, total = catalog.dataset_images(con, name, offset, limit)
    data = [Image(created_user_id=SERVER_USER, updated_user_id=r["updated_by"] or SERVER_USER,
                  created_dt=r["created_dt"], updated_dt=r["updated_dt"] or r["created_dt"],
                  coactive_image_id=r["coactive_image_id"], path=r["path"], id=r["user_id"],
                  metadata=_metadata(r["metadata"])) for r in rows]
    return PagedImages(meta=paged_meta(request.url.path, offset, limit, total, [("created_dt", "asc")]), data=data)


@router.get("/datasets/{dataset_id}/videos", response_model=PagedVideos)
def dataset_videos(dataset_id: str, request: Request, state: State, who: Reader, offset: int = Query(0, ge=0),
                   limit: int = Query(100, ge=1, le=10_000)):
    """The dataset's videos (their keyframes are images of `coactive_table`), with their metadata."""
    con = state.cursor()
    name = catalog.resolve_dataset(con, dataset_id)
    rows, total = catalog.dataset_videos(con, name, offset, limit)
    data = [Video(created_user_id=SERVER_USER, updated_user_id=r["updated_by"] or SERVER_USER,
                  created_dt=r["created_dt"], updated_dt=r["updated_dt"] or r["created_dt"],
                  coactive_video_id=r["coactive_video_id"], path=r["path"], metadata=_metadata(r["metadata"]))
            for r in rows]
    return PagedVideos(meta=paged_meta(request.url.path, offset, limit, total, [("created_dt", "asc")]), data=data)


@router.get("/datasets/{dataset_id}/errors", response_model=list[IngestErrorOut])
def dataset_errors(dataset_id: str, state: State, who: Reader, limit: int = Query(100, ge=1, le=10_000)):
    """Files of this dataset that could not be ingested, with the reason."""
    con = state.cursor()
    return catalog.dataset_errors(con, catalog.resolve_dataset(con, dataset_id), limit)


@router.get("/tables", response_model=list[Table])
def list_tables(state: State, who: Reader):
    """The views SQL may name, with their columns."""
    return _tables(state)

