"""The two layers of materialised concept scores: a change that only adds concept columns writes
them to the delta layer (score columns alone) and leaves the wide base segments as they are; the
background merge folds the delta into the base.  Answers are the same in every state."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from concepts import registry
from concepts.heads import HeadSpec
from warehouse import concept_cache

N, DIM, PART_ROWS = 3_000, 16, 700


def _bench():
    spec = importlib.util.spec_from_file_location("bench_concepts", Path(__file__).parents[1] / "benchmarks" / "concepts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def hold_merges(monkeypatch):
    """Merges wait an hour after the last change (so a test sees the delta), until `release`."""
    monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "3600")

    def release(wh):
        monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "0")
        wh._merger.soon()  # wakes the waiting thread, which reads the delay again
        assert wh.wait_for_merge(60)
        # Held again: a change after this one must not be merged before the test looks at its delta.
        monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "3600")

    return release


@pytest.fixture
def warehouse(tmp_path):
    wh, encoder, X = _bench().build(tmp_path / "wh", N, DIM, part_rows=PART_ROWS, keep_matrix=True)
    yield wh, encoder, X
    wh.close()


def _head(encoder, seed):
    w = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return HeadSpec("model", encoder, "embedding", w, 2.0, -0.5, "logistic")


def _served(wh) -> dict:
    row = wh.cursor().execute("SELECT value FROM catalog.meta WHERE key = ?", [concept_cache.SERVED_META]).fetchone()
    return json.loads(row[0])


def _answers(wh, names):
    cols = ", ".join(f"{n}_prob, {n}" for n in names)
    return wh.sql(f"SELECT coactive_image_id, path, {cols} FROM coactive_table ORDER BY coactive_image_id").fetchall()


def _expected(wh, X, names):
    """Each concept's probabilities from the float16-rounded vectors, by asset id."""
    ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM pixql_internal.assets").fetchall()]
    X16 = X.astype(np.float16).astype(np.float32)
    out = {}
    for n in names:
        h = concept_cache.load_heads(wh.cursor(), n)[-1]
        out[n] = dict(zip(ids, concept_cache.probabilities(X16, [h])[:, 0]))
    return out


def _check(wh, X, names):
    rows = _answers(wh, names)
    want = _expected(wh, X, names)
    assert len(rows) == N
    for r in rows:
        for k, n in enumerate(names):
            assert abs(r[2 + 2 * k] - want[n][r[0]]) < 1e-6


def test_a_new_concept_goes_to_the_delta_and_the_merge_folds_it_in(warehouse, hold_merges):
    wh, encoder, X = warehouse
    registry.create_from_head(wh, "alpha", _head(encoder, 1))
    hold_merges(wh)
    served = _served(wh)
    assert served["base_members"] == [["alpha", 1]] and not served["delta"]
    base_before = list(served["base"])
    before = {p: (wh.root / p).stat().st_mtime_ns for p in base_before}

    registry.create_from_head(wh, "beta", _head(encoder, 2))
    registry.create_from_head(wh, "gamma", _head(encoder, 3))
    served = _served(wh)
    # The base segments were not rewritten: the new columns are in the delta alone.
    assert served["base"] == base_before and {p: (wh.root / p).stat().st_mtime_ns for p in base_before} == before
    assert served["delta"] and served["base_members"] == [["alpha", 1]]
    assert sorted(map(tuple, served["members"])) == [("alpha", 1), ("beta", 1), ("gamma", 1)]
    import pyarrow.parquet as pq

    delta_cols = set(pq.read_schema(wh.root / served["delta"][0]).names)
    assert delta_cols == {"beta_v1", "gamma_v1"}  # score columns only
    view = wh.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'").fetchone()[0]
    assert "POSITIONAL JOIN" in view and "pixql_concept_beta_v1(" not in view
    in_delta = _answers(wh, ["alpha", "beta", "gamma"])
    _check(wh, X, ["alpha", "beta", "gamma"])

    hold_merges(wh)
    served = _served(wh)
    assert not served["delta"] and served["base"] != base_before
    assert sorted(map(tuple, served["base_members"])) == [("alpha", 1), ("beta", 1), ("gamma", 1)]
    view = wh.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'").fetchone()[0]
    assert "POSITIONAL JOIN" not in view
    assert _answers(wh, ["alpha", "beta", "gamma"]) == in_delta


