"""`/api/v1/concepts`: create, read, update, delete concepts; labels, candidates, estimates, versions.

Thin: every route calls the concepts package's Python API (`concepts.registry`,
`concepts.active`); concept logic lives there.

One set of handlers speaks both dialects: PixQL's (snake_case, bare lists) and
the official Coactive SDK's (camelCase, `{meta, data}` pages).  A concept is
addressed by its name or its `concept_id` (UUID) everywhere.  Requests take
either spelling of a field (pydantic aliases); single-object answers carry both
(`concept_id` and `conceptId`, ...).  Where the two shapes cannot share one JSON
value (a bare list against a page, 204 against a JSON body), the page is sent
when the client is the Coactive SDK (its `X-Fern-SDK-Name: coactive` header, on
every call it makes) or asks for one (`offset` / `limit` / `datasets`).
"""
from __future__ import annotations

import uuid
from dataclasses import asdict

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ..deps import Reader, State, Writer
from ..models import (Candidate, ConceptCreate, ConceptOut, ConceptUpdate, ConceptVersionOut, Estimate, LabelOut,
                      LabelsPatch, Open)
from ..dataset_ids import dataset_public_id
from ..models_search import (CandidatesToLabel, ConceptLabelOut, ConceptPrediction, PagedConceptLabels, PagedMeta,
                             paged_meta, visual)
from warehouse import catalog
from warehouse.errors import Invalid

router = APIRouter(prefix="/api/v1/concepts", tags=["concepts"])


class PagedConcepts(Open):
    meta: PagedMeta
    data: list[ConceptOut]


class ClassEdits(BaseModel):
    """Class names (an ImageNet description or one of its synonyms) to pin, drop or reset."""

    model_config = ConfigDict(extra="forbid")
    pin: list[str] = []
    drop: list[str] = []
    reset: list[str] = []


class ConceptClasses(Open):
    concept: str
    version: int
    previous_version: int | None = None
    classes: list[dict]


class Deleted(Open):
    concept_id: str
    name: str
    deleted: bool


def coactive_client(request: Request) -> bool:
    return request.headers.get("x-fern-sdk-name", "").lower() == "coactive"


def _out(state, c) -> ConceptOut:
    return ConceptOut(**asdict(c), dataset_id=dataset_public_id(state.wh, c.dataset, c.encoder))


def _name(state, ref: str) -> str:
    from concepts import registry

    return registry.resolve(state.wh, ref)


@router.post("", status_code=201, response_model=ConceptOut)
def create_concept(body: ConceptCreate, state: State, who: Writer):
    """A concept from text prompts and/or labelled examples; it becomes columns of coactive_table.

    With neither (the Coactive SDK's create), version 1 scores every asset ~0 and the
    first labels that can train a head (2 positive, 2 negative) make version 2.
    """
    from concepts import registry

    dataset = catalog.resolve_dataset(state.cursor(), body.dataset_id) if body.dataset_id else None
    c = registry.create(state.wh, body.name, prompts=body.prompts, negative_prompts=body.negative_prompts,
                        positive=body.positive, negative=body.negative, description=body.description,
                        threshold=body.threshold, encoder=body.encoder, parent=body.parent,
                        created_by=who.client_id or who.name, dataset=dataset,
                        regularization=body.regularization, allow_empty=True)
    return _out(state, c)


@router.get("", response_model=list[ConceptOut] | PagedConcepts)
def list_concepts(request: Request, state: State, who: Reader, parent: str | None = None,
                  datasets: list[str] | None = Query(None, description="Dataset names or ids (Coactive)"),
                  offset: int | None = Query(None, ge=0), limit: int | None = Query(None, ge=1, le=1000)):
    """Every concept (a bare list); a `{meta, data}` page for the Coactive SDK or when paged."""
    from concepts import registry

    cs = registry.list_concepts(state.wh, parent=parent)
    if datasets:
        wanted = {catalog.resolve_dataset(state.cursor(), d) for d in datasets}
        encs = {state.wh.cursor().execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [d]).fetchone()[0]
                for d in wanted}
        cs = [c for c in cs if c.dataset in wanted or (c.dataset is None and c.encoder in encs)]
    out = [_out(state, c) for c in cs]
    if not (coactive_client(request) or offset is not None or limit is not None or datasets):
        return out
    off, lim = offset or 0, limit or 100
    return PagedConcepts(meta=paged_meta(None, off, lim, len(out), [("name", "asc")]), data=out[off:off + lim])


