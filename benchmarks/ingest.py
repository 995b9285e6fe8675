"""Ingest throughput against the bare model, measured in the same process.

    python benchmarks/ingest.py [--images 384] [--batch-size 32] [--big N [--concepts 9]]

Makes JPEG photos (640x480, from the images shipped in scikit-image and
scikit-learn, jittered so every file differs), then measures:
  * model:  the encoder alone on pre-decoded, pre-processed batches (the floor
            any pipeline has to pay: the goal is to hide everything else behind it;
            the best of --rounds passes, interleaved with the ingests);
  * streams: the same batches as ingest runs the model (one single-threaded stream per core,
            ingest/model_streams.py): printed beside the baseline, not instead of it;
  * ingest: `Warehouse.ingest` on the files end to end (read, hash, decode,
            preprocess, embed, write Parquet, commit the catalog);
and prints images/s for both and the ratio ingest/model (goal >= 0.9 on 2 cores).

With --big N it also builds a warehouse of N synthetic assets in the same
dataset, with the encoder's real vector columns (benchmarks/concepts.py
`build`), and --concepts materialised concepts over them, then ingests the same
photos into it: per-flush costs that grow with the warehouse (score-cache
checks, skip sets, view rebuilds) show as big/empty < 1.  Goal: big/empty >= 1
within noise, big/model >= 0.9.
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


def make_photos(target: Path, n: int, seed: int = 0) -> list[Path]:
    import numpy as np
    from PIL import Image, ImageEnhance

    from api.cli.demo import write_demo_images

    src = target / "_src"
    bases = [Image.open(p).convert("RGB").resize((640, 480)) for p in write_demo_images(src)]
    rng = np.random.default_rng(seed)  # another seed: other bytes, so other asset ids
    out = []
    for i in range(n):
        im = bases[i % len(bases)]
        im = ImageEnhance.Brightness(im).enhance(0.8 + 0.4 * rng.random())
        p = target / f"photo{i:05d}.jpg"
        im.save(p, "JPEG", quality=88)
        out.append(p)
    shutil.rmtree(src)
    return out


def concepts_bench():
    """benchmarks/concepts.py, loaded by path (its name is the `concepts` package's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_concepts", _here / "concepts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_big(root: Path, n: int, encoder_name: str, enc, n_concepts: int):
    """A warehouse of `n` synthetic assets in dataset 'bench' with `encoder_name`'s real columns and
    `n_concepts` materialised concepts (logistic heads over its first column); the build seconds."""
    import numpy as np

    from concepts import registry
    from concepts.heads import HeadSpec

    def make(rng, m, d):  # cheap non-negative rows: their values do not matter here
        return rng.random((m, d), dtype=np.float32)

    t0 = time.perf_counter()
    cols = {c: (d, make) for c, d in enc.vector_columns.items()}
    wh, _, _ = concepts_bench().build(root, n, 0, part_rows=50_000, encoder=encoder_name, columns=cols)
    column, dim = next(iter(enc.vector_columns.items()))
    rng = np.random.default_rng(1)
    for k in range(n_concepts):
        w = rng.standard_normal(dim).astype(np.float32) / np.float32(np.sqrt(dim))
        registry.create_from_head(wh, f"bigc{k}", HeadSpec("model", encoder_name, column, w, 1.0, -2.0),
                                  materialize=False)
    registry.materialize(wh)
    return wh, time.perf_counter() - t0


class Bookkeeping:
    """Wall time of the run's opening (`open_run`: reading the committed ids, ...) and of its part
    commits (`_PartWriter.flush`: inserts, score caches, views): the costs that can grow with the
    warehouse, timed in place on the main thread while the model is not running."""

    def __init__(self):
        from ingest import pipeline

        self.open_s = self.flush_s = 0.0
        self.flushes = 0
        real_open, real_flush = pipeline.open_run, pipeline._PartWriter.flush
        book = self

        def open_run(*a, **k):
            t = time.perf_counter()
            try:
                return real_open(*a, **k)
            finally:
                book.open_s += time.perf_counter() - t

        def flush(writer):
            t = time.perf_counter()
            try:
                return real_flush(writer)
            finally:
                book.flush_s += time.perf_counter() - t
                book.flushes += 1

        pipeline.open_run, pipeline._PartWriter.flush = open_run, flush

    def take(self) -> tuple[float, float, int]:
        out = (self.open_s, self.flush_s, self.flushes)
        self.open_s = self.flush_s = 0.0
        self.flushes = 0
        return out


def timed_ingest(wh, photos: Path, n: int, args, book: Bookkeeping) -> tuple:
    """(images/s, CPU ms per image, (open s, flush s, flushes)) of one `Warehouse.ingest` of the
    photos into dataset 'bench'."""
    book.take()
    t0, c0 = time.perf_counter(), time.process_time()
    report = wh.ingest([str(photos)], dataset="bench", encoder=args.encoder,
                       batch_size=args.batch_size, part_rows=args.part_rows, progress=False)
    s, c = time.perf_counter() - t0, time.process_time() - c0
    assert report.assets_added == n, report
    return n / s, 1000 * c / n, book.take()


def best(a: tuple, b: tuple) -> tuple:
    """The better of two (images/s, CPU ms per image[, bookkeeping]): each figure on its own."""
    out = (max(a[0], b[0]), min(a[1], b[1]))
    if len(b) > 2:
        out += (b[2] if len(a) < 3 else min(a[2], b[2], key=lambda t: t[0] + t[1]),)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--encoder", default="imagenet-lite0")
    ap.add_argument("--big", type=int, default=0, help="also ingest into a warehouse of N synthetic assets")
    ap.add_argument("--part-rows", type=int, default=512, help="assets per committed part (the ingest default)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best of each figure is kept")
    ap.add_argument("--concepts", type=int, default=9, help="materialised concepts in the --big warehouse")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from encoders import get_encoder
    from warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-"))
    try:
        # One photo set per round: each round's ingests add new assets (a second ingest of the
        # same files would skip them all).
        sets = [make_photos(tmp / f"photos{k}", args.images, seed=k) for k in range(args.rounds)]
        files = sets[0]
        enc = get_encoder(args.encoder)
        if args.big:  # built first, so the timings below run close together
            big, build_s = build_big(tmp / "big", args.big, enc.name, enc, args.concepts)
        # Same preprocessing as ingest, done up front so only the model is timed.
        tensors = [enc.preprocess(Image.open(p).convert("RGB")) for p in files]
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        enc.encode(batches[0])  # warm-up (allocations, kernel selection)

        def model_pass() -> tuple[float, float]:
            t0, c0 = time.perf_counter(), time.process_time()
            for b in batches:
                enc.encode(b)
            return len(files) / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / len(files)

        def streams_pass() -> tuple[float, float]:
            # Not the baseline: the same batches the way ingest runs them (one single-threaded
            # stream per core, ingest/model_streams.py), printed so the ratio's meaning is plain.
            from ingest.model_streams import ModelStreams

            t0, c0 = time.perf_counter(), time.process_time()
            with ModelStreams(enc) as ms:
                for k, b in enumerate(batches):
                    list(ms.ready())
                    ms.submit(b, k)
                list(ms.drain())
            return len(files) / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / len(files)

        # Rounds interleave the measurements and each keeps its best: other load on the
        # machine only ever slows a pass, and a change of load during the run then cannot
        # flatter one figure against the others.
        book = Bookkeeping()
        worst = (0.0, float("inf"))
        model, streams, empty, into_big = worst, worst, worst, worst
        for k in range(args.rounds):
            model = best(model, model_pass())
            streams = best(streams, streams_pass())
            wh = Warehouse.open(tmp / f"wh{k}")
            empty = best(empty, timed_ingest(wh, tmp / f"photos{k}", args.images, args, book))
            wh.close()
            if args.big:
                into_big = best(into_big, timed_ingest(big, tmp / f"photos{k}", args.images, args, book))
        (model_ips, model_cpu), (ingest_ips, ingest_cpu, ingest_book) = model, empty
        if args.big:
            big.close()

        print(f"images                 {len(files)} (640x480 JPEG), batch {args.batch_size}, "
              f"encoder {args.encoder}, torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
              f"best of {args.rounds} rounds")
        # CPU ms per image (the process's, all threads) beside images/s: other load on the
        # machine slows the wall clock but hardly the CPU a run needs, so on a shared machine
        # the CPU ratios are the steadier estimate of the ratios on a dedicated one.
        print(f"bare model             {model_ips:8.1f} images/s   {model_cpu:6.1f} CPU ms/image")
        print(f"  as ingest runs it    {streams[0]:8.1f} images/s   {streams[1]:6.1f} CPU ms/image"
              f"   (single-thread streams, one per core; not the baseline)")
        print(f"whole ingest           {ingest_ips:8.1f} images/s   {ingest_cpu:6.1f} CPU ms/image")
        print(f"ratio ingest/model     {ingest_ips / model_ips:8.2f}   (CPU {model_cpu / ingest_cpu:.2f})"
              f"   (goal >= 0.90)")
        print(f"ratio ingest/streams   {ingest_ips / streams[0]:8.2f}   (CPU {streams[1] / ingest_cpu:.2f})"
              f"   (the model run as ingest runs it)")

        def bookkeeping(b):
            o, f, n = b
            print(f"  opening the run      {1000 * o:8.1f} ms;  {n} part commits {1000 * f:8.1f} ms "
                  f"({1000 * f / max(n, 1):.1f} ms each)")

        bookkeeping(ingest_book)
        if args.big:
            big_ips, big_cpu, big_book = into_big
            print(f"into {args.big} assets, {args.concepts} concepts (built in {build_s:.0f}s)")
            print(f"  ingest               {big_ips:8.1f} images/s   {big_cpu:6.1f} CPU ms/image")
            bookkeeping(big_book)
            print(f"ratio big/model        {big_ips / model_ips:8.2f}   (CPU {model_cpu / big_cpu:.2f})"
                  f"   (goal >= 0.90)")
            print(f"ratio big/empty        {big_ips / ingest_ips:8.2f}   (CPU {ingest_cpu / big_cpu:.2f})"
                  f"   (goal >= 1.00 within noise)")
        print(f"load average           {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
