"""The Coactive tutorial against `pixql serve`: ingest over HTTP, classify five images, define
concepts, then the tutorial's three SQL queries with its own polling loop (POST, then GET until Complete)."""
from __future__ import annotations

import time
from datetime import datetime

import pytest

# The tutorial's concepts, as text concepts on the default encoder (prompts are ImageNet class names).
TUTORIAL_CONCEPTS = {
    "fight": ["punching bag"],
    "syringe": ["syringe"],
    "handgun": ["revolver", "holster"],
    "rifle": ["rifle", "assault rifle"],
    "shotgun": ["rifle"],
    "blood": ["Band Aid", "stretcher"],
    "brassiere": ["brassiere"],
}


def run_visual_sql_query(http, query: str) -> tuple[dict, list[dict]]:
    """The tutorial's `run_visual_sql_query`, with the SDK calls replaced by plain HTTP."""
    api_response = http.post("/api/v1/queries", json={"query": query})
    assert api_response.status_code == 201, api_response.text
    api_response = api_response.json()
    query_id = api_response["query_id"]
    status = api_response["status"]
    assert status == "Queued"
    deadline = time.monotonic() + 60
    while status != "Complete":
        assert status in ("Queued", "Running"), api_response
        assert time.monotonic() < deadline
        time.sleep(0.1)  # the tutorial sleeps 5 s
        query_response = http.get(f"/api/v1/queries/{query_id}").json()
        status = query_response["status"]
        api_response = query_response
    run_time = datetime.fromisoformat(query_response["end_dt"]) - datetime.fromisoformat(query_response["created_dt"])
    assert run_time.total_seconds() >= 0
    return query_response, [row["data"] for row in query_response["results"]["data"]]


@pytest.fixture(scope="module")
def tutorial(api_server, photo_dir):
    with api_server.client(api_server.tokens["write"]) as http:
        for name, prompts in TUTORIAL_CONCEPTS.items():
            r = http.post("/api/v1/concepts", json={"name": name, "prompts": prompts,
                                                    "description": f"tutorial concept {name}"})
            assert r.status_code == 201, r.text
        yield http


def test_ingested_over_http(api_server, photo_dir):
    job = api_server.ingest_job
    n_files = len(list(photo_dir.iterdir()))
    assert job["status"] == "Complete"
    assert job["total_assets"] == job["processed_assets"] == n_files
    assert job["added_assets"] == n_files and job["errored_assets"] == 0
    with api_server.client(api_server.tokens["read"]) as http:
        ds = {d["dataset_id"]: d for d in http.get("/api/v1/datasets").json()["data"]}
        assert ds["photos"]["asset_count"] == n_files
        assert "coactive_table" in {t["name"] for t in ds["photos"]["tables"]}


