"""What one server process holds: the open warehouse, the query engine, ingest jobs, the verifier.

The server process is the warehouse's only writer (DuckDB allows one writing
process per file); every request thread uses its own cursor.
"""
from __future__ import annotations

import logging
import threading

from api.auth import Verifier
from warehouse import Warehouse
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
            ),
        ).start()
        self.verifier = Verifier(self.cursor)
        from api.intake import Intake

        self.intake = Intake.from_settings(settings, self.wh.root)
        self.jobs = IngestJobs(self.wh, part_rows=settings.ingest_part_rows, files=self.intake.job_files)
        self.model_ready = threading.Event()
        self.model_error: str | None = None
        if settings.load_model:
            threading.Thread(target=self._load_model, name="pixql-model", daemon=True).start()
        else:
            self.model_ready.set()

    def _load_model(self) -> None:
        try:
            from ingest.encoders import get_encoder

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

    def close(self) -> None:
        self.jobs.shutdown()
        self.engine.shutdown()
        self.wh.close()
