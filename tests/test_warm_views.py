"""Warm queries: the score segments are the views' one base scan, so DuckDB chooses rows from the
score columns first and fetches ids and paths for those rows only (late materialisation).  The rows it
returns must be the rows a plain evaluation of every row gives, ties included, across several asset
parts and segment files, and the same while the newest concepts are still in the delta layer (score
columns alone, positionally joined on until the background merge folds them into the base)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from concepts import registry
from concepts.heads import HeadSpec
from warehouse import Warehouse, catalog, views


@pytest.fixture(scope="module", params=["merged", "delta"])
def wh(request, tmp_path_factory, photo_dir):
    """The photos in parts of two, in two ingest runs around the concepts (two segment files);
    `delta`: the merge held off, so the concepts are served from the delta layer."""
    import os

    from warehouse import concept_cache

    before = os.environ.get("PIXQL_SCORE_MERGE_DELAY_S")
    if request.param == "delta":
        os.environ["PIXQL_SCORE_MERGE_DELAY_S"] = "3600"
    photos = sorted(photo_dir.iterdir())
    first, second = tmp_path_factory.mktemp("warm-a"), tmp_path_factory.mktemp("warm-b")
    for i, p in enumerate(photos):
        shutil.copy(p, (first if i < len(photos) // 2 else second) / p.name)
    w = Warehouse.open(tmp_path_factory.mktemp("wh-warm"))
    w.ingest([str(first)], dataset="photos", progress=False, part_rows=2, batch_size=2)
    con = w.cursor()
    encoder = con.execute("SELECT encoder FROM catalog.datasets WHERE name = 'photos'").fetchone()[0]
    column, dim = next(iter(catalog.encoder_columns(con, encoder).items()))
    rng = np.random.default_rng(11)
    # A steep linear head clamps almost every row to exactly 0 or 1: ties at both ends.
    registry.create_from_head(w, "tied", HeadSpec("model", encoder, column,
                                                  rng.standard_normal(dim).astype(np.float32), 1000.0, 0.5, "linear"))
    registry.create_from_head(w, "smooth", HeadSpec("model", encoder, column,
                                                    rng.standard_normal(dim).astype(np.float32), 0.05, 0.0, "logistic"))
    w.ingest([str(second)], dataset="photos", progress=False, part_rows=2, batch_size=2)
    if request.param == "merged":
        assert w.wait_for_merge(60)
    assert concept_cache.delta_layer(w.cursor()) == (request.param == "delta")
    w.layer = request.param
    yield w
    w.close()
    if before is None:
        os.environ.pop("PIXQL_SCORE_MERGE_DELAY_S", None)
    else:
        os.environ["PIXQL_SCORE_MERGE_DELAY_S"] = before


def _files(wh) -> str:
    return "pixql_internal.files_scores()" if wh.layer == "merged" else "pixql_internal.files_scores_delta()"


def n_segments_rows(wh) -> int:
    return wh.sql(f"SELECT count(*) FROM read_parquet({_files(wh)})").fetchone()[0]


def _all_rows(wh, view):
    return wh.sql(f"SELECT coactive_image_id, path, GREATEST(tied_prob, smooth_prob) AS s, tied, smooth "
                  f"FROM {view}").fetchall()


def test_the_views_scan_the_score_segments(wh):
    con = wh.cursor()
    view = wh.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'").fetchone()[0]
    assert _files(wh).split(".")[1] in view and "a.tied_v1" in view and "pixql_concept_tied_v1(" not in view
    n_segments = len(wh.sql(f"SELECT DISTINCT filename FROM read_parquet({_files(wh)}, "
                            "filename = true)").fetchall())
    n_parts = con.execute("SELECT count(*) FROM catalog.parts WHERE kind = 'assets'").fetchone()[0]
    assert n_segments >= 2 and n_parts >= 4
    # Each segment row's score is its own asset's: the macro over that asset's vector agrees.
    encoder = con.execute("SELECT encoder FROM catalog.datasets WHERE name = 'photos'").fetchone()[0]
    column = next(iter(catalog.encoder_columns(con, encoder)))
    pairs = wh.sql(f"SELECT t.smooth_prob, pixql_concept_smooth_v1(v.{column}) FROM coactive_table t "
                   f"JOIN {views.vectors_view_name(encoder)} v USING (coactive_image_id)").fetchall()
    assert len(pairs) == n_segments_rows(wh) and all(abs(a - b) < 1e-5 for a, b in pairs)
    rows = _all_rows(wh, "coactive_table")
    scores = [r[2] for r in rows]
    assert scores.count(1.0) >= 2 and len(set(scores)) < len(scores), "the fixture has ties"


@pytest.mark.parametrize("view", ["coactive_table", "coactive_table_adv"])
def test_top_k_returns_the_plain_rows_ties_included(wh, view):
    rows = _all_rows(wh, view)
    triples = {r[:3] for r in rows}
    plain = sorted(rows, key=lambda r: (-r[2], r[0]))
    for k in (1, 3, 5, len(rows)):
        got = wh.sql(f"SELECT coactive_image_id, path, GREATEST(tied_prob, smooth_prob) AS s, tied, smooth FROM {view} "
                     f"ORDER BY s DESC, coactive_image_id LIMIT {k}").fetchall()
        assert got == plain[:k]
        # Without a tiebreaker any of the tied rows may come back, but each row must be a real row
        # (its id, path and score from the same asset) and the scores the top k.
        loose = wh.sql(f"SELECT coactive_image_id, path, GREATEST(tied_prob, smooth_prob) AS s FROM {view} "
                       f"ORDER BY s DESC LIMIT {k}").fetchall()
        assert {r for r in loose} <= triples and len({r[0] for r in loose}) == k
        assert sorted(r[2] for r in loose) == sorted(r[2] for r in plain[:k])
    plan = wh.sql(f"EXPLAIN SELECT coactive_image_id, path, GREATEST(tied_prob, smooth_prob) AS s FROM {view} "
                  f"ORDER BY s DESC LIMIT 3").fetchall()[0][1]
    # The delta's positional join keeps every row.  The adv view joins nothing here (no metadata
    # replaced, nothing moderated, the encoder's columns in the segments): late materialisation too.
    if wh.layer == "merged":
        assert "file_row_number" in plan, plan


def test_filter_limit_and_count_match_the_plain_rows(wh):
    rows = _all_rows(wh, "coactive_table")
    hits = {r[:2] for r in rows if r[3] == 1}
    assert 0 < len(hits) < len(rows)
    for k in (1, 2, len(rows)):
        got = wh.sql(f"SELECT coactive_image_id, path FROM coactive_table WHERE tied = 1 LIMIT {k}").fetchall()
        assert set(got) <= hits and len(got) == min(k, len(hits))
    assert wh.sql("SELECT count(coactive_image_id) FROM coactive_table WHERE tied = 1 OR smooth = 1"
                  ).fetchone()[0] == sum(1 for r in rows if r[3] == 1 or r[4] == 1)