def test_classify_five_images(tutorial, photo_dir):
    images = [str(photo_dir / n) for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.png", "camera.png")]
    r = tutorial.post("/api/v1/classify", json={"paths": images, "concepts": ["fight", "syringe", "handgun"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["path"] for x in results] == images
    for x in results:
        assert x["error"] is None and x["coactive_image_id"]  # already ingested: same id as in the tables
        assert [c["name"] for c in x["concepts"]] == ["fight", "handgun", "syringe"]
        for c in x["concepts"]:
            assert 0.0 <= c["score"] <= 1.0 and c["threshold"] == 0.5
            assert c["positive"] == (c["score"] >= c["threshold"])
        assert x["classification"] == [c["name"] for c in x["concepts"] if c["positive"]]
    # The same numbers as the SQL columns for the same assets.
    ids = {x["coactive_image_id"]: x for x in results}
    id_list = ", ".join(f"'{i}'" for i in ids)
    _, rows = run_visual_sql_query(tutorial, "SELECT coactive_image_id, fight_latest_prob, handgun_latest_prob, "
                                             f"syringe_latest_prob, handgun FROM coactive_table WHERE coactive_image_id IN ({id_list})")
    assert len(rows) == 5
    for row in rows:
        scores = {c["name"]: c for c in ids[row["coactive_image_id"]]["concepts"]}
        for name in ("fight", "handgun", "syringe"):
            assert row[f"{name}_latest_prob"] == pytest.approx(scores[name]["score"], abs=1e-4)
        assert row["handgun"] == int(scores["handgun"]["positive"])
    # A lower threshold in the request changes `positive`, not the score.
    r = tutorial.post("/api/v1/classify", json={"paths": images[:1], "concepts": ["handgun"], "threshold": 0.0})
    only = r.json()["results"][0]["concepts"][0]
    assert only["threshold"] == 0.0 and only["positive"] is True


def test_tutorial_queries(tutorial):
    # 3.2.1 Find additional examples
    resp, rows = run_visual_sql_query(tutorial, """
        SELECT coactive_image_id, path
        FROM coactive_table
        WHERE fight = 1
        LIMIT 10""")
    assert resp["results"]["columns"] == ["coactive_image_id", "path"]
    assert resp["total_row_count"] == len(rows) <= 10
    _, truth = run_visual_sql_query(tutorial, "SELECT coactive_image_id FROM coactive_table "
                                              "WHERE fight_latest_prob >= 0.5")
    assert {r["coactive_image_id"] for r in rows} <= {r["coactive_image_id"] for r in truth}

    # 3.2.2 Count the number of occurrences
    resp, rows = run_visual_sql_query(tutorial, """
        SELECT count(coactive_image_id) as weapon_count
        FROM coactive_table
        WHERE
            handgun = 1
            OR rifle = 1
            OR shotgun = 1""")
    _, probs = run_visual_sql_query(tutorial, "SELECT handgun_latest_prob h, rifle_latest_prob r, "
                                              "shotgun_latest_prob s FROM coactive_table")
    expected = sum(1 for p in probs if max(p["h"], p["r"], p["s"]) >= 0.5)
    assert rows == [{"weapon_count": expected}]

    # 3.2.3 Define custom classification metrics
    resp, rows = run_visual_sql_query(tutorial, """
        SELECT
            coactive_image_id,
            path,
            GREATEST(
                blood_latest_prob,
                brassiere_latest_prob,
                syringe_latest_prob) as problematic_score
        FROM coactive_table_adv
        ORDER BY problematic_score DESC
        LIMIT 20""")
    assert resp["status"] == "Complete" and len(rows) == 20
    scores = [r["problematic_score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    _, every = run_visual_sql_query(tutorial, "SELECT coactive_image_id, GREATEST(blood_latest_prob, "
                                              "brassiere_latest_prob, syringe_latest_prob) AS g FROM coactive_table")
    top = sorted((r["g"] for r in every), reverse=True)[:20]
    assert scores == pytest.approx(top, abs=1e-6)


def test_concept_lifecycle(tutorial, photo_dir):
    space_pos = [str(photo_dir / n) for n in ("rocket.png", "hubble_deep_field.png", "moon.png")]
    space_neg = [str(photo_dir / n) for n in ("coffee.png", "chelsea.png", "flower.jpg")]
    r = tutorial.post("/api/v1/concepts", json={"name": "space", "positive": space_pos[:2], "negative": space_neg[:2]})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["latest_version"] == 1 and (c["positive_labels"], c["negative_labels"]) == (2, 2)
    assert tutorial.post("/api/v1/concepts", json={"name": "space"}).status_code == 400  # exists
    # Label by path and by id; an empty label removes one.
    moon_id = run_visual_sql_query(tutorial, "SELECT coactive_image_id FROM coactive_table "
                                             "WHERE path LIKE '%moon.png'")[1][0]["coactive_image_id"]
    r = tutorial.patch("/api/v1/concepts/space/labels",
                       json={"labels": {moon_id: "positive", space_neg[2]: "negative", space_neg[0]: ""}})
    assert r.status_code == 200, r.text
    assert r.json()["latest_version"] == 2 and (r.json()["positive_labels"], r.json()["negative_labels"]) == (3, 2)
    labels = {x["path"]: x["label"] for x in tutorial.get("/api/v1/concepts/space/labels").json()}
    assert labels[str(photo_dir / "moon.png")] == "positive" and str(photo_dir / "coffee.png") not in labels
    r = tutorial.patch("/api/v1/concepts/space", json={"threshold": 0.7})
    assert r.json()["threshold"] == 0.7 and r.json()["latest_version"] == 3
    versions = tutorial.get("/api/v1/concepts/space/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3] and versions[-1]["threshold"] == 0.7
    assert tutorial.get("/api/v1/concepts/space/versions/2").json()["version"] == 2
    cands = tutorial.get("/api/v1/concepts/space/candidates", params={"n": 3}).json()
    assert len(cands) == 3 and not ({x["path"] for x in cands} & set(labels))
    est = tutorial.get("/api/v1/concepts/space/estimate").json()
    assert est["concept"] == "space" and est["scored"] > 0 and est["ci95_low"] <= est["expected_positives"] <= est["ci95_high"]
    _, rows = run_visual_sql_query(tutorial, "SELECT path, space, space_latest_prob FROM coactive_table ORDER BY path")
    assert all(r["space"] == int(r["space_latest_prob"] >= 0.7) for r in rows)
    # Status codes.
    assert tutorial.get("/api/v1/concepts/nope").status_code == 404
    assert tutorial.patch("/api/v1/concepts/nope/labels", json={"positive": [moon_id]}).status_code == 404
    assert tutorial.post("/api/v1/concepts", json={"name": "Bad Name!"}).status_code == 400
    assert tutorial.patch("/api/v1/concepts/space", json={"threshold": 2}).status_code == 422
    r = tutorial.patch("/api/v1/concepts/space/labels", json={"positive": ["/no/such/file.png"]})
    assert r.status_code == 404
    assert tutorial.delete("/api/v1/concepts/space").status_code == 204
    assert tutorial.get("/api/v1/concepts/space").status_code == 404


def test_classify_urls_uploads_and_limits(tutorial, photo_dir, tmp_path):
    import functools
    import http.server
    import shutil
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photo_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_port}"
        urls = [f"{base}/rocket.png", f"{base}/missing.png", "ftp://example.com/x.jpg"]
        r = tutorial.post("/api/v1/classify", json={"urls": urls, "concepts": ["handgun"]})
        assert r.status_code == 200, r.text
        by_url = {x["url"]: x for x in r.json()["results"]}
        assert by_url[urls[0]]["error"] is None and by_url[urls[0]]["concepts"][0]["name"] == "handgun"
        assert "HTTP 404" in by_url[urls[1]]["error"] and "scheme" in by_url[urls[2]]["error"]
    finally:
        httpd.shutdown()
    with open(photo_dir / "chelsea.png", "rb") as fh:
        r = tutorial.post("/api/v1/classify", files=[("files", ("cat.png", fh.read()))], data={"concepts": "fight,handgun"})
    assert r.status_code == 200
    only = r.json()["results"][0]
    assert only["path"] == "cat.png" and [c["name"] for c in only["concepts"]] == ["fight", "handgun"]
    for i in range(51):
        shutil.copy(photo_dir / "coins.png", tmp_path / f"c{i}.png")
    r = tutorial.post("/api/v1/classify", json={"paths": [str(tmp_path)]})
    assert r.status_code == 413 and "50" in r.json()["detail"]
    assert tutorial.post("/api/v1/classify", json={}).status_code == 400
    assert tutorial.post("/api/v1/classify", json={"paths": ["/x"], "bogus": 1}).status_code == 422
