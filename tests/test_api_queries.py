"""Queries over HTTP: lifecycle and fields, paging, CSV, list, errors, time limit, stop, caps."""
from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from apiserver import LONG_QUERY, poll


@pytest.fixture(scope="module")
def http(api_server):
    with api_server.client(api_server.tokens["read"]) as c:
        yield c


def _run(http, sql, **extra) -> dict:
    r = http.post("/api/v1/queries", json={"query": sql, **extra})
    assert r.status_code == 201, r.text
    return poll(http, r.json()["query_id"])


def test_submit_then_poll_until_complete(http):
    r = http.post("/api/v1/queries", json={"query": "SELECT path, width, height FROM coactive_table ORDER BY path"})
    assert r.status_code == 201
    sub = r.json()
    assert sub["status"] == "Queued" and sub["query_id"] and sub["created_dt"].endswith("Z")
    assert sub["results"] is None and sub["error"] is None
    done = poll(http, sub["query_id"])
    assert done["status"] == "Complete", done
    created, start, end = (datetime.fromisoformat(done[k]) for k in ("created_dt", "start_dt", "end_dt"))
    assert created <= start <= end
    res = done["results"]
    assert res["columns"] == ["path", "width", "height"]
    assert res["column_types"] == ["string", "int32", "int32"]
    paths = [row["data"]["path"] for row in res["data"]]
    assert paths == sorted(paths) and len(paths) == done["total_row_count"]
    assert any(p.endswith("chelsea.png") for p in paths)
    assert [row["row"] for row in res["data"]] == list(range(len(paths)))
    chelsea = next(row["data"] for row in res["data"] if row["data"]["path"].endswith("chelsea.png"))
    assert (chelsea["width"], chelsea["height"]) == (451, 300)  # skimage's chelsea is 451x300


def test_paging(http):
    done = _run(http, "SELECT path FROM coactive_table ORDER BY path")
    qid, total = done["query_id"], done["total_row_count"]
    assert total > 10
    seen, offset = [], 0
    while offset is not None:
        page = http.get(f"/api/v1/queries/{qid}", params={"offset": offset, "limit": 4}).json()["results"]
        assert page["offset"] == offset and len(page["data"]) <= 4
        seen += [(row["row"], row["data"]["path"]) for row in page["data"]]
        offset = page["next_offset"]
    assert [r for r, _ in seen] == list(range(total))
    assert [p for _, p in seen] == [row["data"]["path"] for row in done["results"]["data"]]
    past = http.get(f"/api/v1/queries/{qid}", params={"offset": total + 5, "limit": 4}).json()["results"]
    assert past["data"] == [] and past["next_offset"] is None


def test_csv_streams_all_rows(http):
    done = _run(http, "SELECT path, width FROM coactive_table ORDER BY path")
    r = http.get(f"/api/v1/queries/{done['query_id']}/csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["path"], int(x["width"])) for x in rows] == [
        (row["data"]["path"], row["data"]["width"]) for row in done["results"]["data"]
    ]


def test_list_with_status_filter_and_paging(http):
    ok = _run(http, "SELECT 1 AS one FROM coactive_table LIMIT 1")
    bad = _run(http, "SELECT CAST(path AS INTEGER) AS n FROM coactive_table")
    complete = http.get("/api/v1/queries", params={"status": "Complete", "limit": 1000}).json()
    assert ok["query_id"] in {q["query_id"] for q in complete["queries"]}
    assert all(q["status"] == "Complete" for q in complete["queries"])
    errors = http.get("/api/v1/queries", params={"status": "Error"}).json()
    assert bad["query_id"] in {q["query_id"] for q in errors["queries"]}
    first = http.get("/api/v1/queries", params={"limit": 1, "offset": 0}).json()
    second = http.get("/api/v1/queries", params={"limit": 1, "offset": 1}).json()
    assert first["total"] >= 2 and first["queries"][0]["query_id"] != second["queries"][0]["query_id"]
    assert http.get("/api/v1/queries", params={"status": "Nonsense"}).status_code == 422


def test_failing_query_reports_duckdb_message(http):
    done = _run(http, "SELECT CAST(path AS INTEGER) AS n FROM coactive_table")
    assert done["status"] == "Error"
    assert "Conversion Error" in done["error"] and done["results"] is None


def test_status_codes(http, api_server):
    assert http.get("/api/v1/queries/does-not-exist").status_code == 404
    assert http.post("/api/v1/queries/does-not-exist/stop").status_code == 404
    assert http.post("/api/v1/queries", json={}).status_code == 422
    assert http.post("/api/v1/queries", json={"query": "SELECT 1", "bogus": 1}).status_code == 422
    r = http.post("/api/v1/queries", json={"query": "SELEC nothing"})
    assert r.status_code == 400 and "parse" in r.json()["detail"]
    r = http.post("/api/v1/queries", json={"query": "SELECT 1", "dataset_id": "nope"})
    assert r.status_code == 400 and "dataset" in r.json()["detail"]
    done = _run(http, "SELECT 1 AS x FROM coactive_table LIMIT 1")
    assert http.post(f"/api/v1/queries/{done['query_id']}/stop").status_code == 409
    # Another user's query does not exist for this token.
    with api_server.client(api_server.tokens["write"]) as other:
        assert other.get(f"/api/v1/queries/{done['query_id']}").status_code == 404


def test_dataset_scope(http):
    photos = _run(http, "SELECT count(*) AS n FROM coactive_table WHERE dataset = 'photos'")
    scoped = _run(http, "SELECT count(*) AS n FROM coactive_table", dataset_id="photos")
    assert scoped["dataset_id"] == "photos"
    assert scoped["results"]["data"][0]["data"]["n"] == photos["results"]["data"][0]["data"]["n"] > 0
    # Other datasets' rows are out of sight, in every user view.
    other = _run(http, "SELECT count(*) AS n FROM coactive_table_adv WHERE dataset <> 'photos'", dataset_id="photos")
    assert other["results"]["data"][0]["data"]["n"] == 0


def test_row_cap(http):
    done = _run(http, "SELECT unnest(range(5000)) AS x")
    assert done["status"] == "Error" and "row cap" in done["error"]


def test_time_limit_then_server_keeps_answering(http):
    r = http.post("/api/v1/queries", json={"query": LONG_QUERY})
    done = poll(http, r.json()["query_id"], timeout=60)
    assert done["status"] == "Error" and "time limit" in done["error"]
    assert datetime.fromisoformat(done["end_dt"]) > datetime.fromisoformat(done["start_dt"])
    assert http.get("/health").json() == {"status": "ok"}
    assert _run(http, "SELECT count(*) AS n FROM coactive_table")["status"] == "Complete"


def test_stop_a_running_query(http):
    qid = http.post("/api/v1/queries", json={"query": LONG_QUERY}).json()["query_id"]
    poll(http, qid, until=("Running",))
    r = http.post(f"/api/v1/queries/{qid}/stop")
    assert r.status_code == 200 and r.json()["status"] in ("Stopping", "Stopped")
    done = poll(http, qid)
    assert done["status"] == "Stopped" and done["results"] is None
    assert http.post(f"/api/v1/queries/{qid}/stop").status_code == 409


def test_long_poll_returns_when_done(http):
    qid = http.post("/api/v1/queries", json={"query": "SELECT count(*) AS n FROM coactive_table"}).json()["query_id"]
    body = http.get(f"/api/v1/queries/{qid}", params={"wait": 20}).json()
    assert body["status"] == "Complete" and body["results"]["data"][0]["data"]["n"] > 0
