"""Category scores: each moderation category's probability per frame, from the heads the concept columns use.

A category that is a concept is scored by its newest version's head, read from
`catalog.concept_versions` (the rows the SQL macros are compiled from), with the
same formula (`warehouse.concept_cache.probabilities`), so a score here equals
the category's `<name>_latest_prob` column.  A category with a built-in
definition that is not a concept yet (a read-only warehouse cannot create it)
is scored by the head it *would* be stored with: the catalogue's
`moderation_definition` turned into a head by the built-in encoder's own rule
(`catalogue.head_for` -> `Encoder.builtin_head`), never by a second copy here.
Categories the shipped models cover (open_nsfw, NudeNet: `analyzed.py`) take the larger of
their head's and their model's score.  Parents combine per `taxonomy.combine`; categories with
no head anywhere stay None (unknown, not 0).
"""
from __future__ import annotations

import numpy as np

from .. import catalogue, taxonomy
from . import analyzed
from .similarity import vectors


def heads(con) -> list:
    """The heads (`concept_cache.Head`) that score the categories: each category concept's newest
    version, and the built-in definition of each built-in category that is not a concept yet."""
    from warehouse.concept_cache import load_heads

    from ..heads import class_names

    latest = dict(con.execute(
        "SELECT name, latest_version FROM catalog.concepts WHERE list_contains(?, name)",
        [list(taxonomy.CATEGORIES)]).fetchall())
    out = [h for h in load_heads(con) if latest.get(h.concept) == h.version]
    missing = [c for c in taxonomy.CATEGORIES if c not in latest]
    if missing:
        encoder = taxonomy.BUILTIN_ENCODER
        names = class_names(con, encoder)
        for c in missing:
            definition = catalogue.moderation_definition(taxonomy.CATEGORIES[c].entry)
            made = catalogue.head_for(definition, encoder, names) if definition is not None else None
            if made is not None:
                out.append(made[0].as_head(c, 0, definition.threshold))
    return out


def own_scores(con, root, asset_ids: list[str]) -> dict[str, dict[str, float | None]]:
    """Per asset, the probability of each category's own head (absent where it has none or no vectors)."""
    from warehouse.concept_cache import probabilities

    own: dict[str, dict[str, float | None]] = {a: {} for a in asset_ids}
    by_col: dict[tuple, list] = {}
    for h in heads(con):
        by_col.setdefault((h.encoder, h.column, h.dim), []).append(h)
    for (enc, col, dim), hs in by_col.items():
        vecs = vectors(con, root, enc, col, dim, asset_ids)
        if not vecs:
            continue
        ids = list(vecs)
        P = probabilities(np.stack([vecs[i] for i in ids]), hs)
        for r, aid in enumerate(ids):
            for k, h in enumerate(hs):
                own[aid][h.concept] = None if np.isnan(P[r, k]) else float(P[r, k])
    for aid, model in analyzed.scores(con, asset_ids).items():
        mine = own.setdefault(aid, {})
        for cat, s in model.items():
            mine[cat] = s if mine.get(cat) is None else max(mine[cat], s)
    return own


def scores(con, root, asset_ids: list[str]) -> dict[str, dict[str, float | None]]:
    """Per asset, every category's probability (None where nothing scores it), parents combined."""
    return {a: taxonomy.combine(s) for a, s in own_scores(con, root, asset_ids).items()}


def unreliable(con) -> list[str]:
    """Scored categories whose built-in measured at chance or could not be measured on the dev set
    (`concepts/quality.py`), unless labels have since retrained them."""
    from .. import quality

    labelled = {r[0] for r in con.execute(
        "SELECT DISTINCT concept FROM catalog.concept_labels WHERE label <> 'none'").fetchall()}
    gone = set(unscored(con))
    return [c for c in quality.unreliable_categories() if c not in labelled and c not in gone]


def unscored(con) -> list[str]:
    """Categories with no concept or installed model of their own or of a child: nothing scores them."""
    have = {r[0] for r in con.execute(
        "SELECT name FROM catalog.concepts WHERE latest_version > 0 AND list_contains(?, name)",
        [list(taxonomy.CATEGORIES)]).fetchall()} | set(analyzed.model_categories())
    return [c for c in taxonomy.CATEGORIES
            if c not in have and not any(ch in have for ch in taxonomy.children(c))]
