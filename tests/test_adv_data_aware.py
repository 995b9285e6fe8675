"""`coactive_table_adv` joins nothing a query does not name: a LEFT JOIN onto an empty catalog table
(replaced metadata, moderation decisions) is left out until that table has rows, and the encoder's
SQL columns (`imagenet_top_class`, `imagenet_top_prob`) come from the score segments instead of a
join onto the vectors.  The answers must be the ones the joins give, across the moments a table
goes from empty to non-empty and back, and the plan of a tutorial query must have no join."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from concepts import registry
from concepts.heads import HeadSpec
from concepts.moderation import Moderator
from warehouse import Warehouse, catalog, concept_cache, encoder_sql, views

PHOTOS = ["chelsea", "coffee", "astronaut", "camera"]
TUTORIAL = "SELECT coactive_image_id, path, probe_prob AS s FROM coactive_table_adv ORDER BY s DESC LIMIT 3"


@pytest.fixture(scope="module")
def wh(tmp_path_factory, photo_dir):
    """Photos in parts of two, one concept served from the merged segments; nothing moderated,
    no metadata replaced."""
    src = tmp_path_factory.mktemp("adv-photos")
    for p in sorted(photo_dir.iterdir()):
        if p.stem in PHOTOS:
            shutil.copy(p, src / p.name)
    w = Warehouse.open(tmp_path_factory.mktemp("wh-adv"))
    w.ingest([str(src)], dataset="photos", progress=False, part_rows=2, batch_size=2)
    con = w.cursor()
    encoder = con.execute("SELECT encoder FROM catalog.datasets WHERE name = 'photos'").fetchone()[0]
    column, dim = next(iter(catalog.encoder_columns(con, encoder).items()))
    rng = np.random.default_rng(5)
    registry.create_from_head(w, "probe", HeadSpec("model", encoder, column,
                                                   rng.standard_normal(dim).astype(np.float32), 1.0, 0.0, "logistic"))
    assert w.wait_for_merge(60)
    w.encoder = encoder
    yield w
    w.close()


def _joins(wh, sql: str) -> int:
    plan = "\n".join(r[1] for r in wh.sql("EXPLAIN " + sql).fetchall())
    return plan.count("_JOIN")


def _adv_sql(wh) -> str:
    return wh.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table_adv'").fetchone()[0]


def _joined(wh, what: str) -> list[tuple]:
    """`what` per asset computed with the joins the view would have (the reference answer)."""
    return wh.sql(f"""SELECT a.coactive_image_id, {what} FROM pixql_internal.assets a
        LEFT JOIN catalog.asset_metadata md_img ON md_img.subject_id = a.coactive_image_id
        LEFT JOIN catalog.asset_metadata md_vid ON md_vid.subject_id = a.coactive_video_id
        LEFT JOIN pixql_internal.moderation_latest mod_img ON mod_img.subject_id = a.coactive_image_id
        LEFT JOIN pixql_internal.moderation_latest mod_vid ON mod_vid.subject_id = a.coactive_video_id
        ORDER BY 1""").fetchall()


def _served(wh) -> list[tuple]:
    return wh.sql("SELECT coactive_image_id, CAST(metadata AS VARCHAR), moderation_status FROM coactive_table_adv "
                  "ORDER BY 1").fetchall()


REFERENCE = ("CAST(CAST(COALESCE(md_img.metadata, md_vid.metadata, a.metadata) AS JSON) AS VARCHAR), "
             "COALESCE(mod_img.status, mod_vid.status)")


def test_an_empty_catalog_table_costs_a_tutorial_query_no_join(wh):
    sql = _adv_sql(wh)
    assert "asset_metadata" not in sql and "moderation_latest" not in sql and "pixql_internal.vectors_" not in sql
    plain = TUTORIAL.replace("coactive_table_adv", "coactive_table")
    # The one join left is late materialisation's (the top rows joined back by row number), as on
    # coactive_table.
    assert _joins(wh, TUTORIAL) == _joins(wh, plain) <= 1
    assert wh.sql(TUTORIAL).fetchall() == wh.sql(plain).fetchall()
    # Late materialisation reaches the adv view too: ids and paths fetched for the top rows only.
    assert "file_row_number" in wh.sql("EXPLAIN " + TUTORIAL).fetchall()[0][1]
    # Same names and types as the joined columns.
    types = dict(wh.sql("SELECT column_name, column_type FROM (DESCRIBE coactive_table_adv)").fetchall())
    assert types["metadata"] == "JSON" and types["moderation_status"] == "VARCHAR"
    assert _served(wh) == _joined(wh, REFERENCE)


def test_the_encoder_columns_are_the_ones_the_vectors_give(wh):
    # The photos are ingested with the default encoder, whose SQL columns these are.
    assert "imagenet_top_class" in [r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()]
    vec = views.vectors_view_name(wh.encoder)
    want = wh.sql(f"SELECT a.coactive_image_id, pixql_imagenet_class(list_position(v.probs::FLOAT[], "
                  f"list_max(v.probs::FLOAT[]))), list_max(v.probs::FLOAT[]) FROM pixql_internal.assets a "
                  f"LEFT JOIN {vec} v USING (coactive_image_id) ORDER BY 1").fetchall()
    got = wh.sql("SELECT coactive_image_id, imagenet_top_class, imagenet_top_prob FROM coactive_table_adv "
                 "ORDER BY 1").fetchall()
    assert got == want and all(r[1] for r in got)
    assert dict(wh.sql("SELECT column_name, column_type FROM (DESCRIBE coactive_table_adv)").fetchall())[
        "imagenet_top_prob"] == "FLOAT"
    assert "cat" in wh.sql("SELECT imagenet_top_class FROM coactive_table_adv WHERE path LIKE '%chelsea%'"
                           ).fetchone()[0]


def test_joins_come_back_with_rows_and_go_with_them(wh):
    con = wh.cursor()
    ids = [r[0] for r in con.execute("SELECT coactive_image_id FROM catalog.assets ORDER BY path").fetchall()]
    # Metadata replaced: the join comes back in the same commit.
    with wh.transaction() as tx:
        catalog.set_asset_metadata(tx.con, [dict(subject_id=ids[0], subject_kind="image", dataset="photos",
                                                 metadata={"tag": "replaced"})], "test")
        tx.data_changed()
    assert "asset_metadata" in _adv_sql(wh) and "moderation_latest" not in _adv_sql(wh)
    assert _served(wh) == _joined(wh, REFERENCE)
    assert json.loads(wh.sql("SELECT metadata FROM coactive_table_adv WHERE coactive_image_id = ?",
                             params=[ids[0]]).fetchone()[0]) == {"tag": "replaced"}
    # A moderation decision: its join comes back too.
    Moderator(wh).override(ids[1], "rejected", user="test")
    assert "moderation_latest" in _adv_sql(wh)
    assert _served(wh) == _joined(wh, REFERENCE)
    assert wh.sql("SELECT moderation_status FROM coactive_table_adv WHERE coactive_image_id = ?",
                  params=[ids[1]]).fetchone()[0] == "rejected"
    # Rows gone again (the decision kept only as an erasure's audit row, the metadata deleted):
    # the joins go with them.
    with wh.transaction() as tx:
        tx.con.execute("DELETE FROM catalog.asset_metadata")
        tx.con.execute("UPDATE catalog.moderation_decisions SET subject_id = 'erased:t1'")
        tx.data_changed()
    sql = _adv_sql(wh)
    assert "asset_metadata" not in sql and "moderation_latest" not in sql
    assert _served(wh) == _joined(wh, REFERENCE)
    assert _joins(wh, TUTORIAL) == _joins(wh, TUTORIAL.replace("coactive_table_adv", "coactive_table"))


def test_a_write_that_keeps_the_shape_does_not_rebuild_the_views(wh):
    from warehouse.transaction import counters

    con = wh.cursor()
    aid = con.execute("SELECT coactive_image_id FROM catalog.assets ORDER BY path LIMIT 1").fetchone()[0]
    Moderator(wh).override(aid, "approved", user="test")
    before = counters(con)
    Moderator(wh).override(aid, "rejected", user="test")
    after = counters(con)
    assert after == (before[0], before[1] + 1)
    assert json.loads(con.execute("SELECT value FROM catalog.meta WHERE key = ?", [views.DATA_SHAPE_META])
                      .fetchone()[0]) == views.data_shape(con)


def test_new_vectors_for_covered_assets_are_not_served_stale(wh):
    """Re-embedded assets: the materialised encoder columns must not outlive the vectors they came from."""
    con = wh.cursor()
    served = concept_cache.served_encoder_columns(con, encoder_sql.specs(con))
    assert served  # the default encoder's columns, served from the segments before the change below
    rec = json.loads(con.execute("SELECT value FROM catalog.meta WHERE key = ?",
                                 [concept_cache.SERVED_META]).fetchone()[0])["encoders"]
    # A record whose vector parts are not the current ones serves nothing: the view joins again.
    with wh.transaction(views=True) as tx:
        bad = {e: {**r, "vector_parts": r["vector_parts"][:-1]} for e, r in rec.items()}
        meta = json.loads(tx.con.execute("SELECT value FROM catalog.meta WHERE key = ?",
                                         [concept_cache.SERVED_META]).fetchone()[0])
        tx.con.execute("UPDATE catalog.meta SET value = ? WHERE key = ?",
                       [json.dumps({**meta, "encoders": bad}), concept_cache.SERVED_META])
    assert "pixql_internal.vectors_" in _adv_sql(wh)
    joined = wh.sql("SELECT coactive_image_id, imagenet_top_class FROM coactive_table_adv ORDER BY 1").fetchall()
    wh.refresh_views()  # the refresh writes a new basis, so the segments are written again
    assert "pixql_internal.vectors_" not in _adv_sql(wh)
    assert wh.sql("SELECT coactive_image_id, imagenet_top_class FROM coactive_table_adv ORDER BY 1").fetchall() \
        == joined


def test_segments_an_earlier_release_wrote_keep_answering(wh):
    """Served-segment records without encoder columns (written before they were materialised): the view
    joins the vectors as before, and the next refresh (a writable open runs one) writes them in."""
    con = wh.cursor()
    assert concept_cache.served_encoder_columns(con, encoder_sql.specs(con))  # the default encoder's
    served = json.loads(con.execute("SELECT value FROM catalog.meta WHERE key = ?",
                                    [concept_cache.SERVED_META]).fetchone()[0])
    want = wh.sql("SELECT coactive_image_id, imagenet_top_class, imagenet_top_prob, probe_prob FROM coactive_table_adv "
                  "ORDER BY 1").fetchall()
    with wh.transaction(views=True) as tx:
        tx.con.execute("UPDATE catalog.meta SET value = ? WHERE key = ?",
                       [json.dumps({k: v for k, v in served.items() if k != "encoders"}), concept_cache.SERVED_META])
    assert "pixql_internal.vectors_" in _adv_sql(wh)
    got = wh.sql("SELECT coactive_image_id, imagenet_top_class, imagenet_top_prob, probe_prob FROM coactive_table_adv "
                 "ORDER BY 1").fetchall()
    assert got == want
    wh.refresh_views()
    assert "pixql_internal.vectors_" not in _adv_sql(wh)
    assert wh.sql("SELECT coactive_image_id, imagenet_top_class, imagenet_top_prob, probe_prob FROM "
                  "coactive_table_adv ORDER BY 1").fetchall() == want
