"""The process environment: every `PIXQL_*` variable is read here (and `PIXQL_CACHE_DIR` in encoders/conse.py).

`Settings` (pydantic-settings) holds what any layer may need: the warehouse
directory, the model cache, the CLI's debug switch and the webhook secret.  The
server's own settings (`api.server.settings.ServerSettings`) extend it, so the
same variables mean the same thing everywhere, each field is set by
`PIXQL_<FIELD>` (the warehouse directory by `PIXQL_HOME`), and a value given
explicitly (a `pixql serve` flag) wins over the environment, which wins over
the default written on the field.  The README's settings table lists every field.

`current()` reads the environment afresh on each call (the CLI and tests change
it), so lower layers call it instead of reading `os.environ`.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIXQL_", populate_by_name=True, env_ignore_empty=True)

    # The warehouse directory (the CLI's --root, the server's root).
    root: Path = Field(Path("pixql-data"), validation_alias="PIXQL_HOME")
    # Where derived model files are cached (e.g. the class-name embeddings).  encoders/conse.py
    # reads PIXQL_CACHE_DIR itself, with this default: encoders import no other layer.
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "pixql")
    # CLI: show tracebacks instead of one-line errors.
    debug: bool = False
    # Compaction (warehouse/compaction.py): parts under this many rows are small, and merged
    # parts hold up to this many; an ingest into a dataset that then has more than
    # `compact_after_parts` small parts of one kind compacts it (0: only `pixql compact`).
    compact_part_rows: int = Field(100_000, ge=2)
    compact_after_parts: int = Field(64, ge=0)
    # The files a compaction replaced stay this many seconds for readers that began before it
    # (a query worker mid-way through the old part list), then go (warehouse/erasure_files.py).
    compact_retire_s: float = Field(900.0, ge=0)
    # Concept columns added since the wide score segments were written are served from a
    # small delta layer; a background thread folds it in once score changes have paused this
    # many seconds (warehouse/score_merge.py).
    score_merge_delay_s: float = Field(1.0, ge=0)
    # Retention (warehouse/retention.py): an upload no asset, video or unfinished job names is
    # removed once it is older than this many seconds.
    uploads_grace_s: float = Field(3600.0, ge=0)
    # HMAC key for webhook signatures; unset: a random one kept in the catalog.
    webhook_secret: str | None = Field(None, repr=False)
    # S3-compatible object stores (MinIO, Ceph, R2, moto): the endpoint s3:// URIs go to.
    # Unset: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself (ingest/objects.py).
    s3_endpoint_url: str | None = None
    # The Ray cluster `engine="ray"` ingests and scorings use (host:port of its head; "auto": the
    # `ray start` cluster on this machine); unset: the server refuses `"engine": "ray"`.
    ray_address: str | None = None
    # Images per forward pass of the encoder: on CPU (a local ingest, a Ray actor without a GPU)
    # and on one GPU (a Ray actor that sees CUDA).  An explicit `batch_size` wins over both.
    cpu_batch_size: int = Field(32, ge=1, le=4096)
    gpu_batch_size: int = Field(128, ge=1, le=4096)


def current() -> Settings:
    return Settings()
