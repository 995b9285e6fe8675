"""The query engine behind the HTTP API: records, a bounded worker pool, caps, results, paging.

A query is a row in `catalog.queries` moving `Queued` -> `Running` ->
`Complete` | `Error` | `Stopped` (via `Stopping`).  Workers (threads) each own a
`sandbox.SandboxDB`, so every running query has its own memory and thread cap;
a watchdog thread interrupts queries past their time limit or asked to stop.
Results stream into `results/<query_id>.parquet` (written to a temporary name,
renamed when complete) and are paged from there.  On start the engine
recovers: queued queries run again, a query that was running when the server
died is marked `Error` with the reason, finished results stay served.
"""
from __future__ import annotations

import csv
import io
import json
import math
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import catalog, sandbox
from .storage import TMP_PREFIX

FINAL = ("Complete", "Error", "Stopped")
STATUSES = ("Queued", "Running", "Stopping") + FINAL
RESTART_REASON = "the server stopped while this query was running; submit it again"


class QueryNotFound(KeyError):
    pass


class QueueFull(RuntimeError):
    pass


class QueryConflict(RuntimeError):
    """The request does not fit the query's state (e.g. stopping a finished query)."""


@dataclass
class QuerySettings:
    workers: int = 2
    time_limit_s: float = 300.0
    row_cap: int = 1_000_000
    memory_limit: str = "1GB"
    threads_per_query: int = 1
    max_queued: int = 100
    max_page: int = 10_000
    row_group_rows: int = 5_000


class _GroupCommit:
    """Writes to `catalog.queries` from any thread, committed in batches: one WAL sync per batch.

    Each DuckDB commit syncs the WAL (tens of ms on a busy disk); a query
    makes three writes (queued, running, done), so with many clients the
    syncs, not the queries, would bound throughput.  `run` returns once its
    statement is committed, so what a caller wrote is durable and visible.
    A batch that fails is rolled back and its statements retried one by one.
    """

    def __init__(self, cursor_factory, max_batch: int = 256):
        self._cursor_factory = cursor_factory
        self._max_batch = max_batch
        self._queue: "queue.Queue[list | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="pixql-query-commits", daemon=True)
        self._thread.start()

    def run(self, sql: str, args: list, fetch: bool = False):
        item = [sql, args, fetch, threading.Event(), None, None, None]  # ..., done, result, error, then
        self._queue.put(item)
        item[3].wait()
        if item[5] is not None:
            raise item[5]
        return item[4]

    def submit(self, sql: str, args: list, then) -> None:
        """Queue a write without waiting; `then(result_row, error)` runs after it commits."""
        self._queue.put([sql, args, True, threading.Event(), None, None, then])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        cur = self._cursor_factory()
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                cur.execute("BEGIN TRANSACTION")
                for item in batch:
                    r = cur.execute(item[0], item[1])
                    item[4] = r.fetchone() if item[2] else None
                cur.execute("COMMIT")
            except Exception:
                try:
                    cur.execute("ROLLBACK")
                except Exception:
                    pass
                for item in batch:
                    try:
                        r = cur.execute(item[0], item[1])
                        item[4] = r.fetchone() if item[2] else None
                    except Exception as e:
                        item[5] = e
            for item in batch:
                item[3].set()
                if item[6] is not None:
                    try:
                        item[6](item[4], item[5])
                    except Exception:  # a callback must not stop the committer
                        pass


class _Definitions:
    """The view and macro definitions, shared by the workers and re-read only when they change.

    Reading them costs ~0.2 s (duckdb_functions() lists every built-in); every
    `views.rebuild` bumps `views_generation` in `catalog.meta`, so one cheap
    lookup per query says whether the cached copy still holds.  The content
    hashes of the catalog tables the views read are taken fresh each time.
    """

    def __init__(self, max_age: float = 60.0):
        self._lock = threading.Lock()
        self._gen: str | None = None
        self._defs: dict | None = None
        self._at = 0.0
        self.max_age = max_age

    def views(self, cur) -> dict:
        row = cur.execute("SELECT value FROM catalog.meta WHERE key = 'views_generation'").fetchone()
        gen = row[0] if row else None
        with self._lock:
            stale = (self._defs is None or gen is None or gen != self._gen
                     or time.monotonic() - self._at > self.max_age)
            if stale:
                self._defs, self._gen, self._at = sandbox.definitions(cur), gen, time.monotonic()
            return self._defs

    def get(self, cur) -> dict:
        defs = dict(self.views(cur))
        defs["catalog_tables"] = sandbox.table_versions(cur, list(defs["catalog_tables"]))
        return defs


class _Active:
    """What the watchdog needs to know about one running query."""

    def __init__(self, db: sandbox.SandboxDB, deadline: float):
        self.db, self.deadline = db, deadline
        self.reason: str | None = None  # 'time' | 'stop' | 'shutdown'


