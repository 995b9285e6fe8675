"""Moderation over HTTP against a real `pixql serve` on 127.0.0.1: policies, batch limits, feedback,
overrides, the queue, video verdicts, the cache, and signed asynchronous callbacks."""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from apiserver import poll, start_photo_server
from PIL import Image

from api import webhooks
from test_moderation_webhooks import Receiver

CLOUDINARY = "aws_rek:female_underwear:0.85:explicit_nudity:0.7:revealing_clothes:ignore"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, photo_dir):
    saved = {k: os.environ.get(k) for k in ("PIXQL_WEBHOOK_BASE_DELAY_S", "PIXQL_WEBHOOK_MAX_ATTEMPTS")}
    os.environ["PIXQL_WEBHOOK_BASE_DELAY_S"] = "0.05"  # the retries of the callback test, fast
    os.environ["PIXQL_WEBHOOK_MAX_ATTEMPTS"] = "5"
    try:
        # Callbacks go to a receiver on 127.0.0.1, which the server reaches only when allowed.
        s = start_photo_server(tmp_path_factory.mktemp("moderation-api"), photo_dir,
                               "--allow-url-network", "127.0.0.0/8")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def w(srv):
    with srv.client(srv.tokens["write"]) as c:
        yield c


def _jpeg_copy(src: Path, scale: float = 2 / 3, quality: int = 70) -> bytes:
    im = Image.open(src).convert("RGB")
    im = im.resize((int(im.width * scale), int(im.height * scale)), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _upload(w, name: str, data: bytes, **form) -> dict:
    r = w.post("/api/v1/moderate", files=[("files", (name, data, "image/jpeg"))], data=form)
    assert r.status_code == 200, r.text
    return r.json()


# -- policies ------------------------------------------------------------------------------------
def test_inline_cloudinary_policy_without_creating_it(w, photo_dir):
    """Cloudinary sends `aws_rek:...` as is: it moderates on the defaults plus its overrides,
    stores no policy, and the decision records the string it used."""
    china = str(photo_dir / "china.jpg")
    r = w.post("/api/v1/moderate", json={"items": [{"path": china}], "policy": CLOUDINARY, "use_cache": False})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["policy"] == {"name": "aws_rek", "version": 0, "spec": CLOUDINARY, "inline": True}
    assert out["results"][0]["status"] in ("approved", "review", "rejected")
    names = [p["name"] for p in w.get("/api/v1/policies").json()["policies"]]
    assert "aws_rek" not in names  # nothing stored
    aid = out["results"][0]["coactive_image_id"]
    hist = w.get(f"/api/v1/assets/{aid}/moderation").json()["history"]
    assert hist[0]["policy"] == "aws_rek" and hist[0]["policy_version"] == 0 and hist[0]["policy_spec"] == CLOUDINARY
    # an inline string is checked like a stored one; a bare unknown name is still a 404
    r = w.post("/api/v1/moderate", json={"items": [{"path": china}], "policy": "aws_rek:explicit_nudty:0.7"})
    assert r.status_code == 400 and "unknown category 'explicit_nudty'" in r.json()["detail"]
    r = w.post("/api/v1/moderate", json={"items": [{"path": china}], "policy": "aws_rek"})
    assert r.status_code == 404 and "unknown policy 'aws_rek'" in r.json()["detail"]
    # with a stored policy of that name, the same string layers on it instead (not inline)
    assert w.post("/api/v1/policies", json={"spec": "ondisk:weapons:0.3"}).status_code == 201
    r = w.post("/api/v1/moderate", json={"items": [{"path": china}], "policy": "ondisk:alcohol:0.9"})
    assert r.json()["policy"]["inline"] is False and r.json()["policy"]["version"] == 1
    assert w.delete("/api/v1/policies/ondisk").status_code in (200, 204)


def test_policy_create_version_and_malformed_400s(w):
    r = w.post("/api/v1/policies", json={"spec": CLOUDINARY})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["name"] == "aws_rek" and p["version"] == 1
    eff = p["effective_thresholds"]
    assert eff["female_underwear"] == 0.85 and eff["nudity"] == 0.7 and "revealing_clothes" not in eff
    for bad, needle in [
        ("aws_rek:female_underwaer:0.85", "unknown category 'female_underwaer'"),
        ("aws_rek:female_underwear:1.7", "between 0 and 1"),
        ("aws_rek:female_underwear:0.85:explicit_nudity", "odd number of fields"),
    ]:
        r = w.post("/api/v1/policies", json={"spec": bad})
        assert r.status_code == 400, (bad, r.text)
        assert needle in r.json()["detail"], r.json()
        # the same string used directly in a moderation request is refused the same way
        r = w.post("/api/v1/moderate", json={"items": [{"path": "/nonexistent.jpg"}], "policy": bad})
        assert r.status_code == 400 and needle in r.json()["detail"]
    r = w.put("/api/v1/policies/aws_rek", json={"thresholds": {"weapons": 0.3}})
    assert r.status_code == 200 and r.json()["version"] == 2
    vs = w.get("/api/v1/policies/aws_rek/versions").json()["versions"]
    assert [v["version"] for v in vs] == [1, 2]
    assert w.get("/api/v1/policies/aws_rek", params={"version": 1}).json()["effective_thresholds"]["weapons"] == 0.5
    names = [p["name"] for p in w.get("/api/v1/policies").json()["policies"]]
    assert set(names) == {"default", "aws_rek"}
    r = w.post("/api/v1/moderate", json={"items": [{"path": "/x.jpg"}], "policy": "nosuchpolicy"})
    assert r.status_code == 404 and "unknown policy 'nosuchpolicy'" in r.json()["detail"]


# -- batches -------------------------------------------------------------------------------------
def test_sync_batch_limit_51_refused_50_moderated(w, photo_dir, tmp_path):
    src = Image.open(photo_dir / "china.jpg").convert("RGB")
    paths = []
    for k in range(51):
        x, y = (k % 9) * 40, (k // 9) * 40
        p = tmp_path / f"tile{k:02d}.png"
        src.crop((x, y, x + 96, y + 96)).save(p)
        paths.append(str(p))
    r = w.post("/api/v1/moderate", json={"items": [{"path": p} for p in paths]})
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "at most 50 items, got 51" in detail and "callback_url" in detail
    r = w.post("/api/v1/moderate", json={"items": [{"path": p, "id": f"t{i}"} for i, p in enumerate(paths[:50])]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 50 and len(body["results"]) == 50
    assert sum(body["counts"].values()) == 50 and body["counts"]["error"] == 0
    for i, res in enumerate(body["results"]):
        assert res["id"] == f"t{i}" and res["status"] in ("approved", "review", "rejected")
        assert res["output"][0]["time"] == 0 and {"class", "score"} <= set(res["output"][0]["classes"][0])
    # categories ImageNet cannot see are reported, not silently scored 0
    assert "sexual_activity" in body["unscored_categories"] and "weapons" not in body["unscored_categories"]
    assert "explicit_nudity" not in body["unscored_categories"]  # open_nsfw scores it


def test_bad_items_are_per_item_errors(w, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = w.post("/api/v1/moderate", json={"items": [{"path": str(bad)}, {"path": str(tmp_path / "missing.png")}]})
    assert r.status_code == 200, r.text
    a, b = r.json()["results"]
    assert a["status"] == "error" and a["error"]
    assert b["status"] == "error" and "no such file" in b["error"]
    r = w.post("/api/v1/moderate", json={"items": [{"path": "a.jpg", "url": "http://x/b.jpg"}]})
    assert r.status_code == 422


# -- feedback ------------------------------------------------------------------------------------
def test_feedback_block_catches_resized_reencoded_copy_only(w, photo_dir):
    r = w.post("/api/v1/feedback", json={"path": str(photo_dir / "astronaut.png"), "verdict": "block",
                                         "comment": "known bad image"})
    assert r.status_code == 201, r.text
    blocked = r.json()["coactive_image_id"]
    copy = _upload(w, "astronaut-small.jpg", _jpeg_copy(photo_dir / "astronaut.png"))["results"][0]
    assert copy["status"] == "rejected", copy
    assert copy["coactive_image_id"] != blocked  # a different asset ...
    assert copy["reasons"][0]["similar_to"] == blocked  # ... rejected because it looks like the listed one
    assert copy["reasons"][0]["similarity"] >= 0.85 and copy["similar"]["verdict"] == "block"
    other = _upload(w, "coffee-small.jpg", _jpeg_copy(photo_dir / "coffee.png"))["results"][0]
    assert other["status"] != "rejected" and other["similar"] is None, other
    listed = w.get("/api/v1/feedback", params={"verdict": "block"}).json()["items"]
    assert [x["coactive_image_id"] for x in listed] == [blocked]


def test_feedback_with_category_adds_concept_labels(w, photo_dir):
    before = w.get("/api/v1/moderation/categories").json()["categories"]
    wv = next(c for c in before if c["category"] == "weapons")["concept_version"]
    r = w.post("/api/v1/feedback", json={"path": str(photo_dir / "rocket.png"), "verdict": "block",
                                         "categories": ["weapons", "hate_symbols"]})
    assert r.status_code == 201, r.text
    labels = {x["category"]: x for x in r.json()["labels"]}
    # one label is not enough for a labeled head: kept, and said so
    assert labels["weapons"]["trained"] is False and "at least" in labels["weapons"]["detail"]
    assert labels["weapons"]["concept_version"] == wv
    assert labels["hate_symbols"]["concept_version"] is None and "kept" in labels["hate_symbols"]["detail"]
    r = w.post("/api/v1/feedback", json={"path": str(photo_dir / "rocket.png"), "verdict": "block",
                                         "categories": ["nonsense"]})
    assert r.status_code == 400 and "unknown moderation category 'nonsense'" in r.json()["detail"]


# -- overrides and the queue ---------------------------------------------------------------------
def test_manual_override_survives_re_moderation(srv, w, photo_dir):
    china = str(photo_dir / "china.jpg")
    first = w.post("/api/v1/moderate", json={"items": [{"path": china}]}).json()["results"][0]
    assert first["status"] == "approved" and first["decided_by"] == "model"
    aid = first["coactive_image_id"]
    with srv.client(srv.tokens["read"]) as r_only:
        r = r_only.put(f"/api/v1/assets/{aid}/moderation", json={"status": "rejected", "reason": "no"})
        assert r.status_code == 403
    r = w.put(f"/api/v1/assets/{aid}/moderation", json={"status": "rejected", "reason": "landmark used in a scam"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["history"][0]["user"] == "test-write"
    for item in ({"path": china}, {"coactive_image_id": aid}):
        again = w.post("/api/v1/moderate", json={"items": [item], "use_cache": False}).json()["results"][0]
        assert again["status"] == "rejected" and again["decided_by"] == "user", again
        assert again["model_status"] == "approved" and again["override"]["comment"] == "landmark used in a scam"
    hist = w.get(f"/api/v1/assets/{aid}/moderation").json()
    assert hist["status"] == "rejected" and hist["decided_by"] == "user"
    assert [h["decided_by"] for h in hist["history"]].count("model") >= 3  # the later model runs are kept too
    q = w.post("/api/v1/queries", json={
        "query": f"SELECT moderation_status FROM coactive_table_adv WHERE coactive_image_id = '{aid}'"})
    done = poll(w, q.json()["query_id"])
    assert done["results"]["data"][0]["data"]["moderation_status"] == "rejected"
    queue = w.get("/api/v1/moderation", params={"status": "rejected"}).json()
    ids = [x["subject_id"] for x in queue["items"]]
    assert aid in ids and all(x["status"] == "rejected" for x in queue["items"])
    page = w.get("/api/v1/moderation", params={"status": "rejected", "limit": 1}).json()
    assert len(page["items"]) == 1 and page["total"] == queue["total"] >= 2 and page["next_offset"] == 1
    assert page["items"][0]["thumbnail_url"].endswith("/thumbnail")
    assert w.put("/api/v1/assets/nope/moderation", json={"status": "approved"}).status_code == 404


# -- video ---------------------------------------------------------------------------------------
def _video(path: Path, first: Path, second: Path, seconds_each: int = 2, rate: int = 5) -> Path:
    import av
    import numpy as np

    frames = [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in (first, second)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for arr in frames:
            for _ in range(seconds_each * rate):
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_video_keyframes_and_worst_frame_verdict(w, photo_dir, tmp_path):
    video = _video(tmp_path / "clip.mp4", photo_dir / "coffee.png", photo_dir / "rocket.png")
    r = w.post("/api/v1/moderate", json={"items": [{"path": str(video)}], "policy": "default:weapons:0.3"})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert res["media_type"] == "video" and res["coactive_video_id"]
    times = [f["time"] for f in res["output"]]
    assert len(times) == 4 and times == sorted(times) and times[0] == 0
    weapons = [next(c["score"] for c in f["classes"] if c["class"] == "weapons") for f in res["output"]]
    assert max(weapons[:2]) < 0.3 <= max(weapons[2:]), weapons  # coffee first, then the rocket
    assert res["status"] == "rejected"  # the worst keyframe decides
    trig = next(c for c in res["categories"] if c["category"] == "weapons")
    assert trig["time"] >= 2 and trig["action"] == "reject"
    # the same video by id: same frames, same verdict; its keyframes show it in SQL
    vid = res["coactive_video_id"]
    by_id = w.post("/api/v1/moderate", json={"items": [{"coactive_video_id": vid}], "policy": "default:weapons:0.3"})
    assert by_id.json()["results"][0]["status"] == "rejected" and len(by_id.json()["results"][0]["output"]) == 4
    q = w.post("/api/v1/queries", json={
        "query": f"SELECT DISTINCT moderation_status FROM coactive_table_adv WHERE coactive_video_id = '{vid}'"})
    assert [r["data"]["moderation_status"] for r in poll(w, q.json()["query_id"])["results"]["data"]] == ["rejected"]


def test_the_api_queue_and_the_review_page_list_the_same_rows(w):
    """`GET /api/v1/moderation` and the page's `GET /web/api/queue` read one queue query."""
    seen = 0
    for status in (None, "approved", "rejected", "review"):
        for dataset in (None, "moderation", "photos"):
            params = {k: v for k, v in (("status", status), ("dataset", dataset)) if v}
            api = w.get("/api/v1/moderation", params=dict(params, limit=500)).json()
            page = w.get("/web/api/queue", params=dict(params, status=status or "any", limit=500)).json()
            assert api["total"] == page["total"], (status, dataset)
            keys = ("subject_id", "subject_kind", "status", "decided_by", "path", "dataset")
            assert [[i[k] for k in keys] for i in api["items"]] == [[i[k] for k in keys] for i in page["items"]]
            seen += api["total"]
    assert seen > 0
    kinds = {i["subject_kind"] for i in w.get("/api/v1/moderation", params={"limit": 500}).json()["items"]}
    assert kinds == {"asset", "video"}  # the video above is in both lists too


# -- cache ---------------------------------------------------------------------------------------
def test_cache_by_content_hash_stats_and_clear(w, photo_dir):
    data = _jpeg_copy(photo_dir / "horse.png", scale=0.5)
    first = _upload(w, "horse-a.jpg", data)["results"][0]
    second = _upload(w, "another-name.jpg", data)["results"][0]
    assert first["cached"] is False and second["cached"] is True
    assert second["coactive_image_id"] == first["coactive_image_id"] and second["status"] == first["status"]
    other_policy = _upload(w, "horse-a.jpg", data, policy="default:weapons:0.2")["results"][0]
    assert other_policy["cached"] is False  # the policy is part of the key
    stats = w.get("/api/v1/moderation/cache").json()
    assert stats["hits"] >= 1 and stats["live_entries"] >= 2 and stats["ttl_seconds"] == 86400
    assert w.delete("/api/v1/moderation/cache", params={"sha256": first["sha256"]}).json()["removed"] == 2
    assert _upload(w, "horse-a.jpg", data)["results"][0]["cached"] is False


# -- asynchronous --------------------------------------------------------------------------------
def test_async_callback_signed_retried_delivered_once(srv, w, photo_dir):
    with srv.client(srv.tokens["admin"]) as admin:
        secret = admin.get("/api/v1/moderation/webhook-secret").json()["secret"]
    with srv.client(srv.tokens["read"]) as r_only:
        assert r_only.get("/api/v1/moderation/webhook-secret").status_code == 403
    rx = Receiver(fail=2)
    try:
        items = [{"path": str(photo_dir / "rocket.png"), "id": "r1"}, {"path": str(photo_dir / "flower.jpg")}]
        r = w.post("/api/v1/moderate", json={"items": items, "callback_url": rx.url})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["status"] in ("queued", "running") and task["task_id"]
        deadline = time.monotonic() + 120
        while True:
            d = w.get(f"/api/v1/moderate/tasks/{task['task_id']}/deliveries").json()
            if d["delivery_status"] in ("delivered", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert d["delivery_status"] == "delivered", d
        assert [(a["attempt"], a["ok"]) for a in d["attempts"]] == [(1, False), (2, False), (3, True)]
        assert len(rx.requests) == 3  # failed twice, delivered on the third try, then nothing more
        for req in rx.requests:
            assert webhooks.verify(secret, req["body"], req["headers"][webhooks.SIGNATURE_HEADER])
        payload = json.loads(rx.requests[-1]["body"])
        assert payload["task_id"] == task["task_id"] and payload["status"] == "done"
        assert [x["id"] for x in payload["results"]] == ["r1", None]
        assert payload["results"][0]["status"] == "rejected"  # the rocket reads as a missile: weapons
        polled = w.get(f"/api/v1/moderate/tasks/{task['task_id']}").json()
        assert polled["status"] == "done" and polled["result"]["results"] == payload["results"]
        # redelivery on request: once more, same signed body, new delivery id
        again = w.post(f"/api/v1/moderate/tasks/{task['task_id']}/redeliver")
        assert again.status_code == 202
        deadline = time.monotonic() + 60
        while len(rx.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rx.requests) == 4 and rx.requests[3]["body"] == rx.requests[2]["body"]
        assert rx.requests[3]["headers"][webhooks.DELIVERY_HEADER] == again.json()["delivery_id"]
    finally:
        rx.close()
    many = [{"path": "/x.jpg"}] * 60
    r = w.post("/api/v1/moderate", json={"items": many, "callback_url": "ftp://nowhere"})
    assert r.status_code == 400 and "callback_url" in r.json()["detail"]
