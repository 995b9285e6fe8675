"""The seam between writers, views and the query engine: building views is pure, `transaction()`
commits or rolls back everything, change counters (not table hashes) tell the engine when to
build a new sandbox."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from concepts import registry
from concepts.heads import HeadSpec
from concepts.moderation import Moderator
from warehouse import Warehouse, concept_cache, sandbox, views
from warehouse.analyzer_sql import set_ocr_pattern
from warehouse.queries import QueryEngine, QuerySettings
from warehouse.transaction import SANDBOX_TABLES, counters

PHOTOS = ["chelsea", "coffee", "astronaut", "camera", "rocket", "horse"]


@pytest.fixture(scope="module")
def wh(tmp_path_factory, photo_dir):
    """Photos ingested in parts of two, one concept with a materialised cache."""
    src = tmp_path_factory.mktemp("seam-photos")
    for p in sorted(photo_dir.iterdir()):
        if p.stem in PHOTOS[:4]:
            shutil.copy(p, src / p.name)
    w = Warehouse.open(tmp_path_factory.mktemp("wh-seam"))
    w.ingest([str(src)], dataset="photos", progress=False, part_rows=2, batch_size=2)
    con = w.cursor()
    encoder = con.execute("SELECT encoder FROM catalog.datasets WHERE name = 'photos'").fetchone()[0]
    column, dim = next(iter(registry.catalog.encoder_columns(con, encoder).items()))
    rng = np.random.default_rng(3)
    head = HeadSpec("model", encoder, column, rng.standard_normal(dim).astype(np.float32), 1.0, 0.0, "logistic")
    registry.create_from_head(w, "seam_probe", head)
    assert w.wait_for_merge(60)  # the score delta folded in: the wide segments are the base scan
    yield w
    w.close()


def _files(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
            and p.suffix != ".wal" and not p.name.endswith(".duckdb")}


def _view_sql(w, name="coactive_table") -> str:
    return w.sql(f"SELECT sql FROM duckdb_views() WHERE view_name = '{name}'").fetchone()[0]


def test_building_views_is_pure(wh, monkeypatch):
    """Twice the same SQL from the same catalog; no file written, no catalog row changed, nothing scored."""
    con = wh.cursor()
    assert "a.seam_probe_v1" in _view_sql(wh)  # the cache serves the concept column
    files = _files(wh.root)
    tables = {t: con.execute(f"SELECT count(*), bit_xor(hash(x)) FROM catalog.{t} x").fetchone()
              for t in ("meta", "concept_scores", "parts")}

    def no_scoring(*a, **k):
        raise AssertionError("building views scored assets")

    monkeypatch.setattr(concept_cache, "score_assets", no_scoring)
    monkeypatch.setattr(concept_cache, "probabilities", no_scoring)
    first, second = views.build(con, wh.root), views.build(con, wh.root)
    assert first == second and all(isinstance(s, str) for s in first)
    assert any("files_scores()) a\n" in s and "coactive_table" in s for s in first)  # scores are the base scan
    assert _files(wh.root) == files
    assert tables == {t: con.execute(f"SELECT count(*), bit_xor(hash(x)) FROM catalog.{t} x").fetchone()
                      for t in tables}


def test_column_names_match_what_duckdb_makes(wh):
    """`coactive_videos` is built from column names the builder derives itself, without DESCRIBE."""
    con = wh.cursor()
    wh.analyze("photos", ["ocr"], progress=False)  # analyzer columns and ocr_flags too
    parts = views.ViewParts()
    for provider in views._providers():
        parts.extend(provider.contribute(con, wh.root))
    described = [r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()]
    assert "seam_probe_latest_prob" in described and "ocr_flags" in described
    assert views.adv_column_names(parts) == described
    videos = {r[0] for r in wh.sql("DESCRIBE coactive_videos").fetchall()}
    assert {"seam_probe", "seam_probe_max_prob", "seam_probe_max_time_ms", "ocr_flags"} <= videos


def test_transaction_rolls_back_everything_on_error(wh):
    con = wh.cursor()
    before_sql, before_counters = _view_sql(wh, "coactive_table_adv"), counters(con)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with wh.transaction(views=True) as tx:
            set_ocr_pattern(tx.con, "seam_flag", r"\bseam\b")
            tx.data_changed()
            raise Boom
    assert not con.execute("SELECT * FROM catalog.ocr_patterns WHERE flag = 'seam_flag'").fetchall()
    assert _view_sql(wh, "coactive_table_adv") == before_sql and counters(con) == before_counters

    # A failure while the views are rebuilt at commit rolls the writer's rows back too.
    with pytest.raises(Exception):
        with wh.transaction() as tx:
            tx.con.execute("INSERT INTO catalog.meta VALUES ('seam_probe', 'x')")
            tx.con.execute("INSERT INTO catalog.encoder_sql VALUES ('no-such-encoder', 0, 'macro', 'CREATE MACRO (')")
            tx.rebuild_views()
    assert not con.execute("SELECT * FROM catalog.meta WHERE key = 'seam_probe'").fetchall()
    assert not con.execute("SELECT * FROM catalog.encoder_sql WHERE encoder = 'no-such-encoder'").fetchall()
    assert counters(con) == before_counters

    # And a block that ends normally commits, views and counter with it.
    with wh.transaction(views=True) as tx:
        set_ocr_pattern(tx.con, "seam_flag", r"\bseam\b")
    assert counters(con)[0] == before_counters[0] + 1
    wh.reset_ocr_flag("seam_flag")


def test_counters_move_with_writes_not_reads(wh, photo_dir, tmp_path):
    con = wh.cursor()
    start = counters(con)
    aid = con.execute("SELECT coactive_image_id FROM catalog.assets ORDER BY path LIMIT 1").fetchone()[0]
    wh.sql("SELECT * FROM coactive_table_adv").fetchall()
    registry.get(wh, "seam_probe")
    Moderator(wh).decision(aid)
    assert counters(con) == start  # reads bump nothing

    Moderator(wh).override(aid, "rejected", user="seam")
    first = counters(con)
    # The first decision brings coactive_table_adv's moderation joins in (views.DATA_AWARE).
    assert first == (start[0] + 1, start[1] + 1)
    Moderator(wh).override(aid, "approved", user="seam")
    after_decision = counters(con)
    assert after_decision == (first[0], first[1] + 1)  # rows the sandbox copies; no view SQL changed

    registry.set_threshold(wh, "seam_probe", 0.7)
    after_version = counters(con)
    assert after_version[0] > after_decision[0] and after_version[1] == after_decision[1]

    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(next(p for p in photo_dir.iterdir() if p.stem == PHOTOS[4]), more)
    wh.ingest([str(more)], dataset="photos", progress=False)
    after_ingest = counters(con)
    assert after_ingest[0] > after_version[0]
    # The ingest's explicit scoring step kept the cache complete for the new part.
    assert f"a.seam_probe_v{registry.get(wh, 'seam_probe').latest_version}" in _view_sql(wh)


def test_views_read_only_catalog_tables_whose_writers_bump_the_counter(wh):
    """A view over another catalog table would go stale in the sandbox: its writer must call data_changed()."""
    tables = set(sandbox.definitions(wh.cursor())["catalog_tables"])
    assert tables and tables <= SANDBOX_TABLES


def test_engine_reuses_its_sandbox_until_a_counter_moves(wh):
    con = wh.cursor()
    aid, other = (r[0] for r in con.execute(
        "SELECT coactive_image_id FROM catalog.assets ORDER BY path DESC LIMIT 2").fetchall())
    # A first decision changes the views' shape (their moderation join is left out while no decision
    # exists: `views.DATA_AWARE`); the one below must be a data change alone.
    Moderator(wh).override(other, "approved", user="seam")
    assert wh.wait_for_merge(60)  # an earlier test's concept change, whose merge would move the counter
    engine = QueryEngine(wh, QuerySettings(workers=1)).start()
    sql = f"SELECT moderation_status FROM coactive_table_adv WHERE coactive_image_id = '{aid}'"

    def run() -> list:
        rec = engine.wait(engine.submit(sql)["query_id"], 60)
        assert rec["status"] == "Complete", rec
        return [r["data"]["moderation_status"] for r in engine.page(rec["query_id"])[1]]

    try:
        assert run() == [None]
        builds, reads = engine.sandbox_builds, engine._definitions.reads
        assert builds == 1
        for _ in range(3):
            run()
        assert engine.sandbox_builds == builds  # nothing moved: the same file serves every query

        Moderator(wh).override(aid, "review", user="seam")
        assert run() == ["review"]  # the decision is visible through the sandbox ...
        assert engine.sandbox_builds == builds + 1  # ... through one new copy
        assert engine._definitions.reads == reads  # and the view definitions were not read again
        run()
        assert engine.sandbox_builds == builds + 1
    finally:
        engine.shutdown()
