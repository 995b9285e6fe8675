"""Erasure over HTTP: `DELETE` an asset, a video, a dataset (admin), and the Coactive SDK's
`DELETE /api/v1/datasets/{dataset_id}/image/{id}` and `/video/{id}` (warehouse/erasure.py does the work).

An id never stored answers 404; an id already erased answers 410 with its tombstone's date.
`?dry_run=true` only counts; `?block=true` refuses the same bytes from then on; `?reason=` is kept.
"""
from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel

from warehouse import catalog, tombstones
from warehouse.erasure import erase
from warehouse.erasure_select import select
from warehouse.errors import Gone, NotFound

from ..deps import Admin, State, Writer

router = APIRouter(prefix="/api/v1", tags=["erasure"])


class ErasureOut(BaseModel):
    erasure_id: str | None = None
    dry_run: bool
    matched: dict[str, int]  # images, keyframes, videos, datasets
    removed: dict[str, int] = {}  # rows and files removed, per place
    block: bool = False
    reason: str | None = None


def _erase(state, who, what: str, subject: str | None, reason, block, dry_run, **selector) -> ErasureOut:
    con = state.cursor()
    sel = select(con, **selector)
    if sel.empty:
        stone = tombstones.erased(con, subject) if subject else None
        if stone:
            raise Gone(f"{what} {subject} was erased on {stone['created_dt']:%Y-%m-%d %H:%M:%S} UTC")
        raise NotFound(f"unknown {what} {subject!r}")
    report = erase(state.wh, sel, reason=reason, who=who.client_id, block=block, dry_run=dry_run)
    return ErasureOut(**report.to_dict())


Reason = Query(None, max_length=2000, description="Why (kept in the tombstone, never content).")
Block = Query(False, description="Refuse the same bytes on any later ingest, upload or moderation.")
DryRun = Query(False, description="Only count what would be deleted.")


@router.delete("/assets/{asset_id}", response_model=ErasureOut)
def delete_asset(asset_id: str, state: State, who: Writer, reason: str | None = Reason, block: bool = Block,
                 dry_run: bool = DryRun):
    """Erase one image (a keyframe takes its whole video) from every file and table."""
    return _erase(state, who, "asset", asset_id, reason, block, dry_run, image_id=asset_id)


@router.delete("/videos/{video_id}", response_model=ErasureOut)
def delete_video(video_id: str, state: State, who: Writer, reason: str | None = Reason, block: bool = Block,
                 dry_run: bool = DryRun):
    """Erase a video and all its keyframes."""
    return _erase(state, who, "video", video_id, reason, block, dry_run, video_id=video_id)


@router.delete("/datasets/{dataset_id}", response_model=ErasureOut)
def delete_dataset(dataset_id: str, state: State, who: Admin, reason: str | None = Reason, block: bool = Block,
                   dry_run: bool = DryRun):
    """Erase a whole dataset (admin scope): its assets, videos, parts and row."""
    name = catalog.resolve_dataset(state.cursor(), dataset_id)  # an erased one is 410
    return _erase(state, who, "dataset", name, reason, block, dry_run, dataset=name)


@router.delete("/datasets/{dataset_id}/image/{coactive_image_id}", response_model=ErasureOut)
def delete_dataset_image(dataset_id: str, coactive_image_id: str, state: State, who: Writer,
                         reason: str | None = Reason, block: bool = Block, dry_run: bool = DryRun):
    """The Coactive SDK's `dataset.delete_image`: one image of this dataset."""
    name = catalog.resolve_dataset(state.cursor(), dataset_id)  # an erased one is 410
    return _erase(state, who, "image", coactive_image_id, reason, block, dry_run, image_id=coactive_image_id,
                  within=name)


@router.delete("/datasets/{dataset_id}/video/{coactive_video_id}", response_model=ErasureOut)
def delete_dataset_video(dataset_id: str, coactive_video_id: str, state: State, who: Writer,
                         reason: str | None = Reason, block: bool = Block, dry_run: bool = DryRun):
    """The Coactive SDK's `dataset.delete_video`: one video of this dataset and its keyframes."""
    name = catalog.resolve_dataset(state.cursor(), dataset_id)  # an erased one is 410
    return _erase(state, who, "video", coactive_video_id, reason, block, dry_run, video_id=coactive_video_id,
                  within=name)
