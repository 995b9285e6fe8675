"""Replaced score files go as soon as no reader can need them (`warehouse.readers`, `concept_cache.sweep`).

A concept change writes new combined segments; the commit sweeps the old ones at once unless a
relation handed out by `Warehouse.sql` or a running query of the query engine began before it.
"""
from __future__ import annotations

import gc
import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

from warehouse import concept_cache, readers


def _bench():
    spec = importlib.util.spec_from_file_location("bench_concepts", Path(__file__).parents[1] / "benchmarks" / "concepts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()
QUERY = "SELECT coactive_image_id, fight_prob FROM coactive_table"


@pytest.fixture
def wh(tmp_path, monkeypatch):
    from concepts import registry

    # The background merge of the delta layer would commit (and sweep) at moments of its own choosing:
    # these tests compare file sets between their own commits, so it waits past their end.
    monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "600")

    wh, encoder, _ = BENCH.build(tmp_path / "wh", n=3000, dim=8, part_rows=500)
    wh.heads = BENCH.heads(encoder, 8)
    registry.create_from_head(wh, "fight", wh.heads["fight"], materialize=True)
    yield wh
    wh.close()


def segments(wh) -> set[str]:
    row = wh.cursor().execute("SELECT value FROM catalog.meta WHERE key = ?", [concept_cache.COMBINED_META]).fetchone()
    return set(json.loads(row[0]))


def score_files(wh) -> set[str]:
    return {str(p.relative_to(wh.root)) for p in (wh.root / "scores").glob("*/*.parquet")
            if not p.parent.name.startswith("_") or p.parent.name == concept_cache.COMBINED_DIR}


def referenced(wh) -> set[str]:
    return segments(wh) | {r[0] for r in wh.cursor().execute("SELECT path FROM catalog.concept_scores").fetchall()}


def change(wh, name: str) -> None:
    """A concept change that replaces every combined segment (a new materialised column)."""
    from concepts import registry

    registry.create_from_head(wh, name, wh.heads[name], materialize=True)


def test_a_replaced_segment_is_deleted_at_once(wh):
    before = segments(wh)
    assert before and readers.live() == 0
    change(wh, "handgun")
    assert segments(wh).isdisjoint(before)
    assert score_files(wh) == referenced(wh)  # no sweep called, nothing waited for
    assert concept_cache.sweep(wh.cursor(), wh.root) == 0


def test_a_relation_from_before_the_change_keeps_its_files_until_it_is_dropped(wh):
    con = wh.cursor()
    con.execute("SET threads = 1")  # one scan thread: the result below really is half-read
    expected = sorted(wh.sql(QUERY).fetchall())
    old = segments(wh)
    rel = wh.sql(QUERY)
    first = rel.fetchmany(10)
    change(wh, "handgun")
    assert old <= score_files(wh)  # the half-read result may still open them
    assert sorted(first + rel.fetchall()) == expected  # and it does, from its own snapshot
    fresh = wh.sql(QUERY)  # made after the change: binds the new segments
    assert sorted(fresh.fetchall()) == expected

    change(wh, "syringe")  # a sweep while `rel` lives keeps the old generation still
    assert old <= score_files(wh)
    del rel, fresh
    gc.collect()
    assert readers.live() == 0
    assert concept_cache.sweep(con, wh.root) >= len(old)
    assert score_files(wh) == referenced(wh)
    assert sorted(wh.sql(QUERY).fetchall()) == expected


def test_a_relation_made_after_the_change_does_not_hold_older_files(wh):
    keep_new = wh.sql(QUERY)  # made now: the generation of `before`
    before = segments(wh)
    change(wh, "handgun")
    assert before <= score_files(wh)  # `keep_new` began before this change
    middle = segments(wh)
    del keep_new
    gc.collect()
    late = wh.sql(QUERY)  # began after the first change: needs `middle`, not `before`
    change(wh, "syringe")
    files = score_files(wh)
    assert before.isdisjoint(files) and middle <= files
    del late
    gc.collect()
    concept_cache.sweep(wh.cursor(), wh.root)
    assert score_files(wh) == referenced(wh)


def test_the_registry_orders_readers_by_generation(tmp_path):
    root = tmp_path
    assert readers.unneeded(root, ["a"]) == ["a"]  # no reader: at once
    r1 = readers.begin()
    assert readers.unneeded(root, ["b"]) == []  # r1 began before b was found unreferenced
    r2 = readers.begin()
    assert readers.unneeded(root, ["b", "c"]) == []
    r1.release()
    assert readers.unneeded(root, ["b", "c"]) == ["b"]  # r2 began after b, before c
    with readers.reading():
        assert readers.unneeded(root, ["c"]) == []
    r2.release()
    r2.release()  # idempotent
    assert readers.unneeded(root, ["c"]) == ["c"] and readers.live() == 0


