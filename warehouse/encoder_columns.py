"""The encoders' SQL columns (`encoder_sql`: `imagenet_top_class`, `imagenet_top_prob`) computed
per vector part, so the score segments can carry them and `coactive_table_adv` needs no join onto
the vectors.

`state` says what the next base segments carry of them (recorded with the served segments by
`concept_cache`), `values` gives their values over every vector part of an encoder, and
`part_values` computes one part's, once: kept in `scores/_encoder/` under the part's name and the
spec's key (vector parts never change under their names; erasure and the orphan sweep remove
them with their part, `erasure_files`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import catalog, encoder_sql, vector_store
from .storage import atomic_write_parquet, safe_name

ENCODER_DIR = "_encoder"  # scores/_encoder/<encoder>/<vector part stem>.<spec key>.parquet


def state(con, served: dict) -> dict:
    """What the next base segments carry of the encoders' SQL columns (`encoder_sql`), as recorded
    in the served-segments record: per encoder its spec's key, its vector parts, the segment column
    of each column, and a `basis` in the segment names that changes whenever the values of rows
    already covered may have changed (another spec, a vector part gone, re-embedded assets); new
    vector parts for new assets leave it, so old segments keep their names."""
    prev, covered = served.get("encoders") or {}, served.get("asset_parts") or []
    out = {}
    for encoder, spec in encoder_sql.specs(con).items():
        if not spec.columns:
            continue
        vparts = catalog.part_paths(con, "vectors", encoder=encoder)
        p = prev.get(encoder)
        basis = p["basis"] if p else None
        if p is None or p["sql"] != spec.key() or not set(p["vector_parts"]) <= set(vparts) \
                or _touched(con, encoder, [v for v in vparts if v not in set(p["vector_parts"])], covered):
            basis = hashlib.sha256(json.dumps([spec.key(), vparts]).encode()).hexdigest()[:16]
        out[encoder] = {"sql": spec.key(), "vector_parts": vparts, "basis": basis,
                        "columns": {name: f"{safe_name(encoder)}__{name}" for name, _ in spec.columns}}
    return out


def _touched(con, encoder: str, new_vparts: list[str], covered: list[str]) -> bool:
    """Whether any of `new_vparts` holds vectors of assets in `covered` (re-embedding)."""
    if not new_vparts or not covered:
        return False
    return con.execute(
        "SELECT 1 FROM (SELECT coactive_image_id FROM catalog.embeddings "
        f"WHERE encoder = ? AND {catalog.in_list('part')}) e "
        f"JOIN catalog.assets a USING (coactive_image_id) WHERE {catalog.in_list('a.part')} LIMIT 1",
        [encoder, new_vparts, covered]).fetchone() is not None


# The reductions ImageNet encoders' columns are made of, which numpy computes over a memory-mapped
# compact part at memory speed (DuckDB decodes every list: 70 us a row for a 1,000-d column);
# the rest of a fragment (e.g. the class-name macro) still runs in DuckDB, over these scalars.
_ARGMAX = re.compile(r"list_position\(\{vectors\}\.(\w+)::FLOAT\[\], list_max\(\{vectors\}\.\1::FLOAT\[\]\)\)")
_MAX = re.compile(r"list_max\(\{vectors\}\.(\w+)::FLOAT\[\]\)")


def _reduced(root: Path, part: str, dims: dict[str, int], sqls: list[str]) -> tuple[list[str], pa.Table] | None:
    """`sqls` over a table of numpy reductions of the part's columns, or None (use DuckDB on the part)."""
    need: dict[str, tuple[str, str]] = {}

    def sub(kind):
        def f(m):
            name = f"__{kind}_{m.group(1)}"
            need[name] = (kind, m.group(1))
            return f"r.{name}"
        return f
    out = [_MAX.sub(sub("max"), _ARGMAX.sub(sub("argmax"), sql)) for sql in sqls]
    if any("{vectors}" in sql for sql in out) or any(c not in dims for _, c in need.values()):
        return None
    cols = {}
    for name, (kind, column) in need.items():
        X = vector_store.open_column(root / part, column, dims[column])
        if X is None:
            return None
        got = np.empty(len(X), np.int64 if kind == "argmax" else np.float32)
        for i in range(0, len(X), 4096):
            B = np.asarray(X[i:i + 4096])
            got[i:i + 4096] = B.argmax(axis=1) + 1 if kind == "argmax" else B.max(axis=1)  # list_position is 1-based
        cols[name] = pa.array(got)
    return out, pa.table(cols) if cols else None


def part_values(root: Path, encoder: str, spec, part: str, dims: dict[str, int]) -> pa.Table:
    """The encoder's SQL columns over one vector part, row for row: the stored fragments, run by
    DuckDB (so the values are the ones the SQL path computes; `_reduced` hands it numpy's list
    reductions), kept in `scores/_encoder/` (vector parts are immutable under their names;
    erasure and the orphan sweep remove them with the part)."""
    f = root / "scores" / ENCODER_DIR / safe_name(encoder) / f"{Path(part).stem}.{spec.key()}.parquet"
    if f.exists():
        return pq.read_table(f)
    import duckdb

    sqls = [sql for _, sql in spec.columns]
    reduced = _reduced(root, part, dims, sqls)
    c = duckdb.connect()
    try:
        c.execute("SET preserve_insertion_order = true")
        for m in spec.macros:
            c.execute(m)
        if reduced is not None and reduced[1] is not None:
            c.register("reduced", reduced[1])
            table = c.execute(f"SELECT {', '.join(reduced[0])} FROM reduced r").to_arrow_table()
        else:
            cols = ", ".join(sql.replace("{vectors}", "v") for sql in sqls)
            src = str(root / part).replace("'", "''")
            table = c.execute(f"SELECT {cols} FROM read_parquet('{src}') v").to_arrow_table()
    finally:
        c.close()
    f.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(table, f)
    return table


def values(con, root: Path, encoders: dict) -> list[tuple]:
    """[(vector ids, values table, [(column, segment column)])] per encoder, over all its vector parts."""
    specs = encoder_sql.specs(con)
    out = []
    for encoder, st in sorted(encoders.items()):
        spec, dims = specs[encoder], catalog.encoder_columns(con, encoder)
        ids, tables = [], []
        for part in st["vector_parts"]:
            ids.append(pq.read_table(root / part, columns=["coactive_image_id"]).column(0))
            tables.append(part_values(root, encoder, spec, part, dims))
        if not tables:
            continue
        vids = pa.chunked_array([c for a in ids for c in a.chunks], pa.string()).combine_chunks()
        values = pa.concat_tables(tables).combine_chunks()
        out.append((vids, values, [(name, col) for name, col in st["columns"].items()]))
    return out