def test_the_first_concept_is_a_delta_over_the_asset_parts(warehouse, hold_merges):
    wh, encoder, X = warehouse
    registry.create_from_head(wh, "solo", _head(encoder, 4))
    served = _served(wh)
    assert served["base"] == [] and served["delta"] and served["members"] == [["solo", 1]]
    _check(wh, X, ["solo"])
    # (New asset parts while a delta stands: tests/test_warm_views.py's `delta` warehouse.)


def test_a_dropped_base_member_or_a_full_delta_rewrites_the_base(warehouse, hold_merges, monkeypatch):
    wh, encoder, X = warehouse
    for k in range(2):
        registry.create_from_head(wh, f"c{k}", _head(encoder, 10 + k))
    hold_merges(wh)
    monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "3600")
    assert len(_served(wh)["base_members"]) == 2
    monkeypatch.setattr(concept_cache, "DELTA_MAX", 2)
    for k in range(2, 4):
        registry.create_from_head(wh, f"c{k}", _head(encoder, 10 + k))
    assert len(_served(wh)["base_members"]) == 2 and _served(wh)["delta"]
    registry.create_from_head(wh, "c4", _head(encoder, 14))  # a third delta column: past DELTA_MAX
    served = _served(wh)
    assert not served["delta"] and len(served["base_members"]) == 5
    names = [f"c{k}" for k in range(5)]
    _check(wh, X, names)

    registry.create_from_head(wh, "c5", _head(encoder, 15))
    assert _served(wh)["delta"]
    registry.delete(wh, "c0")  # a base member gone: the base is rewritten without it, the delta folded in
    served = _served(wh)
    assert not served["delta"] and ["c0", 1] not in served["base_members"] and ["c5", 1] in served["base_members"]
    _check(wh, X, names[1:] + ["c5"])


def test_closing_with_a_merge_pending_does_not_wait_for_it(warehouse, hold_merges):
    wh, encoder, X = warehouse
    registry.create_from_head(wh, "pending", _head(encoder, 20))
    assert wh._merger._thread is not None  # waiting out the hour's delay
    wh.close()
    assert wh._merger._thread is None


def test_no_merge_runs_while_paused_and_one_waiting_for_the_lock_gives_up(warehouse, hold_merges, monkeypatch):
    """An erasure pauses the merges of its database (`score_merge.paused`): a merge writes segments
    from the rows before the erasure, outside the write lock.  While paused none starts; one that
    waits for the lock the pausing caller holds gives up instead of deadlocking it."""
    from warehouse import score_merge

    wh, encoder, _ = warehouse
    registry.create_from_head(wh, "a", _head(encoder, 1), materialize=True)
    assert _served(wh)["delta"]
    with score_merge.paused(wh.layout.db_path):
        monkeypatch.setenv("PIXQL_SCORE_MERGE_DELAY_S", "0")
        wh._merger.soon()
        assert not wh.wait_for_merge(0.5)  # the thread waits for the resume: nothing merged
        assert _served(wh)["delta"]
    assert wh.wait_for_merge(60) and not _served(wh)["delta"]

    registry.create_from_head(wh, "b", _head(encoder, 2), materialize=True)
    with wh.write_lock:  # a merge that reaches the lock while a pausing caller holds it
        wh._merger.soon()
        with score_merge.paused(wh.layout.db_path):
            assert _served(wh)["delta"]
    assert wh.wait_for_merge(60)
