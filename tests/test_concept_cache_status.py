"""concept_cache.cache_status: which new vector parts make a score cache stale (re-embedding of
scored assets) and which only extend it (vectors of new assets), checked on catalog rows."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from warehouse import catalog, concept_cache


def _bench():
    spec = importlib.util.spec_from_file_location("bench_concepts", Path(__file__).parents[1] / "benchmarks" / "concepts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _touched_before(con, head, asset_parts) -> bool:
    """The check as it was written before (per-row list_contains over the whole tables): the reference."""
    rows = concept_cache.cache_rows(con, head.concept, head.version)
    covered, seen = concept_cache._covered(rows)
    new_vparts = [p for p in catalog.part_paths(con, "vectors", encoder=head.encoder) if p not in seen]
    return bool(con.execute(
        "SELECT count(*) FROM catalog.embeddings e JOIN catalog.assets a USING (coactive_image_id) "
        "WHERE e.encoder = ? AND list_contains(?, e.part) AND list_contains(?, a.part)",
        [head.encoder, new_vparts, covered]).fetchone()[0])


@pytest.fixture
def scored(tmp_path):
    from concepts import registry

    bench = _bench()
    wh, encoder, _ = bench.build(tmp_path / "wh", n=300, dim=8, part_rows=100)
    registry.create_from_head(wh, "fight", bench.heads(encoder, 8)["fight"], materialize=True)
    con = wh.cursor()
    yield wh, con, concept_cache.load_heads(con, "fight")[0]
    wh.close()


def _add_part(con, kind, path, encoder=None, n=1):
    catalog.insert_part(con, path, "bench", kind, encoder, n, "t", catalog.now())


def _status(con, head) -> str:
    return concept_cache.cache_status(con, head, catalog.part_paths(con, "assets"))


def test_statuses_and_the_reference_check(scored):
    wh, con, head = scored
    assert _status(con, head) == "complete"
    ids = [r[0] for r in con.execute("SELECT coactive_image_id FROM catalog.assets ORDER BY path").fetchall()]

    # Vectors of NEW assets (a new asset part): the cache is extended, not dropped.
    _add_part(con, "assets", "datasets/bench/assets/part-new.parquet")
    _add_part(con, "vectors", "datasets/bench/vectors/x/part-new.parquet", head.encoder)
    new_ids = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]
    for i in new_ids:
        con.execute("INSERT INTO catalog.assets VALUES (?, 'bench', ?, NULL, 'image', ?, ?)",
                    [i, f"/new/{i}.jpg", "datasets/bench/assets/part-new.parquet", catalog.now()])
        con.execute("INSERT INTO catalog.embeddings VALUES (?, ?, ?)",
                    [i, head.encoder, "datasets/bench/vectors/x/part-new.parquet"])
    assert _status(con, head) == "extend"
    assert not _touched_before(con, head, catalog.part_paths(con, "assets"))

    # Another encoder's new vectors for scored assets do not concern this head.
    _add_part(con, "vectors", "datasets/bench/vectors/y/part-other.parquet", "other-enc")
    con.execute("INSERT INTO catalog.embeddings VALUES (?, 'other-enc', ?)",
                [ids[150], "datasets/bench/vectors/y/part-other.parquet"])
    assert _status(con, head) == "extend"

    # This encoder's new vectors for ONE scored asset (re-embedding): stale.
    _add_part(con, "vectors", "datasets/bench/vectors/x/part-re.parquet", head.encoder)
    con.execute("UPDATE catalog.embeddings SET part = ? WHERE coactive_image_id = ? AND encoder = ?",
                ["datasets/bench/vectors/x/part-re.parquet", ids[250], head.encoder])
    assert _status(con, head) == "stale"
    assert _touched_before(con, head, catalog.part_paths(con, "assets"))


def test_new_vector_part_of_covered_assets_only_in_the_first_part(scored):
    """Every covered asset part counts, not only the last one."""
    wh, con, head = scored
    first = catalog.part_paths(con, "assets")[0]
    some = con.execute("SELECT coactive_image_id FROM catalog.assets WHERE part = ? LIMIT 1", [first]).fetchone()[0]
    _add_part(con, "vectors", "datasets/bench/vectors/x/part-re.parquet", head.encoder)
    assert _status(con, head) == "complete"  # a vector part with no rows touches nothing
    con.execute("UPDATE catalog.embeddings SET part = ? WHERE coactive_image_id = ? AND encoder = ?",
                ["datasets/bench/vectors/x/part-re.parquet", some, head.encoder])
    assert _status(con, head) == "stale"


def test_none_and_missing_files(scored):
    wh, con, head = scored
    parts = catalog.part_paths(con, "assets")
    assert concept_cache.cache_status(con, head, parts, wh.root) == "complete"
    path = concept_cache.cache_rows(con, head.concept, head.version)[0][1]
    (wh.root / path).unlink()
    assert concept_cache.cache_status(con, head, parts, wh.root) == "stale"
    assert concept_cache.cache_status(con, head, parts[:1]) == "stale"  # covers more than exists
    concept_cache.drop_cache(con, head.concept)
    assert concept_cache.cache_status(con, head, parts) == "none"


def test_memo_shares_the_check_only_between_heads_of_the_same_coverage(scored):
    """`extend`'s memo: heads with the same covered parts and new vector parts share one answer,
    a head covering other parts gets its own."""
    from concepts import registry

    wh, con, head = scored
    registry.create_from_head(wh, "other", _bench().heads(head.encoder, 8)["fight"], materialize=True)
    other = concept_cache.load_heads(con, "other")[0]
    parts = catalog.part_paths(con, "assets")
    assert len(parts) == 3
    last = con.execute("SELECT coactive_image_id FROM catalog.assets WHERE part = ? LIMIT 1", [parts[-1]]).fetchone()[0]
    _add_part(con, "vectors", "datasets/bench/vectors/x/part-re.parquet", head.encoder)
    con.execute("UPDATE catalog.embeddings SET part = ? WHERE coactive_image_id = ? AND encoder = ?",
                ["datasets/bench/vectors/x/part-re.parquet", last, head.encoder])
    memo: dict = {}
    assert [concept_cache.cache_status(con, h, parts, None, memo) for h in (head, other)] == ["stale", "stale"]
    assert len(memo) == 1
    # A cache of the first part only: the re-embedded asset (in the last part) is not among its rows.
    vparts = catalog.part_paths(con, "vectors", encoder=head.encoder)
    concept_cache.drop_cache(con, "other", other.version)
    concept_cache.write_cache(con, wh.root, other, 0, np.zeros(100), parts[:1], vparts[:1])
    assert concept_cache.cache_status(con, other, parts, None, memo) == "extend"
    assert len(memo) == 2
