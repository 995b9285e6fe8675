"""`/api/v1/concepts`: create, read, update, delete concepts; labels, candidates, estimates, versions.

Thin: every route calls the concepts package's Python API (`concepts.registry`,
`concepts.active`); concept logic lives there.
"""
from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query, Response

from ..deps import Reader, State, Writer
from ..models import (Candidate, ConceptCreate, ConceptOut, ConceptUpdate, ConceptVersionOut, Estimate, LabelOut,
                      LabelsPatch)
from warehouse.errors import Invalid

router = APIRouter(prefix="/api/v1/concepts", tags=["concepts"])


def _out(c) -> ConceptOut:
    return ConceptOut(**asdict(c))


@router.post("", status_code=201, response_model=ConceptOut)
def create_concept(body: ConceptCreate, state: State, who: Writer):
    """A concept from text prompts and/or labelled examples; it becomes columns of coactive_table."""
    from concepts import registry

    c = registry.create(state.wh, body.name, prompts=body.prompts, negative_prompts=body.negative_prompts,
                        positive=body.positive, negative=body.negative, description=body.description,
                        threshold=body.threshold, encoder=body.encoder, parent=body.parent,
                        created_by=who.client_id or who.name)
    return _out(c)


@router.get("", response_model=list[ConceptOut])
def list_concepts(state: State, who: Reader, parent: str | None = None):
    from concepts import registry

    return [_out(c) for c in registry.list_concepts(state.wh, parent=parent)]


@router.get("/{name}", response_model=ConceptOut)
def get_concept(name: str, state: State, who: Reader):
    from concepts import registry

    return _out(registry.get(state.wh, name))


@router.patch("/{name}", response_model=ConceptOut)
def update_concept(name: str, body: ConceptUpdate, state: State, who: Writer):
    """A new threshold or new prompts make version N+1; description and parent change in place."""
    from concepts import registry

    fields = body.model_dump(exclude_unset=True)
    return _out(registry.update(state.wh, name, **fields))


@router.post("/{name}/recalibrate", response_model=ConceptOut)
def recalibrate_concept(name: str, state: State, who: Writer):
    """Version N+1 at the default threshold from today's scores and labels (unchanged if it is the same)."""
    from concepts import registry

    return _out(registry.recalibrate(state.wh, name))


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_concept(name: str, state: State, who: Writer):
    from concepts import registry

    registry.delete(state.wh, name)
    return Response(status_code=204)


@router.get("/{name}/labels", response_model=list[LabelOut])
def get_labels(name: str, state: State, who: Reader):
    from concepts import registry

    return registry.labels(state.wh, name)


@router.patch("/{name}/labels", response_model=ConceptOut)
def patch_labels(name: str, body: LabelsPatch, state: State, who: Writer):
    """Add or withdraw labels, then train one new version from all current labels."""
    from concepts import registry

    pos, neg, remove = list(body.positive), list(body.negative), list(body.remove)
    for asset, label in body.labels.items():
        {"positive": pos, "negative": neg}.get(label or "", remove).append(asset)
    if not (pos or neg or remove):
        raise Invalid("no labels given: use positive, negative, remove or labels")
    by = who.client_id or who.name
    # Additions and removals together make one new version.
    return _out(registry.set_labels(state.wh, name, positive=pos, negative=neg, remove=remove, created_by=by))


@router.get("/{name}/candidates", response_model=list[Candidate])
def candidates(name: str, state: State, who: Reader, n: int = Query(20, ge=1, le=1000),
               dataset: str | None = None):
    """The most uncertain unlabeled assets: label these next."""
    from concepts import active

    return active.candidates(state.wh, name, n, dataset=dataset)


@router.get("/{name}/estimate", response_model=Estimate)
def estimate(name: str, state: State, who: Reader, dataset: str | None = None):
    """How many assets are above the threshold, with a 95% interval on the expected count."""
    from concepts import active

    return active.estimate(state.wh, name, dataset=dataset)


@router.get("/{name}/versions", response_model=list[ConceptVersionOut])
def versions(name: str, state: State, who: Reader):
    from concepts import registry

    return [ConceptVersionOut(**asdict(v)) for v in registry.versions(state.wh, name)]


@router.get("/{name}/versions/{number}", response_model=ConceptVersionOut)
def version(name: str, number: int, state: State, who: Reader):
    from concepts import registry

    v = registry.version(state.wh, name, number)
    return ConceptVersionOut(**{k: val for k, val in asdict(v).items() if k != "weights"})
