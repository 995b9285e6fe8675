"""The official Coactive SDK (`coactive==1.0.27`) against a real `pixql serve`: query, classification,
dataset (all but deletes), asset, dynamic_tags and credentials, method by method.

Everything the tests assert goes through the SDK's own client in its own environment
(tests/coactive_sdk.py), so its request builders and its pydantic models are the contract.
SDK models' `.dict()` uses the camelCase aliases, so the tests read camelCase keys.
The server's warehouse holds the bundled photos as dataset `photos`; `photo_warehouse`
holds the same files under the same dataset name (content-derived ids), so the SQL the SDK
runs can be checked against `Warehouse.sql` on it.  Concepts and search through the SDK
are tests/test_coactive_sdk_concepts.py.
"""
from __future__ import annotations

import csv
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from apiserver import start_photo_server
from coactive_sdk import SdkError, SdkSession

SQL = "SELECT coactive_image_id, path, width, height FROM coactive_table ORDER BY path"


@pytest.fixture(scope="module")
def server(tmp_path_factory, photo_dir):
    # A loaded machine must not turn a query into a time-limit Error (start_photo_server's limit is 3 s).
    srv = start_photo_server(tmp_path_factory.mktemp("coactive"), photo_dir, "--allow-url-network", "127.0.0.0/8",
                             "--time-limit", "30")
    # One text concept to classify with, made through PixQL's own API (concepts through the SDK:
    # test_coactive_sdk_concepts.py).
    with srv.client(srv.tokens["write"]) as http_:
        r = http_.post("/api/v1/concepts", json={"name": "cat", "prompts": ["a photo of a cat"]})
        assert r.status_code == 201, r.text
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sdk(server):
    return SdkSession(server.url, server.tokens["write"])


@pytest.fixture(scope="module")
def image_origin(photo_dir):
    """An HTTP server on 127.0.0.1 serving the bundled photos (the classify and add-by-URL source)."""
    directory = str(photo_dir)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()


def _json(v):
    """A JSON column as a query row carries it (text)."""
    return json.loads(v) if isinstance(v, str) else v


