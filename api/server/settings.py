"""Server settings: one pydantic-settings model, filled from `pixql serve` options, else `PIXQL_*` variables, else defaults.

`ServerSettings` extends the environment every layer reads (`warehouse.settings.Settings`);
each field is `PIXQL_<FIELD>` in the environment.  The query defaults are the engine's
own (`QuerySettings`), the webhook ones the sender's (`RetryPolicy`), so each default is
written once; `pixql serve` flags default to None, meaning "not given".
"""
from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path

from pydantic import Field, field_validator

from api.webhooks import RetryPolicy
from warehouse.queries import QuerySettings
from warehouse.query_worker import parse_size
from warehouse.settings import Settings

MIN_QUERY_MEMORY = 16 * 10**6  # below this DuckDB cannot run even a tiny query


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_Q, _R = QuerySettings, RetryPolicy  # defaults written there, where they are used


class ServerSettings(Settings):
    host: str = "127.0.0.1"
    port: int = 8000
    auth: bool = True
    # queries
    query_workers: int = _Q.workers
    query_time_limit_s: float = _Q.time_limit_s
    query_row_cap: int = _Q.row_cap
    query_memory_limit: str = _Q.memory_limit
    query_threads: int = _Q.threads_per_query
    max_queued_queries: int = _Q.max_queued
    # Queries one token may run at once (0: every worker but one, so one token never holds them all).
    max_running_per_token: int = _Q.max_running_per_token
    # Lend a slot the per-token cap leaves idle while no other token waits (taken back when one does).
    lend_idle_slots: bool = _Q.lend_idle_slots
    # Days a query's result file is kept; then its record says expired and the API answers 410 (0: forever).
    results_retention_days: float = _Q.results_retention_days
    # ingestion and uploads
    max_upload_mb: float = 200.0
    ingest_part_rows: int = 64
    # Server-side paths that ingestion and classification may read (None: any the process can read).
    path_roots: list[Path] | None = None
    # Object-store prefixes (s3://bucket/prefix/) clients may name; none: every object URI is a 403.
    object_roots: list[str] = Field(default_factory=list)
    # classification
    max_classify_assets: int = 50
    load_model: bool = True
    # URL fetching (classify, moderate, feedback) and webhook callbacks: see api/intake.py
    url_fetch: bool = True
    allow_url_networks: list[str] = Field(default_factory=list)  # CIDRs allowed beside public addresses
    allow_url_hosts: list[str] = Field(default_factory=list)  # host names allowed whatever they resolve to
    max_url_mb: float = 50.0
    url_time_limit_s: float = 30.0
    max_url_redirects: int = 5
    # moderation and its webhooks
    moderation_dataset: str = "moderation"
    moderation_cache_ttl_s: float = 86400.0
    webhook_max_attempts: int = _R.max_attempts
    webhook_base_delay_s: float = _R.base_delay
    webhook_max_delay_s: float = _R.max_delay

    # Every value is checked when the settings are made, so a bad flag stops
    # `pixql serve` at start with one line instead of failing each request later.
    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"port must be between 1 and 65535, not {v}")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.strip() or any(c.isspace() for c in v.strip()):
            raise ValueError(f"{v!r} is not a host name or address")
        return v.strip()

    @field_validator("query_workers", "query_row_cap", "query_threads", "max_queued_queries",
                     "ingest_part_rows", "max_classify_assets", "webhook_max_attempts")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"must be at least 1, not {v}")
        return v

    @field_validator("query_time_limit_s", "max_upload_mb", "webhook_base_delay_s", "webhook_max_delay_s")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"must be a positive number, not {v}")
        return v

    @field_validator("query_memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str:
        if parse_size(v) < MIN_QUERY_MEMORY:
            raise ValueError(f"{v} is too small: a query needs at least 16MB")
        return re.sub(r"\s+", "", v)  # DuckDB misreads '1 GB'

    @field_validator("path_roots")
    @classmethod
    def _roots(cls, v: list[Path] | None) -> list[Path] | None:
        for r in v or ():
            if not Path(r).is_dir():
                raise ValueError(f"{r} is not a directory")
        return v

    @field_validator("object_roots")
    @classmethod
    def _object_roots(cls, v: list[str]) -> list[str]:
        from ingest.objects import is_uri

        for r in v:
            if not is_uri(r):
                raise ValueError(f"{r!r} is not an object URI (s3://bucket/prefix/, gs://..., az://...)")
        return v

    def check(self) -> None:
        if not self.auth and not is_loopback(self.host):
            raise ValueError(
                f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), not {self.host!r}"
            )
        for net in self.allow_url_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"--allow-url-network {net!r} is not a network (e.g. 10.0.0.0/8)") from None
        if self.max_upload_mb <= 0 or self.max_url_mb <= 0:
            raise ValueError("--max-upload-mb and --max-url-mb must be > 0")
