"""Which stored form for vector columns: precision of linear heads and decode speed, measured.

    /work/venv/bin/python benchmarks/vector_forms.py [--crops 12] [--rows 50000]

Precision, on real `imagenet-lite0` outputs (the bundled photos, each also as random
crops and flips so there are a few hundred distinct outputs): the largest change of a
concept probability, float32 vectors vs the candidate form, for
  * ConSE-style heads over `probs` (memberships in [0, 1]: every built-in head and
    random ones): the error is at most the L1 error of the stored probs;
  * labelled heads over `features` (logistic regression as `concepts/labeled.py` fits them,
    on random splits of the photos' crops).
Candidates: float16, int8 with a per-vector scale, and (for probs) the top entries
until the dropped mass is under 5e-4.

Speed, on synthetic rows of 1280 dims: reading a Parquet column into a numpy matrix as
list<float32>, list<float16> and list<int8> with pyarrow, fixed_size_binary, and the
memory-mapped values of an uncompressed list<float16> page (`warehouse/vector_store.py`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The repo, not benchmarks/ (its http.py would shadow the standard library for the photos helper).
sys.path[0] = str(Path(__file__).resolve().parents[1])


def real_outputs(crops: int, seed: int = 0) -> dict[str, np.ndarray]:
    from PIL import Image

    import encoders
    from api.cli.demo import write_demo_images

    rng = np.random.default_rng(seed)
    enc = encoders.get_encoder("imagenet-lite0")
    with tempfile.TemporaryDirectory() as d:
        write_demo_images(Path(d))
        images = [Image.open(p).convert("RGB") for p in sorted(Path(d).iterdir())]
    batch, group = [], []
    for g, im in enumerate(images):
        batch.append(im)
        group.append(g)
        for _ in range(crops):
            w, h = im.size
            s = rng.uniform(0.35, 0.9)
            cw, ch = int(w * s), int(h * s)
            x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            c = im.crop((x, y, x + cw, y + ch))
            batch.append(c.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else c)
            group.append(g)
    out = {"features": [], "probs": []}
    for i in range(0, len(batch), 32):
        v = enc.encode_images(batch[i:i + 32])
        for k in out:
            out[k].append(np.asarray(v[k], np.float32))
    res = {k: np.concatenate(v) for k, v in out.items()}
    res["group"] = np.asarray(group)
    return res


def f16(X):
    return X.astype(np.float16).astype(np.float32)


def i8(X):
    s = np.abs(X).max(axis=1, keepdims=True) / 127.0
    s[s == 0] = 1.0
    return (np.round(X / s).astype(np.int8).astype(np.float32) * s).astype(np.float32)


def top_mass(P, budget=5e-4):
    """Keep each row's largest entries until what is dropped sums to under `budget`; (matrix, kept counts)."""
    order = np.argsort(-P, axis=1)
    sp = np.take_along_axis(P, order, axis=1)
    tail = P.sum(axis=1, keepdims=True) - np.cumsum(sp, axis=1)
    keep = (tail >= budget).sum(axis=1) + 1
    out = np.zeros_like(P)
    for r in range(len(P)):
        idx = order[r, :keep[r]]
        out[r, idx] = P[r, idx]
    return out, keep