# -- query ----------------------------------------------------------------------------------------
def test_execute_get_rows_equal_warehouse_sql(sdk, photo_warehouse):
    expected = [dict(zip(["coactive_image_id", "path", "width", "height"], r)) for r in photo_warehouse.sql(SQL).fetchall()]
    out = sdk.call("""
        ds = client.dataset.list().data
        dataset_id = [d.dataset_id for d in ds if d.name == "photos"][0]
        q = client.query.execute(query=params["sql"], dataset_id=dataset_id)
        first = q.dict()
        while True:
            got = client.query.get(q.query_id)
            if got.status.value in ("Complete", "Error", "Stopped"):
                break
        page2 = client.query.get(q.query_id, offset=2, limit=3)
        bare = client.query.get(q.query_id, exclude_results=True)
        if got.status.value != "Complete":
            raise RuntimeError(f"query ended {got.status.value}: {got.result and got.result.error}")
        result = {"dataset_id": dataset_id, "first": jsonable(first), "got": jsonable(got.dict()),
                  "rows": [r.data for r in got.result.data], "total": got.result.meta.page.total,
                  "page2": [r.row for r in page2.result.data], "page2_meta": jsonable(page2.result.meta.page.dict()),
                  "bare": bare.result}
    """, sql=SQL)
    assert out["got"]["status"] == "Complete", out["got"]
    assert out["rows"] == expected and len(expected) > 3
    assert out["total"] == len(expected)
    assert out["page2"] == [2, 3, 4]
    assert out["page2_meta"]["offset"] == 2 and out["page2_meta"]["limit"] == 3
    assert out["page2_meta"]["currentPage"] == 1 and out["page2_meta"]["lastPage"] == -(-len(expected) // 3)
    assert out["bare"] is None
    first = out["first"]
    assert first["datasetId"] == out["dataset_id"] and first["status"] == "Queued"
    assert first["createdUserId"] and first["updatedUserId"] == first["createdUserId"]
    assert out["got"]["endDt"] >= out["got"]["startDt"] >= out["got"]["createdDt"]
    assert out["got"]["isActive"] is False


def test_tutorial_run_visual_sql_query_loop(sdk, photo_warehouse):
    """The tutorial's helper with only the SDK's method names changed (execute/get, `.result.data`)."""
    frame = sdk.call("""
        import time
        import pandas as pd

        def run_visual_sql_query(query: str, dataset_id: str) -> pd.DataFrame:
            api_response = client.query.execute(query=query, dataset_id=dataset_id)
            query_id = api_response.query_id
            status = api_response.status
            while status != 'Complete':
                time.sleep(0.2)
                query_response = client.query.get(query_id)
                status = query_response.status
            run_time = query_response.end_dt - query_response.created_dt
            print(f'Query run time (hrs:min:sec) = {run_time}')
            return pd.DataFrame([row.data for row in query_response.result.data])

        ds = [d for d in client.dataset.list().data if d.name == "photos"][0]
        df = run_visual_sql_query("SELECT count(coactive_image_id) AS n FROM coactive_table", ds.dataset_id)
        result = {"columns": list(df.columns), "n": int(df["n"][0])}
    """)
    assert frame == {"columns": ["n"], "n": photo_warehouse.sql("SELECT count(*) FROM coactive_table").fetchone()[0]}


def test_list_stop_delete_and_download_url(sdk, server):
    out = sdk.call("""
        import httpx
        ds = [d for d in client.dataset.list().data if d.name == "photos"][0]
        done = client.query.execute(query="SELECT path FROM coactive_table ORDER BY path LIMIT 2",
                                    dataset_id=ds.dataset_id)
        while client.query.get(done.query_id).status.value != "Complete":
            pass
        url = client.query.get_results_download_url(done.query_id)
        token = params["token"]
        csv_text = httpx.get(url.download_url, headers={"Authorization": f"Bearer {token}"}).text
        no_token = httpx.get(url.download_url).status_code
        long = client.query.execute(query=params["long"], dataset_id=ds.dataset_id)
        stopped = client.query.stop(long.query_id)
        page = client.query.list(limit=1)
        picked = client.query.list(ids=[done.query_id, "no-such-query"])
        deleted = client.query.delete(done.query_id)
        try:
            client.query.get(done.query_id)
            gone = None
        except ApiError as e:
            gone = [type(e).__name__, e.status_code]
        result = {"url": url.download_url, "url_id": url.query_id, "csv": csv_text, "no_token": no_token,
                  "stopped": stopped.status.value, "page_total": page.meta.page.total, "page_len": len(page.data),
                  "next": page.meta.links.next, "picked": [q.query_id for q in picked.data], "deleted": deleted,
                  "gone": gone, "done": done.query_id}
    """, token=server.tokens["write"], long="SELECT sum(a.x * b.y) AS s FROM (SELECT unnest(range(100000)) AS x) a, "
                                               "(SELECT unnest(range(100000)) AS y) b")
    assert out["url"] == f"{server.url}/api/v1/queries/{out['done']}/csv" and out["url_id"] == out["done"]
    rows = list(csv.reader(out["csv"].splitlines()))
    assert rows[0] == ["path"] and len(rows) == 3 and rows[1][0] < rows[2][0]
    assert out["no_token"] == 401
    assert out["stopped"] in ("Stopping", "Stopped")
    assert out["page_len"] == 1 and out["page_total"] >= 2 and "offset=1" in out["next"]
    assert out["picked"] == [out["done"]]
    assert out["deleted"]["deleted"] is True
    assert out["gone"] == ["NotFoundError", 404]
    assert not (server.root / "results" / f"{out['done']}.parquet").exists()


def test_v0_routes_serve_the_tutorials_older_sdk_shapes(server):
    """The older generated SDK called /api/v0/queries with snake_case fields: the same handlers answer."""
    with server.client(server.tokens["read"]) as http_:
        r = http_.post("/api/v0/queries", json={"query": "SELECT 1 AS one", "embedding_id": "imagenet-lite0"})
        assert r.status_code == 201, r.text
        qid = r.json()["query_id"]
        deadline = time.monotonic() + 60
        while (body := http_.get(f"/api/v0/queries/{qid}").json())["status"] != "Complete":
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        assert [row["data"] for row in body["results"]["data"]] == [{"one": 1}]
        assert body["query_id"] == qid and body["created_dt"].endswith("Z")


def test_errors_are_the_sdks_not_found_and_unprocessable(sdk):
    out = sdk.call("""
        from coactive.errors.not_found_error import NotFoundError
        from coactive.errors.unprocessable_entity_error import UnprocessableEntityError
        seen = {}
        for name, f in [("query", lambda: client.query.get("no-such-id")),
                        ("dataset", lambda: client.dataset.get("no-such-dataset")),
                        ("images", lambda: client.dataset.get_images("no-such-dataset")),
                        ("execute_unknown_dataset", lambda: client.query.execute(query="SELECT 1", dataset_id="nope"))]:
            try:
                f()
                seen[name] = None
            except NotFoundError as e:
                seen[name] = ["NotFoundError", e.body["detail"]]
            except ApiError as e:
                seen[name] = [type(e).__name__, e.status_code, e.body["detail"]]
        try:
            client.query.execute(query="", dataset_id="photos")
        except UnprocessableEntityError as e:
            seen["empty_sql"] = ["UnprocessableEntityError", [d.loc for d in e.body.detail]]
        result = seen
    """)
    assert out["query"] == ["NotFoundError", "unknown query id 'no-such-id'"]
    assert out["dataset"] == ["NotFoundError", "unknown dataset 'no-such-dataset'"]
    assert out["images"][0] == "NotFoundError"
    # An unknown dataset in a query stays the 400 PixQL's own clients get (tests/test_api_queries.py).
    assert out["execute_unknown_dataset"] == ["ApiError", 400, "unknown dataset_id 'nope'"]
    assert out["empty_sql"] == ["UnprocessableEntityError", [["body", "query"]]]


# -- classification --------------------------------------------------------------------------------
def test_classify_image_at_url(sdk, image_origin):
    out = sdk.call("""
        c = client.classification.classify_image_at_url(url=params["cat"])
        other = client.classification.classify_image_at_url(url=params["rocket"], concept_ids=["cat"], threshold=0.99)
        try:
            client.classification.classify_image_at_url(url="ftp://example.com/a.png")
            bad = None
        except ApiError as e:
            bad = [e.status_code, e.body["detail"]]
        result = {"cat": jsonable(c.dict()), "rocket": jsonable(other.dict()), "bad": bad}
    """, cat=f"{image_origin.url}/chelsea.png", rocket=f"{image_origin.url}/rocket.png")
    cat = {s["conceptName"]: s for s in out["cat"]["scores"]}
    rocket = {s["conceptName"]: s for s in out["rocket"]["scores"]}
    assert "cat" in cat and set(rocket) == {"cat"}
    for s in list(cat.values()) + list(rocket.values()):
        assert 0 <= s["score"] <= 1 and s["conceptId"]
        assert s["positive"] == (s["score"] >= s["threshold"])
    assert cat["cat"]["score"] > rocket["cat"]["score"]  # chelsea is the cat photo
    assert rocket["cat"]["threshold"] == 0.99
    assert out["bad"][0] == 400 and "http(s)" in out["bad"][1]


# -- datasets ------------------------------------------------------------------------------------------
def test_dataset_create_get_update_list(sdk):
    out = sdk.call("""
        made = client.dataset.create(name="sdk_made", description="from the SDK")
        by_id = client.dataset.get(made.dataset_id)
        by_name = client.dataset.get("sdk_made")
        upd = client.dataset.update(made.dataset_id, description="changed")
        listed = client.dataset.list(limit=100)
        try:
            client.dataset.update(made.dataset_id, name="renamed")
            rename = None
        except ApiError as e:
            rename = [type(e).__name__, e.status_code]
        try:
            client.dataset.create(name="sdk_made")
            again = None
        except ApiError as e:
            again = [type(e).__name__, e.status_code]
        result = {"made": jsonable(made.dict()), "by_id": by_id.dataset_id, "by_name": by_name.dataset_id,
                  "upd": jsonable(upd.dict()), "names": [d.name for d in listed.data],
                  "total": listed.meta.page.total, "rename": rename, "again": again,
                  "photos": jsonable([d.dict() for d in listed.data if d.name == "photos"][0])}
    """)
    made = out["made"]
    assert made["name"] == "sdk_made" and made["description"] == "from the SDK" and made["status"] == "Incomplete"
    assert len(made["datasetId"]) == 36 and out["by_id"] == out["by_name"] == made["datasetId"]
    assert made["imageCount"] == made["videoCount"] == 0
    assert out["upd"]["description"] == "changed" and out["upd"]["updatedDt"] >= made["updatedDt"]
    assert {"photos", "sdk_made"} <= set(out["names"]) and out["total"] == len(out["names"])
    assert out["rename"] == ["BadRequestError", 400]
    assert out["again"] == ["BadRequestError", 400]
    assert out["photos"]["status"] == "Ready" and out["photos"]["imageCount"] > 0


def test_add_assets_by_path_and_url_then_images_and_metadata(sdk, server, photo_dir, image_origin, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    for n in ("coffee.png", "astronaut.png"):
        shutil.copy(photo_dir / n, local / n)
    manifest_dir = tmp_path / "manifest"
    manifest_dir.mkdir()
    shutil.copy(photo_dir / "flower.jpg", manifest_dir / "flower.jpg")
    (manifest_dir / "list.csv").write_text("path,source\nflower.jpg,manifest\n")
    out = sdk.call("""
        import time
        from coactive.types.add_image_request import AddImageRequest
        d = client.dataset.create(name="added")
        conf = client.dataset.add_assets(d.dataset_id, images=[
            AddImageRequest(path=params["coffee"], id="client-1", metadata={"source": "disk"}),
            AddImageRequest(path=params["url"]),
        ], data_path=params["dir"], csv_path=params["csv"])
        result = {"conf": jsonable(conf.dict()), "dataset_id": d.dataset_id}
    """, coffee=str(local / "coffee.png"), url=f"{image_origin.url}/rocket.png", dir=str(local),
                   csv=str(manifest_dir / "list.csv"))
    conf = out["conf"]
    job_id = conf["requestGroupId"]
    with server.client(server.tokens["read"]) as http_:
        deadline = time.monotonic() + 180
        while (job := http_.get(f"/api/v1/ingestion/{job_id}").json())["status"] not in ("Complete", "Error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    assert job["status"] == "Complete" and job["added_assets"] == 4, job
    out2 = sdk.call("""
        from coactive.types.update_image_metadata_request import UpdateImageMetadataRequest
        imgs = client.dataset.get_images(params["ds"])
        d = client.dataset.get(params["ds"])
        target = [i for i in imgs.data if i.path.endswith("astronaut.png")][0]
        upd = client.dataset.update_asset_metadata(params["ds"], images=[
            UpdateImageMetadataRequest(coactive_image_id=target.coactive_image_id, metadata={"reviewed": True}),
            UpdateImageMetadataRequest(path=params["coffee"], metadata={"source": "disk", "n": 2})])
        detail = client.asset.get_image_detail(coactive_image_id=target.coactive_image_id)
        by_path = client.asset.get_image_detail(dataset_id=params["ds"], path=params["coffee"])
        q = client.query.execute(query="SELECT path, metadata FROM coactive_table_adv ORDER BY path",
                                 dataset_id=params["ds"])
        while client.query.get(q.query_id).status.value not in ("Complete", "Error"):
            pass
        rows = [r.data for r in client.query.get(q.query_id).result.data]
        result = {"images": jsonable([i.dict() for i in imgs.data]), "count": d.image_count,
                  "upd": jsonable(upd.dict()), "rows": rows, "detail": jsonable(detail.dict()),
                  "by_path": by_path.coactive_image_id, "videos": client.dataset.get_videos(params["ds"]).meta.page.total}
    """, ds=out["dataset_id"], coffee=str(local / "coffee.png"))
    images = {Path(i["path"]).name.split("-", 1)[-1]: i for i in out2["images"]}
    assert set(images) == {"coffee.png", "astronaut.png", "rocket.png", "flower.jpg"} and out2["count"] == 4
    assert images["flower.jpg"]["metadata"] == {"source": "manifest"}  # csv_path: the other columns are metadata
    added = {i["path"]: i for i in conf["images"]}
    # The ids the add answered with are the ids the job committed.
    assert {i["coactiveImageId"] for i in conf["images"]} <= {i["coactiveImageId"] for i in out2["images"]}
    coffee = images["coffee.png"]
    assert coffee["id"] == "client-1" and coffee["metadata"] == {"source": "disk"}
    assert added[str(local / "coffee.png")]["coactiveImageId"] == coffee["coactiveImageId"]
    rocket = images["rocket.png"]
    assert rocket["path"].startswith(str(server.root / "uploads"))  # fetched through the intake
    assert len(out2["upd"]["images"]) == 2
    md = {Path(r["path"]).name: _json(r["metadata"]) for r in out2["rows"]}
    assert md["astronaut.png"] == {"reviewed": True} and md["coffee.png"] == {"source": "disk", "n": 2}
    assert out2["detail"]["coactiveImageId"] == images["astronaut.png"]["coactiveImageId"]
    assert out2["detail"]["metadata"] == {"reviewed": True}
    assert out2["by_path"] == coffee["coactiveImageId"]
    assert out2["videos"] == 0


def test_add_video_then_video_keyframe_details_and_metadata(sdk, server, tmp_path):
    from videogen import make_video

    video = make_video(tmp_path / "clip.mp4", seconds=3, rate=10, width=160, height=120)
    out = sdk.call("""
        from coactive.types.add_video_request import AddVideoRequest
        d = client.dataset.create(name="clips")
        conf = client.dataset.add_assets(d.dataset_id, videos=[AddVideoRequest(path=params["video"],
                                                                               metadata={"show": "a"})])
        result = {"conf": jsonable(conf.dict()), "ds": d.dataset_id}
    """, video=str(video))
    job_id = out["conf"]["requestGroupId"]
    with server.client(server.tokens["read"]) as http_:
        deadline = time.monotonic() + 180
        while (job := http_.get(f"/api/v1/ingestion/{job_id}").json())["status"] not in ("Complete", "Error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "Complete" and job["added_assets"] >= 2, job
    got = sdk.call("""
        from coactive.types.update_video_metadata_request import UpdateVideoMetadataRequest
        vids = client.dataset.get_videos(params["ds"])
        v = vids.data[0]
        by_path = client.asset.get_video_detail(path=params["video"])
        client.dataset.update_asset_metadata(params["ds"], videos=[
            UpdateVideoMetadataRequest(coactive_video_id=v.coactive_video_id, metadata={"show": "b"})])
        q = client.query.execute(query="SELECT coactive_image_id, keyframe_time_ms, metadata FROM coactive_table_adv "
                                       "ORDER BY keyframe_index", dataset_id=params["ds"])
        while client.query.get(q.query_id).status.value not in ("Complete", "Error"):
            pass
        rows = [r.data for r in client.query.get(q.query_id).result.data]
        kf = client.asset.get_image_detail(coactive_image_id=rows[1]["coactive_image_id"])
        result = {"videos": jsonable([x.dict() for x in vids.data]), "by_path": by_path.coactive_video_id,
                  "rows": rows, "kf": jsonable(kf.dict()), "kf_type": type(kf).__name__,
                  "images": client.dataset.get_images(params["ds"]).meta.page.total}
    """, ds=out["ds"], video=str(video))
    [v] = got["videos"]
    assert v["coactiveVideoId"] == out["conf"]["videos"][0]["coactiveVideoId"]  # the id the add answered with
    assert v["metadata"] == {"show": "a"} and v["path"] == str(video.resolve())
    assert got["by_path"] == v["coactiveVideoId"]
    assert len(got["rows"]) >= 2 and got["images"] == 0  # keyframes are not the dataset's images
    assert all(_json(r["metadata"]) == {"show": "b"} for r in got["rows"])  # a video's metadata, on its keyframes
    kf = got["kf"]
    assert got["kf_type"] == "Keyframe" and kf["video"]["coactiveVideoId"] == v["coactiveVideoId"]
    assert kf["timestamp"] == got["rows"][1]["keyframe_time_ms"] == kf["shot"]["startTimeMs"]
    assert kf["shot"]["endTimeMs"] > kf["shot"]["startTimeMs"]


def test_add_assets_refuses_bad_input(sdk, tmp_path):
    out = sdk.call("""
        from coactive.types.add_image_request import AddImageRequest
        seen = {}
        for name, kw in [("missing", {"images": [AddImageRequest(path=params["missing"])]}),
                         ("nothing", {})]:
            try:
                client.dataset.add_assets("photos", **kw)
                seen[name] = None
            except ApiError as e:
                seen[name] = [type(e).__name__, e.status_code]
        try:
            client.dataset.add_assets("no-such-dataset", data_path=params["dir"])
        except ApiError as e:
            seen["unknown"] = [type(e).__name__, e.status_code]
        result = seen
    """, missing=str(tmp_path / "nope.png"), dir=str(tmp_path))
    assert out["missing"] == ["ApiError", 400]
    assert out["nothing"] == ["UnprocessableEntityError", 422]
    assert out["unknown"] == ["NotFoundError", 404]


# -- unsupported ---------------------------------------------------------------------------------------
def test_dynamic_tags_and_credentials_answer_501_naming_the_call(sdk):
    out = sdk.call("""
        import io
        calls = {
            "dynamic_tags.list_categories": lambda: client.dynamic_tags.list_categories(),
            "dynamic_tags.create_category": lambda: client.dynamic_tags.create_category(name="x", dataset_ids=[]),
            "dynamic_tags.get_top_content": lambda: client.dynamic_tags.get_top_content("c", "t"),
            "credentials.add_aws_credentials": lambda: client.credentials.add_aws_credentials(file=io.BytesIO(b"k")),
            "credentials.test": lambda: client.credentials.test(data_path="s3://bucket/x"),
        }
        seen = {}
        for name, f in calls.items():
            try:
                f()
                seen[name] = None
            except ApiError as e:
                seen[name] = [e.status_code, e.body["call"], e.body["detail"]]
        result = seen
    """)
    for call, got in out.items():
        assert got is not None and got[0] == 501 and got[1] == call and got[2].startswith(call), (call, got)


# -- dataset ids (no server) -------------------------------------------------------------------------
def test_dataset_uuid_migration_and_the_one_resolver(photo_warehouse):
    """Datasets made before the UUID migration get one each, distinct; names and UUIDs both resolve."""
    import duckdb

    from warehouse import catalog, migrations
    from warehouse.errors import NotFound

    con = duckdb.connect()
    [uuid_step] = [m for m in migrations.MIGRATIONS if m[1].startswith("datasets.dataset_id (UUID)")]
    for number, _, steps in migrations.MIGRATIONS:
        if number == uuid_step[0]:
            con.execute("INSERT INTO catalog.datasets (name, encoder, created_dt) VALUES "
                        "('old_a', 'imagenet-lite0', now()), ('old_b', 'imagenet-lite0', now())")
        for step in steps:
            step(con) if callable(step) else con.execute(step)
    ids = dict(con.execute("SELECT name, dataset_id FROM catalog.datasets").fetchall())
    assert len(set(ids.values())) == 2 and all(len(v) == 36 for v in ids.values())
    catalog.ensure_dataset(con, "new_c", "imagenet-lite0")
    new_id = catalog.dataset_uuid(con, "new_c")
    assert new_id and new_id not in ids.values()
    for name, uid in {**ids, "new_c": new_id}.items():
        assert catalog.resolve_dataset(con, name) == catalog.resolve_dataset(con, uid) == name
    with pytest.raises(NotFound, match="unknown dataset 'nope'"):
        catalog.resolve_dataset(con, "nope")
    cur = photo_warehouse.cursor()  # a warehouse opened by this code has them too
    assert catalog.resolve_dataset(cur, catalog.dataset_uuid(cur, "photos")) == "photos"
