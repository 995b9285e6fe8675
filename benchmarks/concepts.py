"""Concept columns at scale: the Coactive tutorial's three queries on a 1,000,000-asset warehouse.

    /work/venv/bin/python benchmarks/concepts.py [--n 1000000] [--dim 512]

Builds a warehouse of synthetic assets and FLOAT[dim] vectors (written as the
ingest pipeline writes them, in parts of --part-rows), defines seven concepts as
linear heads (`registry.create_from_head`, ~1% positives each) and prints:

  floor     a bare numpy `X @ w` per concept the query names, X already in memory
  macro     the query through the SQL macros alone (no score cache: what the stock
            DuckDB CLI runs before any materialisation)
  first     bulk scoring that must decode the Parquet FLOAT[] lists (first ever)
  cold      the query's concepts have no score cache (the other concepts do): bulk
            scoring from the raw vector sidecar + the query
  warm      the query on the materialised scores (median of 5)

and the ratios cold/floor and warm in ms.  Goals: cold <= 3x floor, warm < 100 ms.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse import Warehouse, catalog  # noqa: E402
from warehouse import vector_store  # noqa: E402
from warehouse.schema import ASSET_SCHEMA, vectors_table  # noqa: E402
from warehouse.storage import atomic_write_parquet  # noqa: E402

QUERIES = [
    ("3.2.1 WHERE fight = 1 LIMIT 10", ["fight"],
     "SELECT coactive_image_id, path FROM coactive_table WHERE fight = 1 LIMIT 10"),
    ("3.2.2 count handgun OR rifle OR shotgun", ["handgun", "rifle", "shotgun"],
     "SELECT count(coactive_image_id) AS weapon_count FROM coactive_table "
     "WHERE handgun = 1 OR rifle = 1 OR shotgun = 1"),
    ("3.2.3 GREATEST(...) ORDER BY DESC LIMIT 20", ["blood", "brassiere", "syringe"],
     "SELECT coactive_image_id, path, GREATEST(blood_latest_prob, brassiere_latest_prob, syringe_latest_prob) "
     "AS problematic_score FROM coactive_table_adv ORDER BY problematic_score DESC LIMIT 20"),
    # The same on coactive_table: the _adv view also evaluates columns of other providers
    # (moderation_status subqueries) that DuckDB does not prune, which the difference shows.
    ("3.2.3 on coactive_table (not _adv)", ["blood", "brassiere", "syringe"],
     "SELECT coactive_image_id, path, GREATEST(blood_latest_prob, brassiere_latest_prob, syringe_latest_prob) "
     "AS problematic_score FROM coactive_table ORDER BY problematic_score DESC LIMIT 20"),
]
CONCEPTS = ["fight", "handgun", "rifle", "shotgun", "blood", "brassiere", "syringe"]


def unit_vectors(rng, m: int, dim: int) -> np.ndarray:
    X = rng.standard_normal((m, dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def legacy_vectors_table(ids: list[str], columns: dict) -> pa.Table:
    """A vectors part as releases before `warehouse/vector_store.py` wrote it: FLOAT[D] lists (zstd)."""
    arrays = [pa.array(ids, pa.string())]
    for mat in columns.values():
        mat = np.ascontiguousarray(mat, dtype=np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1), pa.float32()), mat.shape[1]))
    return pa.Table.from_arrays(arrays, names=["coactive_image_id", *columns])


def build(root: Path, n: int, dim: int, part_rows: int = 100_000, seed: int = 0, keep_matrix: bool = False,
          encoder: str | None = None, columns: dict | None = None, legacy: bool = False):
    """A warehouse with `n` synthetic assets and unit vectors; returns (wh, encoder, X or None).

    `columns` ({name: (dim, make(rng, rows, dim) -> float32 matrix)}) and `encoder` give other
    shapes (benchmarks/search.py: an ImageNet encoder's `features` and `probs`); the default is
    one unit-vector column `embedding` of `dim` under the encoder `synthetic-<dim>`.  `legacy`
    writes the vector parts in the old FLOAT-list form (an old warehouse).
    """
    wh = Warehouse.open(root)
    encoder = encoder or f"synthetic-{dim}"
    columns = columns or {"embedding": (dim, unit_vectors)}
    rng = np.random.default_rng(seed)
    con = wh.cursor()
    with wh.write_lock:
        catalog.register_encoder(con, encoder, "synthetic", {c: d for c, (d, _) in columns.items()})
        catalog.ensure_dataset(con, "bench", encoder)
    mats = []
    layout = wh.layout
    for start in range(0, n, part_rows):
        m = min(part_rows, n - start)
        ids = [str(uuid.UUID(int=int(x), version=4)) for x in rng.integers(0, 2**62, m)]
        mats_now = {c: make(rng, m, d) for c, (d, make) in columns.items()}
        X = next(iter(mats_now.values()))
        now = catalog.now()
        assets = pa.table({
            "coactive_image_id": ids, "dataset": ["bench"] * m,
            "path": [f"/bench/img{start + i:07d}.jpg" for i in range(m)], "media_type": ["image"] * m,
            "format": ["JPEG"] * m, "width": [640] * m, "height": [480] * m, "size_bytes": [50_000] * m,
            "sha256": [None] * m, "created_dt": [now] * m, "file_mtime": [now] * m, "metadata": [None] * m,
            "coactive_video_id": [None] * m, "keyframe_index": [None] * m, "keyframe_time_ms": [None] * m,
            "run_id": ["bench"] * m,
        }, schema=ASSET_SCHEMA)
        ap = atomic_write_parquet(assets, layout.new_part_path(layout.assets_dir("bench")))
        vpath = layout.new_part_path(layout.vectors_dir("bench", encoder))
        vp = atomic_write_parquet(legacy_vectors_table(ids, mats_now), vpath) if legacy else \
            vector_store.write_table(vectors_table(ids, mats_now), vpath)
        a_rel, v_rel = str(ap.relative_to(wh.root)), str(vp.relative_to(wh.root))
        with wh.transaction(con=con):
            catalog.insert_part(con, a_rel, "bench", "assets", None, m, "bench", now)
            catalog.insert_part(con, v_rel, "bench", "vectors", encoder, m, "bench", now)
            con.register("new_ids", assets)
            con.execute("INSERT INTO catalog.assets (coactive_image_id, dataset, path, sha256, media_type, part,"
                        " created_dt) SELECT coactive_image_id, 'bench', path, NULL, 'image', ?, ? FROM new_ids",
                        [a_rel, now])
            con.execute("INSERT INTO catalog.embeddings (coactive_image_id, encoder, part)"
                        " SELECT coactive_image_id, ?, ? FROM new_ids", [encoder, v_rel])
            con.unregister("new_ids")
        if keep_matrix:
            mats.append(X)
    wh.refresh_views()
    return wh, encoder, (np.concatenate(mats) if keep_matrix else None)


def heads(encoder: str, dim: int, seed: int = 1):
    """Seven random linear heads with ~1% of assets above 0.5."""
    from concepts.heads import HeadSpec

    rng = np.random.default_rng(seed)
    out = {}
    for name in CONCEPTS:
        w = rng.standard_normal(dim).astype(np.float32)
        w /= np.linalg.norm(w)
        # x.w ~ N(0, 1/dim) for random unit x: z = 4 (sqrt(dim) x.w - 2.33) puts 1% above 0.
        out[name] = HeadSpec("model", encoder, "embedding", w * np.float32(4 * np.sqrt(dim)), 1.0, -4 * 2.33, "logistic")
    return out


def timed(fn, reps: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def drop_caches(wh, names: list[str]) -> None:
    from warehouse import concept_cache

    with wh.write_lock:
        with wh.transaction(scores=True) as tx:
            tx.con.execute("DELETE FROM catalog.concept_scores WHERE list_contains(?, concept)", [names])
        concept_cache.sweep(tx.con, wh.root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--part-rows", type=int, default=100_000)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--skip-macro", action="store_true", help="skip the (slow) macro-only runs")
    args = ap.parse_args()
    from concepts import registry

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-concepts-")) if args.root is None else args.root
    try:
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
        t, (wh, encoder, X) = timed(lambda: build(tmp, args.n, args.dim, args.part_rows, keep_matrix=True))
        print(f"built {args.n:,} assets x FLOAT[{args.dim}] in {t:.1f}s at {tmp}")
        hs = heads(encoder, args.dim)
        for name, h in hs.items():
            registry.create_from_head(wh, name, h, materialize=False)

        floors = {}
        for name in CONCEPTS:
            w = hs[name].weights
            floors[name], _ = timed(lambda: X @ w, reps=3)
        print(f"floor: numpy X @ w over {args.n:,}x{args.dim} in memory: "
              f"{1000 * statistics.median(floors.values()):.1f} ms per concept")

        macro = {}
        if not args.skip_macro:
            for title, names, sql in QUERIES:
                macro[title], _ = timed(lambda: wh.sql(sql).fetchall())
        t_first, _ = timed(lambda: registry.materialize(wh, CONCEPTS))
        print(f"first bulk scoring of all {len(CONCEPTS)} concepts (decodes the Parquet FLOAT[] lists, "
              f"writes raw sidecars): {t_first:.2f}s")

        print()
        print(f"{'query':<44} {'floor':>8} {'macro':>9} {'cold':>8} {'warm':>8} {'cold/floor':>10}")
        results = {}
        for title, names, sql in QUERIES:
            floor = sum(floors[n] for n in names)
            drop_caches(wh, names)  # a new version of the query's concepts: no score cache yet

            def cold():
                registry.materialize(wh, names)
                return wh.sql(sql).fetchall()

            t_cold, r_cold = timed(cold)
            t_warm, r_warm = timed(lambda: wh.sql(sql).fetchall(), reps=5)
            # LIMIT without ORDER BY (3.2.1) may return any 10 positives; the others are deterministic.
            assert len(r_cold) == len(r_warm) and ("ORDER BY" not in sql and "LIMIT" in sql or r_cold == r_warm)
            results[title] = r_warm
            m = f"{macro[title]:8.2f}s" if title in macro else "       -"
            print(f"{title:<44} {1000 * floor:6.0f}ms {m} {t_cold:7.2f}s {1000 * t_warm:6.0f}ms {t_cold / floor:9.1f}x")
        print()
        print(f"goals: cold within 3x the floor, warm under 100 ms ({os.cpu_count()} cores, "
              f"load average now {os.getloadavg()[0]:.2f})")
        wh.close()
    finally:
        if args.root is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
