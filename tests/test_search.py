"""Search through the official Coactive SDK (`client.search`) against a real `pixql serve`, and in SQL.

The warehouse holds the bundled photos plus a resized, re-encoded JPEG copy of the
cat photo (chelsea): a similar-image search by the photo's id, its path or a URL of
the copy finds the two cats first; a text search for the photo's ImageNet class
ranks it first; the SQL macro `similarity_to_asset` and a text concept give the
same numbers as the API.
"""
from __future__ import annotations

import http.server
import shutil
import threading
from functools import partial

import pytest
from PIL import Image

from apiserver import poll, start_photo_server
from coactive_sdk import SdkError, SdkSession

@pytest.fixture(scope="module")
def pics(tmp_path_factory, photo_dir):
    d = tmp_path_factory.mktemp("search-photos")
    for p in photo_dir.iterdir():
        shutil.copy(p, d / p.name)
    im = Image.open(d / "chelsea.png").convert("RGB")
    im.resize((im.width * 3 // 5, im.height * 3 // 5), Image.LANCZOS).save(d / "chelsea_copy.jpg", quality=80)
    return d


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pics):
    s = start_photo_server(tmp_path_factory.mktemp("search"), pics, "--allow-url-network", "127.0.0.0/8")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def origin(pics):
    """A plain HTTP server on 127.0.0.1 serving the photos (the 'public URL' of an image)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(pics))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def sql(srv, query: str, token: str = "read") -> list[dict]:
    with srv.client(srv.tokens[token]) as http:
        r = http.post("/api/v1/queries", json={"query": query})
        assert r.status_code < 300, r.text
        body = poll(http, r.json()["query_id"])
    assert body["status"] == "Complete", body
    return [d["data"] for d in body["results"]["data"]]


@pytest.fixture(scope="module")
def ids(srv):
    rows = sql(srv, "SELECT coactive_image_id, path FROM coactive_table")
    return {r["path"].rsplit("/", 1)[-1]: r["coactive_image_id"] for r in rows}


@pytest.fixture(scope="module")
def found(srv, ids, origin, pics):
    """Every SDK search call this module checks, in one SDK session."""
    sdk = SdkSession(srv.url, srv.tokens["read"])
    return sdk.call('''
        j = lambda m: jsonable(m.dict(by_alias=True))  # SDK models are pydantic.v1 models
        s = client.search
        out = {
            "by_id": j(s.search_for_similar_images_in_dataset(coactive_image_id=params["cat"], dataset_id="photos",
                                                              limit=5)),
            "by_path": j(s.search_for_similar_images_in_dataset(image_path=params["cat_path"], dataset_id="photos",
                                                                limit=5)),
            "by_url": j(s.search_for_similar_images_in_dataset(image_public_url=params["url"], dataset_id="photos",
                                                               limit=3)),
            "page2": j(s.search_for_similar_images_in_dataset(coactive_image_id=params["cat"], dataset_id="photos",
                                                              offset=2, limit=2)),
            "cat": j(s.search_dataset(query="cat", dataset_id="photos", limit=5)),
            "coffee": j(s.search_dataset(query="a cup of coffee", dataset_id="photos", limit=3)),
            "multimodal": j(s.search_dataset(queries=["tabby cat"], dataset_id="photos", encoder="multimodal",
                                             limit=3)),
        }
        errors = {}
        for label, fn in [
                ("no_dataset", lambda: s.search_dataset(query="cat", dataset_id="nope")),
                ("no_query", lambda: s.search_dataset(dataset_id="photos")),
                ("audio", lambda: s.search_dataset(query="cat", dataset_id="photos", search_type="audio")),
                ("no_asset", lambda: s.search_for_similar_images_in_dataset(
                    coactive_image_id="00000000-0000-4000-8000-000000000000", dataset_id="photos")),
                ("two_refs", lambda: s.search_for_similar_images_in_dataset(
                    coactive_image_id=params["cat"], image_path=params["cat_path"], dataset_id="photos"))]:
            try:
                fn()
                errors[label] = None
            except ApiError as e:
                errors[label] = [type(e).__name__, e.status_code]
        out["errors"] = errors
        result = out
    ''', cat=ids["chelsea.png"], cat_path=str(pics / "chelsea.png"), url=f"{origin}/chelsea_copy.jpg")


def _ids(page) -> list[str]:
    return [x["coactiveImageId"] for x in page["data"]]


def test_similar_by_id_returns_the_asset_then_its_resized_copy(found, ids):
    page = found["by_id"]
    assert _ids(page)[:2] == [ids["chelsea.png"], ids["chelsea_copy.jpg"]]
    assert len(page["data"]) == 5 and page["meta"]["page"]["limit"] == 5
    assert all(x["path"] and x["createdUserId"] for x in page["data"])  # parsed as the SDK's Image


def test_similar_by_path_and_by_url_agree(found, ids):
    assert _ids(found["by_path"]) == _ids(found["by_id"])
    # The URL is the copy itself, fetched and embedded (not added): it finds itself, then the original.
    assert _ids(found["by_url"])[:2] == [ids["chelsea_copy.jpg"], ids["chelsea.png"]]


def test_similar_pages_are_windows_of_one_ranking(found):
    assert _ids(found["page2"]) == _ids(found["by_id"])[2:4]
    assert found["page2"]["meta"]["page"]["offset"] == 2


def test_text_search_ranks_the_photo_of_that_class_first(found, ids):
    cats = {ids["chelsea.png"], ids["chelsea_copy.jpg"]}
    assert _ids(found["cat"])[0] == ids["chelsea.png"] or _ids(found["cat"])[0] == ids["chelsea_copy.jpg"]
    assert set(_ids(found["cat"])[:2]) == cats
    assert _ids(found["coffee"])[0] == ids["coffee.png"]
    # Coactive's encoder names mean the dataset's own encoder here.
    assert set(_ids(found["multimodal"])[:2]) == cats


def test_errors_are_the_ones_the_sdk_raises(found):
    e = found["errors"]
    assert e["no_dataset"] == ["NotFoundError", 404]
    assert e["no_query"] == ["BadRequestError", 400]
    assert e["audio"] == ["BadRequestError", 400]
    assert e["no_asset"] == ["NotFoundError", 404]
    assert e["two_refs"][1] == 400


def _scores(srv, route: str, params: dict) -> list[tuple[str, float]]:
    """PixQL's `score` beside each item (the SDK's models drop fields they do not know)."""
    with srv.client(srv.tokens["read"]) as http:
        r = http.get(route, params=params)
        assert r.status_code == 200, r.text
    return [(x["coactiveImageId"], x["score"]) for x in r.json()["data"]]


def test_sql_similarity_equals_the_api(srv, ids):
    cat = ids["chelsea.png"]
    api = _scores(srv, "/api/v1/search/similar-images", {"coactive_image_id": cat, "dataset_id": "photos",
                                                        "limit": 8})
    rows = sql(srv, f"SELECT coactive_image_id, similarity_to_asset(coactive_image_id, '{cat}') AS s "
                    "FROM coactive_table WHERE dataset = 'photos' ORDER BY s DESC LIMIT 8")
    assert [r["coactive_image_id"] for r in rows] == [i for i, _ in api]
    for r, (_, score) in zip(rows, api):
        assert abs(r["s"] - score) < 1e-5
    assert abs(api[0][1] - 1.0) < 1e-5


def test_a_text_concept_is_the_sql_form_of_a_text_search(srv):
    api = _scores(srv, "/api/v1/search", {"query": "cat", "dataset_id": "photos", "limit": 6})
    with srv.client(srv.tokens["write"]) as http:
        r = http.post("/api/v1/concepts", json={"name": "search_cat", "prompts": ["cat"]})
        assert r.status_code == 201, r.text
    rows = sql(srv, "SELECT coactive_image_id, search_cat_prob AS p FROM coactive_table "
                    "WHERE dataset = 'photos' ORDER BY p DESC, coactive_image_id LIMIT 6")
    assert [r["coactive_image_id"] for r in rows][:2] == [i for i, _ in api][:2]
    for r, (i, score) in zip(rows, api):
        assert abs(r["p"] - score) < 1e-5
