"""Object storage: ingest `s3://bucket/prefix/` from an S3-compatible server (moto) on 127.0.0.1,
then query, thumbnail, `/image`, classify and moderate those `s3://` paths (through a real
`pixql serve` and the library).  The store is `tests/s3store.py`: a denied object is a real 403.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import s3store
from apiserver import Server, make_token, poll
from s3store import BUCKET, CLIP_SECONDS, PREFIX


@pytest.fixture(scope="module")
def store(tmp_path_factory, photo_dir):
    """moto on a free loopback port holding the photos, a video, a sidecar and a denied object."""
    with s3store.moto_bucket(tmp_path_factory.mktemp("s3"), photo_dir) as st:
        yield st


@pytest.fixture(scope="module")
def ingested(store, tmp_path_factory):
    """The bucket ingested locally as 's3photos', and the same bytes from local files as 'local'."""
    import shutil

    from warehouse import Warehouse

    local = tmp_path_factory.mktemp("local-copy")
    for p in store["photos"]:
        shutil.copy(p, local / p.name)
    shutil.copy(store["video"], local / "clip.mp4")
    from encoders import get_encoder

    get_encoder("imagenet-lite0")  # loaded once, before either ingest is timed
    wh = Warehouse.open(tmp_path_factory.mktemp("wh-s3"))
    started = time.perf_counter()
    report = wh.ingest([PREFIX, PREFIX + "gone.jpg"], dataset="s3photos", progress=False)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    wh.ingest([str(local)], dataset="local", progress=False)
    seconds = (seconds, time.perf_counter() - started)
    yield wh, report, seconds, local
    wh.close()


def _vectors(wh, dataset: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for part in (wh.root / "datasets" / dataset / "vectors").rglob("*.parquet"):
        t = pq.read_table(part).to_pydict()
        for i, aid in enumerate(t.pop("coactive_image_id")):
            out[aid] = {c: np.asarray(v[i], np.float32) for c, v in t.items()}
    return out


def _assets(wh, dataset: str) -> list[dict]:
    cur = wh.sql(f"SELECT coactive_image_id, path, sha256, media_type, keyframe_index, metadata "
                 f"FROM coactive_table_adv WHERE dataset = '{dataset}'")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def test_ingest_from_bucket_same_ids_and_vectors_as_local(store, ingested):
    from ingest.decode import ID_NAMESPACE

    wh, report, seconds, local = ingested
    rows = _assets(wh, "s3photos")
    images = {r["path"]: r for r in rows if r["media_type"] == "image"}
    expected_images = {f"s3://{BUCKET}/{k}": v for k, v in store["objects"].items()
                       if k.startswith("photos/") and not k.endswith(".json") and "secret/" not in k
                       and not k.endswith(".mp4")}
    assert set(images) == set(expected_images)
    for uri, data in expected_images.items():
        sha = hashlib.sha256(data).hexdigest()
        assert images[uri]["sha256"] == sha
        assert images[uri]["coactive_image_id"] == str(uuid.uuid5(ID_NAMESPACE, f"s3photos\0{uri}\0{sha}"))
    frames = sorted((r for r in rows if r["media_type"] == "keyframe"), key=lambda r: r["keyframe_index"])
    clip = f"s3://{BUCKET}/photos/clips/clip.mp4"
    assert [r["path"] for r in frames] == [clip] * CLIP_SECONDS
    vsha = hashlib.sha256(store["objects"]["photos/clips/clip.mp4"]).hexdigest()
    assert frames[1]["coactive_image_id"] == str(uuid.uuid5(ID_NAMESPACE, f"s3photos\0{clip}\0{vsha}\0{1}"))

    # The same bytes ingested from local files: the same vectors, asset by asset.
    remote, here = _vectors(wh, "s3photos"), _vectors(wh, "local")
    local_rows = {(Path(r["path"]).name, r["keyframe_index"]): r["coactive_image_id"] for r in _assets(wh, "local")}
    compared = 0
    for r in rows:
        twin = local_rows[(r["path"].rsplit("/", 1)[-1], r["keyframe_index"])]
        for col, vec in remote[r["coactive_image_id"]].items():
            np.testing.assert_allclose(vec, here[twin][col], atol=1e-5)
            compared += 1
    assert compared >= len(rows) and len(rows) == len(local_rows)
    print(f"\n{len(rows)} assets: {seconds[0]:.1f} s from moto, {seconds[1]:.1f} s from local files")


def test_denied_and_missing_objects_are_error_rows(ingested):
    wh, report, _, _ = ingested
    errors = dict(wh.sql("SELECT path, reason FROM catalog.ingest_errors WHERE dataset = 's3photos'").fetchall())
    assert "access denied" in errors[f"s3://{BUCKET}/photos/secret/denied.png"]
    assert "no such object" in errors[f"s3://{BUCKET}/photos/gone.jpg"]
    assert len(errors) == 2 and report.errors == 2 and report.status == "Complete"


def test_sidecar_metadata_read_from_the_bucket(ingested):
    wh, _, _, _ = ingested
    meta = wh.sql(f"SELECT metadata FROM coactive_table_adv WHERE path = '{PREFIX}chelsea.png'").fetchone()[0]
    assert json.loads(meta) == {"source": "bucket", "rating": 5}


def test_glob_manifest_and_reembed_read_through_the_same_layer(store, ingested, tmp_path):
    from ingest import objects
    from ingest.sources import expand

    wh, _, _, _ = ingested
    globbed = [str(s.path) for s in expand(f"s3://{BUCKET}/photos/**/*.mp4")]
    assert globbed == [f"s3://{BUCKET}/photos/clips/clip.mp4"]
    # `*` stays within one key segment: secret/denied.png is not a match of photos/*.png
    want = sorted(PREFIX + p.name for p in store["photos"] if fnmatch.fnmatch(p.name, "c*.png"))
    assert [str(u) for u in objects.glob(f"{PREFIX}c*.png")] == want and len(want) >= 2
    assert f"{PREFIX}secret/denied.png" not in [str(u) for u in objects.glob(f"{PREFIX}*.png")]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{PREFIX}coffee.png,drink\n")
    src = {str(s.path): s for s in expand([f"{PREFIX}coffee.png"], manifest=manifest)}
    assert src[f"{PREFIX}coffee.png"].metadata == {"label": "drink"}
    # Re-embedding decodes every asset again from its s3:// path.
    before = _vectors(wh, "s3photos")
    report = wh.embed("s3photos", "imagenet-lite0:letterbox")
    assert report.errors == 0 and report.status == "Complete"
    assert wh.sql("SELECT count(DISTINCT coactive_image_id) FROM catalog.embeddings e JOIN catalog.assets a "
                  "USING (coactive_image_id) WHERE a.dataset = 's3photos' AND e.encoder = "
                  "'imagenet-lite0:letterbox'").fetchone()[0] == len(before)


@pytest.fixture(scope="module")
def served(store, tmp_path_factory):
    """`pixql serve` that may read objects under the bucket's photos/ prefix only."""
    root = tmp_path_factory.mktemp("serve") / "wh"
    tokens = {s: make_token(root, f"t-{s}", s) for s in ("read", "write")}
    srv = Server(root, "--object-root", PREFIX).start()
    srv.tokens = tokens
    yield srv
    srv.stop()


