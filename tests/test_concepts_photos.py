"""Concepts on the real photos shipped with scikit-image/scikit-learn, default encoder (imagenet-lite0)."""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from concepts import ConceptError, ConceptNotFound, NotEnoughLabels, active, classify, library, registry
from warehouse import Warehouse

DUCKDB_CLI = Path("/work/venv/bin/duckdb") if Path("/work/venv/bin/duckdb").exists() else Path(shutil.which("duckdb") or "duckdb")


@pytest.fixture(scope="module")
def wh(tmp_path_factory, photo_dir):
    root = tmp_path_factory.mktemp("wh-concepts")
    w = Warehouse.open(root)
    w.ingest([str(photo_dir)], dataset="photos", progress=False)
    yield w
    w.close()


def ranked(w, column: str) -> list[str]:
    rows = w.sql(f"SELECT path FROM coactive_table ORDER BY {column} DESC NULLS LAST").fetchall()
    return [Path(r[0]).stem for r in rows]


def ids_by_stem(w) -> dict[str, str]:
    return {Path(p).stem: i for i, p in w.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}


def test_text_concepts_rank_the_right_photo_first(wh):
    registry.create(wh, "cat", prompts=["cat"])
    registry.create(wh, "coffee", prompts=["coffee"])
    assert ranked(wh, "cat_latest_prob")[0] == "chelsea"
    assert ranked(wh, "coffee_prob")[0] == "coffee"
    # 0/1 column at the threshold, and the probability is calibrated into [0, 1]
    row = wh.sql("SELECT cat, cat_latest_prob FROM coactive_table WHERE path LIKE '%chelsea%'").fetchone()
    assert row[0] == 1 and 0.5 <= row[1] <= 1.0
    assert wh.sql("SELECT min(cat_prob) >= 0 AND max(cat_prob) <= 1 FROM coactive_table").fetchone()[0]
    v = registry.version(wh, "cat")
    assert v.kind == "text" and v.vector_column == "probs" and v.link == "linear"
    assert any("cat" in m["class"] for m in v.training["maps_to"])


def test_macro_and_materialised_scores_agree(wh):
    registry.create(wh, "rocketship", prompts=["space rocket"], materialize=False)
    view_sql = "SELECT sql FROM duckdb_views() WHERE view_name = 'coactive_table'"
    assert "pixql_concept_rocketship_v1(" in wh.sql(view_sql).fetchone()[0]
    assert "rocketship" not in str(wh.sql("SELECT * FROM catalog.concept_scores").fetchall())
    macro = dict(wh.sql("SELECT coactive_image_id, rocketship_prob FROM coactive_table").fetchall())
    assert registry.materialize(wh, ["rocketship"]) == [("rocketship", 1)]
    assert (wh.root / "scores" / "rocketship" / "v1.parquet").exists()
    cached = dict(wh.sql("SELECT coactive_image_id, rocketship_prob FROM coactive_table").fetchall())
    assert cached.keys() == macro.keys()
    assert all(abs(cached[k] - macro[k]) < 1e-5 for k in macro)
    view = wh.sql(view_sql).fetchone()[0]
    assert "a.rocketship_v1" in view and "pixql_concept_rocketship_v1(" not in view
    assert ranked(wh, "rocketship_prob")[0] == "rocket"
    # a second call finds the cache complete and does nothing
    assert registry.materialize(wh, ["rocketship"]) == []


def test_every_change_makes_a_version_and_old_versions_stay_queryable(wh):
    c = registry.create(wh, "mug", prompts=["coffee mug"])
    assert c.latest_version == 1
    c = registry.set_threshold(wh, "mug", 0.2)
    assert (c.latest_version, c.threshold) == (2, 0.2)
    c = registry.update(wh, "mug", prompts=["cup"], negative_prompts=["espresso"])
    assert c.latest_version == 3 and c.prompts == ["cup"]
    assert [v.version for v in registry.versions(wh, "mug")] == [1, 2, 3]
    cols = [r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()]
    assert {"mug", "mug_latest_prob", "mug_prob", "mug_v1_prob", "mug_v2_prob", "mug_v3_prob"} <= set(cols)
    assert "mug_v1_prob" not in [r[0] for r in wh.sql("DESCRIBE coactive_table").fetchall()]
    same = wh.sql("SELECT count(*) FROM coactive_table_adv WHERE mug_v1_prob = mug_v2_prob").fetchone()[0]
    assert same == wh.sql("SELECT count(*) FROM coactive_table_adv").fetchone()[0]
    # version 2 only changed the threshold: the new 0/1 column follows it
    registry.set_threshold(wh, "mug", 0.0)
    assert wh.sql("SELECT min(mug) FROM coactive_table").fetchone()[0] == 1
    registry.update(wh, "mug", description="mugs and cups")
    assert registry.get(wh, "mug").latest_version == 4 and registry.get(wh, "mug").description == "mugs and cups"


