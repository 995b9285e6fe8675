"""Re-embedding a dataset with another preprocessing setting of its encoder, and what it does to concepts.

`pixql embed -d D -e imagenet-lite0:letterbox` on a dataset whose encoder is `imagenet-lite0`
stores a second vector set (the new setting's name is recorded with the vectors:
`catalog.embeddings.encoder`, `catalog.encoders`), then `after_embed` makes it the dataset's
encoder and gives every concept on the old setting a new version on the new vectors.  Old
versions keep reading the old vectors, so a pinned `<c>_v<N>_prob` never changes.
"""
from __future__ import annotations

import encoders

from .heads import ConceptError, ConceptNotFound
from .registry import (Concept, _build_head, _commit, _current_split, _head_of, _kept_threshold, list_concepts,
                       version)


def same_model(a: str, b: str) -> bool:
    """Whether encoders `a` and `b` are one model under two preprocessing settings (same heads)."""
    ea, eb = encoders.find(a), encoders.find(b)
    base = lambda e, n: getattr(e, "base_name", n)  # noqa: E731
    return ea is not None and eb is not None and type(ea) is type(eb) and base(ea, a) == base(eb, b)


def retarget(wh, to_encoder: str, from_encoder: str, materialize: bool = True) -> list[Concept]:
    """Version N+1 on `to_encoder` of every concept whose newest version reads `from_encoder`.

    For a re-embedding with another preprocessing setting (`imagenet-lite0` -> `imagenet-lite0:letterbox`):
    text heads are rebuilt from their prompts, labelled heads retrained on the new vectors of
    their labels, built-in (`model`) heads keep their weights when the two are the same model.
    Old versions keep reading the old vectors, so pinned `<c>_v<N>_prob` columns do not change.
    Thresholds: the user's are kept, the others follow the default rule on the new scores.
    """
    out = []
    for c in list_concepts(wh):
        v = version(wh, c.name, with_weights=True)
        if v.encoder != from_encoder:
            continue
        pos, neg = _current_split(wh, c.name)
        if v.kind == "model":
            if not same_model(from_encoder, to_encoder):
                raise ConceptError(f"concept {c.name!r} has a {from_encoder} model head that cannot move to {to_encoder}")
            head = _head_of(v)
            head.encoder = to_encoder
        else:
            head = _build_head(wh, to_encoder, v.prompts, v.negative_prompts, pos, neg)
        head.training = {**head.training, "derived_from": v.version, "change": f"re-embedded with {to_encoder}"}
        out.append(_commit(wh, c.name, head, _kept_threshold(c), v.prompts, v.negative_prompts,
                           materialize=materialize))
    return out


def switch_dataset_encoder(wh, dataset: str, encoder: str) -> str:
    """Make `encoder` the dataset's default (what its next ingests and new concepts use); returns the old one."""
    with wh.write_lock:
        con = wh.cursor()
        row = con.execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [dataset]).fetchone()
        if not row:
            raise ConceptNotFound(f"unknown dataset {dataset!r}")
        con.execute("UPDATE catalog.datasets SET encoder = ? WHERE name = ?", [encoder, dataset])
    return row[0]



def after_embed(wh, dataset: str, encoder: str) -> list[str]:
    """After `embed`: if `encoder` is another setting of the dataset's encoder, switch to it and
    move the concepts (lines saying what changed); a different model is just a second vector set."""
    row = wh.cursor().execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [dataset]).fetchone()
    old = row[0] if row else None
    enc = encoders.normalize_name(encoder)
    if old is None or old == enc or not same_model(old, enc):
        return []
    others = [r[0] for r in wh.cursor().execute(
        "SELECT name FROM catalog.datasets WHERE encoder = ? AND name <> ?", [old, dataset]).fetchall()]
    switch_dataset_encoder(wh, dataset, enc)
    if others:  # other datasets still read the old setting: their concepts stay with it
        return [f"dataset {dataset!r} now uses {enc}; concepts stay on {old} (also used by {', '.join(others)})"]
    moved = retarget(wh, enc, old)
    return [f"dataset {dataset!r} now uses {enc}"] + [
        f"  {c.name} v{c.latest_version} on {enc}: threshold {c.threshold:.4g} ({c.threshold_source})" for c in moved]
