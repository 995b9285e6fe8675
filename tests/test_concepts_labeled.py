"""Labeled concepts on a synthetic set (red circles vs blue squares), and the score cache across parts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from concepts import registry
from concepts.heads import HeadSpec
from warehouse import Warehouse, concept_cache

N_PER_CLASS = 16


def draw(path: Path, kind: str, rng) -> None:
    bg = tuple(int(v) for v in rng.integers(150, 256, 3))
    im = Image.new("RGB", (160, 160), bg)
    d = ImageDraw.Draw(im)
    r = int(rng.integers(25, 60))
    cx, cy = (int(v) for v in rng.integers(r + 5, 160 - r - 5, 2))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(int(rng.integers(180, 256)), 20, 20))
    else:
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=(20, 20, int(rng.integers(180, 256))))
    im.save(path)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A warehouse of circles and squares ingested in small parts (many asset parts to align)."""
    rng = np.random.default_rng(7)
    src = tmp_path_factory.mktemp("shapes")
    for i in range(N_PER_CLASS):
        draw(src / f"circle_{i:02d}.png", "circle", rng)
        draw(src / f"square_{i:02d}.png", "square", rng)
    root = tmp_path_factory.mktemp("wh-shapes")
    wh = Warehouse.open(root)
    wh.ingest([str(src)], dataset="shapes", progress=False, part_rows=7, batch_size=7)
    yield wh, src, rng
    wh.close()


def auroc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, s)


def test_labeled_concept_from_half_scores_the_other_half(shapes):
    wh, src, _ = shapes
    assert wh.sql("SELECT count(*) FROM catalog.parts WHERE kind = 'assets'").fetchone()[0] >= 4
    rows = wh.sql("SELECT coactive_image_id, path FROM coactive_table ORDER BY path").fetchall()
    circles = [i for i, p in rows if "circle_" in p]
    squares = [i for i, p in rows if "square_" in p]
    half = N_PER_CLASS // 2
    c = registry.create(wh, "red_circle", positive=circles[:half], negative=squares[:half])
    assert (c.kind, c.positive_labels, c.negative_labels) == ("labeled", half, half)
    assert registry.version(wh, "red_circle").training["cv_auroc"] is not None
    test_ids = set(circles[half:] + squares[half:])
    scored = wh.sql("SELECT coactive_image_id, red_circle_prob, red_circle FROM coactive_table").fetchall()
    held = [(i, p, b) for i, p, b in scored if i in test_ids]
    y = [1 if i in circles else 0 for i, _, _ in held]
    assert auroc(y, [p for _, p, _ in held]) > 0.95
    accuracy = np.mean([(b == 1) == (t == 1) for (_, _, b), t in zip(held, y)])
    assert accuracy >= 0.8


def _numpy_truth(wh, name: str) -> dict[str, float]:
    """Probabilities recomputed from the stored vectors, by id, independent of the views' alignment."""
    con = wh.cursor()
    head = [h for h in concept_cache.load_heads(con, name)][-1]
    out = {}
    for part in [r[0] for r in con.execute(
            "SELECT path FROM catalog.parts WHERE kind = 'vectors' AND encoder = ?", [head.encoder]).fetchall()]:
        ids, X = concept_cache.read_vector_part(wh.root, head.encoder, part, head.column, head.dim)
        for i, p in zip(ids.to_pylist(), concept_cache.probabilities(np.asarray(X), [head])[:, 0]):
            out[i] = float(p)
    return out