@router.get("/{name}", response_model=ConceptOut)
def get_concept(name: str, state: State, who: Reader):
    from concepts import registry

    return _out(state, registry.get(state.wh, _name(state, name)))


@router.patch("/{name}", response_model=ConceptOut)
def update_concept(name: str, body: ConceptUpdate, state: State, who: Writer):
    """A new threshold, prompts or regularization make version N+1; description and parent change in place."""
    from concepts import registry

    fields = body.model_dump(exclude_unset=True)
    if "name" in fields:
        fields["new_name"] = fields.pop("name")
    return _out(state, registry.update(state.wh, _name(state, name), updated_by=who.client_id or who.name,
                                       **fields))


@router.post("/{name}/recalibrate", response_model=ConceptOut)
def recalibrate_concept(name: str, state: State, who: Writer):
    """Version N+1 at the default threshold from today's scores and labels (unchanged if it is the same)."""
    from concepts import registry

    return _out(state, registry.recalibrate(state.wh, _name(state, name)))


@router.delete("/{name}", status_code=204, response_class=Response,
               responses={200: {"model": Deleted, "description": "To the Coactive SDK, which reads a JSON body"}})
def delete_concept(name: str, request: Request, state: State, who: Writer):
    from concepts import registry

    real = _name(state, name)
    cid = registry.get(state.wh, real).concept_id
    registry.delete(state.wh, real)
    if coactive_client(request):
        return JSONResponse(Deleted(concept_id=cid or "", name=real, deleted=True).model_dump())
    return Response(status_code=204)


