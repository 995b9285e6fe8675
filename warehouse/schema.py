"""Arrow schemas of the Parquet parts: assets and vectors.

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
    """Build a vectors part: coactive_image_id plus one FLOAT[D] column per array.

    `columns` maps column name to a 2-D float32 numpy array with one row per id.
    Fixed-size lists become DuckDB ARRAY columns (FLOAT[D]), which
    array_inner_product reads without conversion.
    """
    import numpy as np

    arrays = [pa.array(ids, pa.string())]
    names = ["coactive_image_id"]
    for name, mat in columns.items():
        mat = np.ascontiguousarray(mat, dtype=np.float32)
        flat = pa.array(mat.reshape(-1), pa.float32())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, mat.shape[1]))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)