def test_cache_stays_aligned_and_complete_as_assets_arrive(shapes, tmp_path):
    wh, src, rng = shapes
    if not registry.exists(wh, "red_circle"):
        test_labeled_concept_from_half_scores_the_other_half(shapes)
    view_sql = "SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'"
    assert "a.red_circle_v1" in wh.sql(view_sql).fetchone()[0]
    truth = _numpy_truth(wh, "red_circle")
    got = dict(wh.sql("SELECT coactive_image_id, red_circle_prob FROM coactive_table").fetchall())
    assert got.keys() == truth.keys()
    assert max(abs(got[k] - truth[k]) for k in got) < 1e-6  # positional join aligned across >= 4 parts

    more = tmp_path / "more"
    more.mkdir()
    for i in range(5):
        draw(more / f"circle_new_{i}.png", "circle", rng)
        draw(more / f"square_new_{i}.png", "square", rng)
    wh.ingest([str(more)], dataset="shapes", progress=False, part_rows=4, batch_size=4)
    rows = wh.sql("SELECT seq, row_count FROM catalog.concept_scores WHERE concept = 'red_circle' ORDER BY seq").fetchall()
    assert len(rows) >= 2 and sum(r[1] for r in rows) == 2 * N_PER_CLASS + 10  # scored incrementally
    view = wh.sql(view_sql).fetchone()[0]
    assert "pixql_concept_red_circle_v1(" not in view and "a.red_circle_v1" in view  # still cached
    truth = _numpy_truth(wh, "red_circle")
    got = dict(wh.sql("SELECT coactive_image_id, red_circle_prob FROM coactive_table").fetchall())
    assert got.keys() == truth.keys() and max(abs(got[k] - truth[k]) for k in got) < 1e-6
    new = wh.sql("SELECT path, red_circle FROM coactive_table WHERE path LIKE '%_new_%'").fetchall()
    assert np.mean([(b == 1) == ("circle" in Path(p).name) for p, b in new]) >= 0.8

    # a new version never reads the old cache
    circles = [i for i, p in wh.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall() if "circle_new" in p]
    registry.add_labels(wh, "red_circle", positive=circles[:2])
    v2 = _numpy_truth(wh, "red_circle")
    got2 = dict(wh.sql("SELECT coactive_image_id, red_circle_latest_prob FROM coactive_table").fetchall())
    assert max(abs(got2[k] - v2[k]) for k in got2) < 1e-6
    assert any(abs(v2[k] - truth[k]) > 1e-4 for k in v2)
    old = dict(wh.sql("SELECT coactive_image_id, red_circle_v1_prob FROM coactive_table_adv").fetchall())
    assert max(abs(old[k] - truth[k]) for k in old) < 1e-6


def test_stale_cache_falls_back_to_the_macro(shapes):
    wh, _, _ = shapes
    head = HeadSpec("model", "imagenet-lite0", "features", np.ones(1280, dtype=np.float32) / 1280, 1.0, 0.0, "logistic")
    registry.create_from_head(wh, "brightish", head)
    con = wh.cursor()
    # pretend the cache covered a part that no longer exists: it must be dropped, not read
    con.execute("UPDATE catalog.concept_scores SET asset_parts = '[\"datasets/shapes/assets/gone.parquet\"]' "
                "WHERE concept = 'brightish'")
    wh.refresh_views()
    assert not wh.sql("SELECT * FROM catalog.concept_scores WHERE concept = 'brightish'").fetchall()
    view = wh.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'").fetchone()[0]
    assert "pixql_concept_brightish_v1(" in view
    truth = _numpy_truth(wh, "brightish")
    got = dict(wh.sql("SELECT coactive_image_id, brightish_prob FROM coactive_table").fetchall())
    assert max(abs(got[k] - truth[k]) for k in got) < 1e-5
    with pytest.raises(registry.ConceptError, match="no 10-dim column"):
        registry.create_from_head(wh, "bad_head", HeadSpec("model", "imagenet-lite0", "features", np.ones(10)))