def _label_id(concept_id: str, asset: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pixql:concept/{concept_id}/label/{asset}"))


@router.get("/{name}/labels", response_model=list[LabelOut] | PagedConceptLabels)
def get_labels(name: str, request: Request, state: State, who: Reader,
               offset: int | None = Query(None, ge=0), limit: int | None = Query(None, ge=1, le=1000),
               labels_to_include: list[str] | None = Query(None, description="positive and/or negative")):
    from concepts import registry, search

    real = _name(state, name)
    rows = registry.labels(state.wh, real)
    if labels_to_include:
        bad = set(labels_to_include) - {"positive", "negative"}
        if bad:
            raise Invalid(f"labels_to_include takes positive and negative, not {sorted(bad)}")
        rows = [r for r in rows if r["label"] in labels_to_include]
    if not (coactive_client(request) or offset is not None or limit is not None or labels_to_include):
        return rows
    off, lim = offset or 0, limit or 100
    page = rows[off:off + lim]
    cid = registry.get(state.wh, real).concept_id or real
    about = search.describe(state.wh, [r["coactive_image_id"] for r in page])
    data = []
    for r in page:
        who_ = r["created_by"] or "pixql"
        v = visual(about[r["coactive_image_id"]]) if r["coactive_image_id"] in about else None
        data.append(ConceptLabelOut(
            created_user_id=who_, updated_user_id=who_, created_dt=r["created_dt"] + "Z",
            updated_dt=r["created_dt"] + "Z", label_id=_label_id(cid, r["coactive_image_id"]), label=r["label"],
            image=v if v is not None and not hasattr(v, "shot") else None,
            keyframe=v if v is not None and hasattr(v, "shot") else None))
    return PagedConceptLabels(meta=paged_meta(None, off, lim, len(rows), [("created_dt", "asc")]), data=data)


@router.patch("/{name}/labels", response_model=ConceptOut)
def patch_labels(name: str, body: LabelsPatch, state: State, who: Writer):
    """Add or withdraw labels, then train one new version from all current labels.

    `labels` is PixQL's `{asset: label}` or the SDK's `[{coactiveImageId | imagePath, label}]`
    (no label withdraws one); `autosampledNumNegativeLabels` adds random unlabeled negatives.
    """
    from concepts import registry

    real = _name(state, name)
    pos, neg, remove = list(body.positive), list(body.negative), list(body.remove)
    if isinstance(body.labels, dict):
        items = list(body.labels.items())
    else:
        items = []
        for req in body.labels:
            asset = req.coactive_image_id or req.image_path
            if not asset or (req.coactive_image_id and req.image_path):
                raise Invalid("each label names its asset by exactly one of coactiveImageId or imagePath")
            items.append((asset, req.label))
    for asset, label in items:
        {"positive": pos, "negative": neg}.get(label or "", remove).append(asset)
    if body.autosampled_num_negative_labels:
        taken = set(registry.resolve_assets(state.wh, pos + neg + remove)) if pos or neg or remove else set()
        sampled = registry.autosample_negatives(state.wh, real, body.autosampled_num_negative_labels + len(taken))
        neg += [i for i in sampled if i not in taken][: body.autosampled_num_negative_labels]
    if not (pos or neg or remove):
        raise Invalid("no labels given: use positive, negative, remove or labels")
    by = who.client_id or who.name
    # Additions and removals together make one new version.
    return _out(state, registry.set_labels(state.wh, real, positive=pos, negative=neg, remove=remove, created_by=by))


@router.get("/{name}/candidates", response_model=list[Candidate] | CandidatesToLabel)
def candidates(name: str, request: Request, state: State, who: Reader, n: int = Query(20, ge=1, le=1000),
               limit: int | None = Query(None, ge=1, le=1000, description="The SDK's name for n"),
               dataset: str | None = None):
    """The most uncertain unlabeled assets: label these next."""
    from concepts import active, search

    ds = catalog.resolve_dataset(state.cursor(), dataset) if dataset else None
    rows = active.candidates(state.wh, _name(state, name), limit or n, dataset=ds)
    if not (coactive_client(request) or limit is not None):
        return rows
    about = search.describe(state.wh, [r["coactive_image_id"] for r in rows])
    return CandidatesToLabel(data=[visual(about[r["coactive_image_id"]], r["prob"]) for r in rows
                                   if r["coactive_image_id"] in about])


@router.get("/{name}/estimate", response_model=Estimate)
def estimate(name: str, state: State, who: Reader, dataset: str | None = None):
    """How many assets are above the threshold, with a 95% interval on the expected count."""
    from concepts import active

    ds = catalog.resolve_dataset(state.cursor(), dataset) if dataset else None
    return active.estimate(state.wh, _name(state, name), dataset=ds)


@router.get("/{name}/prediction_estimation", response_model=ConceptPrediction)
def prediction_estimation(name: str, state: State, who: Reader,
                          threshold: float | None = Query(None, ge=0, le=1),
                          confidence_level: float = Query(0.95, gt=0, lt=1),
                          estimation_fidelity: int | None = Query(None, ge=1, le=10_000_000),
                          dataset: str | None = None):
    """Assets per probability range (split at the threshold): exact, or from a random sample of
    `estimation_fidelity` scored assets with intervals at `confidence_level` (Coactive's call)."""
    from concepts import active

    ds = catalog.resolve_dataset(state.cursor(), dataset) if dataset else None
    return ConceptPrediction(**active.prediction_estimate(state.wh, _name(state, name), threshold, confidence_level,
                                                          estimation_fidelity, dataset=ds))


@router.get("/{name}/versions", response_model=list[ConceptVersionOut])
def versions(name: str, state: State, who: Reader):
    from concepts import registry

    return [ConceptVersionOut(**asdict(v)) for v in registry.versions(state.wh, _name(state, name))]


@router.get("/{name}/versions/{number}", response_model=ConceptVersionOut)
def version(name: str, number: int, state: State, who: Reader):
    from concepts import registry

    v = registry.version(state.wh, _name(state, name), number)
    return ConceptVersionOut(**{k: val for k, val in asdict(v).items() if k != "weights"})



@router.get("/{name}/classes", response_model=ConceptClasses)
def get_classes(name: str, state: State, who: Reader, version: int | None = Query(None, ge=1)):
    """The classifier classes that make up the concept (ConSE memberships, pins and drops) of a
    version (the newest by default), as `pixql concept classes` lists them."""
    from concepts import memberships, registry

    real = _name(state, name)
    v = registry.version(state.wh, real, version)
    return ConceptClasses(concept=real, version=v.version, classes=memberships.of(state.wh, real, v.version))


@router.patch("/{name}/classes", response_model=ConceptClasses)
def edit_classes(name: str, body: ClassEdits, state: State, who: Writer):
    """Pin (membership 1), drop (0) or reset classes: version N+1; earlier versions never change."""
    from concepts import memberships, registry

    real = _name(state, name)
    before = registry.get(state.wh, real).latest_version
    c = registry.edit_classes(state.wh, real, pin=body.pin, drop=body.drop, reset=body.reset)
    return ConceptClasses(concept=real, version=c.latest_version, previous_version=before,
                          classes=memberships.of(state.wh, real, c.latest_version))