def test_http_ingest_query_thumbnail_image_and_classify_on_s3_paths(store, served):
    with served.client(served.tokens["write"]) as http:
        # Outside the object roots: 403 before anything is listed, like a path outside --path-root.
        r = http.post("/api/v1/ingestion", json={"dataset": "s3", "paths": [f"s3://{BUCKET}/elsewhere/"]})
        assert r.status_code == 403 and "outside" in r.json()["detail"]
        r = http.post("/api/v1/ingestion", json={"dataset": "s3", "paths": [f"{PREFIX}../elsewhere/other.png"]})
        assert r.status_code == 403
        r = http.post("/api/v1/ingestion", json={"dataset": "s3", "paths": [PREFIX]})
        assert r.status_code == 202, r.text
        job = r.json()
        deadline = time.monotonic() + 300
        while job["status"] not in ("Complete", "Error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = http.get(f"/api/v1/ingestion/{job['job_id']}").json()
        assert job["status"] == "Complete", job

        r = http.post("/api/v1/queries", json={
            "query": "SELECT coactive_image_id, path, media_type FROM coactive_table ORDER BY path, coactive_image_id"})
        assert r.status_code in (200, 201, 202), r.text
        body = poll(http, r.json()["query_id"])
        assert body["status"] == "Complete", body
        rows = [r["data"] for r in body["results"]["data"]]
        assert len(rows) == body["total_row_count"] > 0
        by_path = {}
        for row in rows:
            assert row["path"].startswith(PREFIX)
            by_path.setdefault(row["path"], row)
        chelsea = by_path[f"{PREFIX}chelsea.png"]
        clip = by_path[f"{PREFIX}clips/clip.mp4"]
        assert clip["media_type"] == "keyframe"

        for asset in (chelsea, clip):
            t = http.get(f"/api/v1/assets/{asset['coactive_image_id']}/thumbnail", params={"size": 64})
            assert t.status_code == 200 and t.content[:2] == b"\xff\xd8", t.text
            assert max(Image.open(io.BytesIO(t.content)).size) == 64
        image = http.get(f"/api/v1/assets/{chelsea['coactive_image_id']}/image")
        assert image.status_code == 200 and image.content == store["objects"]["photos/chelsea.png"]
        assert image.headers["content-type"] == "image/png"

        r = http.post("/api/v1/concepts", json={"name": "cat", "prompts": ["a photo of a cat"]})
        assert r.status_code in (200, 201), r.text
        r = http.post("/api/v1/classify", json={"paths": [f"{PREFIX}chelsea.png", f"{PREFIX}secret/denied.png",
                                                          f"{PREFIX}nope.png"], "concepts": ["cat"]})
        assert r.status_code == 200, r.text
        results = {x["path"]: x for x in r.json()["results"]}
        cat = results[f"{PREFIX}chelsea.png"]
        assert cat["error"] is None and cat["coactive_image_id"] == chelsea["coactive_image_id"]
        assert cat["concepts"][0]["name"] == "cat" and 0 <= cat["concepts"][0]["score"] <= 1
        assert "access denied" in results[f"{PREFIX}secret/denied.png"]["error"]
        assert "no such object" in results[f"{PREFIX}nope.png"]["error"]
        r = http.post("/api/v1/classify", json={"paths": [f"s3://{BUCKET}/elsewhere/other.png"], "concepts": ["cat"]})
        assert r.status_code == 403

    with served.client(served.tokens["read"]) as http:  # ingest needs write scope, as for local paths
        assert http.post("/api/v1/ingestion", json={"dataset": "s3", "paths": [PREFIX]}).status_code == 403


def test_object_roots_match_whole_buckets_and_segments_only():
    from ingest.objects import under

    roots = ["s3://media/photos/", "gs://other"]
    assert under("s3://media/photos/a.jpg", roots) and under("s3://media/photos/x/y.png", roots)
    assert under("gs://other/anything/at/all.jpg", roots)
    assert not under("s3://media/photos2/a.jpg", roots)  # a prefix is whole segments
    assert not under("s3://media-archive/photos/a.jpg", roots)  # and a bucket a whole name
    assert not under("gs://media/photos/a.jpg", roots)  # the scheme counts
    for sneaky in ("s3://media/photos/../secret.jpg", "s3://media/photos/./a.jpg", "s3://media/photos//a.jpg"):
        assert not under(sneaky, roots), sneaky
    assert not under("/media/photos/a.jpg", roots)


def test_moderation_reads_s3_paths_through_the_object_layer(store, tmp_path):
    """Moderating `s3://` items: hashed and ingested from the bucket under their URI; a denied or
    missing object is that item's error; the same URI again is found, not ingested twice."""
    from concepts.moderation import Item, Moderator
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path / "wh")
    m = Moderator(wh)
    rocket = f"{PREFIX}rocket.png"
    out = m.moderate([Item(path=rocket, id="r"), Item(path=f"{PREFIX}secret/denied.png"),
                      Item(path=f"{PREFIX}nope.png"), Item(path=f"{PREFIX}clips/clip.mp4")])
    got, denied, missing, clip = out["results"]
    assert got["status"] == "rejected" and got["path"] == rocket and got["id"] == "r", got  # weapons
    assert got["sha256"] == hashlib.sha256(store["objects"]["photos/rocket.png"]).hexdigest()
    assert denied["status"] == "error" and "access denied" in denied["error"]
    assert missing["status"] == "error" and "no such object" in missing["error"]
    assert clip["status"] in ("approved", "review", "rejected") and clip["path"] == f"{PREFIX}clips/clip.mp4"
    rows = wh.sql("SELECT path, media_type FROM coactive_table_adv WHERE dataset = 'moderation'").fetchall()
    assert {p for p, _ in rows} == {rocket, f"{PREFIX}clips/clip.mp4"} and ("keyframe" in {k for _, k in rows})
    # The stored asset moderated again by id and by URI: the same subject, nothing ingested anew.
    again = m.moderate([Item(coactive_image_id=got["coactive_image_id"]), Item(path=rocket)], use_cache=False)
    assert [r["coactive_image_id"] for r in again["results"]] == [got["coactive_image_id"]] * 2
    assert wh.sql("SELECT count(*) FROM catalog.assets WHERE path = ?", [rocket]).fetchone()[0] == 1
    wh.close()