@pytest.mark.parametrize("name, reason", [
    ("Bad-Name", "lowercase"), ("select", "keyword"), ("path", "already exists"), ("cat", "already exists"),
    ("cat_prob", "reserved"), ("cat_v2", "reserved"), ("9lives", "lowercase"),
])
def test_names_that_would_clash_are_refused(wh, name, reason):
    if not registry.exists(wh, "cat"):
        registry.create(wh, "cat", prompts=["cat"])
    with pytest.raises(ConceptError, match=reason):
        registry.create(wh, name, prompts=["anything"])


def test_labels_train_a_labeled_head_with_text_prior_and_need_a_minimum(wh):
    ids = ids_by_stem(wh)
    with pytest.raises(NotEnoughLabels, match="at least 2 positive"):
        registry.create(wh, "kitty", positive=[ids["chelsea"]], negative=[ids["rocket"]])
    assert not registry.exists(wh, "kitty")
    with pytest.raises(ConceptNotFound):
        registry.create(wh, "kitty", positive=["/no/such/file.png"], negative=[])
    registry.create(wh, "kitty", prompts=["cat"])
    photo_dir = Path(wh.sql("SELECT path FROM coactive_table WHERE path LIKE '%chelsea%'").fetchone()[0]).parent
    c = registry.add_labels(wh, "kitty", positive=[ids["chelsea"], str(photo_dir / "coffee.png")],
                            negative=[ids["rocket"], ids["astronaut"], ids["brick"]], created_by="test")
    assert (c.latest_version, c.kind, c.positive_labels, c.negative_labels) == (2, "text+labeled", 2, 3)
    v = registry.version(wh, "kitty")
    assert v.vector_column == "features" and v.training["text_prior"] and v.training["positives"] == 2
    probs = dict(wh.sql("SELECT regexp_extract(path, '([^/]+)\\.[a-z]+$', 1), kitty_prob FROM coactive_table").fetchall())
    assert probs["chelsea"] > 0.5 > probs["rocket"]
    labels = registry.labels(wh, "kitty")
    assert {l["label"] for l in labels} == {"positive", "negative"} and labels[0]["created_by"] == "test"
    c = registry.remove_labels(wh, "kitty", [ids["brick"]])
    assert c.negative_labels == 2 and c.latest_version == 3
    # storing without training makes no version
    c = registry.add_labels(wh, "kitty", negative=[ids["brick"]], retrain=False)
    assert c.latest_version == 3 and c.negative_labels == 3


def test_candidates_and_estimate(wh):
    if not registry.exists(wh, "cat"):
        registry.create(wh, "cat", prompts=["cat"])
    ids = ids_by_stem(wh)
    registry.add_labels(wh, "cat", positive=[ids["chelsea"], ids["coffee"]], negative=[ids["rocket"], ids["moon"]],
                        retrain=False)
    cands = active.candidates(wh, "cat", 5)
    assert len(cands) == 5
    labeled = {ids["chelsea"], ids["coffee"], ids["rocket"], ids["moon"]}
    assert not labeled & {c["coactive_image_id"] for c in cands}
    thr = registry.get(wh, "cat").threshold
    dist = [abs(c["prob"] - thr) for c in cands]
    assert dist == sorted(dist)
    e = active.estimate(wh, "cat")
    assert e["count"] == wh.sql("SELECT count(*) FROM coactive_table WHERE cat = 1").fetchone()[0]
    assert e["scored"] == wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0]
    assert e["ci95_low"] <= e["expected_positives"] <= e["ci95_high"]
    assert e["count"] >= 1


