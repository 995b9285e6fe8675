"""The job runner: background work as rows of `catalog.jobs`, run by a few threads, resumed after a crash.

A job is a row (id, kind, params, status, counters, error, owner, attempts,
not_before, created/start/end) committed before anyone is told the job exists,
so a job acknowledged to a client survives a SIGKILL one instruction later.
Its status uses the query vocabulary (warehouse/queries.py):

    Queued -> Running -> Complete | Error | Stopped

Each kind has a handler `handler(ctx) -> counters | None` and a lane; a lane is
a fixed number of threads taking its due jobs in order (`ingest` has one
because the pipeline uses every core).  A handler may raise `Retry(delay)` to
go back to Queued until `not_before` (webhook backoff without holding a
thread), or `Interrupted` when `ctx.stopping` asked it to stop at a safe
point: the job goes back to Queued and resumes at the next start.

`stop(job_id)` ends a Queued job as Stopped, and asks a Running one to stop
(`ctx.stopping`); its `Interrupted` then ends it as Stopped instead of Queued.

`start()` recovers: jobs found Queued or Running (the process that ran them is
gone, DuckDB's file lock guarantees it) are queued again if their kind is
resumable, otherwise ended as Error with the reason.  `shutdown(timeout)`
stops taking jobs, asks running ones to stop, and reports whether every job
thread ended, so the caller never closes the warehouse under a running job.

The runner imports nothing outside `warehouse`; kinds are registered by their
owners (api/server/jobs.py, api/server/moderation_tasks.py, api/webhooks.py).
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from . import catalog
from .errors import Unavailable

log = logging.getLogger("pixql.jobs")

FINAL = ("Complete", "Error", "Stopped")
STATUSES = ("Queued", "Running") + FINAL
INTERRUPTED = "interrupted: the server stopped while this job ran, and this kind of job cannot resume"
_COLS = ["job_id", "kind", "params", "status", "counters", "error", "owner", "attempts", "not_before",
         "created_dt", "start_dt", "end_dt"]


class Retry(Unavailable):
    """Raised by a handler: run the job again after `delay` seconds (it is Queued meanwhile)."""

    def __init__(self, delay: float, counters: dict | None = None):
        super().__init__(f"retry in {delay:g} s")
        self.delay, self.counters = delay, counters


class Interrupted(Unavailable):
    """Raised by a handler that stopped at a safe point because the runner is stopping."""

    def __init__(self, counters: dict | None = None):
        super().__init__("interrupted by shutdown")
        self.counters = counters


@dataclass
class Kind:
    handler: Callable
    lane: str
    resumable: bool = True


class JobContext:
    """What a handler sees: its row, a stop flag and a way to record progress."""

    def __init__(self, runner: "JobRunner", row: dict):
        self.runner = runner
        self.job_id: str = row["job_id"]
        self.kind: str = row["kind"]
        self.params: dict = row["params"] or {}
        self.counters: dict = dict(row["counters"] or {})
        self.attempt: int = row["attempts"]
        self.resumed = self.attempt > 1

    @property
    def stopping(self) -> bool:
        """True when the runner shuts down or someone stopped this job: stop at the next safe point."""
        return self.runner._stop.is_set() or self.job_id in self.runner._cancelled

    def progress(self, **counters) -> None:
        """Merge counters into the row (committed, so a crash keeps the last value)."""
        self.counters.update(counters)
        self.runner._update(self.job_id, counters=json.dumps(self.counters, default=str))


def insert(con, kind: str, params: dict, owner: str | None = None, counters: dict | None = None,
           job_id: str | None = None) -> str:
    """Write a Queued job row with `con` (inside the caller's transaction if it has one)."""
    job_id = job_id or uuid.uuid4().hex[:12]
    con.execute(
        "INSERT INTO catalog.jobs (job_id, kind, params, status, counters, owner, attempts, created_dt) "
        "VALUES (?, ?, ?, 'Queued', ?, ?, 0, ?)",
        [job_id, kind, json.dumps(params, default=str), json.dumps(counters or {}, default=str), owner, catalog.now()])
    return job_id


class JobRunner:
    def __init__(self, cursor_factory, write_lock, lanes: dict[str, int] | None = None):
        self._cursor = cursor_factory
        self._lock = write_lock
        self._lanes = dict(lanes or {"default": 1})
        self._kinds: dict[str, Kind] = {}
        self._heaps: dict[str, list] = {lane: [] for lane in self._lanes}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._cancelled: set[str] = set()
        self._local = threading.local()

    # -- setup ---------------------------------------------------------------------------------
    def register(self, kind: str, handler: Callable, lane: str = "default", resumable: bool = True) -> None:
        """Add a kind; registered after `start()`, its unfinished jobs are recovered at once."""
        if lane not in self._lanes:
            raise ValueError(f"unknown lane {lane!r} (lanes: {', '.join(self._lanes)})")
        self._kinds[kind] = Kind(handler, lane, resumable)
        if self._threads:
            self._recover([kind])

    def start(self) -> "JobRunner":
        self._recover(list(self._kinds))
        for lane, n in self._lanes.items():
            for i in range(n):
                t = threading.Thread(target=self._worker, args=(lane,), name=f"pixql-job-{lane}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop taking jobs, ask running ones to stop; True when every job thread has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("jobs still running after %.0f s at shutdown: %s (left to recovery at next start)",
                        timeout, ", ".join(sorted(self._running)))
        return not alive

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, kind: str, params: dict, owner: str | None = None, counters: dict | None = None,
               job_id: str | None = None) -> dict:
        """Commit a Queued row, then queue it: when this returns, the job survives a crash."""
        if kind not in self._kinds:
            raise ValueError(f"unknown job kind {kind!r}")
        with self._lock:
            job_id = insert(self._con(), kind, params, owner, counters, job_id)
        self.enqueue(job_id, kind)
        return self.get(job_id)

    def enqueue(self, job_id: str, kind: str, not_before: datetime | None = None) -> None:
        """Queue a row already committed (e.g. by `insert` inside the caller's own transaction)."""
        lane = self._kinds[kind].lane
        due = (not_before - catalog.now()).total_seconds() if not_before else 0.0
        with self._cond:
            heapq.heappush(self._heaps[lane], (time.monotonic() + max(0.0, due), next(self._seq), job_id))
            self._cond.notify_all()

    def get(self, job_id: str) -> dict | None:
        row = self._con().execute(f"SELECT {', '.join(_COLS)} FROM catalog.jobs WHERE job_id = ?", [job_id]).fetchone()
        return _row(row) if row else None

    def list(self, kind: str | None = None, limit: int = 100, where: str = "", args: list | None = None) -> list[dict]:
        sql = f"SELECT {', '.join(_COLS)} FROM catalog.jobs WHERE (? IS NULL OR kind = ?) {where}"
        rows = self._con().execute(sql + " ORDER BY created_dt DESC LIMIT ?", [kind, kind, *(args or []), limit])
        return [_row(r) for r in rows.fetchall()]

    def stop(self, job_id: str) -> dict | None:
        """Stop a job: a Queued one is Stopped at once, a Running one when its handler next looks."""
        with self._lock:
            self._con().execute("UPDATE catalog.jobs SET status = 'Stopped', end_dt = ? "
                                "WHERE job_id = ? AND status = 'Queued'", [catalog.now(), job_id])
        if job_id in self._running:
            self._cancelled.add(job_id)
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> dict | None:
        """Block until the job is final (or the timeout passes); return its row."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job["status"] in FINAL:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return job
            with self._done:
                self._done.wait(0.5 if left is None else min(0.5, left))

    # -- internals -----------------------------------------------------------------------------
    def _con(self):
        # A cursor per thread: DuckDB connections are not to be shared between threads.
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._cursor()
        return cur

    def _update(self, job_id: str, **cols) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self._lock:
            self._con().execute(f"UPDATE catalog.jobs SET {sets} WHERE job_id = ?", [*cols.values(), job_id])

    def _recover(self, kinds: list[str]) -> None:
        if not kinds:
            return
        rows = self._con().execute(
            "SELECT job_id, kind, status, not_before FROM catalog.jobs WHERE status IN ('Queued', 'Running') "
            "AND list_contains(?, kind) ORDER BY created_dt, job_id", [kinds]).fetchall()
        for job_id, kind, status, not_before in rows:
            if job_id in self._running:
                continue
            if status == "Running" and not self._kinds[kind].resumable:
                self._update(job_id, status="Error", error=INTERRUPTED, end_dt=catalog.now())
                continue
            if status == "Running":
                self._update(job_id, status="Queued")
                log.info("resuming %s job %s left running by a stopped server", kind, job_id)
            self.enqueue(job_id, kind, not_before)

    def _next(self, lane: str) -> str | None:
        heap = self._heaps[lane]
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                if heap and heap[0][0] <= now:
                    return heapq.heappop(heap)[2]
                self._cond.wait(None if not heap else heap[0][0] - now)
        return None

    def _worker(self, lane: str) -> None:
        while (job_id := self._next(lane)) is not None:
            try:
                self._run(job_id)
            except Exception:  # the catalog failed under us: keep the lane alive, the row tells the rest
                log.exception("job %s failed outside its handler", job_id)
            finally:
                with self._done:
                    self._done.notify_all()

    def _run(self, job_id: str) -> None:
        with self._lock:
            row = self._con().execute(
                f"UPDATE catalog.jobs SET status = 'Running', start_dt = coalesce(start_dt, ?), attempts = attempts + 1,"
                f" not_before = NULL WHERE job_id = ? AND status = 'Queued' RETURNING {', '.join(_COLS)}",
                [catalog.now(), job_id]).fetchone()
        if row is None:  # already taken, ended or removed
            return
        ctx = JobContext(self, _row(row))
        self._running.add(job_id)
        try:
            counters = self._kinds[ctx.kind].handler(ctx)
            if counters is not None:
                ctx.counters.update(counters)
            self._finish(ctx, "Complete", None)
        except Retry as r:
            ctx.counters.update(r.counters or {})
            when = catalog.now() + timedelta(seconds=r.delay)
            self._update(job_id, status="Queued", not_before=when, counters=json.dumps(ctx.counters, default=str))
            if not self._stop.is_set():
                self.enqueue(job_id, ctx.kind, when)
        except Interrupted as i:
            ctx.counters.update(i.counters or {})
            if job_id in self._cancelled:
                self._finish(ctx, "Stopped", None)
            else:  # the runner is shutting down: resume at the next start
                self._update(job_id, status="Queued", counters=json.dumps(ctx.counters, default=str))
        except Exception as e:  # reported on the job; the lane carries on
            log.exception("%s job %s failed", ctx.kind, job_id)
            self._finish(ctx, "Error", f"{type(e).__name__}: {e}")
        finally:
            self._running.discard(job_id)
            self._cancelled.discard(job_id)

    def _finish(self, ctx: JobContext, status: str, error: str | None) -> None:
        self._update(ctx.job_id, status=status, error=error, end_dt=catalog.now(),
                     counters=json.dumps(ctx.counters, default=str))


def _row(r) -> dict:
    out = dict(zip(_COLS, r))
    for k in ("params", "counters"):
        out[k] = json.loads(out[k]) if out[k] else {}
    return out