def test_benchmark_builder_and_model_heads_on_synthetic_vectors(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_concepts", Path(__file__).parents[1] / "benchmarks" / "concepts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    wh, encoder, X = bench.build(tmp_path / "wh", n=3000, dim=16, part_rows=700, keep_matrix=True)
    heads = bench.heads(encoder, 16)
    for name, h in heads.items():
        registry.create_from_head(wh, name, h, materialize=(name != "fight"))
    ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM pixql_internal.assets").fetchall()]
    expected = heads["syringe"].predict(X)
    got = dict(wh.sql("SELECT coactive_image_id, syringe_prob FROM coactive_table").fetchall())
    # Vectors are stored as float16 (warehouse/vector_store.py): within 1e-3 of float32 scoring.
    assert np.allclose([got[i] for i in ids], expected, rtol=0, atol=1e-3)
    n_fight = int((heads["fight"].predict(X) >= 0.5).sum())
    assert 0 < n_fight < 300
    assert wh.sql("SELECT count(*) FROM coactive_table WHERE fight = 1").fetchone()[0] == n_fight
    wh.close()


def test_sweep_keeps_what_the_views_read(shapes):
    import json

    wh, _, _ = shapes
    if not registry.exists(wh, "brightish"):
        test_stale_cache_falls_back_to_the_macro(shapes)
    con = wh.cursor()
    on_disk_before = set((wh.root / "scores").rglob("*.parquet"))
    registry.materialize(wh, ["brightish"])  # a new column: into the delta layer
    before = dict(wh.sql("SELECT coactive_image_id, brightish_prob FROM coactive_table").fetchall())
    assert wh.wait_for_merge(timeout=60)
    # The merge's commit swept the base and delta it replaced at once: no reader held them.
    assert on_disk_before - set((wh.root / "scores").rglob("*.parquet"))
    assert concept_cache.sweep(con, wh.root) == 0 and concept_cache.sweep(con, wh.root, min_age_s=0) == 0
    combined = json.loads(con.execute("SELECT value FROM catalog.meta WHERE key = 'concept_scores_combined'").fetchone()[0])
    on_disk = sorted(str(p.relative_to(wh.root)) for p in (wh.root / "scores" / "_combined").glob("*.parquet"))
    assert on_disk == sorted(combined)
    assert dict(wh.sql("SELECT coactive_image_id, brightish_prob FROM coactive_table").fetchall()) == before


def test_few_labels_do_not_saturate_far_from_the_examples(photo_dir, tmp_path):
    """Two animals vs two non-animals: only the animals cross 0.5; unrelated photos stay uncertain."""
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path / "wh")
    wh.ingest([str(photo_dir)], dataset="photos", progress=False)
    ids = dict(wh.sql("SELECT regexp_extract(path, '[^/]+$'), coactive_image_id FROM coactive_table").fetchall())
    wh.create_concept("animal", positive=[ids["chelsea.png"], ids["horse.png"]],
                      negative=[ids["camera.png"], ids["page.png"]])
    probs = dict(wh.sql("SELECT regexp_extract(path, '[^/]+$'), animal_latest_prob FROM coactive_table").fetchall())
    above = {f for f, p in probs.items() if p >= 0.5}
    assert above == {"chelsea.png", "horse.png"}, sorted(probs.items(), key=lambda kv: -kv[1])
    unlabeled = [p for f, p in probs.items() if f not in {"chelsea.png", "horse.png", "camera.png", "page.png"}]
    assert max(unlabeled) < min(probs["chelsea.png"], probs["horse.png"])
    wh.close()


def test_deleting_the_scores_cache_costs_only_a_rescoring(shapes, tmp_path):
    import shutil

    from warehouse import Warehouse

    wh, _, _ = shapes
    head = HeadSpec("model", "imagenet-lite0", "features", np.ones(1280, dtype=np.float32) / 640, 1.0, -1.0, "logistic")
    registry.create_from_head(wh, "cached_then_gone", head)
    assert wh.sql("SELECT count(*) FROM catalog.concept_scores WHERE concept = 'cached_then_gone'").fetchone()[0] > 0
    before = dict(wh.sql("SELECT coactive_image_id, cached_then_gone_prob FROM coactive_table").fetchall())
    wh.checkpoint()
    copy = tmp_path / "copy"
    shutil.copytree(wh.root, copy)
    shutil.rmtree(copy / "scores")
    other = Warehouse.open(copy)
    after = dict(other.sql("SELECT coactive_image_id, cached_then_gone_prob FROM coactive_table").fetchall())
    other.close()
    assert after.keys() == before.keys()
    assert max(abs(after[k] - before[k]) for k in before) < 1e-5