def test_a_running_query_keeps_the_files_of_its_definitions(wh):
    from warehouse.queries import QueryEngine, QuerySettings

    engine = QueryEngine(wh, QuerySettings(workers=1, time_limit_s=600)).start()
    try:
        ok = engine.wait(engine.submit("SELECT count(*) AS n FROM coactive_table WHERE fight_prob >= 0")["query_id"], 60)
        assert ok["status"] == "Complete" and readers.live() == 0
        old = segments(wh)
        # Runs until stopped, in little memory: the views times 10^7 rows.
        qid = engine.submit("SELECT count(*) AS n FROM coactive_table, (SELECT unnest(range(10000000)) AS x) a "
                            "WHERE hash(x + fight_prob) % 7 = 0")["query_id"]
        tick, deadline = threading.Event(), time.monotonic() + 60
        while qid not in engine._active:  # claimed by a slot, its sandbox built for the old definitions
            assert engine.recent_status(qid) in (None, "Queued", "Running") and time.monotonic() < deadline
            tick.wait(0.01)
        change(wh, "handgun")
        assert qid in engine._active  # still running (until the stop below)
        assert old <= score_files(wh)
        engine.stop(qid)
        assert engine.wait(qid, 60)["status"] == "Stopped"
        assert readers.live() == 0
        concept_cache.sweep(wh.cursor(), wh.root)
        assert score_files(wh) == referenced(wh)
        done = engine.wait(engine.submit("SELECT count(*) AS n FROM coactive_table WHERE handgun_prob >= 0")["query_id"], 60)
        assert done["status"] == "Complete" and engine.page(done["query_id"])[1][0]["data"] == {"n": 3000}
    finally:
        engine.shutdown()


def test_a_forced_sweep_ignores_readers(wh):
    rel = wh.sql(QUERY)
    old = segments(wh)
    change(wh, "handgun")
    assert old <= score_files(wh)
    assert concept_cache.sweep(wh.cursor(), wh.root, min_age_s=-1e9) >= len(old)
    assert score_files(wh) == referenced(wh)
    del rel


def test_a_relation_with_parameters_is_a_reader_too(wh):
    rel = wh.sql("SELECT count(*) FROM coactive_table WHERE fight_prob >= ?", [0.0])
    assert readers.live() == 1
    assert wh.sql("CREATE TEMP TABLE probe AS SELECT ? AS x", [1]) is None and readers.live() == 1  # a statement
    assert rel.fetchone() == (3000,)
    del rel
    gc.collect()
    assert readers.live() == 0


def test_no_other_process_can_read_while_this_one_writes(wh):
    """Why the registry needs no grace period for other processes: DuckDB's lock refuses them."""
    import subprocess
    import sys

    code = f"import duckdb; duckdb.connect({str(wh.layout.db_path)!r}, read_only=True)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "lock" in r.stderr.lower()


def test_a_writer_outside_the_lock_keeps_what_it_wrote(wh):
    """The score merge writes its segments before it takes the lock (`readers.writing`): a sweep after
    another writer's commit leaves them, and the first sweep after the writer is done takes them if
    they were never committed."""
    pending = wh.root / "scores" / concept_cache.COMBINED_DIR / "not-yet-committed.parquet"
    gc.collect()
    with readers.writing(wh.root):
        pending.write_bytes(b"PAR1")
        with wh.write_lock:
            concept_cache.sweep(wh.cursor(), wh.root)
        assert pending.exists()
    with wh.write_lock:
        concept_cache.sweep(wh.cursor(), wh.root)
    assert not pending.exists()


def test_a_dropped_half_read_result_does_not_bind_the_next_query_in_its_snapshot(wh):
    """DuckDB binds a statement in the transaction of the connection's unfinished result: after a
    `fetchone()` whose relation is gone, the next `Warehouse.sql` must see the commits made since
    (and so not the segments they replaced, which their sweep deleted)."""
    expected = sorted(wh.sql(QUERY).fetchall())
    assert wh.sql(QUERY).fetchone()  # unfinished; the relation is garbage at once
    gc.collect()
    old = segments(wh)
    change(wh, "handgun")
    assert old.isdisjoint(score_files(wh))  # no reader was left: swept at the commit
    assert sorted(wh.sql(QUERY).fetchall()) == expected
    assert wh.sql("SELECT count(handgun_prob) FROM coactive_table").fetchone()[0] == len(expected)


def test_a_query_made_while_a_half_read_relation_lives_keeps_its_files(wh):
    """While the unfinished relation lives, the next relation may bind in its transaction: it is a
    reader as early as that one."""
    expected = sorted(wh.sql(QUERY).fetchall())
    half = wh.sql(QUERY)
    half.fetchone()
    old = segments(wh)
    change(wh, "handgun")
    later = wh.sql(QUERY)  # bound in `half`'s transaction: the old segments
    del half
    gc.collect()
    change(wh, "syringe")
    assert old <= score_files(wh)
    assert sorted(later.fetchall()) == expected