def jsonable(v):
    """A result value as JSON can carry it (NaN/inf become null, bytes hex)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        base, k = n, seen.get(n, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen[base] = k + 1
        seen.setdefault(name, 1)
        out.append(name)
    return out


class QueryEngine:
    """Runs users' SQL for the HTTP API: `submit`, `record`/`page`/`iter_csv`, `stop`, `list`."""

    def __init__(self, wh, settings: QuerySettings | None = None):
        self.wh = wh
        self.settings = settings or QuerySettings()
        self.results_dir: Path = wh.layout.results_dir()
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._active: dict[str, _Active] = {}
        self._stop_requested: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._queued = 0
        # Status changes since start, kept in memory so long polls need not hit the catalog.
        self._recent: "OrderedDict[str, str]" = OrderedDict()
        self._definitions = _Definitions()
        # Writes to catalog.queries, which only this engine touches, go through
        # one committer thread, not the warehouse's write_lock: a submit must
        # not wait behind an ingest's commit, and these rows conflict with none.
        self._writer = _GroupCommit(wh.cursor)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "QueryEngine":
        self.results_dir.mkdir(parents=True, exist_ok=True)
        for p in self.results_dir.glob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
        self._recover()
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._worker, name=f"pixql-query-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._watchdog, name="pixql-query-watchdog", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the workers; queries still queued stay queued and run after the next start."""
        self._closing.set()
        for _ in range(self.settings.workers):
            self._queue.put(None)
        with self._lock:
            for a in self._active.values():
                a.reason = a.reason or "shutdown"
                a.db.interrupt()
        for t in self._threads:
            t.join(timeout)
        self._writer.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self.wh.cursor()
        return cur

    def _write(self, sql: str, args: list) -> None:
        self._writer.run(sql, args)
        with self._changed:
            self._changed.notify_all()

    def _recover(self) -> None:
        cur = self._cur()
        now = catalog.now()
        self._writer.run(
            "UPDATE catalog.queries SET status = 'Error', error = ?, end_dt = ? WHERE status = 'Running'",
            [RESTART_REASON, now],
        )
        self._writer.run("UPDATE catalog.queries SET status = 'Stopped', end_dt = ? WHERE status = 'Stopping'", [now])
        queued = cur.execute(
            "SELECT query_id FROM catalog.queries WHERE status = 'Queued' ORDER BY created_dt, query_id"
        ).fetchall()
        for (qid,) in queued:
            self._enqueue(qid)

    def _enqueue(self, qid: str) -> None:
        with self._lock:
            self._queued += 1
        self._queue.put(qid)

    # -- the API -----------------------------------------------------------------------------
    def user_views(self) -> list[str]:
        return self._definitions.views(self._cur())["user_views"]

    def submit(self, sql: str, dataset_id: str | None = None, embedding_id: str | None = None,
               owner: str | None = None) -> dict:
        """Check the SQL (raises `sandbox.SandboxError`) and queue it; returns the record."""
        cur = self._cur()
        sandbox.check_sql(sql, self.user_views(), sandbox.macro_names(self._definitions.views(cur)))
        if dataset_id is not None and not cur.execute(
            "SELECT 1 FROM catalog.datasets WHERE name = ?", [dataset_id]
        ).fetchone():
            raise sandbox.SandboxError(f"unknown dataset_id {dataset_id!r}")
        if embedding_id is not None and not cur.execute(
            "SELECT 1 FROM catalog.encoders WHERE name = ?", [embedding_id]
        ).fetchone():
            raise sandbox.SandboxError(f"unknown embedding_id {embedding_id!r} (an encoder name)")
        with self._lock:
            if self._queued >= self.settings.max_queued:
                raise QueueFull(f"{self._queued} queries are queued (limit {self.settings.max_queued}); retry later")
        qid = str(uuid.uuid4())
        rec = {"query_id": qid, "query": sql, "dataset_id": dataset_id, "embedding_id": embedding_id,
               "status": "Queued", "created_dt": catalog.now(), "start_dt": None, "end_dt": None,
               "total_row_count": None, "columns": None, "error": None, "owner": owner}
        self._write(
            "INSERT INTO catalog.queries (query_id, query, dataset_id, embedding_id, status, created_dt, owner) "
            "VALUES (?, ?, ?, ?, 'Queued', ?, ?)",
            [qid, sql, dataset_id, embedding_id, rec["created_dt"], owner],
        )
        self._enqueue(qid)
        return rec

    def record(self, qid: str) -> dict:
        row = self._cur().execute(
            "SELECT query_id, query, dataset_id, embedding_id, status, created_dt, start_dt, end_dt,"
            " total_row_count, columns, error, owner FROM catalog.queries WHERE query_id = ?",
            [qid],
        ).fetchone()
        if row is None:
            raise QueryNotFound(qid)
        keys = ["query_id", "query", "dataset_id", "embedding_id", "status", "created_dt", "start_dt",
                "end_dt", "total_row_count", "columns", "error", "owner"]
        rec = dict(zip(keys, row))
        rec["columns"] = json.loads(rec["columns"]) if rec["columns"] else None
        return rec

    def wait(self, qid: str, timeout: float) -> dict:
        """The record once it is final, or after `timeout` seconds (long polling)."""
        deadline = time.monotonic() + max(0.0, timeout)
        rec = self.record(qid)
        while rec["status"] not in FINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._changed:
                self._changed.wait(min(left, 0.5))
            rec = self.record(qid)
        return rec

    def recent_status(self, qid: str) -> str | None:
        """The last status this process set for `qid`, if any (cheap, no catalog read)."""
        with self._lock:
            return self._recent.get(qid)

    def _note(self, qid: str, status: str) -> None:
        with self._changed:
            if self._recent.get(qid) in FINAL and status not in FINAL:
                return  # a racing writer already recorded the end
            self._recent[qid] = status
            self._recent.move_to_end(qid)
            while len(self._recent) > 100_000:
                self._recent.popitem(last=False)
            self._changed.notify_all()

    def list(self, status: str | None = None, owner: str | None = None, offset: int = 0,
             limit: int = 50) -> tuple[list[dict], int]:
        where, args = "WHERE true", []
        if status:
            where += " AND status = ?"
            args.append(status)
        if owner is not None:
            where += " AND owner = ?"
            args.append(owner)
        cur = self._cur()
        total = cur.execute(f"SELECT count(*) FROM catalog.queries {where}", args).fetchone()[0]
        ids = cur.execute(
            f"SELECT query_id FROM catalog.queries {where} ORDER BY created_dt DESC, query_id LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [self.record(i) for (i,) in ids], total

    def stop(self, qid: str) -> dict:
        rec = self.record(qid)
        if rec["status"] in FINAL:
            raise QueryConflict(f"query {qid} is already {rec['status']}")
        # A queued query stops at once; a running one passes through Stopping
        # until its worker has unwound.
        self._writer.run(
            "UPDATE catalog.queries SET status = CASE WHEN status = 'Queued' THEN 'Stopped' ELSE 'Stopping' END, "
            "end_dt = CASE WHEN status = 'Queued' THEN ? ELSE end_dt END "
            "WHERE query_id = ? AND status IN ('Queued', 'Running')",
            [catalog.now(), qid],
        )
        self._note(qid, self.record(qid)["status"])
        # Status first, interrupt second: the worker that unwinds then finds
        # `Stopping` and records `Stopped`.
        with self._lock:
            self._stop_requested.add(qid)
            active = self._active.get(qid)
            if active is not None:
                active.reason = "stop"
                active.db.interrupt()
        with self._changed:
            self._changed.notify_all()
        return self.record(qid)

    def result_path(self, qid: str) -> Path:
        return self.results_dir / f"{qid}.parquet"

    def page(self, qid: str, offset: int = 0, limit: int = 100) -> tuple[list[str], list[dict]]:
        """Rows [offset, offset+limit) of a complete query's result as JSON-ready dicts."""
        limit = max(0, min(limit, self.settings.max_page))
        pf = pq.ParquetFile(self.result_path(qid))
        names = pf.schema_arrow.names
        rows: list[dict] = []
        start = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(offset, start), min(offset + limit, start + n)
            if lo < hi:
                part = pf.read_row_group(g).slice(lo - start, hi - lo)
                for k, r in enumerate(part.to_pylist()):
                    rows.append({"row": lo + k, "data": {c: jsonable(r[c]) for c in names}})
            start += n
            if start >= offset + limit:
                break
        return names, rows

    def iter_csv(self, qid: str):
        pf = pq.ParquetFile(self.result_path(qid))
        names = pf.schema_arrow.names
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(names)
        for g in range(pf.num_row_groups):
            for r in pf.read_row_group(g).to_pylist():
                w.writerow(["" if r[c] is None else (json.dumps(jsonable(r[c])) if isinstance(r[c], (list, dict))
                                                       else jsonable(r[c])) for c in names])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        if buf.tell():
            yield buf.getvalue()
        elif pf.num_row_groups == 0:
            yield buf.getvalue()

    # -- workers -----------------------------------------------------------------------------
    def _worker(self) -> None:
        db: sandbox.SandboxDB | None = None
        try:
            while True:
                qid = self._queue.get()
                if qid is None:
                    return
                with self._lock:
                    self._queued -= 1
                if self._closing.is_set():
                    return
                try:
                    db = self._run(qid, db)
                except Exception as e:  # the pool must survive anything one query does
                    self._finish(qid, "Error", error=f"internal error: {type(e).__name__}: {e}")
        finally:
            if db is not None:
                db.close()

    def _sandbox_for(self, db: sandbox.SandboxDB | None) -> sandbox.SandboxDB:
        defs = self._definitions.get(self._cur())
        if db is not None and db.fingerprint == sandbox.fingerprint(defs):
            return db
        if db is not None:
            db.close()
        limits = sandbox.SandboxLimits(self.settings.memory_limit, self.settings.threads_per_query)
        return sandbox.SandboxDB(self.wh.root, defs, limits, source=self._cur())

    def _run(self, qid: str, db):
        try:
            rec = self.record(qid)
        except QueryNotFound:
            return db
        if rec["status"] != "Queued":
            return db
        db = self._sandbox_for(db)
        active = _Active(db, time.monotonic() + self.settings.time_limit_s)
        with self._lock:
            if qid in self._stop_requested:
                return db
            self._active[qid] = active
        claimed = self._writer.run(
            "UPDATE catalog.queries SET status = 'Running', start_dt = ? "
            "WHERE query_id = ? AND status = 'Queued' RETURNING query_id",
            [catalog.now(), qid], fetch=True,
        )
        if claimed:
            self._note(qid, "Running")
        if not claimed:
            with self._lock:
                self._active.pop(qid, None)
            return db
        tmp = self.results_dir / f"{TMP_PREFIX}{qid}.parquet"
        status, error, total, columns = "Complete", None, None, None
        try:
            # The parser check ran at submit; the locked database stands on its own here.
            total, columns = self._execute(db, rec, tmp, active)
            tmp.replace(self.result_path(qid))
        except Exception as e:
            tmp.unlink(missing_ok=True)
            status, error = self._classify_failure(e, active)
        finally:
            db.done()
            with self._lock:
                self._active.pop(qid, None)
                self._stop_requested.discard(qid)
        self._finish(qid, status, error=error, total=total, columns=columns)
        return db

    def _execute(self, db, rec, tmp: Path, active: _Active):
        cap = self.settings.row_cap
        sql = rec["query"]
        reader = db.execute(sql, batch_rows=self.settings.row_group_rows, dataset=rec["dataset_id"])
        names = _unique_names(reader.schema.names)
        schema = pa.schema([f.with_name(n) for f, n in zip(reader.schema, names)])
        total = 0
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in reader:
                if active.reason:
                    raise duckdb.InterruptException("interrupted")
                total += batch.num_rows
                if total > cap:
                    raise RowCapExceeded(
                        f"the result has more than {cap} rows (the row cap); add LIMIT or aggregate"
                    )
                writer.write_table(pa.Table.from_batches([batch]).rename_columns(names),
                                   row_group_size=self.settings.row_group_rows)
        columns = [{"name": f.name, "type": str(f.type)} for f in schema]
        return total, columns

    def _classify_failure(self, e: Exception, active: _Active) -> tuple[str, str | None]:
        if active.reason == "stop":
            return "Stopped", None
        if active.reason == "time":
            return "Error", f"time limit of {self.settings.time_limit_s:g} s exceeded; the query was interrupted"
        if active.reason == "shutdown":
            return "Error", RESTART_REASON
        if isinstance(e, duckdb.OutOfMemoryException):
            return "Error", f"memory cap of {self.settings.memory_limit} exceeded: {e}"
        if isinstance(e, (duckdb.Error, sandbox.SandboxError, RowCapExceeded)):
            return "Error", str(e)
        return "Error", f"{type(e).__name__}: {e}"

    def _finish(self, qid, status, error=None, total=None, columns=None) -> None:
        # A stop that arrived while the query ran wins: Stopping becomes Stopped.
        # The worker does not wait for the commit; pollers learn of the end
        # (through `_note`) only once it is committed and readable.
        def committed(row, error_, qid=qid):
            if row is not None:
                self._note(qid, row[0])

        self._writer.submit(
            "UPDATE catalog.queries SET status = CASE WHEN status = 'Stopping' THEN 'Stopped' ELSE ? END, "
            "error = CASE WHEN status = 'Stopping' THEN NULL ELSE ? END, end_dt = ?, total_row_count = ?, "
            "columns = ? WHERE query_id = ? RETURNING status",
            [status, error, catalog.now(), total, json.dumps(columns) if columns else None, qid], committed,
        )

    def _watchdog(self) -> None:
        while not self._closing.wait(0.05):
            now = time.monotonic()
            with self._lock:
                for qid, a in self._active.items():
                    if a.reason is None and qid in self._stop_requested:
                        a.reason = "stop"
                    if a.reason is None and now > a.deadline:
                        a.reason = "time"
                    if a.reason:
                        # Repeated on purpose: an interrupt that lands before
                        # DuckDB started executing would otherwise be lost.
                        a.db.interrupt()


class RowCapExceeded(RuntimeError):
    pass
