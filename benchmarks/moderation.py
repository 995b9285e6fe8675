"""Moderation throughput against the bare model, measured in the same process.

    python benchmarks/moderation.py [--images 48]

Makes JPEG photos (640x480, jittered from the bundled photos so every file
differs), then measures per image:
  * model:       the encoder alone on pre-decoded images (the floor);
  * new files:   `Moderator.moderate` on files the warehouse has never seen
                 (hash, ingest, score every category, decide, store, cache);
  * stored ids:  re-moderating the same assets by coactive_image_id (scores from stored vectors);
  * cache hits:  the same files again (content hash -> cached result);
  * similarity:  stored ids again with every one of them on the block list;
and prints images/s and each ratio to the model (new files / model is the
cost of moderation on top of the model; stored and cached are many times faster).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_photos(target: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    from api.cli.demo import write_demo_images

    src = write_demo_images(target / "src")
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        im = Image.open(src[k % len(src)]).convert("RGB").resize((640, 480))
        arr = np.asarray(im, dtype=np.int16) + rng.integers(-3, 4, size=(480, 640, 3))
        p = target / f"photo{k:04d}.jpg"
        Image.fromarray(arr.clip(0, 255).astype("uint8")).save(p, quality=90)
        out.append(p)
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    args = ap.parse_args()

    from PIL import Image

    from concepts.moderation import Item, Moderator
    from encoders import get_encoder
    from warehouse import Warehouse, catalog

    base = Path(tempfile.mkdtemp(prefix="pixql-bench-mod-"))
    photos = make_photos(base, args.images)
    enc = get_encoder()
    images = [Image.open(p).convert("RGB") for p in photos]
    enc.encode_images(images[:4])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(images), 32):
        enc.encode_images(images[i:i + 32])
    model = rate(len(images), time.perf_counter() - t)

    wh = Warehouse.open(base / "wh")
    m = Moderator(wh)
    m.moderate([Item(path=str(photos[0]))])  # first use: creates the category concepts (one-time)
    fresh = [Item(path=str(p)) for p in photos[1:]]
    t = time.perf_counter()
    out = m.moderate(fresh)
    new_files = rate(len(fresh), time.perf_counter() - t)
    ids = [Item(coactive_image_id=r["coactive_image_id"]) for r in out["results"]]
    t = time.perf_counter()
    m.moderate(ids)
    stored = rate(len(ids), time.perf_counter() - t)
    t = time.perf_counter()
    hits = m.moderate(fresh)
    cached = rate(len(fresh), time.perf_counter() - t)
    assert all(r["cached"] for r in hits["results"])

    with wh.write_lock:
        wh.cursor().executemany(
            "INSERT INTO catalog.moderation_feedback VALUES (?, 'block', '[]', 'imagenet-lite0', NULL, NULL, ?)",
            [[r["coactive_image_id"], catalog.now()] for r in out["results"]])
    listed = wh.sql("SELECT count(*) FROM catalog.moderation_feedback").fetchone()[0]
    t = time.perf_counter()
    m.moderate(ids)
    similar = rate(len(ids), time.perf_counter() - t)
    wh.close()

    print(f"images: {len(images)} (640x480 JPEG), block list: {listed}")
    print(f"{'model (encoder only)':28} {model:8.1f} img/s   1.00")
    for name, r in (("moderate new files", new_files), ("moderate stored ids", stored),
                    ("moderate cache hits", cached), ("stored ids + block list", similar)):
        print(f"{name:28} {r:8.1f} img/s   {r / model:5.2f}x model")


if __name__ == "__main__":
    main()
