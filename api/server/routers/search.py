"""`/api/v1/search`: text -> images and keyframes; image -> similar images (the Coactive SDK's `search`).

Thin: ranking is `concepts.search` (through `Warehouse.search_text` /
`search_similar`); this router resolves the dataset (name or id), fetches an
image URL through the intake's one downloader, and shapes `{meta, data}` pages of
images and keyframes as the SDK's `SearchResult` parses them.  Each item also
carries PixQL's `score` (text: the text head's probability; similar: cosine).
"""
from __future__ import annotations

import io

from fastapi import APIRouter, Query

from api.intake import IntakeDep, declares

from ..deps import Reader, State
from ..models_search import SearchResult, paged_meta, visual
from warehouse import catalog
from warehouse.errors import Invalid, Unprocessable

router = APIRouter(prefix="/api/v1/search", tags=["search"])

# The SDK's `EncoderNameEnum` names Coactive's own models: they mean "the dataset's encoder" here.
COACTIVE_ENCODERS = {"multimodal", "multimodal-tx-small1", "multimodal-tx-small2", "multimodal-tx-large1",
                     "multimodal-tx-large2", "multimodal-tx-large3"}
MEDIA = {"image": "image", "keyframe": "keyframe", None: None}


def _media(asset_type: str | None) -> str | None:
    if asset_type == "video":
        return "keyframe"  # a video is found through its keyframes
    if asset_type not in MEDIA:
        raise Invalid(f"asset_type must be image, keyframe or video, not {asset_type!r}")
    return MEDIA[asset_type]


def _page(state, hits, offset: int, limit: int, total_hint: int | None = None) -> SearchResult:
    from concepts import search

    about = search.describe(state.wh, [h.coactive_image_id for h in hits])
    data = [visual(about[h.coactive_image_id], h.score) for h in hits if h.coactive_image_id in about]
    return SearchResult(meta=paged_meta(None, offset, limit, total_hint, [("score", "desc")]), data=data)


@router.get("", response_model=SearchResult)
def search_dataset(state: State, who: Reader, dataset_id: str,
                   query: str | None = Query(None, max_length=500),
                   queries: list[str] | None = Query(None, description="Several phrasings of one query"),
                   coactive_image_ids: list[str] | None = Query(None, description="Not supported: use /similar-images"),
                   encoder: str | None = None, concept_ids: list[str] | None = Query(None),
                   offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=1000),
                   metadata_filters: str | None = None, asset_type: str | None = None,
                   search_type: str | None = None):
    """Images and keyframes a sentence describes, best first: the text head a concept with that
    prompt would get (ConSE on ImageNet encoders, the text tower on `clip:*`)."""
    texts = ([query] if query else []) + list(queries or [])
    if search_type not in (None, "visual"):
        raise Invalid(f"search_type {search_type!r} is not supported: PixQL searches what images show (visual)")
    for name, given in (("coactive_image_ids", coactive_image_ids), ("concept_ids", concept_ids),
                        ("metadata_filters", metadata_filters)):
        if given:
            raise Invalid(f"{name} is not supported in a text search: use /api/v1/search/similar-images for "
                          "images, a concept column or SQL for concepts and metadata")
    if not texts:
        raise Invalid("give query (or queries): the words to search for")
    ds = catalog.resolve_dataset(state.cursor(), dataset_id)
    enc = None if encoder in COACTIVE_ENCODERS else encoder
    hits = state.wh.search_text(texts, dataset=ds, encoder=enc, limit=limit, offset=offset,
                                media_type=_media(asset_type))
    return _page(state, hits, offset, limit)


@router.get("/similar-images", response_model=SearchResult,
            openapi_extra=declares("url"))
def similar_images(state: State, who: Reader, intake: IntakeDep, dataset_id: str,
                   coactive_image_id: str | None = None, image_path: str | None = None,
                   image_public_url: str | None = None,
                   offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=1000),
                   encoder: str | None = None, asset_type: str | None = None):
    """The images and keyframes most similar to one (cosine over the stored vectors, exact), the
    asset itself first: by `coactive_image_id`, by `image_path` (an asset's path in the warehouse,
    looked up, never opened) or by `image_public_url` (fetched through the intake, embedded, not added)."""
    given = [x for x in (coactive_image_id, image_path, image_public_url) if x]
    if len(given) != 1:
        raise Invalid("give exactly one of coactive_image_id, image_path or image_public_url")
    image = None
    if image_public_url:
        problems = intake.check_urls([image_public_url])  # refused (403) before anything else is looked at
        if problems:
            raise Invalid(problems[image_public_url])
    ds = catalog.resolve_dataset(state.cursor(), dataset_id)
    enc = None if encoder in COACTIVE_ENCODERS else encoder
    if image_public_url:
        data, _ = intake.fetch(image_public_url)
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
            image = image.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise Unprocessable(f"{image_public_url} is not an image PixQL can decode: {e}") from None
    hits = state.wh.search_similar(asset=coactive_image_id or image_path, image=image, dataset=ds, encoder=enc,
                                   limit=limit, offset=offset, media_type=_media(asset_type))
    return _page(state, hits, offset, limit)
