"""Arrow schemas of the Parquet parts: assets and vectors (whose stored form is `vector_store`'s).

The asset schema is the contract between ingest (which writes parts) and the
views (which read them); both import it from here.
"""
from __future__ import annotations

import pyarrow as pa

ASSET_SCHEMA = pa.schema(
    [
        ("coactive_image_id", pa.string()),
        ("dataset", pa.string()),
        ("path", pa.string()),
        ("media_type", pa.string()),  # 'image' | 'keyframe'
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("size_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("created_dt", pa.timestamp("us")),
        ("file_mtime", pa.timestamp("us")),
        ("metadata", pa.string()),  # JSON text; exposed as JSON in the views
        ("coactive_video_id", pa.string()),
        ("keyframe_index", pa.int32()),
        ("keyframe_time_ms", pa.int64()),
        ("run_id", pa.string()),
    ]
)

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.timestamp("us"): "TIMESTAMP",
}


def empty_select(schema: pa.Schema) -> str:
    """A typed, empty SELECT with the schema's columns, for views with no parts yet."""
    cols = ", ".join(f"NULL::{_DUCK_TYPES[f.type]} AS {f.name}" for f in schema)
    return f"SELECT {cols} WHERE false"


def vectors_table(ids: list[str], columns: dict[str, "object"]) -> pa.Table:
    """Build a vectors part: coactive_image_id plus one list<float16> column per (N, D) array.

    The stored form is `vector_store`'s (write it with `vector_store.write_table`);
    DuckDB reads the columns as FLOAT[], numpy maps them.
    """
    from .vector_store import vectors_table as build

    return build(ids, columns)
