"""`POST /api/v1/datasets/{id}/assets` and `PUT /api/v1/datasets/{id}/assets-metadata` (the SDK's
`dataset.add_assets` and `dataset.update_asset_metadata`).

Adding assets is an ingestion job of the existing runner (`api/server/jobs.py`):
the answer's `requestGroupId` is its id, so `GET /api/v1/ingestion/{id}` shows
its progress.  Images and videos come by server-side path or http(s) URL, all
through the intake (`api/intake.py`): paths under `--path-root`, URLs by its
one downloader into `<root>/uploads/<batch>/` (on disk before the answer, as
uploads are).  Each listed asset's id is derived from its content before the
job runs, exactly as ingest derives it, so the answer names the ids the job
will commit; metadata and client ids given here are written to
`catalog.asset_metadata` under those ids.  `data_path` (a directory or glob) and
`csv_path` (a manifest: a `path` column, the rest metadata) are ingested whole.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from api.intake import IntakeDep, declares
from warehouse import catalog
from warehouse.errors import Invalid, NotFound

from ..deps import State, Writer, model_ready
from ..models_coactive import (SERVER_USER, AddAssets, AddAssetsConfirmation, AddedImage, AddedVideo,
                               AssetsMetadataConfirmation, AssetsMetadataUpdate, UpdatedImage, UpdatedVideo)
from .datasets import _metadata
from .ingestion import _fsync_dir, _safe_filename

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


def _is_url(p: str) -> bool:
    return urlparse(p).scheme.lower() in ("http", "https")


def _download(state, intake, urls: list[str]) -> dict[str, str]:
    """{url: saved path} for URLs fetched through the intake into a new uploads batch."""
    if not urls:
        return {}
    batch = state.wh.root / "uploads" / uuid.uuid4().hex[:12]
    batch.mkdir(parents=True, exist_ok=True)
    saved = {}
    try:
        for i, url in enumerate(dict.fromkeys(urls)):
            data, name = intake.fetch(url)
            dest = batch / f"{i:05d}-{_safe_filename(name or urlparse(url).path) or 'download'}"
            with open(dest, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())  # the job reads it, also after a crash
            saved[url] = str(dest.resolve())
        _fsync_dir(batch)
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise
    return saved


def _content_id(kind: str, dataset: str, path: str) -> str:
    """The id ingest will give this file (content-derived, see ingest/decode.py and ingest/video.py)."""
    from ingest.decode import asset_id, file_digest
    from ingest.video import stream_digest, video_id

    try:
        if kind == "video":
            return video_id(dataset, path, stream_digest(Path(path))[0])
        return asset_id(dataset, path, file_digest(Path(path))[1])
    except OSError as e:
        raise Invalid(f"{path}: cannot read file: {e.strerror or e}") from None
    except ValueError as e:  # DecodeError: empty or too large
        raise Invalid(f"{path}: {e}") from None


def _add(state, intake, ref: str, body: AddAssets, who) -> AddAssetsConfirmation:
    entries = [("image", x) for x in body.images or []] + [("video", x) for x in body.videos or []]
    if not entries and not body.data_path and not body.csv_path:
        raise RequestValidationError([{"loc": ["body"], "type": "value_error",
                                       "msg": "nothing to add: give images, videos, dataPath or csvPath"}])
    # Refusals first (403 before anything is read or fetched), then the dataset (404), then bad input (400).
    urls = [e.path for _, e in entries if _is_url(e.path)]
    listed = [e.path for _, e in entries if not _is_url(e.path)]
    manifest_paths: list[str] = []
    if body.csv_path:
        intake.check_paths([body.csv_path])
        from ingest.sources import load_manifest

        try:
            manifest_paths = [str(p) for p in load_manifest(body.csv_path)]
        except OSError as e:
            raise Invalid(f"{body.csv_path}: cannot read manifest: {e.strerror or e}") from None
    sources = intake.check_paths(listed + manifest_paths)
    # A directory's unusable files are the job's ingest errors; a data path that is not there is a 400.
    walked = intake.check_paths([body.data_path]) if body.data_path else []
    problems = intake.check_urls(urls)
    name = catalog.resolve_dataset(state.cursor(), ref)
    if problems:
        url, why = next(iter(problems.items()))
        raise Invalid(f"{url}: {why}")
    bad = [s for s in sources if s.problem]
    if bad:
        raise Invalid(f"{bad[0].path}: {bad[0].problem}")
    if body.data_path and (not walked or (len(walked) == 1 and walked[0].problem)):
        raise Invalid(f"{body.data_path}: {walked[0].problem if walked else 'matches no files'}")
    saved = _download(state, intake, urls)
    resolved = []
    for kind, e in entries:
        path = saved[e.path] if _is_url(e.path) else str(Path(e.path).expanduser().resolve())
        resolved.append((kind, e, path, _content_id(kind, name, path)))
    paths = list(dict.fromkeys([p for *_, p, _ in resolved] + ([body.data_path] if body.data_path else [])
                               + manifest_paths))
    con = state.cursor()
    rows = [dict(subject_id=aid, subject_kind=kind, dataset=name, metadata=e.metadata,
                 user_id=getattr(e, "id", None)) for kind, e, _, aid in resolved
            if e.metadata is not None or getattr(e, "id", None) is not None]
    now = catalog.now()
    if rows:
        with state.wh.transaction(con=con) as tx:
            catalog.set_asset_metadata(con, rows, who.name)
            tx.data_changed()
    job = state.jobs.submit(paths, name, None, who.name, manifest=body.csv_path)
    user = who.name or SERVER_USER
    common = dict(created_user_id=user, updated_user_id=user, created_dt=now, updated_dt=now, request_dt=now)
    images = [AddedImage(coactive_image_id=aid, path=path, id=e.id, metadata=e.metadata,
                         request_id=str(uuid.uuid4()), **common) for kind, e, path, aid in resolved if kind == "image"]
    videos = [AddedVideo(coactive_video_id=aid, path=path, metadata=e.metadata, request_id=str(uuid.uuid4()),
                         **common) for kind, e, path, aid in resolved if kind == "video"]
    return AddAssetsConfirmation(request_group_id=job["job_id"], images=images, videos=videos, job=job)


@router.post("/{dataset_id}/assets", status_code=202, response_model=AddAssetsConfirmation,
             openapi_extra=declares("path", "url"))
async def add_assets(dataset_id: str, body: AddAssets, state: State, who: Writer, intake: IntakeDep):
    """Queue an ingestion job of images and videos (paths or http(s) URLs), a `dataPath` directory or
    glob and/or a `csvPath` manifest; `requestGroupId` is the job: GET /api/v1/ingestion/{requestGroupId}."""
    model_ready(state)
    return await run_in_threadpool(_add, state, intake, dataset_id, body, who)


def _find(con, name: str, kind: str, ident: str | None, path: str | None) -> dict:
    lookup = catalog.dataset_videos if kind == "video" else catalog.dataset_images
    id_key = "coactive_video_id" if kind == "video" else "coactive_image_id"
    if ident:
        rows, _ = lookup(con, name, 0, 1, ids=[ident])
        what = ident
    elif path:
        rows, _ = lookup(con, name, 0, 1, paths=list(dict.fromkeys([path, os.path.realpath(path)])))
        what = path
    else:
        raise RequestValidationError([{"loc": ["body", f"{kind}s"], "type": "value_error",
                                       "msg": f"each {kind} needs {id_key} or path"}])
    if not rows:
        raise NotFound(f"no {kind} {what!r} in dataset {name!r}")
    return rows[0]


@router.put("/{dataset_id}/assets-metadata", response_model=AssetsMetadataConfirmation)
def update_asset_metadata(dataset_id: str, body: AssetsMetadataUpdate, state: State, who: Writer):
    """Replace the metadata of images and videos (by id or path); `coactive_table_adv.metadata` shows it
    (a video's on its keyframes).  One unknown asset (404) changes nothing."""
    con = state.cursor()
    name = catalog.resolve_dataset(con, dataset_id)
    found = [("image", _find(con, name, "image", u.coactive_image_id, u.path), u) for u in body.images or []]
    found += [("video", _find(con, name, "video", u.coactive_video_id, u.path), u) for u in body.videos or []]
    with state.wh.transaction(con=con) as tx:
        t = catalog.set_asset_metadata(con, [dict(subject_id=r.get("coactive_image_id") or r["coactive_video_id"],
                                                  subject_kind=kind, dataset=name, metadata=u.metadata)
                                             for kind, r, u in found], who.name)
        tx.data_changed()
    user = who.name or SERVER_USER
    images, videos = [], []
    for kind, r, u in found:
        common = dict(created_user_id=SERVER_USER, updated_user_id=user, created_dt=r["created_dt"], updated_dt=t,
                      request_id=str(uuid.uuid4()), request_dt=t, path=r["path"], metadata=_metadata(u.metadata))
        if kind == "image":
            images.append(UpdatedImage(coactive_image_id=r["coactive_image_id"], id=r["user_id"], **common))
        else:
            videos.append(UpdatedVideo(coactive_video_id=r["coactive_video_id"], **common))
    return AssetsMetadataConfirmation(request_group_id=str(uuid.uuid4()), images=images, videos=videos)