def sig(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def precision(crops: int) -> None:
    from concepts import catalogue, labeled
    import encoders

    t = time.perf_counter()
    V = real_outputs(crops)
    F, P, G = V["features"], V["probs"], V["group"]
    print(f"real imagenet-lite0 outputs: {len(F)} ({G.max() + 1} photos x {crops + 1} views) "
          f"in {time.perf_counter() - t:.0f}s; features max {F.max():.2f}, probs max/row median "
          f"{np.median(P.max(1)):.3f}")
    enc = encoders.get_encoder("imagenet-lite0")
    rng = np.random.default_rng(1)
    Ws = []
    for entry in catalogue.BY_NAME.values():
        h = enc.builtin_head(entry)
        if h:
            Ws.append(h[0]["weights"])
    for _ in range(50):
        Ws.append(rng.random(1000).astype(np.float32) ** 8)  # random memberships, mostly small
    W = np.stack(Ws, axis=1).astype(np.float32)
    base = np.clip(P @ W, 0, 1)
    print(f"ConSE-style heads over probs ({W.shape[1]}, of them {W.shape[1] - 50} built-ins): max |dprob|")
    for name, Q in [("float16", f16(P)), ("int8+scale", i8(P))]:
        print(f"  {name:12s} {np.abs(np.clip(Q @ W, 0, 1) - base).max():.2e}   L1 of probs max "
              f"{np.abs(Q - P).sum(1).max():.2e}")
    T, keep = top_mass(P)
    T16 = f16(T)
    print(f"  {'top-mass 5e-4':12s} {np.abs(np.clip(T16 @ W, 0, 1) - base).max():.2e}   entries kept: "
          f"median {int(np.median(keep))}, p99 {int(np.percentile(keep, 99))}, max {keep.max()}")
    errs = {"float16": 0.0, "int8+scale": 0.0}
    zspan = []
    for trial in range(40):
        pos_g = rng.choice(G.max() + 1, size=rng.integers(1, 4), replace=False)
        y = np.isin(G, pos_g).astype(int)
        lab = rng.random(len(y)) < 0.3
        if y[lab].sum() < 2 or (1 - y[lab]).sum() < 2:
            continue
        w, b = labeled.fit(F[lab], y[lab], None, F)
        base = sig(F @ w + b)
        zspan.append(float(np.abs(F * w).sum(1).max()))
        for name, Q in [("float16", f16(F)), ("int8+scale", i8(F))]:
            errs[name] = max(errs[name], float(np.abs(sig(Q @ w + b) - base).max()))
    print(f"labelled heads over features ({len(zspan)} fits): max |dprob| " +
          ", ".join(f"{k} {v:.2e}" for k, v in errs.items()) + f"  (max sum|w x| {max(zspan):.1f})")


def speed(rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from warehouse import vector_store

    D = 1280
    rng = np.random.default_rng(0)
    X = (rng.random((rows, D), dtype=np.float32) ** 3) * 4
    Wt = rng.random((D, 7), dtype=np.float32)

    def fsl(a):
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])

    def best(f, r=3):
        ts = []
        for _ in range(r):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    t_mm = best(lambda: X @ Wt)
    print(f"\nspeed, {rows:,} x {D} (load {os.getloadavg()[0]:.1f}); reference X @ W (7 heads), "
          f"float32 X in RAM: {1000 * t_mm:.0f} ms")
    h = X.astype(np.float16)
    q = np.round(X / X.max(1, keepdims=True) * 127).astype(np.int8)
    with tempfile.TemporaryDirectory() as d:
        forms = {"list<float32>": fsl(X), "list<float16>": fsl(h), "list<int8>": fsl(q),
                 "fixed_size_binary f16": pa.FixedSizeBinaryArray.from_buffers(
                     pa.binary(2 * D), rows, [None, pa.py_buffer(h.tobytes())])}
        for name, arr in forms.items():
            fn = Path(d) / "x.parquet"
            pq.write_table(pa.table({"v": arr}), fn, compression="none", use_dictionary=False)

            def read():
                c = pq.read_table(fn, memory_map=True).column(0).combine_chunks()
                if isinstance(c, pa.FixedSizeBinaryArray):
                    return np.frombuffer(c.buffers()[1], np.float16)
                return c.flatten().to_numpy(zero_copy_only=False)
            t = best(read, 2)
            print(f"  pyarrow {name:22s} {os.path.getsize(fn) / rows:6.0f} B/row  read {1000 * t:7.0f} ms "
                  f"= {t / t_mm:5.1f}x the product")
        fn = Path(d) / "store.parquet"
        vector_store.write_table(vector_store.vectors_table([str(i) for i in range(rows)], {"v": X}), fn)
        t_map = best(lambda: np.asarray(vector_store.open_column(fn, "v", D)[:1]))
        t_score = best(lambda: vector_store.matmul(vector_store.open_column(fn, "v", D), Wt))
        print(f"  compact store (mapped list<float16>) {os.path.getsize(fn) / rows:6.0f} B/row  map "
              f"{1000 * t_map:5.1f} ms, map + X @ W {1000 * t_score:6.0f} ms = {t_score / t_mm:.1f}x the product")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=12)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--skip-precision", action="store_true")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    if not args.skip_precision:
        precision(args.crops)
    speed(args.rows)


if __name__ == "__main__":
    main()
