"""`Client`: the PixQL HTTP API from Python, returning polars (or pandas, or Arrow) frames.

    from api.client import Client
    c = Client("http://127.0.0.1:8000", "pxq_...:secret")
    df = c.query("SELECT coactive_image_id, path FROM coactive_table WHERE fight = 1 LIMIT 10")
    c.query("SELECT ...", frame="pandas")   # or "arrow"

`query` submits (asking the server to answer once the query is final), polls
if it is not (long polls with backoff), downloads the result's Parquet
file (`GET /api/v1/queries/{id}/parquet`) and raises `QueryError` if the query
ends in `Error` or `Stopped`.  The file carries the exact Arrow schema DuckDB
produced, so the frames equal `Warehouse.sql(...).pl()` / `.df()` / `.arrow()`
column for column, types included; the JSON pages (`rows`, `status`) stay for
the Coactive-shaped API.
"""
from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Literal

import duckdb
import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.errors import PixqlError


class ApiError(PixqlError, RuntimeError):
    """An HTTP error from the server, with its status code and message."""

    def __init__(self, status_code: int, detail: str, body: Any = None):
        self.status_code, self.detail, self.body = status_code, detail, body
        super().__init__(f"HTTP {status_code}: {detail}")


class QueryError(PixqlError, RuntimeError):
    """A query that ended in `Error` or `Stopped`."""

    def __init__(self, record: dict):
        self.record = record
        super().__init__(f"query {record.get('query_id')} {record.get('status')}: {record.get('error') or ''}".rstrip(": "))


Frame = Literal["polars", "pandas", "arrow"]
FRAMES = ("polars", "pandas", "arrow")


def _frame(table: pa.Table, frame: Frame):
    if frame == "arrow":
        return table
    if frame == "polars":
        return pl.from_arrow(table)
    if frame == "pandas":
        # Through DuckDB, so the conversion is the one `Warehouse.sql(...).df()` makes
        # (nullable integers, dates as datetime64, decimals as floats), not pyarrow's.
        con = duckdb.connect()
        try:
            return con.from_arrow(table).df()
        finally:
            con.close()
    raise ValueError(f"frame must be one of {', '.join(FRAMES)}, not {frame!r}")


