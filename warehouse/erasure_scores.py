"""Score caches after an erasure: the same probabilities, without the erased rows, aligned with the new parts.

`concept_cache` keeps one `prob` per row of the asset parts, in part order
(its alignment invariant).  An erasure rewrites some asset parts; rescoring
from the vectors would cost a full pass and could move the last float bit
(a matrix product over other row counts), so the cache is filtered instead:
each complete cache is cut per old part, the erased rows dropped, and the
pieces laid out in the new part order, for the version and for any next
version an erasure made with the same head.  A cache not covering every old
part is dropped (the SQL macro serves it until the next refresh scores it).
"""
from __future__ import annotations


import numpy as np
import pyarrow.parquet as pq

from . import catalog, concept_cache


def filter_caches(con, root, old_order: list[str], rows_of: dict[str, int], masks: dict[str, np.ndarray],
                  renamed: dict[str, str | None], derived: dict[tuple[str, int], int]) -> tuple[set[str], int]:
    """Rewrite every complete score cache (caller's transaction); return (old files, files written).

    `masks[part]` says which rows of an old asset part stay; `renamed[part]` is its new
    path (None: dropped); `derived[(concept, new_version)] = old_version` for versions
    that share their head with an older one.
    """
    new_order = catalog.part_paths(con, "assets")
    old_files = {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()}
    offsets = np.concatenate([[0], np.cumsum([rows_of[p] for p in old_order])]).astype(np.int64)
    start = {p: int(offsets[i]) for i, p in enumerate(old_order)}
    back = {new: old for old, new in renamed.items() if new is not None}
    heads = {(h.concept, h.version): h for h in concept_cache.load_heads(con)}
    filtered: dict[tuple[str, int], np.ndarray] = {}
    for (concept, version) in {tuple(r) for r in con.execute(
            "SELECT DISTINCT concept, version FROM catalog.concept_scores").fetchall()}:
        rows = concept_cache.cache_rows(con, concept, version)
        covered, _ = concept_cache._covered(rows)
        concept_cache.drop_cache(con, concept, version)
        if covered != old_order or (concept, version) not in heads:
            continue
        probs = np.concatenate([
            pq.read_table(root / r[1], columns=["prob"]).column(0).to_numpy(zero_copy_only=False).astype(np.float64)
            for r in rows]) if rows else np.zeros(0)
        if len(probs) != offsets[-1]:
            continue
        pieces = []
        for p in new_order:
            old = back.get(p, p)
            piece = probs[start[old]: start[old] + rows_of[old]]
            pieces.append(piece[masks[old]] if old in masks else piece)
        filtered[(concept, version)] = np.concatenate(pieces) if pieces else np.zeros(0)
    for (concept, version), old_version in derived.items():
        if (concept, old_version) in filtered:
            filtered[(concept, version)] = filtered[(concept, old_version)]
    written = 0
    for key, probs in sorted(filtered.items()):
        h = heads.get(key)
        if h is None:
            continue
        concept_cache.write_cache(con, root, h, 0, probs, new_order, catalog.part_paths(con, "vectors", encoder=h.encoder))
        written += 1
    return old_files, written
