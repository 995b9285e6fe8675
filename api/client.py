"""`Client`: the PixQL HTTP API from Python, returning polars DataFrames.

    from api.client import Client
    c = Client("http://127.0.0.1:8000", "pxq_...:secret")
    df = c.query("SELECT coactive_image_id, path FROM coactive_table WHERE fight = 1 LIMIT 10")
    df.to_pandas()                      # for pandas users

`query` submits, polls (long polls with backoff), pages through every row and
raises `QueryError` if the query ends in `Error` or `Stopped`.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import httpx
import polars as pl

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


_ARROW_TO_POLARS = {
    "int8": pl.Int8, "int16": pl.Int16, "int32": pl.Int32, "int64": pl.Int64,
    "uint8": pl.UInt8, "uint16": pl.UInt16, "uint32": pl.UInt32, "uint64": pl.UInt64,
    "float": pl.Float32, "halffloat": pl.Float32, "double": pl.Float64, "bool": pl.Boolean,
    "string": pl.Utf8, "large_string": pl.Utf8, "date32[day]": pl.Date,
}


def _frame(columns: list[str], types: list[str], rows: list[dict]) -> pl.DataFrame:
    data = {c: [r["data"].get(c) for r in rows] for c in columns}
    series = []
    for c, t in zip(columns, types):
        values = data[c]
        if t in _ARROW_TO_POLARS:
            series.append(pl.Series(c, values, dtype=_ARROW_TO_POLARS[t], strict=False))
        elif t.startswith("timestamp"):
            series.append(pl.Series(c, [datetime.fromisoformat(v) if v else None for v in values],
                                    dtype=pl.Datetime("us")))
        elif t.startswith("decimal"):
            series.append(pl.Series(c, values, dtype=pl.Float64, strict=False))
        else:
            series.append(pl.Series(c, values, strict=False))
    return pl.DataFrame(series)


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
    def _request(self, method: str, path: str, **kw) -> Any:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
                detail = body.get("detail") if isinstance(body, dict) else body
            except ValueError:
                body, detail = r.text, r.text
            if isinstance(detail, list):  # FastAPI's 422 list of problems
                detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
            raise ApiError(r.status_code, str(detail), body)
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

    def submit(self, sql: str, dataset_id: str | None = None, embedding_id: str | None = None) -> dict:
        body = {"query": sql, "dataset_id": dataset_id, "embedding_id": embedding_id}
        return self._dates(self._request("POST", "/api/v1/queries",
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
        offset = 0
        while True:
            rec = self.status(query_id, offset=offset, limit=self.page_size)
            res = rec["results"]
            yield res["columns"], res["column_types"], res["data"]
            if res["next_offset"] is None:
                return
            offset = res["next_offset"]

    def result(self, query_id: str) -> pl.DataFrame:
        columns, types, rows = [], [], []
        for columns, types, page in self.rows(query_id):
            rows.extend(page)
        return _frame(columns, types, rows)

    def query(self, sql: str, dataset_id: str | None = None, embedding_id: str | None = None,
              timeout: float | None = None) -> pl.DataFrame:
        """Run SQL and return every row as a polars DataFrame (`.to_pandas()` for pandas)."""
        rec = self.submit(sql, dataset_id, embedding_id)
        rec = self.wait(rec["query_id"], timeout)
        if rec["status"] != "Complete":
            raise QueryError(rec)
        return self.result(rec["query_id"])

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
        return self._request("GET", "/api/v1/datasets")

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
