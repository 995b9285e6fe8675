"""Real-time classification of files against the concept library (Coactive tutorial, section 3.1).

    classify(wh, ["query_images/"], concepts=["fight", "syringe", "handgun"])
    -> [{"path": ..., "probabilities": {"fight": 0.0004, ...}, "classification": ["handgun"],
         "coactive_image_id": None, "error": None}, ...]

Files are decoded with the ingest decoder (same safety limits) and embedded on
the fly with each concept's encoder; a file whose content (sha256) is already
in the warehouse reuses its stored vectors.  Nothing is written unless
`add=True`, which ingests the files into `dataset` first.  A file that cannot be
decoded gets its reason in `error` instead of probabilities.
"""
from __future__ import annotations

import numpy as np

from warehouse import catalog
from warehouse.concept_cache import load_heads, probabilities

from .heads import ConceptError
from .labeled import vectors_for
from .registry import get, list_concepts

BATCH = 16


def _latest_heads(wh, names):
    con = wh.cursor()
    latest = {c.name: c for c in (list_concepts(wh) if names is None else [get(wh, n) for n in names])}
    heads = [h for h in load_heads(con) if h.concept in latest and h.version == latest[h.concept].latest_version]
    return latest, heads


def classify(wh, paths, concepts=None, add: bool = False, dataset: str = "classified") -> list[dict]:
    from ingest.decode import decode_source
    from encoders import get_encoder
    from ingest.sources import expand

    if isinstance(concepts, str):
        concepts = [concepts]
    latest, heads = _latest_heads(wh, concepts)
    if not heads:
        raise ConceptError("no concepts to classify with: create some or run `pixql concepts install-defaults`")
    if add:
        wh.ingest(paths, dataset=dataset, progress=False)
    sources = expand(paths)
    results = [{"path": str(s.path), "coactive_image_id": None, "probabilities": {}, "classification": [],
                "error": None} for s in sources]
    by_encoder: dict[str, list] = {}
    for h in heads:
        by_encoder.setdefault(h.encoder, []).append(h)
    decoded = []
    for k, src in enumerate(sources):
        res = decode_source(src, "classify", frozenset(), target=448)
        # A video classifies by its first keyframe; its frames stream lazily and
        # closing the generator after one stops the decoder.
        first = res.assets[0] if res.assets else None
        if first is None and res.frames is not None:
            frames = iter(res.frames)
            first = next(frames, None)
            getattr(frames, "close", lambda: None)()
        if first is None:
            results[k]["error"] = res.error or "no image in file"
            continue
        decoded.append((k, first))
    con = wh.cursor()
    for encoder, hs in by_encoder.items():
        if not decoded:
            break
        columns = sorted({h.column for h in hs})
        vectors: dict[str, np.ndarray] = {}
        stored = _stored_ids(con, encoder, [a.sha256 for _, a in decoded])
        todo = [j for j, (_, a) in enumerate(decoded) if a.sha256 not in stored]
        known = [j for j, (_, a) in enumerate(decoded) if a.sha256 in stored]
        for col in columns:
            dim = next(h.dim for h in hs if h.column == col)
            vectors[col] = np.zeros((len(decoded), dim), dtype=np.float32)
            if known:
                ids = [stored[decoded[j][1].sha256] for j in known]
                vectors[col][known] = vectors_for(con, wh.root, encoder, col, dim, ids)
        if todo:
            try:
                enc = get_encoder(encoder)
            except (ValueError, FileNotFoundError) as e:
                raise ConceptError(f"cannot embed new files for concepts on encoder {encoder!r}: {e}") from None
            for s in range(0, len(todo), BATCH):
                chunk = todo[s:s + BATCH]
                out = enc.encode_images([decoded[j][1].image for j in chunk])
                for col in columns:
                    vectors[col][chunk] = out[col]
        for j, (k, a) in enumerate(decoded):
            if a.sha256 in stored:
                results[k]["coactive_image_id"] = stored[a.sha256]
        for col in columns:
            group = [h for h in hs if h.column == col]
            P = probabilities(vectors[col], group)
            for j, (k, _) in enumerate(decoded):
                for g, h in enumerate(group):
                    results[k]["probabilities"][h.concept] = float(P[j, g])
    for r in results:
        if r["error"] is None:
            r["probabilities"] = dict(sorted(r["probabilities"].items()))
            r["classification"] = [n for n, p in r["probabilities"].items() if p >= latest[n].threshold]
    return results


def _stored_ids(con, encoder: str, digests: list[str]) -> dict[str, str]:
    rows = con.execute(
        "SELECT a.sha256, min(a.coactive_image_id) FROM catalog.assets a JOIN catalog.embeddings e "
        f"USING (coactive_image_id) WHERE e.encoder = ? AND {catalog.in_list('a.sha256')} GROUP BY 1",
        [encoder, list(digests)],
    ).fetchall()
    return dict(rows)


def as_table(results: list[dict], concepts: list[str] | None = None):
    """The tutorial's table: one row per image, a column per concept, then `classification`."""
    import pandas as pd

    names = concepts or sorted({n for r in results for n in r["probabilities"]})
    rows = []
    for r in results:
        row = {"image": r["path"]}
        row.update({n: r["probabilities"].get(n) for n in names})
        row["classification"] = r["classification"] if r["error"] is None else r["error"]
        rows.append(row)
    return pd.DataFrame(rows)
