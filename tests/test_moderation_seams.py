"""The seams of `concepts.moderation`: scoring reads the same heads as the concept columns, feedback is
one transaction, and the API's queue and the review page's queue are one query."""
from __future__ import annotations

import pytest
from conftest import copy_photos

from concepts import taxonomy
from concepts.moderation import Item, Moderator, scoring

NAMES = {"rocket", "coffee", "china", "chelsea", "motorcycle"}


@pytest.fixture(scope="module")
def seams_wh(tmp_path_factory, photo_dir):
    from warehouse import Warehouse

    base = tmp_path_factory.mktemp("mod-seams")
    photos = copy_photos(photo_dir, base / "photos", names=NAMES)
    wh = Warehouse.open(base / "wh")
    wh.ingest([str(photos)], dataset="seams", progress=False)
    yield wh, photos
    wh.close()


def _sql_scores(wh, categories) -> dict[str, dict[str, float]]:
    cols = ", ".join(f"{c}_latest_prob" for c in categories)
    rows = wh.sql(f"SELECT coactive_image_id, {cols} FROM coactive_table").fetchall()
    return {r[0]: dict(zip(categories, r[1:])) for r in rows}


def test_scoring_equals_the_concept_columns_before_and_after_the_categories_are_concepts(seams_wh):
    wh, _ = seams_wh
    con = wh.cursor()
    ids = [r[0] for r in con.execute("SELECT coactive_image_id FROM catalog.assets ORDER BY path").fetchall()]
    assert len(ids) == len(NAMES)
    assert not con.execute("SELECT count(*) FROM catalog.concepts").fetchone()[0]
    # Not concepts yet (as in a read-only warehouse): the built-in definitions the concepts will be made from.
    before = scoring.own_scores(con, wh.root, ids)
    made = taxonomy.ensure_concepts(wh)
    assert made and set(before[ids[0]]) == set(made)  # the same categories, parents included
    sql = _sql_scores(wh, made)
    after = scoring.own_scores(wh.cursor(), wh.root, ids)
    for aid in ids:
        for c in made:
            assert before[aid][c] == pytest.approx(sql[aid][c], abs=1e-5), (aid, c)
            assert after[aid][c] == pytest.approx(sql[aid][c], abs=1e-5), (aid, c)
    # the comparison is not between zeros: the rocket is a weapon to the built-in head
    assert max(sql[a]["weapons"] for a in ids) > 0.3
    # and the stored heads are what is read: one head per category, version 1, from catalog.concept_versions
    heads = {h.concept: h for h in scoring.heads(wh.cursor())}
    stored = dict(wh.sql("SELECT concept, version FROM catalog.concept_versions").fetchall())
    assert {c: h.version for c, h in heads.items() if c in made} == {c: stored[c] for c in made}


def test_feedback_is_one_transaction(seams_wh, monkeypatch):
    from concepts.moderation import decisions

    wh, photos = seams_wh
    m = Moderator(wh)
    m.ensure_taxonomy()
    coffee = m.moderate([Item(path=str(photos / "coffee.png"))])["results"][0]["coactive_image_id"]
    m.feedback(Item(coactive_image_id=coffee), "pass", comment="just coffee", user="ana")

    def state():
        con = wh.cursor()
        return (con.execute("SELECT verdict, categories, comment FROM catalog.moderation_feedback "
                            "WHERE coactive_image_id = ?", [coffee]).fetchall(),
                con.execute("SELECT count(*) FROM catalog.moderation_decisions WHERE subject_id = ?",
                            [coffee]).fetchone()[0],
                con.execute("SELECT count(*) FROM catalog.concept_labels WHERE coactive_image_id = ?",
                            [coffee]).fetchone()[0])

    before = state()
    assert before[0] == [("pass", "[]", "just coffee")]

    def broken(*a, **kw):
        raise RuntimeError("disk full while recording the decision")

    # The list entry is replaced first; the decision (the second step) fails: nothing of it stays.
    monkeypatch.setattr(decisions, "insert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        m.feedback(Item(coactive_image_id=coffee), "block", categories=["weapons"], comment="no", user="bo")
    assert state() == before
    monkeypatch.undo()

    out = m.feedback(Item(coactive_image_id=coffee), "block", categories=["weapons"], comment="no", user="bo")
    assert out["status"] == "rejected" and out["labels"][0]["category"] == "weapons"
    after = state()
    assert after[0] == [("block", '["weapons"]', "no")]
    assert after[1] == before[1] + 1 and after[2] == before[2] + 1
    row = wh.sql("SELECT status, decided_by, user_name, model_status FROM catalog.moderation_decisions "
                 "WHERE subject_id = ? ORDER BY seq DESC LIMIT 1", [coffee]).fetchone()
    assert row[:3] == ("rejected", "user", "bo") and row[3] in ("approved", "review", "rejected")
    label = wh.sql("SELECT concept, label, created_by FROM catalog.concept_labels WHERE coactive_image_id = ?",
                   [coffee]).fetchone()
    assert label == ("weapons", "positive", "bo")


def test_the_api_queue_and_the_page_queue_are_the_same_rows(seams_wh):
    from api.web.queue import queue as page_queue

    wh, photos = seams_wh
    m = Moderator(wh)
    res = m.moderate([Item(path=str(photos / f"{n}.{'jpg' if n == 'china' else 'png'}")) for n in sorted(NAMES)],
                     use_cache=False)["results"]
    assert {r["status"] for r in res} >= {"rejected", "approved"}
    m.override(res[0]["subject_id"], "review", "look again", user="ana")
    con = wh.cursor()
    for status in (None, "approved", "rejected", "review"):
        for dataset in (None, "seams", "elsewhere"):
            api = m.queue(status, 0, 100, dataset)
            page = page_queue(con, status, dataset, limit=100)
            assert api["total"] == page["total"], (status, dataset)
            keys = ("subject_id", "status", "decided_by", "path", "dataset")
            assert [tuple(i[k] for k in keys) for i in api["items"]] == \
                [tuple(i[k] for k in keys) for i in page["items"]], (status, dataset)
            for offset in range(api["total"]):  # the same pages
                one = m.queue(status, offset, 1, dataset)["items"]
                assert [i["subject_id"] for i in one] == \
                    [i["subject_id"] for i in page_queue(con, status, dataset, offset=offset, limit=1)["items"]]
    assert m.queue(None, 0, 100, None)["total"] >= len(NAMES)
    assert m.queue(None, 0, 100, "elsewhere")["total"] == 0
