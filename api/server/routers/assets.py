"""`/api/v1/assets/{id}`: an asset's row, its original file, and a JPEG thumbnail; and the Coactive
SDK's `/api/v1/assets/image-detail` and `/video-detail` (by id or path, optionally within a dataset).

Thumbnails are a cache under `<root>/thumbnails/` (written atomically, rebuilt
if deleted), decoded by ingest's own code: keyframes are cut from their video at
the keyframe's time and turned as ingest turned them.  An asset whose path is an
object URI (`s3://...`) is read through `ingest.objects`, as ingest read it.
"""
from __future__ import annotations

import io
import mimetypes
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response, StreamingResponse

from warehouse.errors import Invalid, Unprocessable
from warehouse import catalog
from warehouse.storage import atomic_write_bytes

from ..deps import Reader, State
from ..errors import NotFound
from ..models import Asset
from ..models_coactive import SERVER_USER, Image, Keyframe, Shot, Video
from .datasets import _metadata

router = APIRouter(prefix="/api/v1/assets", tags=["assets"])


def _row(state, asset_id: str) -> dict:
    row = catalog.asset(state.cursor(), asset_id)
    if row is None:
        raise NotFound(f"unknown asset {asset_id!r}")
    return row


def _located(row: dict):
    """The asset's file or object, 404 if it is gone, 422 if it can no longer be read."""
    from ingest import objects

    path = objects.location(row["path"])
    try:
        present = path.is_file()
    except OSError as e:  # an object the server's credentials may no longer read
        raise Unprocessable(f"the file of asset {row['coactive_image_id']} cannot be read: {e}") from None
    if not present:
        raise NotFound(f"the file of asset {row['coactive_image_id']} is gone: {path}")
    return path


def _open_image(row: dict, size: int):
    """The asset's picture decoded as ingest decodes it (EXIF orientation, a video's display
    rotation, transparency on white); a file no longer decodable is a 422 with the reason."""
    from ingest.decode import DecodeError, file_digest, open_image

    path = _located(row)
    try:
        if row["media_type"] == "keyframe":
            from ingest.video import frame_at

            return frame_at(path, row["keyframe_time_ms"] or 0)
        data, _ = file_digest(path)
        return open_image(data, target=size)[0]
    except (DecodeError, OSError) as e:
        # PIL raises OSError for a file cut short before its header ends.  The web
        # page shows its placeholder with this reason as the tooltip.
        reason = str(e) if isinstance(e, DecodeError) else f"corrupt or unreadable file: {e.strerror or e}"
        raise Unprocessable(f"cannot make a thumbnail of asset {row['coactive_image_id']}: {reason}") from None


def thumbnail_bytes(state, asset_id: str, size: int) -> bytes:
    cache = state.wh.root / "thumbnails" / f"{asset_id}-{size}.jpg"
    if cache.is_file():
        return cache.read_bytes()
    row = _row(state, asset_id)
    im = _open_image(row, size).convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    atomic_write_bytes(data, cache)
    return data


def _video(con, video_id: str, dataset: str | None) -> Video:
    rows, _ = catalog.dataset_videos(con, dataset or catalog.video(con, video_id)["dataset"], 0, 1, ids=[video_id])
    r = rows[0]
    return Video(created_user_id=SERVER_USER, updated_user_id=r["updated_by"] or SERVER_USER,
                 created_dt=r["created_dt"], updated_dt=r["updated_dt"] or r["created_dt"],
                 coactive_video_id=r["coactive_video_id"], path=r["path"], metadata=_metadata(r["metadata"]))


def _detail_args(dataset_id, path, ident, what: str):
    if not ident and not path:
        raise Invalid(f"give coactive_{what}_id or path")


