"""Search at scale: similar-image and text search over 1,000,000 assets, beside a bare numpy top-k.

    nice -n 10 /work/venv/bin/python benchmarks/search.py [--n 1000000] [--features 1280] [--probs 1000]

Builds a warehouse as `benchmarks/concepts.py` does, with the default encoder's
real shape: `imagenet-lite0` vectors of `features` FLOAT[1280] (what similar-image
search reads) and `probs` FLOAT[1000] (class probabilities, what a text query's
ConSE head reads).  The vectors are synthetic, the text heads real (MiniLM over
the ImageNet class names).  Prints, median of --reps queries each:

  first     the first search, which decodes the Parquet FLOAT[] lists once and leaves the
            raw float32 copies (and row norms) that later searches memory-map
  search    `Warehouse.search_similar` / `search_text` (exact, top 10), p50
  floor     numpy over the same matrix already in memory: (X @ q) / |x| or X @ w, then
            argpartition for the top 10, p50
  ratio     search / floor
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The repo root instead of this directory: benchmarks/http.py would shadow the standard library's `http`.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.concepts import build  # noqa: E402

TEXTS = ["cat", "a red sports car", "pizza", "dog on a beach", "syringe", "a glass of beer", "rifle"]


def features(rng, m: int, dim: int) -> np.ndarray:
    # Pooled features are non-negative after the activation: rectified normals, not unit vectors.
    return np.maximum(rng.standard_normal((m, dim), dtype=np.float32), 0)


def probs(rng, m: int, dim: int) -> np.ndarray:
    z = rng.standard_normal((m, dim), dtype=np.float32) * np.float32(2.5)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def p50(fn, reps) -> float:
    times = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def in_memory(wh, encoder: str, column: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, X) of every vector part, read into one matrix (the floor's input)."""
    from concepts.search import _part_vectors
    from warehouse import catalog

    parts = catalog.part_paths(wh.cursor(), "vectors", encoder=encoder)
    got = [_part_vectors(Path(wh.root), encoder, p, column, dim) for p in parts]
    return np.concatenate([g[0] for g in got]), np.concatenate([np.asarray(g[1]) for g in got])


def top(s: np.ndarray, k: int = 10) -> np.ndarray:
    idx = np.argpartition(-s, k - 1)[:k]
    return idx[np.argsort(-s[idx])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=1280)
    ap.add_argument("--probs", type=int, default=1000)
    ap.add_argument("--part-rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    from concepts.heads import class_names
    from concepts.text import text_head

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-search-")) if args.root is None else args.root
    try:
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
        t = time.perf_counter()
        wh, encoder, _ = build(tmp, args.n, 0, args.part_rows, encoder="imagenet-lite0",
                               columns={"features": (args.features, features), "probs": (args.probs, probs)})
        print(f"built {args.n:,} assets x (features FLOAT[{args.features}], probs FLOAT[{args.probs}]) "
              f"in {time.perf_counter() - t:.1f}s at {tmp}")
        ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM catalog.assets "
                                    "USING SAMPLE reservoir(64 ROWS) REPEATABLE (3)").fetchall()]

        t = time.perf_counter()
        wh.search_similar(ids[0], dataset="bench", limit=10)
        first_sim = time.perf_counter() - t
        t = time.perf_counter()
        wh.search_text(TEXTS[0], dataset="bench", limit=10)
        first_text = time.perf_counter() - t
        print(f"first similar search {first_sim:.1f}s, first text search {first_text:.1f}s "
              f"(decode the Parquet lists once, write the raw copies and norms)")

        from concepts import search

        sim = p50(lambda i: wh.search_similar(ids[1 + i], dataset="bench", limit=10), args.reps)
        txt = p50(lambda i: wh.search_text(TEXTS[i % len(TEXTS)], dataset="bench", limit=10), args.reps)
        heads = [text_head(encoder, [t], None, class_names(wh.cursor(), encoder)) for t in TEXTS]
        scan = p50(lambda i: search.rank_by_head(wh, heads[i % len(heads)], dataset="bench", limit=10), args.reps)
        head_ms = p50(lambda i: text_head(encoder, [TEXTS[i % len(TEXTS)]], None, None), args.reps)

        # Floors: the same matrices in memory, the same exact top 10.
        vid, F = in_memory(wh, encoder, "features", args.features)
        norms = np.linalg.norm(F, axis=1)
        qs = []
        for i in range(args.reps):
            row = int(np.flatnonzero(vid == ids[1 + i])[0])
            q = F[row] / np.linalg.norm(F[row])
            qs.append(q.astype(np.float32))
        floor_sim = p50(lambda i: top((F @ qs[i]) / norms), args.reps)
        check = wh.search_similar(ids[1], dataset="bench", limit=10)
        assert {h.coactive_image_id for h in check} == set(vid[top((F @ qs[0]) / norms)]), "search != floor"
        del F, norms
        pid, P = in_memory(wh, encoder, "probs", args.probs)
        ws = [(h.weights * np.float32(h.scale)).astype(np.float32) for h in heads]
        floor_txt = p50(lambda i: top(P @ ws[i % len(ws)]), args.reps)
        check = wh.search_text(TEXTS[1], dataset="bench", limit=10)
        assert {h.coactive_image_id for h in check} == set(pid[top(P @ ws[1])]), "text search != floor"
        del P

        print()
        print(f"{'search (top 10, exact)':<40} {'p50':>9} {'floor':>9} {'ratio':>7}")
        print(f"{'similar images (cosine, features)':<40} {1000 * sim:7.0f}ms {1000 * floor_sim:7.0f}ms "
              f"{sim / floor_sim:6.2f}x")
        print(f"{'text: scan by the ConSE head (probs)':<40} {1000 * scan:7.0f}ms {1000 * floor_txt:7.0f}ms "
              f"{scan / floor_txt:6.2f}x")
        print(f"{'text: whole search (head + scan)':<40} {1000 * txt:7.0f}ms {1000 * floor_txt:7.0f}ms "
              f"{txt / floor_txt:6.2f}x")
        print(f"{'  of which the head (MiniLM + ConSE)':<40} {1000 * head_ms:7.0f}ms")
        print(f"\n{os.cpu_count()} cores, load average now {os.getloadavg()[0]:.2f}")
        wh.close()
    finally:
        if args.root is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