class Client:
    def __init__(self, host: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 60.0,
                 page_size: int = 5000):
        self.host = host.rstrip("/")
        self.page_size = page_size
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.host, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    @staticmethod
    def _raise(r: httpx.Response):
        try:
            body = r.json()
            detail = body.get("detail") if isinstance(body, dict) else body
        except ValueError:
            body, detail = r.text, r.text
        if isinstance(detail, list):  # FastAPI's 422 list of problems
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
        raise ApiError(r.status_code, str(detail), body)

    def _request(self, method: str, path: str, **kw) -> Any:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            self._raise(r)
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    def health(self) -> dict:
        return self._request("GET", "/health")

    def ready(self) -> bool:
        try:
            self._request("GET", "/ready")
            return True
        except (ApiError, httpx.TransportError):
            return False

    # -- queries ---------------------------------------------------------------------------
    @staticmethod
    def _dates(rec: dict) -> dict:
        # datetimes, as the Coactive SDK gives them: `end_dt - created_dt` works.
        for k in ("created_dt", "start_dt", "end_dt"):
            if isinstance(rec.get(k), str):
                rec[k] = datetime.fromisoformat(rec[k])
        return rec

    def submit(self, sql: str, dataset_id: str | None = None, embedding_id: str | None = None,
               wait: float = 0) -> dict:
        """Queue `sql`; with `wait`, the server answers once the query is final (up to `wait` s), so a
        quick query costs one round trip (a server without it answers at once: poll with `wait()`)."""
        body = {"query": sql, "dataset_id": dataset_id, "embedding_id": embedding_id}
        params = {"wait": wait, "limit": 0} if wait else None
        return self._dates(self._request("POST", "/api/v1/queries", params=params,
                                         json={k: v for k, v in body.items() if v is not None}))

    def status(self, query_id: str, offset: int = 0, limit: int = 0, wait: float = 0) -> dict:
        return self._dates(self._request("GET", f"/api/v1/queries/{query_id}",
                                         params={"offset": offset, "limit": limit, "wait": wait}))

    def stop(self, query_id: str) -> dict:
        return self._dates(self._request("POST", f"/api/v1/queries/{query_id}/stop"))

    def queries(self, status: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        params = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status
        return self._request("GET", "/api/v1/queries", params=params)

    def wait(self, query_id: str, timeout: float | None = None) -> dict:
        """Poll until the query is final; long polls, backing off when the server does not support them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"query {query_id} not finished after {timeout} s")
            started = time.monotonic()
            rec = self.status(query_id, wait=min(10.0, left) if left is not None else 10.0)
            if rec["status"] in ("Complete", "Error", "Stopped"):
                return rec
            if time.monotonic() - started < 0.01:  # the server answered at once: back off
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def rows(self, query_id: str) -> Iterable[tuple[list[str], list[str], list[dict]]]:
        """The JSON pages of a complete query (the Coactive shape), `page_size` rows at a time."""
        offset = 0
        while True:
            rec = self.status(query_id, offset=offset, limit=self.page_size)
            res = rec["results"]
            yield res["columns"], res["column_types"], res["data"]
            if res["next_offset"] is None:
                return
            offset = res["next_offset"]

    def arrow(self, query_id: str) -> pa.Table:
        """Every row of a complete query, read from its Parquet file."""
        # Spooled: a small result stays in memory, a large one goes to disk, not twice into RAM.
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
            with self._http.stream("GET", f"/api/v1/queries/{query_id}/parquet") as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise(r)
                for chunk in r.iter_bytes():
                    buf.write(chunk)
            buf.seek(0)
            return pq.read_table(buf)

    def result(self, query_id: str, frame: Frame = "polars"):
        """Every row of a complete query as a polars (default), pandas or Arrow frame."""
        return _frame(self.arrow(query_id), frame)

    def query(self, sql: str, dataset_id: str | None = None, embedding_id: str | None = None,
              timeout: float | None = None, frame: Frame = "polars"):
        """Run SQL and return every row as a polars DataFrame (`frame="pandas"` or `"arrow"` for the others)."""
        if frame not in FRAMES:  # before the query runs, not after
            raise ValueError(f"frame must be one of {', '.join(FRAMES)}, not {frame!r}")
        rec = self.submit(sql, dataset_id, embedding_id, wait=min(10.0, timeout) if timeout is not None else 10.0)
        if rec["status"] not in ("Complete", "Error", "Stopped"):
            rec = self.wait(rec["query_id"], timeout)
        if rec["status"] != "Complete":
            raise QueryError(rec)
        return self.result(rec["query_id"], frame)

    def csv(self, query_id: str) -> bytes:
        return self._request("GET", f"/api/v1/queries/{query_id}/csv")

    # -- classification and concepts ---------------------------------------------------------
    def classify(self, paths: list[str] | None = None, files: list[str | Path] | None = None,
                 urls: list[str] | None = None, concepts: list[str] | None = None,
                 threshold: float | None = None, embedding_id: str | None = None) -> dict:
        """Score images against concepts: server-side `paths`, local `files` (uploaded) or `urls`."""
        if files:
            handles = [open(f, "rb") for f in files]
            try:
                form = {"concepts": ",".join(concepts)} if concepts else {}
                if threshold is not None:
                    form["threshold"] = str(threshold)
                if embedding_id:
                    form["embedding_id"] = embedding_id
                return self._request("POST", "/api/v1/classify", data=form,
                                     files=[("files", (Path(f).name, h)) for f, h in zip(files, handles)])
            finally:
                for h in handles:
                    h.close()
        body = {"paths": paths, "urls": urls, "concepts": concepts, "threshold": threshold,
                "embedding_id": embedding_id}
        return self._request("POST", "/api/v1/classify", json={k: v for k, v in body.items() if v is not None})

    def concepts(self) -> list[dict]:
        return self._request("GET", "/api/v1/concepts")

    def concept(self, name: str) -> dict:
        return self._request("GET", f"/api/v1/concepts/{name}")

    def create_concept(self, name: str, **fields) -> dict:
        return self._request("POST", "/api/v1/concepts", json={"name": name, **fields})

    def update_concept(self, name: str, **fields) -> dict:
        return self._request("PATCH", f"/api/v1/concepts/{name}", json=fields)

    def label(self, name: str, positive: list[str] | None = None, negative: list[str] | None = None,
              remove: list[str] | None = None) -> dict:
        """Label assets (by coactive_image_id or path) positive/negative; `remove` clears labels."""
        body = {"positive": positive or [], "negative": negative or [], "remove": remove or []}
        return self._request("PATCH", f"/api/v1/concepts/{name}/labels", json=body)

    def candidates(self, name: str, limit: int = 20, dataset: str | None = None) -> list[dict]:
        """The `limit` most uncertain unlabeled assets (the route calls it `n`)."""
        params = {"n": limit, **({"dataset": dataset} if dataset else {})}
        return self._request("GET", f"/api/v1/concepts/{name}/candidates", params=params)

    def estimate(self, name: str) -> dict:
        return self._request("GET", f"/api/v1/concepts/{name}/estimate")

    def versions(self, name: str) -> list[dict]:
        return self._request("GET", f"/api/v1/concepts/{name}/versions")

    # -- datasets, ingestion, assets ---------------------------------------------------------
    def datasets(self) -> list[dict]:
        """Every dataset (the server answers Coactive's paged {meta, data}; this reads all pages)."""
        out, offset = [], 0
        while True:
            page = self._request("GET", "/api/v1/datasets", params={"offset": offset, "limit": 1000})
            out += page["data"]
            offset += len(page["data"])
            if not page["data"] or offset >= (page["meta"]["page"]["total"] or 0):
                return out

    def tables(self) -> list[dict]:
        return self._request("GET", "/api/v1/tables")

    def ingest(self, paths: list[str] | None = None, dataset: str = "default", encoder: str | None = None,
               files: list[str | Path] | None = None, wait: bool = True, timeout: float | None = None) -> dict:
        """Start an ingest job of server-side `paths` or uploaded local `files`; wait for it by default."""
        if files:
            handles = [open(f, "rb") for f in files]
            try:
                form = {"dataset": dataset, **({"encoder": encoder} if encoder else {})}
                job = self._request("POST", "/api/v1/ingestion", data=form,
                                    files=[("files", (Path(f).name, h)) for f, h in zip(files, handles)])
            finally:
                for h in handles:
                    h.close()
        else:
            body = {"dataset": dataset, "paths": [str(p) for p in paths or []]}
            if encoder:
                body["encoder"] = encoder
            job = self._request("POST", "/api/v1/ingestion", json=body)
        return self.wait_ingestion(job["job_id"], timeout) if wait else job

    def ingestion(self, job_id: str) -> dict:
        return self._request("GET", f"/api/v1/ingestion/{job_id}")

    def wait_ingestion(self, job_id: str, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.1
        while True:
            job = self.ingestion(job_id)
            if job["status"] in ("Complete", "Error", "Stopped"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"ingestion {job_id} not finished after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def asset(self, asset_id: str) -> dict:
        return self._request("GET", f"/api/v1/assets/{asset_id}")

    def thumbnail(self, asset_id: str, size: int = 256) -> bytes:
        return self._request("GET", f"/api/v1/assets/{asset_id}/thumbnail", params={"size": size})