def test_classify_embeds_unseen_files_without_adding_them(wh, photo_dir, tmp_path):
    library.install_defaults(wh)
    if not registry.exists(wh, "cat"):
        registry.create(wh, "cat", prompts=["cat"])
    new = tmp_path / "query_images"
    new.mkdir()
    from PIL import Image

    Image.open(photo_dir / "chelsea.png").rotate(3).save(new / "chelsea_copy.jpg")  # unseen content
    shutil.copy(photo_dir / "coffee.png", new / "coffee.png")  # same bytes as a stored asset
    (new / "broken.jpg").write_bytes(b"not an image")
    from videogen import make_video

    make_video(new / "clip.mp4", seconds=2, rate=10)  # a video classifies by its first keyframe
    before = wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0]
    res = {Path(r["path"]).name: r for r in classify.classify(wh, [str(new)], concepts=["cat", "syringe", "handgun"])}
    assert res["clip.mp4"]["error"] is None and set(res["clip.mp4"]["probabilities"]) == {"cat", "syringe", "handgun"}
    assert wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0] == before
    assert res["chelsea_copy.jpg"]["classification"] == ["cat"]
    assert set(res["chelsea_copy.jpg"]["probabilities"]) == {"cat", "syringe", "handgun"}
    assert res["coffee.png"]["coactive_image_id"] is not None  # reused the stored vectors
    assert "cat" not in res["coffee.png"]["classification"]
    assert res["broken.jpg"]["error"] and not res["broken.jpg"]["probabilities"]
    table = classify.as_table(list(res.values()), ["fight", "syringe", "handgun"])
    assert list(table.columns) == ["image", "fight", "syringe", "handgun", "classification"]
    # all concepts by default, and add=True ingests them
    res_all = classify.classify(wh, [str(new / "chelsea_copy.jpg")], add=True, dataset="queries")
    assert set(res_all[0]["probabilities"]) >= {c.name for c in registry.list_concepts(wh)}
    assert wh.sql("SELECT count(*) FROM coactive_table WHERE dataset = 'queries'").fetchone()[0] == 1


def test_default_library_is_complete_and_documented(wh):
    library.install_defaults(wh)
    names = {c.name for c in registry.list_concepts(wh)}
    required = {"handgun", "rifle", "knife", "syringe", "pills", "alcohol", "cigarette", "swimwear", "underwear",
                "fight", "blood"}
    assert required <= names
    assert library.install_defaults(wh) == []  # idempotent
    for name in required:
        mapped = {m["class"] for m in registry.version(wh, name).training["maps_to"] if m["membership"] > 0.5}
        assert set(library.MAPS_TO[name]) <= mapped, name


def test_taxonomy_has_two_levels(wh):
    registry.create(wh, "weapons_demo", prompts=["weapon"])
    registry.create(wh, "sword_demo", prompts=["sword"], parent="weapons_demo")
    assert [c.name for c in registry.children(wh, "weapons_demo")] == ["sword_demo"]
    with pytest.raises(ConceptError, match="two levels"):
        registry.create(wh, "dagger_demo", prompts=["dagger"], parent="sword_demo")
    with pytest.raises(ConceptError, match="child concepts"):
        registry.delete(wh, "weapons_demo")


