"""The Python client and notebook helper against a real server: DataFrames (from the result's Parquet file,
equal to the SDK's), errors, stop, ingestion, thumbnails."""
from __future__ import annotations

import io
import shutil
import time

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from apiserver import LONG_QUERY
from PIL import Image

from api.client import ApiError, Client, QueryError
from api.notebook import show


@pytest.fixture(scope="module")
def client(api_server):
    with Client(api_server.url, api_server.tokens["write"], page_size=7) as c:
        yield c


def test_query_returns_polars_with_types(client):
    df = client.query("SELECT coactive_image_id, path, width, height, created_dt, width / height AS ratio "
                      "FROM coactive_table ORDER BY path")
    assert isinstance(df, pl.DataFrame) and df.height > 7  # more than one JSON page of 7
    assert df.schema["width"] == pl.Int32 and df.schema["ratio"] == pl.Float64
    assert df.schema["created_dt"] == pl.Datetime("us") and df.schema["path"] == pl.Utf8
    assert df["path"].to_list() == sorted(df["path"].to_list())
    assert df["coactive_image_id"].n_unique() == df.height
    pdf = df.to_pandas()
    assert list(pdf.columns) == df.columns and len(pdf) == df.height
    # The JSON pages (the Coactive shape) and the CSV export hold the same rows as the frame.
    qid = client.queries(limit=1)["queries"][0]["query_id"]
    assert client.csv(qid).decode().count("\n") == df.height + 1
    pages = list(client.rows(qid))
    assert len(pages) > 1 and [r["data"]["path"] for _, _, page in pages for r in page] == df["path"].to_list()


# Every kind of column a frame can get wrong: dates, timestamps, lists, structs, decimals, nulls in each.
TYPED = """SELECT coactive_image_id, path, width, height, width / height AS ratio,
       DATE '2024-02-28' + (width % 3)::INT AS day,
       TIMESTAMP '2024-01-02 03:04:05.123456' + to_seconds(height) AS ts,
       [width, height] AS dims, CASE WHEN width % 2 = 0 THEN NULL ELSE ['a', NULL, path] END AS words,
       {'w': width, 'name': regexp_extract(path, '[^/]+$')} AS info,
       CASE WHEN width % 2 = 0 THEN NULL ELSE {'w': width} END AS maybe_struct,
       CASE WHEN width % 2 = 0 THEN NULL ELSE width END AS maybe_int,
       CASE WHEN width % 2 = 0 THEN NULL ELSE DATE '2020-01-01' END AS maybe_day,
       ((width % 5) * 0.25)::DECIMAL(6, 2) AS dec, width % 2 = 0 AS even, NULL::VARCHAR AS nothing,
       (width % 7)::TINYINT AS tiny, width::UBIGINT AS big
FROM coactive_table ORDER BY path"""


def _arrow(rel) -> pa.Table:
    out = rel.arrow()
    return out.read_all() if isinstance(out, pa.RecordBatchReader) else out


def test_frames_equal_the_sdk_frames_types_included(client, photo_warehouse):
    """Same photos, same query: the client's frames are the SDK's, column types and nulls included."""
    local = photo_warehouse
    sdk_pl = local.sql(TYPED).pl()
    got = client.query(TYPED)
    assert got.schema == sdk_pl.schema
    assert got.equals(sdk_pl)
    assert got.schema["day"] == pl.Date and got.schema["info"] == pl.Struct({"w": pl.Int32, "name": pl.Utf8})
    assert got.schema["words"] == pl.List(pl.Utf8) and got["maybe_int"].null_count() > 0
    assert got.schema["dec"] == sdk_pl.schema["dec"] and isinstance(got.schema["dec"], pl.Decimal)

    table = client.query(TYPED, frame="arrow")
    sdk_table = _arrow(local.sql(TYPED))
    assert isinstance(table, pa.Table) and table.schema == sdk_table.schema and table.equals(sdk_table)

    pdf = client.query(TYPED, frame="pandas")
    sdk_pdf = local.sql(TYPED).df()
    pd.testing.assert_frame_equal(pdf, sdk_pdf)  # dtypes too (nullable Int32, datetime64 dates, ...)
    assert str(pdf["maybe_int"].dtype) == "Int32"

    empty = client.query("SELECT path, [width] AS l FROM coactive_table WHERE false")
    assert empty.height == 0 and empty.schema == local.sql("SELECT path, [width] AS l FROM coactive_table "
                                                           "WHERE false").pl().schema
    with pytest.raises(ValueError, match="frame must be one of"):
        client.query("SELECT 1", frame="numpy")


