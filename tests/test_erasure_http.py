"""Erasure over HTTP and through the official Coactive SDK, on a real `pixql serve`.

Photos are uploaded (so their files live under `uploads/`); the SDK's
`dataset.delete_image` drops the dataset's count by one and removes the upload,
the thumbnail and every result that named the asset (its query answers 410
with the reason); unknown ids are 404 JSON; a `block` delete refuses the same
bytes on re-upload, moderation intake and classify with the reason; a whole dataset needs the admin scope;
results older than `results_retention_days` answer 410 as expired.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from apiserver import Server, make_token, poll
from coactive_sdk import SdkError, SdkSession

NAMES = ("chelsea.png", "coffee.png", "horse.png")


def _wait_job(http, job):
    deadline = time.monotonic() + 300
    while job["status"] not in ("Complete", "Error"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = http.get(f"/api/v1/ingestion/{job['job_id']}").json()
    assert job["status"] == "Complete", job
    return job


def _upload(http, photo_dir, names, dataset="photos"):
    files = [("files", (n, (photo_dir / n).read_bytes())) for n in names]
    return http.post("/api/v1/ingestion", data={"dataset": dataset}, files=files)


def _count(http, dataset="photos") -> int:
    r = http.get(f"/api/v1/datasets/{dataset}")
    r.raise_for_status()
    return r.json()["asset_count"]


def _query(http, sql):
    r = http.post("/api/v1/queries", json={"query": sql})
    assert r.status_code == 201, r.text
    return poll(http, r.json()["query_id"])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "wh"
    tokens = {s: make_token(root, f"t-{s}", s) for s in ("read", "write", "admin")}
    srv = Server(root, "--query-workers", "1").start()
    srv.tokens = tokens
    yield srv
    srv.stop()


def test_delete_over_http_and_the_coactive_sdk(server, photo_dir, tmp_path, monkeypatch):
    http = server.client(server.tokens["write"])
    admin = server.client(server.tokens["admin"])
    r = _upload(http, photo_dir, NAMES)
    assert r.status_code == 202, r.text
    _wait_job(http, r.json())
    rows = _query(http, "SELECT coactive_image_id, path FROM coactive_table ORDER BY path")
    named, count_q = rows["query_id"], _query(http, "SELECT count(*) AS n FROM coactive_table")["query_id"]
    got = http.get(f"/api/v1/queries/{named}").json()["results"]["data"]
    ids = {d["data"]["path"].rsplit("-", 1)[-1]: (d["data"]["coactive_image_id"], d["data"]["path"]) for d in got}
    cat, cat_path = ids["chelsea.png"]
    assert http.get(f"/api/v1/assets/{cat}/thumbnail").status_code == 200
    thumbs = list((server.root / "thumbnails").glob(f"{cat}-*.jpg"))
    assert thumbs and Path(cat_path).is_relative_to(server.root / "uploads") and Path(cat_path).exists()
    before = _count(http)

    sdk = SdkSession(server.url, server.tokens["write"])
    out = sdk.call("result = client.dataset.delete_image(dataset_id=params['d'], coactive_image_id=params['i'])",
                   d="photos", i=cat)
    assert out["matched"]["images"] == 1 and out["removed"]["assets"] == 1
    assert _count(http) == before - 1
    assert not Path(cat_path).exists()  # the upload is gone
    assert not any(t.exists() for t in thumbs)
    gone = http.get(f"/api/v1/queries/{named}")
    assert gone.status_code == 410 and "withdrawn by erasure" in gone.json()["detail"]
    for fmt in ("csv", "parquet"):
        r = http.get(f"/api/v1/queries/{named}/{fmt}")
        assert r.status_code == 410 and "withdrawn by erasure" in r.json()["detail"]
    assert http.get(f"/api/v1/queries/{count_q}").status_code == 200  # a count names no asset: kept
    with pytest.raises(SdkError) as e:
        sdk.call("result = client.dataset.delete_image(dataset_id=params['d'], coactive_image_id=params['i'])",
                 d="photos", i="no-such-image")
    assert e.value.name == "NotFoundError" and e.value.status_code == 404
    with pytest.raises(SdkError) as e:
        sdk.call("result = client.dataset.delete_video(dataset_id=params['d'], coactive_video_id=params['i'])",
                 d="photos", i="no-such-video")
    assert e.value.status_code == 404
    r = http.delete(f"/api/v1/assets/{cat}")
    assert r.status_code == 410 and "was erased" in r.json()["detail"]

    # block: the same bytes cannot come back, with the reason
    horse, _ = ids["horse.png"]
    r = http.delete(f"/api/v1/assets/{horse}", params={"block": "true", "reason": "hash list entry 9"})
    assert r.status_code == 200 and r.json()["block"] is True
    r = _upload(http, photo_dir, ["horse.png"])
    assert r.status_code == 403 and "hash list entry 9" in r.json()["detail"]
    horse_bytes = (photo_dir / "horse.png").read_bytes()
    # ... nor through moderation intake (the item errs with the reason, its upload is not kept) ...
    r = http.post("/api/v1/moderate", files=[("files", ("copy.png", horse_bytes, "image/png"))])
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert res["status"] == "error" and "blocked" in res["error"] and "hash list entry 9" in res["error"], res
    kept = server.root / "uploads" / "moderation"
    assert not (kept.exists() and any(p.is_file() for p in kept.rglob("*")))
    # ... nor through classify
    r = http.post("/api/v1/classify", files=[("files", ("copy.png", horse_bytes, "image/png"))])
    assert r.status_code == 403 and "hash list entry 9" in r.json()["detail"], r.text
    assert _count(http) == before - 2

    # a whole dataset needs admin; a dry run counts
    r = http.delete("/api/v1/datasets/photos")
    assert r.status_code == 403
    r = admin.delete("/api/v1/datasets/photos", params={"dry_run": "true"})
    assert r.status_code == 200 and r.json()["matched"]["images"] == 1 and r.json()["erasure_id"] is None
    assert admin.delete("/api/v1/datasets/nope").status_code == 404

    # retention: a restart with a retention shorter than the results' age expires them
    kept = rows["end_dt"] if "end_dt" in rows else None
    server.stop()
    monkeypatch.setenv("PIXQL_RESULTS_RETENTION_DAYS", str(1 / 86400))  # one second
    time.sleep(1.1)  # the results must be older than one second; not a timing assertion
    restarted = Server(server.root, "--query-workers", "1").start()
    try:
        http = restarted.client(server.tokens["write"])  # the owner of the query
        r = http.get(f"/api/v1/queries/{count_q}")
        assert r.status_code == 410 and "expired" in r.json()["detail"], (r.status_code, r.text, kept)
        assert not (server.root / "results" / f"{count_q}.parquet").exists()
    finally:
        restarted.stop()


def test_sdk_delete_video_then_dataset_delete_needs_admin(server, photo_dir, tmp_path):
    """The SDK's `delete_video` takes the video and its keyframes; its `dataset.delete` is admin-only
    and leaves no row, part or count of the dataset behind."""
    from videogen import make_video

    video = make_video(tmp_path / "clip.mp4", seconds=3, rate=10, width=160, height=120)
    writer = SdkSession(server.url, server.tokens["write"])
    out = writer.call("""
        from coactive.types.add_video_request import AddVideoRequest
        from coactive.types.add_image_request import AddImageRequest
        d = client.dataset.create(name="leaving")
        conf = client.dataset.add_assets(d.dataset_id, videos=[AddVideoRequest(path=params["video"])],
                                         images=[AddImageRequest(path=params["image"])])
        result = {"ds": d.dataset_id, "job": conf.request_group_id,
                  "video": conf.videos[0].coactive_video_id}
    """, video=str(video), image=str(photo_dir / "coffee.png"))
    http = server.client(server.tokens["write"])
    _wait_job(http, http.get(f"/api/v1/ingestion/{out['job']}").json())
    sql = "SELECT count(*) AS n FROM coactive_table WHERE dataset = 'leaving'"
    [before] = [r["data"]["n"] for r in _query_rows(http, sql)]
    keyframes = _query_rows(http, "SELECT count(*) AS n FROM coactive_table_adv WHERE coactive_video_id = "
                                  f"'{out['video']}'")[0]["data"]["n"]
    assert keyframes >= 2 and before == keyframes + 1

    gone = writer.call("result = client.dataset.delete_video(dataset_id=params['d'], coactive_video_id=params['v'])",
                       d=out["ds"], v=out["video"])
    assert gone["matched"]["videos"] == 1 and gone["matched"]["keyframes"] == keyframes
    assert _query_rows(http, sql)[0]["data"]["n"] == 1  # only the photo is left
    videos = writer.call("result = client.dataset.get_videos(params['d']).meta.page.total", d=out["ds"])
    assert videos == 0

    with pytest.raises(SdkError) as e:  # a whole dataset is the admin's to erase
        writer.call("result = client.dataset.delete(params['d'])", d=out["ds"])
    assert e.value.status_code == 403
    admin = SdkSession(server.url, server.tokens["admin"])
    done = admin.call("result = client.dataset.delete(params['d'])", d=out["ds"])
    assert done["matched"]["datasets"] == 1 and done["matched"]["images"] == 1
    assert _query_rows(http, sql)[0]["data"]["n"] == 0
    assert not (server.root / "datasets" / "leaving").exists()
    with pytest.raises(SdkError) as e:  # an erased dataset answers 410 with its tombstone
        admin.call("result = client.dataset.get(params['d'])", d=out["ds"])
    assert e.value.status_code == 410
    assert "leaving" not in [d["name"] for d in http.get("/api/v1/datasets").json()["data"]]


def _query_rows(http, sql):
    done = _query(http, sql)
    assert done["status"] == "Complete", done
    return http.get(f"/api/v1/queries/{done['query_id']}").json()["results"]["data"]
