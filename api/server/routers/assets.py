"""`/api/v1/assets/{id}`: an asset's row, its original file, and a JPEG thumbnail.

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

from warehouse.errors import Unprocessable
from warehouse import catalog
from warehouse.storage import atomic_write_bytes

from ..deps import Reader, State
from ..errors import NotFound
from ..models import Asset

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
