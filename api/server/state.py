"""What one server process holds: the open warehouse, the query engine, the job runner, the verifier.

The server process is the warehouse's only writer (DuckDB allows one writing
process per file); every request thread uses its own cursor.  Background work
(ingestion, async moderation, webhook deliveries) runs on one `JobRunner`,
started here after every kind is registered so that jobs a killed server left
are resumed at once; `close()` stops it before the warehouse closes, and leaves
the warehouse open (for the process exit to release) if a job would not stop.
"""
from __future__ import annotations

import logging
import threading

from api.auth import Verifier
from pixql import Warehouse
from warehouse.jobs import JobRunner
from warehouse.queries import QueryEngine, QuerySettings

from .jobs import IngestJobs
from .settings import ServerSettings

log = logging.getLogger("pixql.server")


class ServerState:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.wh = Warehouse.open(settings.root)
        self._local = threading.local()
        self.engine = QueryEngine(
            self.wh,
            QuerySettings(
                workers=settings.query_workers,
                time_limit_s=settings.query_time_limit_s,
                row_cap=settings.query_row_cap,
                memory_limit=settings.query_memory_limit,
                threads_per_query=settings.query_threads,
                max_queued=settings.max_queued_queries,
                max_running_per_token=settings.max_running_per_token,
                lend_idle_slots=settings.lend_idle_slots,
                results_retention_days=settings.results_retention_days,
            ),
        ).start()
        self.verifier = Verifier(self.cursor)
        from api.intake import Intake

        self.intake = Intake.from_settings(settings, self.wh.root)
        # ingest: one at a time (the pipeline uses every core); webhooks: slow receivers wait in parallel.
        self.runner = JobRunner(self.wh.cursor, self.wh.write_lock, {"ingest": 1, "moderation": 1, "webhook": 4})
        self.jobs = IngestJobs(self.wh, self.runner, part_rows=settings.ingest_part_rows,
                               files=self.intake.job_files, ray_address=settings.ray_address)
        from .moderation_tasks import ModerationService

        self.moderation = ModerationService(self, self.runner)
        self.runner.start()
        self.model_ready = threading.Event()
        self.model_error: str | None = None
        if settings.load_model:
            threading.Thread(target=self._load_model, name="pixql-model", daemon=True).start()
        else:
            self.model_ready.set()

    def _load_model(self) -> None:
        try:
            from encoders import get_encoder

            get_encoder(None)  # the default encoder; cached for ingest and classify
        except Exception as e:  # reported by /ready rather than killing the server
            self.model_error = f"{type(e).__name__}: {e}"
            log.exception("loading the default encoder failed")
        finally:
            self.model_ready.set()

    def cursor(self):
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self.wh.cursor()
        return cur

    def close(self, job_timeout: float = 20.0) -> None:
        stopped = self.runner.shutdown(job_timeout)
        self.engine.shutdown()
        if stopped:
            self.wh.close()
        else:  # closing the connection under a running ingest would fail it; committed work is safe
            log.warning("not closing the warehouse: a job is still running; it resumes at the next start")
