"""Feedback: a person puts an image on the block or pass list, in one transaction.

What feedback records commits together or not at all: the list entry
(`catalog.moderation_feedback`, replacing any earlier entry of the asset), the
person's decision (`catalog.moderation_decisions`, `rejected` for block,
`approved` for pass) and, per category given, a label on the category's concept
(`catalog.concept_labels`: block = positive, pass = negative).

Training follows the commit and derives from what was stored, so it can be
redone: a category concept gets a new version from all its labels (or keeps the
label for later when it has too few), and a category that is not a concept yet
becomes one once its feedback entries hold enough labels.
"""
from __future__ import annotations

import json

from warehouse.errors import Invalid
from warehouse import catalog

from .. import taxonomy
from . import decisions, similarity
from .similarity import SIM_ENCODER, VERDICTS


def _record(con, aid: str, verdict: str, categories: list[str], concepts: list[str], user: str | None,
            comment: str | None) -> None:
    """The three writes of one feedback, on `con` inside the caller's transaction."""
    con.execute("DELETE FROM catalog.moderation_feedback WHERE coactive_image_id = ?", [aid])
    con.execute("INSERT INTO catalog.moderation_feedback VALUES (?, ?, ?, ?, ?, ?, ?)",
                [aid, verdict, json.dumps(categories), SIM_ENCODER, comment, user, catalog.now()])
    decisions.insert(con, aid, "asset", VERDICTS[verdict],
                     [{"feedback": verdict, "categories": categories, "comment": comment}], None, "user",
                     user=user, comment=comment or f"feedback: {verdict}")
    label = "positive" if verdict == "block" else "negative"
    if concepts:
        now = catalog.now()
        con.executemany("INSERT INTO catalog.concept_labels VALUES (?, ?, ?, ?, ?)",
                        [[name, aid, label, user, now] for name in concepts])


def give(wh, subjects, item, verdict: str, categories: list[str] | None = None, user: str | None = None,
         comment: str | None = None) -> dict:
    """Put an image (an `Item`, resolved through `subjects`) on the block or pass list; categories
    also become concept labels."""
    from .. import registry

    if verdict not in VERDICTS:
        raise Invalid(f"verdict must be 'block' or 'pass', got {verdict!r}")
    categories = [taxonomy.check_category(c) for c in (categories or [])]
    subject = subjects.image(wh.cursor(), item)
    aid = subject.subject_id
    if not similarity.has_vectors(wh.cursor(), wh.root, aid):
        raise Invalid(f"asset {aid} has no {SIM_ENCODER} vectors to compare with; "
                         f"run `pixql embed --encoder {SIM_ENCODER}` on its dataset")
    concepts = [c for c in categories if registry.exists(wh, c)]
    with wh.transaction() as tx:  # the list entry, the decision and the labels: all or nothing
        tx.data_changed()
        _record(tx.con, aid, verdict, categories, concepts, user, comment)
    labels = [_train(wh, cat, cat in concepts, user) for cat in categories]
    return {"coactive_image_id": aid, "verdict": verdict, "list": "blocklist" if verdict == "block" else "passlist",
            "categories": categories, "labels": labels, "status": VERDICTS[verdict]}


def _train(wh, category: str, is_concept: bool, user: str | None) -> dict:
    """A new version of the category's concept from its stored labels, when there are enough."""
    from .. import registry
    from ..heads import NotEnoughLabels

    if is_concept:
        try:
            c = registry.train(wh, category)
            return {"category": category, "concept_version": c.latest_version, "trained": True}
        except NotEnoughLabels as e:
            c = registry.get(wh, category)
            return {"category": category, "concept_version": c.latest_version, "trained": False,
                    "detail": str(e)}
    # An empty category becomes a concept once its feedback holds enough labels.
    positives, negatives = similarity.in_category(wh.cursor(), category)
    par = taxonomy.parent(category)
    try:
        c = registry.create(wh, category, positive=positives, negative=negatives, created_by=user,
                            description=taxonomy.CATEGORIES[category].title,
                            parent=par if par and registry.exists(wh, par) else None,
                            encoder=SIM_ENCODER)
        return {"category": category, "concept_version": c.latest_version, "trained": True}
    except NotEnoughLabels as e:
        return {"category": category, "concept_version": None, "trained": False,
                "detail": f"kept on the feedback list ({len(positives)} block, {len(negatives)} pass so far): {e}"}
