"""Coactive-shaped bodies for the concept and search routes: paging, images, keyframes, labels.

The official SDK (`coactive` 1.0.27) parses these with pydantic models whose
fields are camelCase aliases (`coactive/types/`): every field it requires is
here with its type.  A search result or a candidate is an image or a keyframe
(the SDK's `Union[Image, Keyframe]`): a keyframe carries no `createdUserId`,
so the SDK's union falls through to its `Keyframe`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .models_coactive import SERVER_USER, Image, Keyframe, PagedMeta, Shot, Video, paged_meta  # noqa: F401


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ImageOut(Image):
    """The SDK's `Image`, with what a search hit or a candidate adds."""

    dataset: str | None = None
    score: float | None = Field(None, description="Search: cosine similarity or text score; candidates: probability")


class KeyframeOut(Keyframe):
    """The SDK's `Keyframe`, with what a search hit or a candidate adds."""

    path: str | None = None
    dataset: str | None = None
    score: float | None = None


Visual = ImageOut | KeyframeOut


class SearchResult(BaseModel):
    meta: PagedMeta
    data: list[Visual]


class CandidatesToLabel(BaseModel):
    data: list[Visual]


class ConceptLabelOut(_Camel):
    created_user_id: str = Field(alias="createdUserId")
    created_dt: str = Field(alias="createdDt")
    updated_user_id: str = Field(alias="updatedUserId")
    updated_dt: str = Field(alias="updatedDt")
    label_id: str = Field(alias="labelId")
    label: Literal["positive", "negative"]
    image: ImageOut | None = None
    keyframe: KeyframeOut | None = None


class PagedConceptLabels(BaseModel):
    meta: PagedMeta
    data: list[ConceptLabelOut]


class ConceptPrediction(_Camel):
    probability_ranges: list[list[float]] = Field(alias="probabilityRanges")
    estimates: list[int]
    confidence_intervals: list[list[int]] | None = Field(None, alias="confidenceIntervals")
    threshold: float
    confidence_level: float = Field(alias="confidenceLevel")
    sampled: int = Field(description="Assets whose probability was read (all scored ones unless estimation_fidelity is lower)")
    total: int


class SimilarHit(BaseModel):
    """One row of PixQL's own (snake_case) search answer."""

    coactive_image_id: str
    score: float
    dataset: str | None = None
    path: str | None = None
    media_type: str | None = None


def visual(d: dict, score: float | None = None) -> ImageOut | KeyframeOut:
    """An image or a keyframe answer from `concepts.search.describe`'s dict of one asset."""
    created = d.get("created_dt")
    if d.get("media_type") == "keyframe" and d.get("coactive_video_id"):
        v = d.get("video") or {}
        start = int(d.get("keyframe_time_ms") or 0)
        step = int(round(1000.0 / v["sample_fps"])) if v.get("sample_fps") else 1000
        vcreated = v.get("created_dt") or created
        return KeyframeOut(
            coactive_image_id=d["coactive_image_id"], timestamp=start, path=d.get("path"), dataset=d.get("dataset"),
            score=score,
            video=Video(created_user_id=SERVER_USER, created_dt=vcreated, updated_user_id=SERVER_USER,
                        updated_dt=vcreated, path=v.get("path"), coactive_video_id=d["coactive_video_id"]),
            shot=Shot(shot_id=f"{d['coactive_video_id']}:{d.get('keyframe_index') or 0}",
                      start_time_ms=start, end_time_ms=start + step))
    return ImageOut(created_user_id=SERVER_USER, created_dt=created, updated_user_id=SERVER_USER, updated_dt=created,
                    coactive_image_id=d["coactive_image_id"], path=d.get("path"), metadata=d.get("metadata"),
                    dataset=d.get("dataset"), score=score)
