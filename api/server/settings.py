"""Server settings: one Pydantic model, filled from `pixql serve` options or `PIXQL_*` variables."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import BaseModel, Field


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    root: Path = Field(default_factory=lambda: Path(os.environ.get("PIXQL_HOME", "pixql-data")))
    host: str = "127.0.0.1"
    port: int = 8000
    auth: bool = True
    # queries
    query_workers: int = 2
    query_time_limit_s: float = 300.0
    query_row_cap: int = 1_000_000
    query_memory_limit: str = "1GB"
    query_threads: int = 1
    max_queued_queries: int = 100
    # ingestion and uploads
    max_upload_mb: float = 200.0
    ingest_part_rows: int = 64
    # Server-side paths that ingestion and classification may read (None: any the process can read).
    path_roots: list[Path] | None = None
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
