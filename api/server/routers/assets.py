"""`/api/v1/assets/{id}`: an asset's row, its original file, and a JPEG thumbnail.

Thumbnails are a cache under `<root>/thumbnails/` (written atomically, rebuilt
if deleted); keyframes are cut from their video at the keyframe's time.
"""
from __future__ import annotations

import io
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from warehouse.storage import atomic_write_bytes

from ..deps import Reader, State
from ..errors import NotFound
from ..models import Asset

router = APIRouter(prefix="/api/v1/assets", tags=["assets"])


def _row(state, asset_id: str) -> dict:
    row = state.cursor().execute(
        "SELECT coactive_image_id, dataset, path, media_type, width, height, created_dt, keyframe_time_ms"
        " FROM pixql_internal.assets WHERE coactive_image_id = ?",
        [asset_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"unknown asset {asset_id!r}")
    keys = ["coactive_image_id", "dataset", "path", "media_type", "width", "height", "created_dt", "keyframe_time_ms"]
    return dict(zip(keys, row))


def _open_image(row: dict):
    from PIL import Image

    path = Path(row["path"])
    if not path.is_file():
        raise NotFound(f"the file of asset {row['coactive_image_id']} is gone: {path}")
    if row["media_type"] == "keyframe":
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            t = (row["keyframe_time_ms"] or 0) / 1000.0
            if stream.time_base:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
            frame = None
            for f in container.decode(stream):
                frame = f
                if f.time is None or f.time >= t - 1e-3:
                    break
            if frame is None:
                raise NotFound(f"cannot decode the keyframe of asset {row['coactive_image_id']}")
            return frame.to_image()
    im = Image.open(path)
    im.draft("RGB", (1024, 1024))  # JPEG: decode at reduced size, much faster
    return im


def thumbnail_bytes(state, asset_id: str, size: int) -> bytes:
    from PIL import ImageOps

    cache = state.wh.root / "thumbnails" / f"{asset_id}-{size}.jpg"
    if cache.is_file():
        return cache.read_bytes()
    row = _row(state, asset_id)
    im = ImageOps.exif_transpose(_open_image(row)).convert("RGB")
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
            responses={200: {"content": {"image/jpeg": {}}}})
def get_thumbnail(asset_id: str, state: State, who: Reader, size: int = Query(256, ge=16, le=1024)):
    data = thumbnail_bytes(state, asset_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{asset_id}/image")
def get_image(asset_id: str, state: State, who: Reader):
    """The original file (for a keyframe: the video it came from)."""
    row = _row(state, asset_id)
    path = Path(row["path"])
    if not path.is_file():
        raise NotFound(f"the file of asset {asset_id} is gone: {path}")
    return FileResponse(path)
