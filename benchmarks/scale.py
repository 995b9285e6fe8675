"""How PixQL grows: synthetic warehouses of 1M, 3M and 10M assets, one child process each.

    /work/venv/bin/python benchmarks/scale.py [--sizes 1000000,3000000,10000000] [--dim 512]

Each size is built in a fresh process (so its peak memory is its own) with the
builder of benchmarks/concepts.py (the ingest pipeline's part layout, unit
FLOAT[dim] vectors, the benchmark's seven concepts as linear heads) and prints:

  disk/asset   bytes per asset on disk, by top-level folder and in total, after a forced sweep
               (and beside it right after the concept changes, which sweep what they replace)
  peak RSS     the child's peak resident memory (getrusage)
  create       creating one concept, scored over every asset (materialised)
  cold/warm    the tutorial's three queries with no score cache for their concepts
               (scoring + query), then on the materialised scores (median of 5)

and, for every size after the first, each figure's ratio to the first size's
figure scaled by the size ratio (1.00 = linear growth; peak memory should stay
flat instead).  The real encoder's shape (1280 + 1000 floats) does not fit this
disk at 10M: the default 512-d shape is the one the issue names for scale.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def concepts_bench():
    """benchmarks/concepts.py (its name is the `concepts` package's, so it is loaded by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_concepts", Path(__file__).with_name("concepts.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def folder_bytes(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in root.rglob("*"):
        if p.is_file():
            top = p.relative_to(root).parts[0]
            out[top] = out.get(top, 0) + p.stat().st_size
    return out


def one(n: int, dim: int, part_rows: int, root: Path) -> dict:
    """Build and measure one size in this process; the figures as a dict."""
    import numpy as np

    from concepts import registry
    from warehouse import vector_store

    vector_store._torch()  # its import (once per process, as in a server) is not scoring
    b = concepts_bench()
    CONCEPTS, QUERIES, build, drop_caches, heads, timed = b.CONCEPTS, b.QUERIES, b.build, b.drop_caches, b.heads, b.timed

    t_build, (wh, encoder, _) = timed(lambda: build(root, n, dim, part_rows))
    hs = heads(encoder, dim)
    for name in CONCEPTS[1:]:
        registry.create_from_head(wh, name, hs[name], materialize=False)
    t_create, _ = timed(lambda: registry.create_from_head(wh, CONCEPTS[0], hs[CONCEPTS[0]], materialize=True))
    registry.materialize(wh, CONCEPTS)
    queries = {}
    for title, names, sql in QUERIES[:3]:
        drop_caches(wh, names)
        wh.wait_for_merge()

        def cold():
            registry.materialize(wh, names)
            return wh.sql(sql).fetchall()

        t_cold, _ = timed(cold)
        t_merge, _ = timed(wh.wait_for_merge)  # warm is measured on the merged segments
        t_warm, _ = timed(lambda: wh.sql(sql).fetchall(), reps=5)
        queries[title] = {"cold_s": t_cold, "merge_s": t_merge, "warm_s": t_warm}
    # Each concept change's commit swept what it replaced (no reader of it was left); a forced
    # sweep should find nothing more.
    disk_with_dead = sum(folder_bytes(root).values())
    from warehouse import concept_cache

    with wh.write_lock:
        concept_cache.sweep(wh.cursor(), wh.root, min_age_s=-1e9)
    wh.close()
    disk = folder_bytes(root)
    return {"n": n, "dim": dim, "build_s": t_build, "create_s": t_create, "queries": queries,
            "disk_per_asset": {k: v / n for k, v in sorted(disk.items())},
            "disk_total_per_asset": sum(disk.values()) / n, "disk_with_replaced_per_asset": disk_with_dead / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load": os.getloadavg()[0], "np": np.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,3000000,10000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--part-rows", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=None, help="where the warehouses go (each removed after)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child's size
    ap.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.dim, args.part_rows, args.root)))
        return

    import shutil

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, FLOAT[{args.dim}] vectors")
    rows = []
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"pixql-scale-{n}-", dir=args.dir))
        try:
            t = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim),
                                  "--part-rows", str(args.part_rows), "--root", str(root)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rows.append(r)
            print(f"\n{n:,} assets (built in {r['build_s']:.0f}s, whole run {time.perf_counter() - t:.0f}s, "
                  f"load {r['load']:.1f})")
            print("  disk per asset: " + ", ".join(f"{k} {v / 1024:.2f} KB" for k, v in r["disk_per_asset"].items())
                  + f"; total {r['disk_total_per_asset'] / 1024:.2f} KB (right after the concept changes, before a forced sweep "
                    f"{r['disk_with_replaced_per_asset'] / 1024:.2f} KB)")
            print(f"  peak RSS {r['peak_rss_mb']:.0f} MB; create one concept {r['create_s']:.2f}s")
            for title, q in r["queries"].items():
                print(f"  {title:<44} cold {q['cold_s']:7.2f}s  merge (background) {q['merge_s']:6.2f}s  "
                      f"warm {1000 * q['warm_s']:7.0f}ms")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    if len(rows) > 1:
        base = rows[0]
        print(f"\ngrowth against {base['n']:,} scaled by size (1.00 = linear; peak memory: plain ratio)")
        print(f"{'size':>12} {'disk':>6} {'create':>7} " + " ".join(f"{t[:5] + ' c/w':>11}" for t in base["queries"])
              + f" {'peak RSS':>9}")
        for r in rows[1:]:
            k = r["n"] / base["n"]
            qs = " ".join(f"{q['cold_s'] / (k * base['queries'][t]['cold_s']):5.2f}/"
                          f"{q['warm_s'] / (k * base['queries'][t]['warm_s']):5.2f}" for t, q in r["queries"].items())
            print(f"{r['n']:>12,} {r['disk_total_per_asset'] / base['disk_total_per_asset']:6.2f} "
                  f"{r['create_s'] / (k * base['create_s']):7.2f} {qs} {r['peak_rss_mb'] / base['peak_rss_mb']:9.2f}")
        print("peak RSS per size: " + ", ".join(f"{r['n']:,}: {r['peak_rss_mb']:.0f} MB" for r in rows))
    print(f"\nload average now {os.getloadavg()[0]:.2f}; median warm over sizes "
          f"{1000 * statistics.median(q['warm_s'] for r in rows for q in r['queries'].values()):.0f} ms")


if __name__ == "__main__":
    main()
