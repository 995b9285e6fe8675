"""The similar-image lists (Alibaba's feedback): the block and pass lists and the look-alike search.

Owns reading `catalog.moderation_feedback` (the feedback module writes it):
an asset on the block or pass list is compared with each moderated frame by
cosine similarity of stored `features` of the built-in encoder; at or above the
policy's `similarity` the frame takes the listed verdict, with the most similar
listed asset as the reason (ties between a block and a pass entry go to block).
"""
from __future__ import annotations

import json

import numpy as np

from .. import taxonomy

VERDICTS = {"block": "rejected", "pass": "approved"}
SIM_ENCODER, SIM_COLUMN, SIM_DIM = taxonomy.BUILTIN_ENCODER, "features", 1280


def _round(x: float) -> float:
    return round(float(x), 4)


def vectors(con, root, encoder: str, column: str, dim: int, ids: list[str]) -> dict[str, np.ndarray]:
    """Stored vectors of those of `ids` that have some on `encoder` (id -> vector)."""
    from ..labeled import vectors_for

    have = [r[0] for r in con.execute(
        "SELECT coactive_image_id FROM catalog.embeddings WHERE encoder = ? AND list_contains(?, coactive_image_id)",
        [encoder, ids]).fetchall()]
    if not have:
        return {}
    X = vectors_for(con, root, encoder, column, dim, have)
    return dict(zip(have, X))


def has_vectors(con, root, asset_id: str) -> bool:
    return bool(vectors(con, root, SIM_ENCODER, SIM_COLUMN, SIM_DIM, [asset_id]))


def most_similar(con, root, asset_ids: list[str]) -> dict[str, dict]:
    """Per asset, the most similar listed asset: {coactive_image_id, similarity, verdict}."""
    listed = con.execute("SELECT coactive_image_id, verdict FROM catalog.moderation_feedback "
                         "WHERE encoder = ?", [SIM_ENCODER]).fetchall()
    if not listed:
        return {}
    lv = vectors(con, root, SIM_ENCODER, SIM_COLUMN, SIM_DIM, [r[0] for r in listed])
    verdict = dict(listed)
    lids = list(lv)
    if not lids:
        return {}
    L = np.stack([lv[i] for i in lids]).astype(np.float64)
    L /= np.maximum(np.linalg.norm(L, axis=1, keepdims=True), 1e-12)
    qv = vectors(con, root, SIM_ENCODER, SIM_COLUMN, SIM_DIM, asset_ids)
    out = {}
    for aid, v in qv.items():
        q = v.astype(np.float64)
        q /= max(np.linalg.norm(q), 1e-12)
        sims = L @ q
        # ties between a block and a pass entry go to block: the safer call
        order = sorted(range(len(lids)), key=lambda k: (-round(sims[k], 6), verdict[lids[k]] != "block"))
        k = order[0]
        out[aid] = {"coactive_image_id": lids[k], "similarity": _round(sims[k]), "verdict": verdict[lids[k]]}
    return out


def listed(con, verdict: str | None = None) -> list[dict]:
    """The block and/or pass list, newest first."""
    rows = con.execute(
        "SELECT coactive_image_id, verdict, categories, comment, created_by, created_dt "
        "FROM catalog.moderation_feedback WHERE (? IS NULL OR verdict = ?) ORDER BY created_dt DESC",
        [verdict, verdict]).fetchall()
    keys = ["coactive_image_id", "verdict", "categories", "comment", "created_by", "created_dt"]
    return [dict(zip(keys, r), categories=json.loads(r[2] or "[]")) for r in rows]


def in_category(con, category: str) -> tuple[list[str], list[str]]:
    """(blocked, passed) asset ids listed with `category`: the labels of a category not yet a concept."""
    rows = con.execute(
        "SELECT coactive_image_id, verdict FROM catalog.moderation_feedback "
        "WHERE list_contains(CAST(categories AS VARCHAR[]), ?)", [category]).fetchall()
    return [r[0] for r in rows if r[1] == "block"], [r[0] for r in rows if r[1] == "pass"]


def remove(wh, asset_id: str) -> bool:
    """Take an asset off its list; False if it was on none."""
    with wh.write_lock:
        row = wh.cursor().execute(
            "DELETE FROM catalog.moderation_feedback WHERE coactive_image_id = ? RETURNING 1", [asset_id]
        ).fetchone()
    return row is not None
