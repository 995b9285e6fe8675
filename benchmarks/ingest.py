"""Ingest throughput against the bare model, measured in the same process.

    python benchmarks/ingest.py [--images 384] [--batch-size 32]

Makes JPEG photos (640x480, from the images shipped in scikit-image and
scikit-learn, jittered so every file differs), then measures:
  * model:  the encoder alone on pre-decoded, pre-processed batches (the floor
            any pipeline has to pay: the goal is to hide everything else behind it);
  * ingest: `Warehouse.ingest` on the files end to end (read, hash, decode,
            preprocess, embed, write Parquet, commit the catalog);
and prints images/s for both and the ratio ingest/model (goal >= 0.8 on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# This file's name shadows the `ingest` package when run as a script: drop its
# directory from the import path and put the repository root there instead.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_photos(target: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image, ImageEnhance

    from api.cli.demo import write_demo_images

    src = target / "_src"
    bases = [Image.open(p).convert("RGB").resize((640, 480)) for p in write_demo_images(src)]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        im = bases[i % len(bases)]
        im = ImageEnhance.Brightness(im).enhance(0.8 + 0.4 * rng.random())
        p = target / f"photo{i:05d}.jpg"
        im.save(p, "JPEG", quality=88)
        out.append(p)
    shutil.rmtree(src)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--encoder", default="imagenet-lite0")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from encoders import get_encoder
    from warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-"))
    try:
        files = make_photos(tmp / "photos", args.images)
        enc = get_encoder(args.encoder)
        # Same preprocessing as ingest, done up front so only the model is timed.
        tensors = [enc.preprocess(Image.open(p).convert("RGB")) for p in files]
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        enc.encode(batches[0])  # warm-up (allocations, kernel selection)
        t0 = time.perf_counter()
        for b in batches:
            enc.encode(b)
        model_s = time.perf_counter() - t0
        model_ips = len(files) / model_s

        wh = Warehouse.open(tmp / "wh")
        t0 = time.perf_counter()
        report = wh.ingest([str(tmp / "photos")], dataset="bench", encoder=args.encoder,
                           batch_size=args.batch_size, progress=False)
        ingest_s = time.perf_counter() - t0
        wh.close()
        assert report.assets_added == len(files), report
        ingest_ips = len(files) / ingest_s

        print(f"images                 {len(files)} (640x480 JPEG), batch {args.batch_size}, "
              f"encoder {args.encoder}, torch threads {torch.get_num_threads()}, cores {os.cpu_count()}")
        print(f"bare model             {model_ips:8.1f} images/s")
        print(f"whole ingest           {ingest_ips:8.1f} images/s")
        print(f"ratio ingest/model     {ingest_ips / model_ips:8.2f}   (goal >= 0.80)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
