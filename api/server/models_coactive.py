"""The shapes the official Coactive SDK (`coactive` 1.0.27, `coactive/types/`) sends and parses.

Coactive's wire format is camelCase; PixQL's own is snake_case.  Answers that
both kinds of client read carry both: today's snake_case fields unchanged, and
the SDK's camelCase ones beside them (a field with an alias, or a computed twin
of an existing field), so one handler serves both.  Bodies accept either
spelling (`populate_by_name` plus aliases).  Shapes only the SDK asks for
(images, videos, paged lists) are camelCase with snake_case accepted on input.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

SERVER_USER = "pixql"  # createdUserId/updatedUserId where PixQL records no user (auth off, ingest from the CLI)


def utc(v: datetime | None) -> str | None:
    """Naive UTC as ISO 8601 with a Z (the form `_Out` gives every other timestamp)."""
    if v is None:
        return None
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v.isoformat().replace("+00:00", "Z")


class Camel(BaseModel):
    """camelCase on the wire, snake_case accepted too; timestamps leave with a zone."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    @field_serializer("*", when_used="json")
    def _utc(self, v: Any):
        return utc(v) if isinstance(v, datetime) else v


# -- pagination: PagedMetaResponse -------------------------------------------------------------
class PageDetails(Camel):
    current_page: int
    last_page: int | None
    limit: int
    offset: int
    total: int | None


class PageLinks(BaseModel):
    prev: str | None = None
    next: str | None = None
    first: str | None = None
    last: str | None = None


class SortItem(BaseModel):
    direction: Literal["asc", "desc"]
    field: str


class PagedMeta(BaseModel):
    page: PageDetails
    links: PageLinks
    sort: list[SortItem] = []


def paged_meta(path: str | None, offset: int, limit: int, total: int | None, sort: list[tuple[str, str]] = (),
               **params) -> PagedMeta:
    """Coactive's page metadata: 1-based page numbers and links that keep the other query parameters.

    No `path`: no links (a concept's labels, a search); no `total` (a search's is unknown): no last page.
    """
    params = {k: v for k, v in params.items() if v is not None}

    def link(off: int) -> str:
        return f"{path}?{urlencode({**params, 'offset': max(0, off), 'limit': limit}, doseq=True)}"

    per = max(1, int(limit))
    page = PageDetails(current_page=offset // per + 1, limit=limit, offset=offset, total=total,
                       last_page=max(1, math.ceil(total / per)) if total is not None else None)
    sorting = [SortItem(field=f, direction=d) for f, d in sort]
    if path is None or total is None:
        return PagedMeta(page=page, links=PageLinks(), sort=sorting)
    last_off = max(0, (math.ceil(total / per) - 1) * per)
    return PagedMeta(page=page, sort=sorting,
                     links=PageLinks(prev=link(offset - per) if offset > 0 else None,
                                     next=link(offset + per) if offset + per < total else None,
                                     first=link(0), last=link(last_off)))


# -- datasets ----------------------------------------------------------------------------------
class DatasetSettings(Camel):
    keyframe_sampling_method: Literal["intelligent", "uniform"] | None = None
    keyframe_uniform_fps_sampling_rate: float | None = Field(None, gt=0)


class DatasetCreate(Camel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    credentials_id: str | None = Field(None, description="Refused: PixQL reads storage with the server's own rights.")
    encoder: str | None = Field(None, description="A PixQL encoder (imagenet-lite0, clip:<model>:<pretrained>); "
                                                  "Coactive's names (multimodal...) mean the server's default.")
    settings: DatasetSettings | None = None


class DatasetUpdate(Camel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None


class Image(Camel):
    created_user_id: str
    created_dt: datetime
    updated_user_id: str
    updated_dt: datetime
    coactive_image_id: str
    path: str | None
    id: str | None = None
    metadata: dict[str, Any] | None = None


class Video(Camel):
    created_user_id: str
    created_dt: datetime
    updated_user_id: str
    updated_dt: datetime
    path: str | None
    coactive_video_id: str
    metadata: dict[str, Any] | None = None


class Shot(Camel):
    shot_id: str
    start_time_ms: int
    end_time_ms: int


class Keyframe(Camel):
    """A keyframe's detail: `asset.get_image_detail` of a keyframe id."""

    coactive_image_id: str
    video: Video
    shot: Shot
    audio_segment: None = None
    timestamp: int | None


class PagedImages(BaseModel):
    meta: PagedMeta
    data: list[Image]


class PagedVideos(BaseModel):
    meta: PagedMeta
    data: list[Video]


class AddImage(Camel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, description="A server-side path or an http(s) URL.")
    id: str | None = None
    metadata: dict[str, Any] | None = None


class AddVideo(Camel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, description="A server-side path or an http(s) URL.")
    metadata: dict[str, Any] | None = None


class AddAssets(Camel):
    model_config = ConfigDict(extra="forbid")
    images: list[AddImage] | None = None
    videos: list[AddVideo] | None = None
    data_path: str | None = Field(None, description="A server-side directory or glob, ingested whole.")
    csv_path: str | None = Field(None, description="A server-side CSV/JSONL manifest: a `path` column, the rest metadata.")


class AddedImage(Image):
    request_id: str
    request_dt: datetime


class AddedVideo(Video):
    request_id: str
    request_dt: datetime


class AddAssetsConfirmation(Camel):
    request_group_id: str = Field(description="The ingestion job: GET /api/v1/ingestion/{requestGroupId}.")
    images: list[AddedImage] | None = None
    videos: list[AddedVideo] | None = None
    job: dict | None = Field(None, description="The ingestion job as GET /api/v1/ingestion/{job_id} shows it.")


class ImageMetadataUpdate(Camel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    coactive_image_id: str | None = None
    metadata: dict[str, Any] | None = None


class VideoMetadataUpdate(Camel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    coactive_video_id: str | None = None
    metadata: dict[str, Any] | None = None


class AssetsMetadataUpdate(Camel):
    model_config = ConfigDict(extra="forbid")
    images: list[ImageMetadataUpdate] | None = None
    videos: list[VideoMetadataUpdate] | None = None


class UpdatedImage(AddedImage):
    pass


class UpdatedVideo(AddedVideo):
    pass


class AssetsMetadataConfirmation(Camel):
    request_group_id: str
    images: list[UpdatedImage] | None = None
    videos: list[UpdatedVideo] | None = None


# -- classification ----------------------------------------------------------------------------
class ClassifyUrl(Camel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, description="An http(s) URL, fetched by the server's intake.")
    concept_ids: list[str] | None = Field(None, description="Concept ids or names (default: every concept).")
    dataset_id: str | None = Field(None, description="Accepted; a concept's scores do not depend on a dataset.")


class ClassificationScore(Camel):
    concept_name: str
    concept_id: str
    threshold: float
    positive: bool
    score: float = Field(ge=0, le=1)


class Classification(BaseModel):
    scores: list[ClassificationScore]


# -- unsupported calls -------------------------------------------------------------------------
class NotSupported(BaseModel):
    detail: str
    call: str = Field(description="The SDK call, e.g. credentials.add_aws_credentials")