def _cli_csv(db: Path, sql: str) -> list[list[str]]:
    out = subprocess.run([str(DUCKDB_CLI), "-readonly", "-csv", str(db), "-c", sql],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return list(csv.reader(io.StringIO(out.stdout)))


def _same(sdk_rows, cli_rows) -> bool:
    if len(sdk_rows) != len(cli_rows) - 1:
        return False
    for a, b in zip(sdk_rows, cli_rows[1:]):
        for x, y in zip(a, b):
            if isinstance(x, float):
                if float(y) != x:
                    return False
            elif str(x) != y:
                return False
    return True


def test_tutorial_queries_identical_in_sdk_and_stock_duckdb_cli(wh):
    library.install_defaults(wh)
    registry.set_threshold(wh, "fight", 0.0005)  # the photos show no fights: make the filter select some rows
    # one concept without a score cache, so the CLI also runs a macro
    if not registry.exists(wh, "brassiere"):
        registry.create(wh, "brassiere", prompts=["brassiere"], materialize=False)
    queries = [
        "SELECT coactive_image_id, path FROM coactive_table WHERE fight = 1 ORDER BY coactive_image_id LIMIT 10",
        "SELECT count(coactive_image_id) AS weapon_count FROM coactive_table WHERE handgun = 1 OR rifle = 1 OR knife = 1",
        "SELECT coactive_image_id, path, GREATEST(blood_latest_prob, brassiere_latest_prob, syringe_latest_prob) "
        "AS problematic_score FROM coactive_table_adv ORDER BY problematic_score DESC, coactive_image_id LIMIT 20",
    ]
    sdk = [wh.sql(q).fetchall() for q in queries]
    assert len(sdk[0]) >= 1 and len(sdk[2]) == 20
    db = wh.layout.db_path
    wh.checkpoint()
    wh.con.close()  # the stock CLI needs the file lock
    try:
        for q, rows in zip(queries, sdk):
            assert _same(rows, _cli_csv(db, q)), q
    finally:
        wh.con = Warehouse.open(wh.root).con


def test_demo_queries_run(wh):
    from concepts.demo import demo_queries

    queries = demo_queries(wh)
    assert len(queries) == 4
    results = {title: wh.sql(sql).fetchall() for title, sql in queries}
    # Both photos lead the first answer, each on its own concept (their order is a near-tie of two heads).
    first = {file: (cat, coffee) for file, cat, coffee in results[queries[0][0]]}
    assert set(list(first)[:2]) == {"chelsea.png", "coffee.png"}
    assert first["chelsea.png"][0] > 0.5 > first["chelsea.png"][1]
    assert first["coffee.png"][1] > 0.5 > first["coffee.png"][0]
    assert len(results[queries[3][0]]) == 20


def test_cli_concept_commands(wh):
    import json

    from typer.testing import CliRunner

    from api.cli import app

    runner = CliRunner()
    root = ["--root", str(wh.root)]

    def run(*args):
        result = runner.invoke(app, [*args, *root])
        assert result.exit_code == 0, result.output
        return result.output

    out = run("concept", "create", "teacup", "--prompt", "cup", "--prompt", "coffee mug", "--threshold", "0.3")
    assert "teacup v1" in out
    photo = wh.sql("SELECT path FROM coactive_table WHERE path LIKE '%coffee%'").fetchone()[0]
    others = [r[0] for r in wh.sql("SELECT path FROM coactive_table WHERE path LIKE '%rocket%' OR path LIKE '%moon%' "
                                   "OR path LIKE '%brick%'").fetchall()]
    chelsea = wh.sql("SELECT coactive_image_id FROM coactive_table WHERE path LIKE '%chelsea%'").fetchone()[0]
    out = run("concept", "label", "teacup", "--positive", photo, "--positive", chelsea,
              *[a for p in others for a in ("--negative", p)])
    assert "teacup v2" in out and "+2/-3" in out
    assert json.loads(run("concept", "show", "teacup"))["version"]["kind"] == "text+labeled"
    versions = json.loads(run("concept", "versions", "teacup", "--json"))
    assert [v["version"] for v in versions] == [1, 2]
    assert "teacup" in [c["name"] for c in json.loads(run("concept", "list", "--json"))]
    cands = json.loads(run("concept", "candidates", "teacup", "-n", "3", "--json"))
    assert len(cands) == 3 and chelsea not in {c["coactive_image_id"] for c in cands}
    est = json.loads(run("concept", "estimate", "teacup", "--json"))
    assert est["count"] == wh.sql("SELECT count(*) FROM coactive_table WHERE teacup = 1").fetchone()[0]
    assert "installed" in run("concepts", "install-defaults")
    res = json.loads(run("classify", photo, "-c", "teacup", "--json"))
    assert res[0]["probabilities"]["teacup"] == pytest.approx(
        wh.sql("SELECT teacup_prob FROM coactive_table WHERE path = ?", [photo]).fetchone()[0], abs=1e-5)
    bad = runner.invoke(app, ["concept", "create", "select", "--prompt", "x", *root])
    assert bad.exit_code == 1 and "SQL keyword" in bad.output
    missing = runner.invoke(app, ["concept", "label", "teacup", "--positive", "/nope.png", *root])
    assert missing.exit_code == 1 and "no asset" in missing.output
    assert "deleted teacup" in run("concept", "delete", "teacup")