@router.get("/image-detail", response_model=Image | Keyframe)
def image_detail(state: State, who: Reader, dataset_id: str | None = None, path: str | None = None,
                 coactive_image_id: str | None = None):
    """An image (with its metadata) or a keyframe (with its video and its interval as the shot)."""
    _detail_args(dataset_id, path, coactive_image_id, "image")
    con = state.cursor()
    dataset = catalog.resolve_dataset(con, dataset_id) if dataset_id else None
    aid = coactive_image_id or catalog.asset_id_at_path(con, path, dataset) or \
        catalog.asset_id_at_path(con, str(Path(path).resolve()), dataset)
    row = catalog.asset(con, aid) if aid else None
    if row is None or (dataset is not None and row["dataset"] != dataset):
        raise NotFound(f"unknown image {coactive_image_id or path!r}" + (f" in dataset {dataset!r}" if dataset else ""))
    if row["media_type"] == "keyframe":
        video_id = con.execute("SELECT coactive_video_id FROM pixql_internal.assets WHERE coactive_image_id = ?",
                               [aid]).fetchone()[0]
        frames = catalog.video_keyframes(con, video_id)
        times = [t for _, _, t in frames]
        i = next(k for k, (fid, _, _) in enumerate(frames) if fid == aid)
        end = times[i + 1] if i + 1 < len(times) else (catalog.video(con, video_id)["duration_ms"] or times[i])
        return Keyframe(coactive_image_id=aid, video=_video(con, video_id, row["dataset"]),
                        shot=Shot(shot_id=f"{video_id}:{frames[i][1]}", start_time_ms=times[i] or 0,
                                  end_time_ms=end or 0), timestamp=times[i])
    rows, _ = catalog.dataset_images(con, row["dataset"], 0, 1, ids=[aid])
    r = rows[0]
    return Image(created_user_id=SERVER_USER, updated_user_id=r["updated_by"] or SERVER_USER,
                 created_dt=r["created_dt"], updated_dt=r["updated_dt"] or r["created_dt"],
                 coactive_image_id=aid, path=r["path"], id=r["user_id"], metadata=_metadata(r["metadata"]))


@router.get("/video-detail", response_model=Video)
def video_detail(state: State, who: Reader, dataset_id: str | None = None, path: str | None = None,
                 coactive_video_id: str | None = None):
    """A video with its metadata."""
    _detail_args(dataset_id, path, coactive_video_id, "video")
    con = state.cursor()
    dataset = catalog.resolve_dataset(con, dataset_id) if dataset_id else None
    vid = coactive_video_id
    if vid is None:
        row = con.execute("SELECT coactive_video_id FROM catalog.videos WHERE path IN (?, ?)"
                          + (" AND dataset = ?" if dataset else "") + " ORDER BY created_dt LIMIT 1",
                          [path, str(Path(path).resolve())] + ([dataset] if dataset else [])).fetchone()
        vid = row[0] if row else None
    found = catalog.video(con, vid) if vid else None
    if found is None or (dataset is not None and found["dataset"] != dataset):
        raise NotFound(f"unknown video {coactive_video_id or path!r}" + (f" in dataset {dataset!r}" if dataset else ""))
    return _video(con, vid, found["dataset"])


@router.get("/{asset_id}", response_model=Asset)
def get_asset(asset_id: str, state: State, who: Reader):
    row = _row(state, asset_id)
    row.pop("keyframe_time_ms")
    return Asset(**row, thumbnail_url=f"/api/v1/assets/{asset_id}/thumbnail")


@router.get("/{asset_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}},
                       422: {"description": "the file no longer decodes (corrupted since ingest)"}})
def get_thumbnail(asset_id: str, state: State, who: Reader, size: int = Query(256, ge=16, le=1024)):
    data = thumbnail_bytes(state, asset_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{asset_id}/image", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The file as ingested."}})
def get_image(asset_id: str, state: State, who: Reader):
    """The original file (for a keyframe: the video it came from)."""
    row = _row(state, asset_id)
    path = _located(row)
    if isinstance(path, Path):
        return FileResponse(path)
    from ingest import objects

    fh = objects.open_input(path)

    def chunks():
        with fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    return StreamingResponse(chunks(), media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                             headers={"Content-Length": str(objects.fstat(fh)[0])})
