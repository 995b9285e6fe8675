"""What a moderation is about: the caller's `Item`s, turned into `Subject`s (rows of the warehouse).

Owns the step from "a path, a URL, uploaded bytes or an id" to "an asset or a
video in `coactive_table`":

* files are hashed; URLs and uploads are kept under
  `<root>/uploads/moderation/<sha[:2]>/<sha><suffix>` by content hash, so the
  same bytes are one asset;
* a file already in the warehouse (same path and hash, with similarity vectors)
  is found, otherwise it is ingested (dataset `moderation` unless told).

This module reads no URL and checks no path itself: files are opened through
`files` (an `ingest.sources.FileAccess`) and URLs fetched by `fetch`, both given
by the caller (the HTTP server passes its intake boundary, `api.intake`).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ingest.objects import ObjectURI, is_uri, location
from ingest.sources import PLAIN, FileAccess
from warehouse.errors import Invalid, NotFound, PixqlError
from warehouse.storage import atomic_write_bytes

from .similarity import SIM_ENCODER

DEFAULT_DATASET = "moderation"
VIDEO_SNIFF = {b"ftyp": ".mp4", b"\x1aE\xdf\xa3": ".webm"}


class ModerationNotFound(NotFound):
    """An asset, video or task that does not exist (HTTP 404)."""


@dataclass
class Item:
    """One thing to moderate: exactly one of path, url, data (uploaded bytes), an asset id or a video id."""

    path: str | None = None
    url: str | None = None
    coactive_image_id: str | None = None
    coactive_video_id: str | None = None
    data: bytes | None = field(default=None, repr=False)
    filename: str | None = None
    id: str | None = None  # the caller's own reference, echoed back

    def __post_init__(self):
        given = [k for k in ("path", "url", "coactive_image_id", "coactive_video_id", "data")
                 if getattr(self, k) not in (None, "")]
        if len(given) != 1:
            raise Invalid(
                "each item needs exactly one of path, url, coactive_image_id, coactive_video_id or an upload"
                + (f" (got {', '.join(given)})" if given else ""))

    @property
    def content_addressed(self) -> bool:
        """Whether the item is bytes (a path, URL or upload), whose result the cache may keep by hash."""
        return self.data is not None or bool(self.path or self.url)

    def describe(self) -> dict:
        if self.data is not None:
            return {"upload": self.filename or "upload", "bytes": len(self.data)}
        for k in ("path", "url", "coactive_image_id", "coactive_video_id"):
            if getattr(self, k):
                return {k: getattr(self, k)}
        return {}


@dataclass
class Subject:
    """What a decision is about: an image asset (one frame) or a video (its keyframes)."""

    kind: str  # 'asset' | 'video'
    subject_id: str
    frames: list[tuple[str, int]]  # (coactive_image_id, time_ms)
    sha256: str | None = None
    path: str | None = None
    media_type: str = "image"
    coactive_video_id: str | None = None


def error_result(index: int, it: Item, e: Exception) -> dict:
    """The result entry of an item that could not be moderated."""
    return {"index": index, "id": it.id, "input": it.describe(), "status": "error",
            "error": str(e), "cached": False}


def _sha256_file(path: Path, files: FileAccess = PLAIN) -> str:
    h = hashlib.sha256()
    with files.open(path) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _suffix(data: bytes, filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix and len(suffix) <= 6:
        return suffix
    for magic, ext in VIDEO_SNIFF.items():
        if magic in data[:12]:
            return ext
    try:
        from PIL import Image

        fmt = Image.open(io.BytesIO(data)).format
        return {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp",
                "TIFF": ".tif", "MPO": ".jpg"}.get(fmt, ".bin")
    except Exception:  # not an image: ingest will say so with its own reason
        return ".bin"


class Subjects:
    """Items -> subjects for one warehouse: intake of bytes, lookup, and ingest of new files."""

    def __init__(self, wh, dataset: str = DEFAULT_DATASET,
                 fetch: Callable[[str], tuple[bytes, str]] | None = None, files: FileAccess = PLAIN):
        self.wh = wh
        self.dataset = dataset
        self.fetch = fetch
        self.files = files

    def intake(self, it: Item) -> tuple[Path | ObjectURI, str]:
        """(local path or object URI, sha256) of a path, URL or upload item; URLs and uploads are
        stored by hash.  An `s3://` / `gs://` / `az://` path is read through `ingest.objects`
        (via `files`, which a server bounds to its object roots) and stays a URI: it is ingested
        and stored under that name, as ingest does with a bucket."""
        if it.path and is_uri(it.path):
            uri = location(it.path)
            try:
                sha = _sha256_file(uri, self.files)
            except FileNotFoundError as e:  # the store's reason: no such object / no such bucket
                raise Invalid(str(e) or f"no such object: {it.path}") from None
            except IsADirectoryError:
                raise Invalid(f"not an object (a prefix): {it.path}") from None
            except PermissionError as e:
                if isinstance(e, PixqlError):  # refused by this server (outside its object roots): 403
                    raise
                raise Invalid(str(e)) from None  # denied by the store: this item's error, "access denied: ..."
            return uri, sha
        if it.path:
            p = Path(it.path).expanduser()
            try:
                sha = _sha256_file(p, self.files)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise Invalid(f"no such file on the server: {it.path}") from None
            return Path(os.path.realpath(p)), sha
        if it.data is not None:
            data, name = it.data, it.filename
        elif self.fetch is None:
            raise Invalid(f"this moderator fetches no URLs ({it.url}): download it and send the bytes")
        else:
            data, name = self.fetch(it.url)
        if not data:
            raise Invalid("empty upload (0 bytes)")
        sha = hashlib.sha256(data).hexdigest()
        dest = self.wh.root / "uploads" / "moderation" / sha[:2] / (sha + _suffix(data, name))
        if not dest.is_file():
            atomic_write_bytes(data, dest)
        return dest.resolve(), sha

    def by_id(self, con, it: Item) -> Subject:
        if it.coactive_video_id:
            return self.video(con, it.coactive_video_id)
        row = con.execute(
            "SELECT coactive_image_id, path, sha256, media_type, coactive_video_id, keyframe_time_ms "
            "FROM pixql_internal.assets WHERE coactive_image_id = ?", [it.coactive_image_id]).fetchone()
        if row is None:
            raise ModerationNotFound(f"unknown asset {it.coactive_image_id!r}")
        aid, path, sha, media, vid, t = row
        return Subject("asset", aid, [(aid, int(t or 0))], sha, path, media, vid)

    def video(self, con, video_id: str) -> Subject:
        v = con.execute("SELECT path, sha256 FROM catalog.videos WHERE coactive_video_id = ?", [video_id]).fetchone()
        if v is None:
            raise ModerationNotFound(f"unknown video {video_id!r}")
        frames = con.execute(
            "SELECT coactive_image_id, keyframe_time_ms FROM pixql_internal.assets WHERE coactive_video_id = ? "
            "ORDER BY keyframe_index", [video_id]).fetchall()
        if not frames:
            raise Invalid(f"video {video_id} has no decoded keyframes")
        return Subject("video", video_id, [(f, int(t or 0)) for f, t in frames], v[1], v[0], "video", video_id)

    def by_path(self, con, path: Path, sha: str) -> Subject | None:
        row = con.execute(
            "SELECT coactive_video_id FROM catalog.videos WHERE path = ? AND sha256 = ? "
            "ORDER BY dataset = ? DESC LIMIT 1", [str(path), sha, self.dataset]).fetchone()
        if row:
            return self.video(con, row[0])
        row = con.execute(
            "SELECT a.coactive_image_id FROM catalog.assets a JOIN catalog.embeddings e "
            "ON e.coactive_image_id = a.coactive_image_id AND e.encoder = ? "
            "WHERE a.path = ? AND a.sha256 = ? AND a.media_type = 'image' ORDER BY a.dataset = ? DESC LIMIT 1",
            [SIM_ENCODER, str(path), sha, self.dataset]).fetchone()
        if row:
            return self.by_id(con, Item(coactive_image_id=row[0]))
        return None

    def ingest(self, con, to_ingest: dict[int, tuple[Path, str]], subjects: dict[int, Subject],
               results: list, items: list[Item], dataset: str | None = None) -> None:
        """Ingest the files of `to_ingest` (index -> (path, sha)); fill `subjects`, or `results` with the
        reason ingest gave for a file it could not take."""
        paths = sorted({str(p) for p, _ in to_ingest.values()})
        report = self.wh.ingest(paths, dataset=dataset or self.dataset, encoder=SIM_ENCODER, progress=False,
                                files=self.files)
        for i, (path, sha) in to_ingest.items():
            found = self.by_path(con, path, sha)
            if found is not None:
                subjects[i] = found
                continue
            row = con.execute("SELECT reason FROM catalog.ingest_errors WHERE run_id = ? AND path = ? LIMIT 1",
                              [report.run_id, str(path)]).fetchone()
            results[i] = error_result(i, items[i], ValueError(row[0] if row else "the file could not be ingested"))

    def image(self, con, it: Item) -> Subject:
        """The image asset an item names, ingesting a new file; a video is refused (feedback is per image)."""
        if it.coactive_video_id:
            raise Invalid("feedback takes an image or a keyframe id, not a whole video")
        if it.coactive_image_id:
            return self.by_id(con, it)
        path, sha = self.intake(it)
        subject = self.by_path(con, path, sha)
        if subject is None:
            subjects, results = {}, [None]
            self.ingest(con, {0: (path, sha)}, subjects, results, [it])
            if 0 not in subjects:
                raise Invalid(results[0]["error"])
            subject = subjects[0]
        if subject.kind == "video":
            raise Invalid("feedback takes an image or a keyframe, not a whole video")
        return subject

    def kind_of(self, con, subject_id: str) -> str:
        if con.execute("SELECT 1 FROM catalog.assets WHERE coactive_image_id = ?", [subject_id]).fetchone():
            return "asset"
        if con.execute("SELECT 1 FROM catalog.videos WHERE coactive_video_id = ?", [subject_id]).fetchone():
            return "video"
        raise ModerationNotFound(f"unknown asset or video {subject_id!r}")