def test_parquet_endpoint_follows_the_csv_rules(api_server, client):
    """Complete queries only (409 before), other users' queries do not exist (404), read scope suffices."""
    rec = client.submit(LONG_QUERY)
    with pytest.raises(ApiError) as e:
        client.arrow(rec["query_id"])
    assert e.value.status_code == 409 and "Complete" in e.value.detail
    client.stop(rec["query_id"])
    with Client(api_server.url, api_server.tokens["read"]) as reader:
        done = reader.wait(reader.submit("SELECT 42 AS answer")["query_id"], timeout=60)
        r = reader._http.get(f"/api/v1/queries/{done['query_id']}/parquet")
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
        assert r.content[:4] == b"PAR1" and reader.result(done["query_id"])["answer"].to_list() == [42]
        with pytest.raises(ApiError) as e:
            reader.arrow(rec["query_id"])  # the write token's query
        assert e.value.status_code == 404


def test_query_error_and_bad_sql(client):
    with pytest.raises(QueryError, match="Conversion Error"):
        client.query("SELECT CAST(path AS INTEGER) FROM coactive_table")
    with pytest.raises(ApiError) as e:
        client.query("SELECT * FROM read_csv('/etc/passwd')")
    assert e.value.status_code == 400 and "table function" in e.value.detail.lower()


def test_submit_status_stop(client):
    rec = client.submit(LONG_QUERY)
    assert rec["status"] == "Queued"
    stopped = client.stop(rec["query_id"])
    assert stopped["status"] in ("Stopping", "Stopped")
    final = client.wait(rec["query_id"], timeout=30)
    assert final["status"] == "Stopped"
    assert (final["end_dt"] - final["created_dt"]).total_seconds() >= 0  # datetimes, as in the tutorial
    assert "Stopped" in str(QueryError(final))


def test_ingest_uploads_with_progress(client, photo_dir, tmp_path):
    files = [shutil.copy(photo_dir / n, tmp_path / n) for n in ("chelsea.png", "coffee.png", "rocket.png")]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    job = client.ingest(files=files + [bad], dataset="uploads", wait=False)
    assert job["total_assets"] == 4 and job["status"] in ("Queued", "Running", "Complete")
    seen = []
    while True:
        j = client.ingestion(job["job_id"])
        seen.append((j["processed_assets"], j["errored_assets"]))
        if j["status"] in ("Complete", "Error"):
            break
        time.sleep(0.05)
    assert j["status"] == "Complete", j
    assert seen == sorted(seen)  # counts only go up
    assert (j["processed_assets"], j["errored_assets"], j["added_assets"]) == (4, 1, 3)
    assert "broken.jpg" in j["errors"][0]["path"]
    ds = {d["dataset_id"]: d for d in client.datasets()}
    assert ds["uploads"]["asset_count"] == 3 and ds["uploads"]["error_count"] == 1
    n = client.query("SELECT count(*) AS n FROM coactive_table", dataset_id="uploads")["n"][0]
    assert n == 3
    with pytest.raises(ApiError) as e:
        client.ingest(paths=["/x"], dataset="bad name!")
    assert e.value.status_code == 400


def test_thumbnails_and_show(client):
    df = client.query("SELECT coactive_image_id, path, width FROM coactive_table WHERE path LIKE '%chelsea.png' LIMIT 1")
    asset_id = df["coactive_image_id"][0]
    meta = client.asset(asset_id)
    assert meta["path"].endswith("chelsea.png") and meta["thumbnail_url"].endswith("/thumbnail")
    im = Image.open(io.BytesIO(client.thumbnail(asset_id, size=64)))
    assert im.format == "JPEG" and max(im.size) == 64
    html = show(df, client=client).html
    assert html.count("data:image/jpeg;base64,") == 1 and "chelsea.png" in html
    local = show(df.drop("coactive_image_id"))  # no client: thumbnails from the local path
    assert "data:image/jpeg;base64," in local._repr_html_()
    assert "data:image" not in show(pl.DataFrame({"x": [1]})).html
    with pytest.raises(ApiError) as e:
        client.thumbnail("00000000-0000-0000-0000-000000000000")
    assert e.value.status_code == 404
