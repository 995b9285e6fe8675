"""Video ingest throughput: keyframes/s decoded and embedded, against the bare model.

    python benchmarks/video.py [--seconds 300] [--fps 1] [--analyzers nsfw,faces]

Writes a synthetic 720p H.264 video (25 fps, `--seconds` long, moving shapes on
changing colours; made once and cached in the temp directory), then measures in
this process:
  * model:   the encoder alone on pre-processed keyframe batches (the floor);
  * decode:  `KeyframeStream` alone: every frame decoded, 1 per second kept and
             converted (what the pipeline's decode thread does);
  * ingest:  `Warehouse.ingest` on the video end to end (stream decode, sample,
             preprocess, embed, write Parquet, commit catalog and videos row);
  * with --analyzers, the same ingest again with those analyzers;
and prints keyframes/s for each with the ratio ingest/model.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))
sys.path.insert(0, str(_here.parent / "tests"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--fps", type=float, default=1.0, help="keyframes sampled per second")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--analyzers", default="", help="also time an ingest with these analyzers")
    args = ap.parse_args()

    import torch

    from encoders import get_encoder
    from ingest.sources import Source
    from ingest.video import decode_video
    from videogen import make_video
    from warehouse import Warehouse

    cache = Path(tempfile.gettempdir()) / f"pixql-bench-720p-{args.seconds}s.mp4"
    if not cache.exists():
        t = time.perf_counter()
        make_video(cache.with_suffix(".tmp.mp4"), seconds=args.seconds, width=1280, height=720)
        cache.with_suffix(".tmp.mp4").rename(cache)
        print(f"wrote {cache} ({cache.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f}s")
    enc = get_encoder("imagenet-lite0")
    target = int(round(enc.input_size / enc.crop_pct))

    # decode only
    t = time.perf_counter()
    res = decode_video(Source(cache), "bench", target=target, fps=args.fps)
    frames = []
    for a in res.frames:
        frames.append(enc.preprocess(a.image))
    decode_s = time.perf_counter() - t
    n = len(frames)
    assert res.frames.error is None, res.frames.error

    # bare model on the same keyframes; timed before and after the ingest, and
    # the faster run kept, so a busy machine shows up as a gap between the two
    enc.encode(torch.stack(frames[: args.batch_size]))  # warm-up

    def model() -> float:
        t = time.perf_counter()
        for i in range(0, n, args.batch_size):
            enc.encode(torch.stack(frames[i: i + args.batch_size]))
        return time.perf_counter() - t

    model_runs = [model()]

    def ingest(analyzers: str | None) -> float:
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "in"
            src.mkdir()
            os.symlink(cache, src / "video.mp4")
            with Warehouse.open(Path(d) / "wh") as wh:
                t = time.perf_counter()
                report = wh.ingest([str(src)], dataset="bench", progress=False, batch_size=args.batch_size,
                                   video_options={"fps": args.fps}, analyzers=analyzers or None)
                s = time.perf_counter() - t
                assert report.assets_added == n and report.errors == 0, report
        return s

    ingest_s = ingest(None)
    model_runs.append(model())
    del frames
    model_s = min(model_runs)
    print(f"video: {args.seconds}s 1280x720 25 fps h264, {n} keyframes at {args.fps:g}/s")
    print(f"model only         {n / model_s:8.1f} keyframes/s  (runs: {', '.join(f'{n / m:.1f}' for m in model_runs)})")
    print(f"decode+sample only {n / decode_s:8.1f} keyframes/s  ({args.seconds * 25 / decode_s:.0f} frames/s decoded)")
    print(f"ingest end to end  {n / ingest_s:8.1f} keyframes/s  ratio ingest/model {model_s / ingest_s:.2f}"
          f"  ({args.seconds / ingest_s:.1f}x real time)")
    if args.analyzers:
        s = ingest(args.analyzers)
        print(f"ingest + {args.analyzers:9} {n / s:8.1f} keyframes/s  ratio ingest/model {model_s / s:.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
