"""Compaction: merging small parts changes no id, vector, score, concept column or answer; view SQL does
not grow with the parts; SIGKILLs at random points leave the old or the new state; retention sweeps
(uploads, the moderation cache's TTL on disk) and the `ingest_errors` view."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from concepts import registry
from concepts.heads import HeadSpec
from pixql import Warehouse
from warehouse import catalog, concept_cache, encoder_columns
from warehouse.queries import QueryEngine, QuerySettings

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ["chelsea", "coffee", "astronaut", "camera", "rocket", "horse", "page", "moon"]
QUERIES = [
    "SELECT * FROM coactive_table_adv ORDER BY coactive_image_id",
    "SELECT coactive_image_id, path FROM coactive_table WHERE probe = 1 ORDER BY coactive_image_id",
    "SELECT count(*) FROM coactive_table WHERE probe = 1 OR probe_text = 1",
    "SELECT coactive_image_id, GREATEST(probe_latest_prob, probe_text_latest_prob) AS s FROM coactive_table_adv "
    "ORDER BY s DESC, coactive_image_id LIMIT 5",
    "SELECT * FROM coactive_videos ORDER BY coactive_video_id",
    "SELECT * FROM ingest_errors ORDER BY path",
]


@pytest.fixture(autouse=True)
def no_retire_grace(monkeypatch):
    """Replaced files go at once here (their grace period has its own test)."""
    monkeypatch.setenv("PIXQL_COMPACT_RETIRE_S", "0")


def duckdb_cli() -> str:
    exe = Path(sys.executable).parent / "duckdb"
    found = str(exe) if exe.exists() else shutil.which("duckdb")
    assert found, "the duckdb-cli package must be installed"
    return found


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, photo_dir) -> Path:
    """A closed warehouse in many small parts: photos, a video's keyframes, an analyzer, a bad file,
    one concept with a materialised score cache and one served by its macro."""
    from videogen import make_video

    src = tmp_path_factory.mktemp("compact-src")
    for p in sorted(photo_dir.iterdir()):
        if p.stem in PHOTOS:
            shutil.copy(p, src / p.name)
    make_video(src / "clip.mp4", seconds=4)
    (src / "broken.jpg").write_bytes(b"not an image")
    root = tmp_path_factory.mktemp("wh-compact")
    wh = Warehouse.open(root)
    try:
        wh.ingest([str(src)], dataset="mixed", progress=False, part_rows=2, batch_size=2, analyzers="faces")
        con = wh.cursor()
        encoder = catalog.dataset_encoder(con, "mixed")
        column, dim = next(iter(catalog.encoder_columns(con, encoder).items()))
        rng = np.random.default_rng(5)
        w = rng.standard_normal(dim).astype(np.float32)
        registry.create_from_head(wh, "probe", HeadSpec("model", encoder, column, w, 3.0, 0.0, "logistic"))
        registry.create_from_head(wh, "probe_text", HeadSpec("model", encoder, column, -w, 2.0, 0.1, "logistic"),
                                  materialize=False)
        assert wh.sql("SELECT count(*) FROM catalog.concept_scores WHERE concept = 'probe'").fetchone()[0]
        assert wh.wait_for_merge(60)  # the score delta folded into the wide segments
        with wh.write_lock:  # the delta it replaced (the tests count unreferenced files)
            concept_cache.sweep(wh.cursor(), wh.root, min_age_s=0)
    finally:
        wh.close()
    return root


def copy_of(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest)
    return dest


def snapshot(wh) -> dict:
    con = wh.cursor()
    out = {q: con.execute(q).fetchall() for q in QUERIES}
    for enc, cols in con.execute("SELECT name, vector_columns FROM catalog.encoders").fetchall():
        names = ", ".join(json.loads(cols))
        out[enc] = con.execute(f"SELECT coactive_image_id, {names} FROM pixql_internal.vectors_{enc.replace('-', '_')}"
                               " ORDER BY 1").fetchall()
    return out


def part_count(wh, kind: str = "assets") -> int:
    return wh.sql(f"SELECT count(*) FROM catalog.parts WHERE kind = '{kind}'").fetchone()[0]


def orphans(root: Path, con) -> list[str]:
    """Files under datasets/ and scores/ that nothing in the catalog references, temporaries, journal rows."""
    out = [f"journal: {r}" for r in con.execute("SELECT erasure_id, state FROM catalog.erasure_journal").fetchall()]
    known = {r[0] for r in con.execute("SELECT path FROM catalog.parts").fetchall()}
    known |= {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()}
    known |= set(concept_cache.segment_files(con))
    stems = {Path(p).stem for p in known}
    for p in list((root / "datasets").rglob("*")) + list((root / "scores").rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(root))
        if p.name.startswith(".tmp-"):
            out.append(rel)
            continue
        derived = p.suffix == ".npy" or p.parent.parent.name == encoder_columns.ENCODER_DIR  # of a vector part
        if rel in known or (derived and p.name.split(".", 1)[0] in stems):
            continue
        out.append(rel)
    return out


def view_sql(wh) -> dict[str, str]:
    return dict(wh.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal "
                       "AND schema_name IN ('main', 'pixql_internal')").fetchall())


def test_compaction_changes_no_answer_and_keeps_the_cache(pristine, tmp_path):
    root = copy_of(pristine, tmp_path / "wh")
    wh = Warehouse.open(root)
    try:
        before = snapshot(wh)
        parts_before = {k: part_count(wh, k) for k in ("assets", "vectors", "analyzer")}
        assert all(n > 3 for n in parts_before.values()), parts_before
        assert any(r[0] for r in before[QUERIES[-1]]), "the fixture has an ingest error"
        assert "files_scores()" in view_sql(wh)["coactive_table"]  # the score segments are the base scan
        sql_before = view_sql(wh)

        (report,) = wh.compact("mixed")
        assert report.parts_merged == sum(parts_before.values()) and report.parts_written == 3
        assert report.caches_rewritten == 1 and report.caches_dropped == 0
        assert {k: part_count(wh, k) for k in parts_before} == {"assets": 1, "vectors": 1, "analyzer": 1}
        assert snapshot(wh) == before
        # The cache was carried over (not dropped for the macro): the view still joins the scores,
        # and the view SQL is the same text with 1 part as with many.
        assert view_sql(wh) == sql_before
        assert wh.sql("SELECT count(*) FROM catalog.concept_scores WHERE concept = 'probe'").fetchone()[0] == 1
        assert orphans(root, wh.cursor()) == []
        # Every catalog row names its new part.
        assert wh.sql("SELECT count(DISTINCT part) FROM catalog.assets").fetchone()[0] == 1
        assert wh.sql("SELECT count(DISTINCT part) FROM catalog.analyses").fetchone()[0] == 1
        again = wh.compact("mixed")[0]
        assert again.parts_merged == 0 and snapshot(wh) == before
    finally:
        wh.close()
    # Reopened, and read by the stock DuckDB CLI, which sees the same count and the ingest_errors view.
    cli = subprocess.run([duckdb_cli(), "-readonly", "-csv", "-noheader", str(root / "pixql.duckdb"),
                          "SELECT count(*), sum(probe) FROM coactive_table; SELECT count(*) FROM ingest_errors;"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    positives = len(before[QUERIES[1]])
    lines = cli.stdout.split()
    assert lines[0] == f"{len(before[QUERIES[0]])},{positives}"
    assert lines[1] == str(len(before[QUERIES[-1]]))


def test_view_sql_does_not_grow_with_parts(pristine, tmp_path):
    """Small part limits leave several parts: the view SQL is the same text however many (`pixql compact`)."""
    from typer.testing import CliRunner

    from api.cli import app

    root = copy_of(pristine, tmp_path / "wh")
    wh = Warehouse.open(root)
    many, n_many = view_sql(wh), part_count(wh)
    wh.close()
    r = CliRunner().invoke(app, ["compact", "--dataset", "mixed", "--part-rows", "8", "--root", str(root)])
    assert r.exit_code == 0 and "dataset 'mixed':" in r.output and "merged into" in r.output, r.output
    r = CliRunner().invoke(app, ["compact", "--dataset", "nope", "--root", str(root)])
    assert r.exit_code != 0 and "unknown dataset 'nope'" in r.output, r.output
    wh = Warehouse.open(root)
    try:
        assert 1 < part_count(wh) < n_many
        assert view_sql(wh) == many
        longest = max(len(s) for s in many.values())
        assert longest < 20_000
    finally:
        wh.close()


def test_auto_compaction_after_ingest(tmp_path, photo_dir, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(photo_dir.iterdir())[:6]:
        shutil.copy(p, src / p.name)
    monkeypatch.setenv("PIXQL_COMPACT_AFTER_PARTS", "2")
    wh = Warehouse.open(tmp_path / "wh")
    try:
        wh.ingest([str(src)], dataset="d", progress=False, part_rows=2, batch_size=2)
        assert part_count(wh) == 1 and wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0] == 6
    finally:
        wh.close()


def test_an_older_snapshot_in_the_same_process_keeps_its_files(pristine, tmp_path, monkeypatch):
    """A half-read result opens the rest of its files only when it reaches them.  While it is referenced,
    other opens of the warehouse in this process (each CLI command run in-process does one), a concept
    change and a compaction leave the score files it may read (`warehouse.readers`) and the parts (the
    compaction's grace period); once it is dropped, the next sweep removes the score files at once."""
    import gc

    monkeypatch.setenv("PIXQL_COMPACT_RETIRE_S", "900")
    root = copy_of(pristine, tmp_path / "wh")
    a = Warehouse.open(root)
    scan = "SELECT coactive_image_id, probe_latest_prob FROM coactive_table"
    try:
        expected = a.sql(QUERIES[2]).fetchall()
        full = sorted(a.sql(scan).fetchall())
        half = a.sql(scan)
        first = half.fetchmany(1)  # half-read: its later files are opened later
        b = Warehouse.open(root)
        try:
            con = b.cursor()
            encoder = catalog.dataset_encoder(con, "mixed")
            column, dim = next(iter(catalog.encoder_columns(con, encoder).items()))
            w = np.random.default_rng(9).standard_normal(dim).astype(np.float32)
            # A new concept version replaces the combined score segment, then the parts are merged.
            registry.create_from_head(b, "probe_new", HeadSpec("model", encoder, column, w, 1.0, 0.0, "logistic"))
            (report,) = b.compact("mixed")
            assert report.parts_merged and report.files_removed == 0
        finally:
            b.close()
        Warehouse.open(root).close()  # what each in-process CLI command does first
        assert sorted(first + half.fetchall()) == full  # the old snapshot still reads all its files
        assert a.sql(QUERIES[2]).fetchall() == expected
        del half
        gc.collect()
    finally:
        a.close()
    wh = Warehouse.open(root)  # its refresh commits and sweeps: no reader is left
    try:
        from warehouse import erasure_files

        left = orphans(root, wh.cursor())
        assert any(f.startswith("journal: ") for f in left) and any(f.startswith("datasets/") for f in left)
        # Score files went at that commit; the encoder columns of a retired vector part go with it.
        assert not [f for f in left if f.startswith("scores/") and f.endswith(".parquet")
                    and not f.startswith("scores/_encoder/")]
        erasure_files.remove_retired(wh.cursor(), root, grace_s=0)
        assert orphans(root, wh.cursor()) == []
    finally:
        wh.close()


CHILD = r"""
import random, sys, time
from warehouse.core import WarehouseCore
from warehouse.compaction import compact
random.seed(int(sys.argv[2]))

def step(name):
    print(name, flush=True)
    time.sleep(random.uniform(0, 0.02))

wh = WarehouseCore.open(sys.argv[1])
step("ready")
compact(wh, "mixed", on_step=step)
step("done")
"""


def test_sigkill_after_each_step_leaves_old_or_new_state(pristine, tmp_path):
    """One kill after each step of the compaction (plus a random delay into the next), then a re-run:
    every step is covered, where random steps needed twice the kills and could still miss one."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    wh = Warehouse.open(copy_of(pristine, tmp_path / "ref"))
    try:
        expected = snapshot(wh)
        n_old = part_count(wh)
        steps = ["ready"]
        wh.compact("mixed", on_step=steps.append)
        n_new = part_count(wh)
    finally:
        wh.close()
    assert "committed" in steps and n_new < n_old
    rng = random.Random(13)
    seen = {"old": 0, "new": 0}
    for i, target in enumerate(steps):
        root = copy_of(pristine, tmp_path / f"k{i}")
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(i)], stdout=subprocess.PIPE,
                                 text=True, env=env)
        for _ in range(i + 1):
            assert child.stdout.readline().strip(), "the child ended early"
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # What a reader sees before anything repairs the warehouse: the old or the new state, whole.
        ro = Warehouse.open(root, read_only=True)
        try:
            n = part_count(ro)
            assert n in (n_old, n_new), n
            seen["old" if n == n_old else "new"] += 1
            assert snapshot(ro) == expected, f"kill {i} after step {target!r}: a query saw a mix"
        finally:
            ro.close()
        wh = Warehouse.open(root)  # a writable open sweeps what the kill left
        try:
            assert part_count(wh) == n and snapshot(wh) == expected
            assert orphans(root, wh.cursor()) == []
            wh.compact("mixed")  # the re-run
            assert part_count(wh) == n_new and snapshot(wh) == expected
            assert orphans(root, wh.cursor()) == []
        finally:
            wh.close()
        shutil.rmtree(root)
    assert seen["old"] and seen["new"], seen


# -- retention ----------------------------------------------------------------------------------
def test_uploads_sweep_keeps_referenced_pending_and_recent_files(tmp_path, photo_dir):
    from warehouse import jobs, retention

    root = tmp_path / "wh"
    wh = Warehouse.open(root)
    try:
        up = root / "uploads"
        kept_asset = up / "b1" / "00000-chelsea.png"
        kept_job, gone, recent = up / "b2" / "00000-coffee.png", up / "b3" / "00000-old.png", up / "b4" / "new.png"
        for p, src in ((kept_asset, "chelsea"), (kept_job, "coffee"), (gone, "astronaut"), (recent, "camera")):
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(next(photo_dir.glob(f"{src}.*")), p)
        wh.ingest([str(kept_asset)], dataset="up", progress=False)
        with wh.transaction():
            jobs.insert(wh.cursor(), "ingest", {"paths": [str(kept_job)], "dataset": "up"})
        old = time.time() - 7200
        for p in (kept_asset, kept_job, gone):
            os.utime(p, (old, old))
        removed = retention.sweep_uploads(wh.cursor(), root, grace_s=3600)
        assert removed == [gone]
        assert kept_asset.exists() and kept_job.exists() and recent.exists() and not gone.parent.exists()
        # The job finishes: its upload (not an asset) goes at the next sweep.
        with wh.transaction():
            wh.cursor().execute("UPDATE catalog.jobs SET status = 'Complete'")
        assert retention.sweep_uploads(wh.cursor(), root, grace_s=3600) == [kept_job]
        assert kept_asset.exists()
    finally:
        wh.close()


def test_moderation_cache_ttl_removes_expired_rows_from_disk(tmp_path):
    from concepts.moderation.cache import ResultCache

    wh = Warehouse.open(tmp_path / "wh")
    try:
        now = catalog.now()
        rows = [("live", now, now + timedelta(hours=1)), ("expired", now - timedelta(hours=2), now - timedelta(hours=1)),
                ("over_new_ttl", now - timedelta(hours=3), now + timedelta(hours=20))]
        with wh.transaction() as tx:
            tx.con.executemany("INSERT INTO catalog.moderation_cache VALUES (?, 'sha', 'p', '{}', ?, ?)", rows)
        cache = ResultCache(wh, ttl_s=2 * 3600)  # made at server start: purges at once
        left = {r[0] for r in wh.sql("SELECT cache_key FROM catalog.moderation_cache").fetchall()}
        assert left == {"live"}
        with wh.transaction() as tx:
            tx.con.execute("UPDATE catalog.moderation_cache SET expires_dt = created_dt")
        assert cache.purge_expired() == 1
        assert wh.sql("SELECT count(*) FROM catalog.moderation_cache").fetchone()[0] == 0
    finally:
        wh.close()


def test_ingest_errors_view_over_sdk_and_http(pristine, api_server):
    from apiserver import poll

    wh = Warehouse.open(pristine, read_only=True)
    try:
        rows = wh.sql("SELECT path, reason FROM ingest_errors").fetchall()
        assert [Path(p).name for p, _ in rows] == ["broken.jpg"] and rows[0][1]
    finally:
        wh.close()
    with api_server.client(api_server.tokens["read"]) as http:
        r = http.post("/api/v1/queries", json={"query": "SELECT * FROM ingest_errors"})
        assert r.status_code == 201, r.text
        body = poll(http, r.json()["query_id"])
        assert body["status"] == "Complete", body
        got = http.get(f"/api/v1/queries/{body['query_id']}").json()
        assert got["results"]["columns"] == ["run_id", "dataset", "path", "reason", "created_dt"]
        # The catalog table itself stays out of reach: only the view is allowed.
        r = http.post("/api/v1/queries", json={"query": "SELECT * FROM catalog.ingest_errors"})
        assert r.status_code >= 400 or poll(http, r.json()["query_id"])["status"] == "Error"
