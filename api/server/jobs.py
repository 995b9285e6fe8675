"""Ingestion jobs: ingests of server-side paths or uploaded files, run as `ingest` jobs of the job runner.

A job is a row of `catalog.jobs` committed before the 202 (warehouse/jobs.py),
and its id is the pipeline's run id, so the assets it commits carry it.  After
a crash the runner starts it again under the same id: asset ids are
content-derived, so committed assets are skipped and the run's row in
`catalog.ingest_runs` is reopened.  Counts of added and errored assets are read
from the catalog (what is committed), never from memory a kill would lose;
while a job runs, the pipeline's live report adds the files seen so far.
"""
from __future__ import annotations

import logging
import threading

from warehouse import catalog
from warehouse.jobs import Interrupted, JobRunner
from warehouse.errors import Invalid, NotFound

log = logging.getLogger("pixql.server.jobs")
KIND = "ingest"


def catalog_counts(con, job_id: str, total: int) -> dict:
    """The job's counts as the warehouse holds them: committed assets and current errors of its run."""
    added, errored = catalog.run_counts(con, job_id)
    added_files = con.execute(
        "SELECT count(DISTINCT a.path) FROM catalog.assets a JOIN catalog.parts p ON a.part = p.path "
        "WHERE p.run_id = ?", [job_id]).fetchone()[0]
    return {"added_assets": added, "errored_assets": errored, "added_files": int(added_files),
            "total_assets": total}


class IngestJobs:
    def __init__(self, wh, runner: JobRunner, part_rows: int = 64, files=None, ray_address: str | None = None):
        from ingest.sources import PLAIN

        self.wh = wh
        self.ray_address = ray_address  # "engine": "ray" jobs run there; unset, they are refused
        self.runner = runner
        self.files = files or PLAIN  # how jobs open files: the server's intake checks each one when opened
        self.part_rows = part_rows
        self._live: dict[str, object] = {}  # job id -> the running pipeline's report
        self._lock = threading.Lock()
        runner.register(KIND, self._run, lane="ingest")

    def submit(self, paths: list[str], dataset: str, encoder: str | None = None, owner: str | None = None,
               manifest: str | None = None, engine: str = "local") -> dict:
        from encoders import normalize_name
        from ingest.pipeline import validate_dataset_name
        from ingest.sources import expand

        validate_dataset_name(dataset)
        if not paths:
            raise Invalid("no paths to ingest")
        if engine == "ray" and not self.ray_address:
            raise Invalid('"engine": "ray" needs a Ray cluster: start the server with PIXQL_RAY_ADDRESS set')
        sources = expand(paths, files=self.files)  # raises on paths that do not exist
        if encoder is not None:
            encoder = normalize_name(encoder)
        params = {"paths": [str(p) for p in paths], "dataset": dataset, "encoder": encoder}
        if manifest is not None:  # a CSV/JSONL of path + metadata columns (the SDK's csv_path)
            params["manifest"] = str(manifest)
        if engine == "ray":
            params["engine"] = "ray"
        job = self.runner.submit(KIND, params, owner=owner, counters={"total_assets": len(sources)})
        return self._view(job)

    def get(self, job_id: str) -> dict:
        job = self.runner.get(job_id)
        if job is not None and job["kind"] == KIND:
            return self._view(job)
        return self._legacy(job_id)

    def stop(self, job_id: str) -> dict:
        """Stop an ingestion job: committed assets stay, and ingesting the same paths again resumes."""
        job = self.runner.get(job_id)
        if job is None or job["kind"] != KIND:
            raise NotFound(f"unknown ingestion job {job_id!r}")
        return self._view(self.runner.stop(job_id))

    def list(self) -> list[dict]:
        jobs = [self._view(j) for j in self.runner.list(KIND)]
        seen = {j["job_id"] for j in jobs}
        old = [r[0] for r in self.wh.cursor().execute(
            "SELECT run_id FROM catalog.ingest_runs ORDER BY started_dt DESC LIMIT 100").fetchall()]
        return jobs + [self._legacy(r) for r in old if r not in seen]

    # -- the job -------------------------------------------------------------------------------
    def _run(self, ctx) -> dict:
        p = ctx.params
        total = int(ctx.counters.get("total_assets", 0))
        con = self.wh.cursor()

        def on_progress(report):
            self._live[ctx.job_id] = report
            if report.status == "Running":
                ctx.progress(encoder=report.encoder, processed_assets=report.processed_files,
                             **catalog_counts(con, ctx.job_id, total))

        try:
            on_ray = {"engine": "ray", "ray_address": None if self.ray_address == "auto" else self.ray_address} \
                if p.get("engine") == "ray" else {}
            report = self.wh.ingest(p["paths"], dataset=p["dataset"], encoder=p.get("encoder"), progress=False,
                                    manifest=p.get("manifest"),
                                    part_rows=self.part_rows, on_progress=on_progress, run_id=ctx.job_id,
                                    should_stop=lambda: ctx.stopping, files=self.files, **on_ray)
        except Exception:  # the job says Error; its counts still say what was committed
            ctx.counters.update(catalog_counts(con, ctx.job_id, total))
            raise
        finally:
            self._live.pop(ctx.job_id, None)
        counts = catalog_counts(con, ctx.job_id, report.total_files)
        counts.update(encoder=report.encoder, errors=report.error_samples[:20])
        if report.status == "Stopped":
            raise Interrupted({**counts, "processed_assets": report.processed_files})
        counts["processed_assets"] = report.total_files
        return counts

    def _view(self, job: dict) -> dict:
        c, p = job["counters"], job["params"]
        live = self._live.get(job["job_id"]) if job["status"] == "Running" else None
        total = int(c.get("total_assets", 0))
        processed = int(c.get("processed_assets", 0))
        if live is not None:
            processed = live.processed_files
            c = {**c, **catalog_counts(self.wh.cursor(), job["job_id"], total)}
        if job["status"] == "Complete":
            processed = total
        added, errored = int(c.get("added_assets", 0)), int(c.get("errored_assets", 0))
        skipped = max(0, processed - int(c.get("added_files", 0)) - errored)
        return {
            "job_id": job["job_id"], "dataset": p.get("dataset"), "encoder": c.get("encoder") or p.get("encoder"),
            "status": job["status"], "total_assets": total, "processed_assets": processed,
            "errored_assets": errored, "added_assets": added, "skipped_assets": skipped,
            "created_dt": job["created_dt"], "start_dt": job["start_dt"], "end_dt": job["end_dt"],
            "error": job["error"], "errors": list(c.get("errors") or [])[:20],
        }

    def _legacy(self, run_id: str) -> dict:
        """A run with no job row: an ingest from the CLI or SDK, or from a server older than the runner."""
        row = self.wh.cursor().execute(
            "SELECT run_id, dataset, encoder, status, started_dt, finished_dt, files_seen, assets_added, skipped,"
            " errors, error FROM catalog.ingest_runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise NotFound(f"unknown ingestion job {run_id!r}")
        run_id, dataset, encoder, status, started, finished, seen, added, skipped, errors, error = row
        return {
            "job_id": run_id, "dataset": dataset, "encoder": encoder, "status": status,
            "total_assets": seen, "processed_assets": seen, "errored_assets": errors,
            "added_assets": added, "skipped_assets": skipped, "created_dt": started, "start_dt": started,
            "end_dt": finished, "error": error, "errors": [],
        }
