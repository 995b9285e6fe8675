"""The on-disk layout of a warehouse root and the atomic file writes into it.

Everything that lands under the root goes through `atomic_write_parquet` (or
`atomic_write_bytes`): the data is written to a hidden temporary file in the
target directory, fsynced, then renamed over the final name.  A reader therefore
sees either no file or a complete one; the catalog row that references a file is
only committed after the rename (see `catalog.py`).
"""
from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DB_NAME = "pixql.duckdb"
TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    from .settings import current

    return current().root


def safe_name(name: str) -> str:
    """Map an encoder or dataset name to a file-system and SQL friendly token."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "x"


class Layout:
    """Paths inside one warehouse root; the single place that knows them."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def assets_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "assets"

    def vectors_dir(self, dataset: str, encoder: str) -> Path:
        return self.dataset_dir(dataset) / "vectors" / safe_name(encoder)

    def analyzers_dir(self, dataset: str, analyzer: str) -> Path:
        return self.dataset_dir(dataset) / "analyzers" / safe_name(analyzer)

    def scores_dir(self, concept: str) -> Path:
        return self.root / "scores" / concept

    def results_dir(self) -> Path:
        return self.root / "results"

    def new_part_path(self, directory: Path) -> Path:
        return directory / f"part-{uuid.uuid4().hex}.parquet"

    def remove_temporaries(self) -> int:
        """Delete temp files left by a killed writer; they were never referenced."""
        removed = 0
        for p in self.root.rglob(f"{TMP_PREFIX}*"):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
        return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> Path:
    with atomic_parquet_writer(path, table.schema, compression=compression) as writer:
        writer.write_table(table)
    return path


@contextmanager
def atomic_parquet_writer(path: Path, schema: pa.Schema, **options):
    """A `pq.ParquetWriter` for a file written a piece at a time, in place under `path` only when
    the block ends without error (`atomic_write_parquet` writes a whole table through it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        with pq.ParquetWriter(tmp, schema, **options) as writer:
            yield writer
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path
