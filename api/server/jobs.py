"""Ingestion jobs: ingests of server-side paths or uploaded files, run in a background thread.

One job runs at a time (the pipeline already uses every core); others wait in
order.  A job's id is the pipeline's run id, so a finished job is also a row of
`catalog.ingest_runs` and is still reported after a restart.  Counts advance
while the job runs: the pipeline mutates its report in place and calls
`on_progress` each time it commits a part.
"""
from __future__ import annotations

import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from warehouse import catalog

log = logging.getLogger("pixql.server.jobs")
RESTART_REASON = "the server stopped during this ingest; submit it again to resume (committed assets are kept)"


@dataclass
class IngestJob:
    job_id: str
    dataset: str
    encoder: str | None
    paths: list[str]
    status: str = "Queued"
    total_assets: int = 0
    processed_assets: int = 0
    errored_assets: int = 0
    added_assets: int = 0
    skipped_assets: int = 0
    created_dt: datetime = field(default_factory=catalog.now)
    start_dt: datetime | None = None
    end_dt: datetime | None = None
    error: str | None = None
    error_samples: list = field(default_factory=list)
    report: object = None

    def view(self) -> dict:
        r = self.report
        if r is not None:  # live counts from the pipeline's report object
            self.processed_assets = r.processed_files
            self.errored_assets = r.errors
            self.added_assets = r.assets_added
            self.skipped_assets = r.skipped
            self.error_samples = list(r.error_samples)
        return {
            "job_id": self.job_id,
            "dataset": self.dataset,
            "encoder": self.encoder,
            "status": self.status,
            "total_assets": self.total_assets,
            "processed_assets": self.processed_assets,
            "errored_assets": self.errored_assets,
            "added_assets": self.added_assets,
            "skipped_assets": self.skipped_assets,
            "created_dt": self.created_dt,
            "start_dt": self.start_dt,
            "end_dt": self.end_dt,
            "error": self.error,
            "errors": self.error_samples[:20],
        }


class IngestJobs:
    def __init__(self, wh, part_rows: int = 64, files=None):
        from ingest.sources import PLAIN

        self.wh = wh
        self.files = files or PLAIN  # how jobs open files: the server's intake checks each one when opened
        self.part_rows = part_rows
        self._jobs: dict[str, IngestJob] = {}
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._worker, name="pixql-ingest-jobs", daemon=True)
        self._thread.start()

    def submit(self, paths: list[str], dataset: str, encoder: str | None = None) -> dict:
        from ingest.encoders import normalize_name
        from ingest.pipeline import validate_dataset_name
        from ingest.sources import expand

        validate_dataset_name(dataset)
        if not paths:
            raise ValueError("no paths to ingest")
        sources = expand(paths, files=self.files)  # raises on paths that do not exist
        if encoder is not None:
            encoder = normalize_name(encoder)
        job = IngestJob(uuid.uuid4().hex[:12], dataset, encoder, [str(p) for p in paths], total_assets=len(sources))
        with self._lock:
            self._jobs[job.job_id] = job
        self._queue.put(job.job_id)
        return job.view()

    def get(self, job_id: str) -> dict:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job.view()
        row = self.wh.cursor().execute(
            "SELECT run_id, dataset, encoder, status, started_dt, finished_dt, files_seen, assets_added, skipped, errors"
            " FROM catalog.ingest_runs WHERE run_id = ?",
            [job_id],
        ).fetchone()
        if row is None:
            raise KeyError(job_id)
        run_id, dataset, encoder, status, started, finished, seen, added, skipped, errors = row
        error = None
        if status == "Running":  # no live job holds it: the server died under it
            status, error = "Error", RESTART_REASON
        return {
            "job_id": run_id, "dataset": dataset, "encoder": encoder, "status": status,
            "total_assets": seen, "processed_assets": seen, "errored_assets": errors,
            "added_assets": added, "skipped_assets": skipped, "created_dt": started, "start_dt": started,
            "end_dt": finished, "error": error, "errors": [],
        }

    def list(self) -> list[dict]:
        with self._lock:
            live = list(self._jobs.values())
        seen = {j.job_id for j in live}
        old = [r[0] for r in self.wh.cursor().execute(
            "SELECT run_id FROM catalog.ingest_runs ORDER BY started_dt DESC LIMIT 100").fetchall()]
        out = [j.view() for j in sorted(live, key=lambda j: j.created_dt, reverse=True)]
        return out + [self.get(r) for r in old if r not in seen]

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=1.0)

    def _worker(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs[job_id]
            job.status, job.start_dt = "Running", catalog.now()

            def on_progress(report, job=job):
                job.report = report

            try:
                report = self.wh.ingest(
                    job.paths, dataset=job.dataset, encoder=job.encoder, progress=False,
                    part_rows=self.part_rows, on_progress=on_progress, run_id=job.job_id, files=self.files,
                )
                job.report = report
                job.encoder = report.encoder
                job.status = "Complete"
            except Exception as e:  # reported on the job; the worker carries on
                log.exception("ingest job %s failed", job_id)
                job.status, job.error = "Error", f"{type(e).__name__}: {e}"
            finally:
                job.end_dt = catalog.now()
