"""Moderation as a library and from the CLI: taxonomy maths, verdict rules, decisions in the warehouse,
scores that equal the SQL concept columns, pass lists, and the `pixql moderate|queue|override|policy` commands."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_photos
from typer.testing import CliRunner

from concepts import policy as pol
from concepts import taxonomy
from concepts.moderation import Item, Moderator, evaluate


def test_parent_is_max_of_children_unless_own_head_is_higher():
    s = taxonomy.combine({"weapons": 0.2, "fight": 0.7, "graphic_violence": None})
    assert s["violence"] == 0.7 and s["weapons"] == 0.2 and s["graphic_violence"] is None
    assert taxonomy.combine({"violence": 0.9, "weapons": 0.2})["violence"] == 0.9
    assert taxonomy.combine({})["explicit_nudity"] is None  # unknown, not 0


def test_review_band_and_ignore():
    p = pol.parse_spec("p:weapons:0.5:review_band:0.1:alcohol:ignore")
    assert evaluate({"weapons": 0.51}, p)[0] == "rejected"
    status, trig = evaluate({"weapons": 0.45}, p)
    assert status == "review" and trig[0]["action"] == "review" and trig[0]["threshold"] == 0.5
    assert evaluate({"weapons": 0.39}, p) == ("approved", [])
    assert evaluate({"alcohol": 0.99}, p) == ("approved", [])  # ignored
    assert evaluate({"nudity": None}, p) == ("approved", [])  # no head: nothing to judge


@pytest.fixture(scope="module")
def mod_wh(tmp_path_factory, photo_dir):
    from warehouse import Warehouse

    base = tmp_path_factory.mktemp("mod-core")
    photos = copy_photos(photo_dir, base / "photos", names={"rocket", "coffee", "china", "chelsea"})
    wh = Warehouse.open(base / "wh")
    yield wh, photos
    wh.close()


def test_library_flow_decisions_and_sql_agree(mod_wh):
    wh, photos = mod_wh
    m = Moderator(wh)
    out = m.moderate([Item(path=str(photos / n)) for n in ("rocket.png", "coffee.png", "china.jpg")])
    rocket, coffee, china = out["results"]
    assert rocket["status"] == "rejected" and coffee["status"] == "approved" and china["status"] == "approved"
    assert {c["category"] for c in rocket["categories"]} == {"weapons", "violence"}
    # every built-in category is a concept, so its column in coactive_table holds the same number
    row = wh.sql("SELECT weapons_latest_prob, violence_latest_prob, alcohol_latest_prob FROM coactive_table "
                 "WHERE coactive_image_id = ?", [rocket["coactive_image_id"]]).fetchone()
    scores = {c["class"]: c["score"] for c in rocket["output"][0]["classes"]}
    assert scores["weapons"] == pytest.approx(row[0], abs=1e-4)
    assert scores["violence"] == pytest.approx(row[1], abs=1e-4) and scores["alcohol"] == pytest.approx(row[2], abs=1e-4)
    status = dict(wh.sql("SELECT coactive_image_id, moderation_status FROM coactive_table_adv").fetchall())
    assert status[rocket["coactive_image_id"]] == "rejected" and status[coffee["coactive_image_id"]] == "approved"
    n = wh.sql("SELECT count(*) FROM catalog.moderation_decisions WHERE decided_by = 'model'").fetchone()[0]
    assert n == 3
    # a higher threshold with a review band turns the same score into human review, policy recorded
    out = m.moderate([Item(coactive_image_id=rocket["coactive_image_id"])], "default:weapons:0.55:violence:0.55")
    assert out["results"][0]["status"] == "review"
    last = wh.sql("SELECT status, policy_spec FROM catalog.moderation_decisions ORDER BY seq DESC LIMIT 1").fetchone()
    assert last == ("review", "default:weapons:0.55:violence:0.55")


def test_pass_list_approves_look_alikes_and_override_still_wins(mod_wh):
    wh, photos = mod_wh
    m = Moderator(wh)
    rocket = m.moderate([Item(path=str(photos / "rocket.png"))], use_cache=False)["results"][0]
    assert rocket["model_status"] == "rejected"
    m.feedback(Item(coactive_image_id=rocket["coactive_image_id"]), "pass", comment="it's a space rocket")
    again = m.moderate([Item(coactive_image_id=rocket["coactive_image_id"])])["results"][0]
    assert again["model_status"] == "approved" and again["reasons"][0]["verdict"] == "pass"
    assert again["reasons"][0]["similar_to"] == rocket["coactive_image_id"]
    m.override(rocket["coactive_image_id"], "rejected", "policy changed", user="lead")
    final = m.moderate([Item(coactive_image_id=rocket["coactive_image_id"])])["results"][0]
    assert final["status"] == "rejected" and final["decided_by"] == "user" and final["model_status"] == "approved"
    assert m.remove_feedback(rocket["coactive_image_id"]) and not m.remove_feedback(rocket["coactive_image_id"])


def test_cli_policy_moderate_queue_override(tmp_path, photo_dir):
    from api.cli import app

    photos = copy_photos(photo_dir, tmp_path / "photos", names={"rocket", "coffee"})
    root = str(tmp_path / "wh")
    run = CliRunner().invoke

    r = run(app, ["policy", "create", "aws_rek:female_underwear:0.85:explicit_nudity:0.7:revealing_clothes:ignore",
                  "--root", root])
    assert r.exit_code == 0, r.output
    assert "policy aws_rek v1" in r.output
    r = run(app, ["policy", "create", "aws_rek:female_underwear:2", "--root", root])
    assert r.exit_code != 0 and "between 0 and 1" in r.output
    r = run(app, ["policy", "show", "aws_rek", "--root", root])
    shown = {line.split()[0]: line.split()[1] for line in r.output.splitlines()[2:]}
    assert r.exit_code == 0 and shown["revealing_clothes"] == "ignore" and shown["nudity"] == "0.7"
    assert shown["female_underwear"] == "0.85" and shown["weapons"] == "0.5"
    r = run(app, ["moderate", str(photos / "rocket.png"), str(photos / "coffee.png"), str(photos / "gone.png"),
                  "--policy", "aws_rek", "--root", root])
    assert r.exit_code == 0, r.output
    assert "rejected" in r.output and "weapons 0.51 >= 0.5" in r.output and "no such file" in r.output
    r = run(app, ["queue", "--status", "rejected", "--format", "json", "--root", root])
    q = json.loads(r.stdout)
    assert q["total"] == 1 and q["items"][0]["path"].endswith("rocket.png")
    rid = q["items"][0]["subject_id"]
    r = run(app, ["override", rid, "--status", "approved", "--reason", "space rocket", "--user", "ana", "--root", root])
    assert r.exit_code == 0 and "approved (by ana)" in r.output
    r = run(app, ["moderate", str(photos / "rocket.png"), "--no-cache", "--root", root])
    assert "approved" in r.output and "manual override by ana: space rocket (model says rejected)" in r.output
    r = run(app, ["queue", "--status", "rejected", "--format", "json", "--root", root])
    assert json.loads(r.stdout)["total"] == 0
    r = run(app, ["policy", "list", "--root", root])
    assert "default" in r.output and "aws_rek" in r.output


def test_an_asset_nothing_can_score_goes_to_review_not_approved(mod_wh, monkeypatch):
    wh, photos = mod_wh
    m = Moderator(wh)
    aid = m.moderate([Item(path=str(photos / "chelsea.png"))])["results"][0]["coactive_image_id"]
    # as for an asset embedded only with an encoder no category head reads
    monkeypatch.setattr(Moderator, "scores", lambda self, con, ids: {i: taxonomy.combine({}) for i in ids})
    res = m.moderate([Item(coactive_image_id=aid)])["results"][0]
    assert res["status"] == "review" and "unscored" in res["reasons"][0]
    assert res["output"][0]["classes"] == []


def test_cache_entries_expire(mod_wh):
    wh, photos = mod_wh
    m = Moderator(wh, cache_ttl_s=3600)
    m.clear_cache()
    item = Item(path=str(photos / "coffee.png"))
    assert m.moderate([item])["results"][0]["cached"] is False
    assert m.moderate([item])["results"][0]["cached"] is True
    with wh.write_lock:  # age the entry past its TTL instead of waiting for it
        wh.cursor().execute("UPDATE catalog.moderation_cache SET expires_dt = created_dt - INTERVAL 1 SECOND")
    assert m.moderate([item])["results"][0]["cached"] is False
    stats = m.cache_stats()
    assert stats["hits"] == 1 and stats["misses"] == 2 and stats["live_entries"] == 1  # recomputed, stored anew
    with wh.write_lock:
        wh.cursor().execute("UPDATE catalog.moderation_cache SET expires_dt = created_dt - INTERVAL 1 SECOND")
    assert m.cache_stats()["expired_entries"] == 1
    assert m.clear_cache(expired_only=True) == 1 and m.cache_stats()["entries"] == 0


def test_feedback_categories_train_new_concept_versions(mod_wh):
    """block = positive, pass = negative: with 2 + 2 the built-in `weapons` gets a labeled version and the
    empty `hate_symbols` becomes a concept of its own."""
    from concepts import registry

    wh, photos = mod_wh
    m = Moderator(wh)
    m.moderate([Item(path=str(photos / n)) for n in ("rocket.png", "china.jpg", "coffee.png", "chelsea.png")])
    v0 = registry.get(wh, "weapons").latest_version
    assert not registry.exists(wh, "hate_symbols") and "hate_symbols" in m.unscored()
    outs = [m.feedback(Item(path=str(photos / name)), verdict, categories=["weapons", "hate_symbols"], user="ana")
            for name, verdict in (("rocket.png", "block"), ("china.jpg", "block"),
                                  ("coffee.png", "pass"), ("chelsea.png", "pass"))]
    assert all(not lab["trained"] for o in outs[:3] for lab in o["labels"])
    last = {lab["category"]: lab for lab in outs[3]["labels"]}
    assert last["weapons"]["trained"] and last["weapons"]["concept_version"] == v0 + 1
    assert last["hate_symbols"]["trained"] and last["hate_symbols"]["concept_version"] == 1
    assert registry.get(wh, "weapons").positive_labels == 2 and registry.get(wh, "weapons").negative_labels == 2
    assert "hate_symbols" not in m.unscored()
    res = m.moderate([Item(path=str(photos / "rocket.png"))], use_cache=False)["results"][0]
    assert any(c["class"] == "hate_symbols" for c in res["output"][0]["classes"])


def test_url_items_are_fetched_and_kept_by_content_hash(mod_wh, photo_dir):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    wh, _ = mod_wh
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(photo_dir))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        # The moderator downloads nothing itself: the caller hands it a fetcher (the server, its intake's).
        from api.intake import AddressFilter, Downloader

        fetch = Downloader(AddressFilter(networks=["127.0.0.0/8"]), max_bytes=50 << 20).fetch
        out = Moderator(wh, fetch=fetch).moderate([Item(url=f"{base}/horse.png", id="h"),
                                                   Item(url=f"{base}/missing.png"), Item(url="file:///etc/passwd")])
    finally:
        server.shutdown()
        server.server_close()
    horse, missing, local = out["results"]
    assert horse["status"] in ("approved", "review", "rejected") and horse["id"] == "h"
    stored = Path(horse["path"])
    assert stored.parent.parent.name == "moderation" and stored.name.startswith(horse["sha256"])
    assert stored.read_bytes() == (photo_dir / "horse.png").read_bytes()
    assert missing["status"] == "error" and "HTTP 404" in missing["error"]
    assert local["status"] == "error" and "http(s)" in local["error"]


def test_pending_until_the_asynchronous_run_decides(mod_wh):
    wh, photos = mod_wh
    m = Moderator(wh)
    from PIL import Image

    fresh = photos.parent / "crop.png"  # an asset no earlier test has a manual decision on
    Image.open(photos / "china.jpg").crop((0, 0, 200, 160)).save(fresh)
    aid = m.moderate([Item(path=str(fresh))])["results"][0]["coactive_image_id"]
    assert m.mark_pending([Item(coactive_image_id=aid), Item(path="not-yet.jpg")], task_id="t-1") == 1
    col = "SELECT moderation_status FROM coactive_table_adv WHERE coactive_image_id = ?"
    assert wh.sql(col, [aid]).fetchone()[0] == "pending"
    assert aid in [x["subject_id"] for x in m.queue("pending")["items"]]
    decided = m.moderate([Item(coactive_image_id=aid)], task_id="t-1")["results"][0]["status"]
    assert decided != "pending" and wh.sql(col, [aid]).fetchone()[0] == decided
    assert aid not in [x["subject_id"] for x in m.queue("pending")["items"]]
