"""Safe decoding of one source file into assets ready for an encoder.

Runs in worker threads: it reads the bytes once (hashing them), refuses
decompression bombs and oversized files with a reason, applies EXIF orientation,
takes the first frame of animated formats, and returns an RGB image shrunk just
enough for the encoder (JPEG draft mode decodes at reduced scale for speed).
"""
from __future__ import annotations

import hashlib
import io
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

from PIL import Image, ImageOps, UnidentifiedImageError

from warehouse.errors import Unprocessable

from . import objects
from .sources import PLAIN, VIDEO_EXTS, FileAccess, Source

# Namespace for deterministic ids: the same file in the same dataset always gets
# the same coactive_image_id, which makes re-runs idempotent.
ID_NAMESPACE = uuid.UUID("6f1d3c2a-6b1e-4a3f-9d55-1c0a9f3e7b21")

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
ALLOWED_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"}


class DecodeError(Unprocessable):
    """A file that cannot become an asset; the message is the user-facing reason."""


@dataclass
class DecodedAsset:
    coactive_image_id: str
    path: str
    media_type: str
    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    file_mtime: datetime
    image: Image.Image | None  # RGB, possibly reduced; None once encoded
    metadata: dict = field(default_factory=dict)
    coactive_video_id: str | None = None
    keyframe_index: int | None = None
    keyframe_time_ms: int | None = None
    pixels: object = None  # encoder-ready tensor, filled by the worker


@dataclass
class SourceResult:
    """What decoding one source produced: assets, and an error that may stand beside them
    (a truncated video keeps the frames before the cut)."""

    source: Source
    assets: list[DecodedAsset] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False
    # Videos only: their keyframes stream lazily (`video.KeyframeStream`, never a
    # whole video in memory) and `video` holds the row for catalog.videos.
    frames: object = None
    video: object = None


def asset_id(dataset: str, path: str, sha256: str, frame: int | None = None) -> str:
    key = f"{dataset}\0{path}\0{sha256}" + (f"\0{frame}" if frame is not None else "")
    return str(uuid.uuid5(ID_NAMESPACE, key))


def check_size(path, max_bytes: int, size: int | None = None) -> int:
    """The file's size, or a DecodeError for an empty or oversized file."""
    size = path.stat().st_size if size is None else size
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    if size > max_bytes:
        raise DecodeError(f"file too large: {size} bytes exceeds limit of {max_bytes}")
    return size


def file_digest(path, max_bytes: int = DEFAULT_MAX_BYTES, files: FileAccess = PLAIN) -> tuple[bytes, str]:
    data, _ = read_file(path, max_bytes, files)
    return data, hashlib.sha256(data).hexdigest()


def read_file(path, max_bytes: int = DEFAULT_MAX_BYTES, files: FileAccess = PLAIN) -> tuple[bytes, float]:
    """(bytes, mtime) of the file or object `files` opens; size and time come from what was opened."""
    with files.open(objects.location(path)) as fh:
        size, mtime = objects.fstat(fh)
        check_size(path, max_bytes, size)
        return fh.read(max_bytes + 1), mtime


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, target: int | None = None):
    """Decode bytes into (RGB image, format, width, height) with orientation applied.

    width/height are of the full-resolution, correctly oriented image even when
    the returned pixels were decoded at reduced scale.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise DecodeError(f"refused as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image (cannot identify image file)") from None
    fmt = im.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise DecodeError(f"unsupported image format {fmt}")
    w, h = im.size
    if w * h > max_pixels:
        raise DecodeError(
            f"image too large: {w}x{h} = {w * h / 1e6:.1f} MP exceeds the limit of "
            f"{max_pixels / 1e6:.1f} MP (decompression bomb guard)"
        )
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF must not cost the image
        orientation = 1
    if fmt == "JPEG" and target:
        # Decode at the smallest DCT scale still >= target: 2-8x faster for photos.
        im.draft("RGB", (target, target))
    try:
        im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im) if orientation != 1 else im
        if im.mode != "RGB":
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                bg = Image.new("RGB", im.size, (255, 255, 255))
                bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
                im = bg
            else:
                im = im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise DecodeError(f"corrupt or truncated image: {e}") from None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return im, fmt, w, h


def decode_source(
    source: Source,
    dataset: str,
    known_ids: set[str] | frozenset = frozenset(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target: int | None = None,
    video_options: dict | None = None,
    files: FileAccess = PLAIN,
) -> SourceResult:
    """Decode one source; never raises for a bad file, the reason goes into the result."""
    res = SourceResult(source)
    if source.problem:
        res.error = source.problem
        return res
    path = source.path
    try:
        if path.suffix.lower() in VIDEO_EXTS:
            from .video import decode_video  # optional dependency path (PyAV)

            return decode_video(source, dataset, known_ids, target=target, files=files, **(video_options or {}))
        data, mtime = read_file(path, DEFAULT_MAX_BYTES, files)
        digest = hashlib.sha256(data).hexdigest()
        aid = asset_id(dataset, str(path), digest)
        if aid in known_ids:
            res.skipped = True
            return res
        im, fmt, w, h = open_image(data, max_pixels=max_pixels, target=target)
        mtime = datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None)
        res.assets.append(
            DecodedAsset(aid, str(path), "image", fmt, w, h, len(data), digest, mtime, im, source.metadata)
        )
    except DecodeError as e:
        res.error = str(e)
    except MemoryError:
        res.error = "out of memory while decoding"
    except OSError as e:
        res.error = f"cannot read file: {e.strerror or e}"
    except Exception as e:  # one broken file never aborts an ingest
        res.error = f"{type(e).__name__}: {e}"
    return res
