"""What runs on the Ray cluster during an ingest: decoding tasks and the actors that embed and write parts.

Two stages of a Ray Data pipeline (ingest/ray_pipeline.py builds it):

* `decode_sources` - a CPU task per batch of sources: `pipeline._decode_and_preprocess`
  (the same decoding, preprocessing and skip rules as a local ingest), videos
  streamed keyframe by keyframe.  It yields rows of three kinds: `asset` (the
  asset's fields and its preprocessed pixels), `video` (a finished video's
  `catalog.videos` row) and `source` (one per file: skipped, or its error), in
  blocks of at most `block_rows` rows so a long video never sits in one block.
* `PartWriter` - takes `part_rows` rows, embeds them in batches of the device's
  batch size, runs the analyzers, and writes the assets / vectors / analyzer
  parts with `pipeline.PartBuffer` into the warehouse's layout.  It returns one
  row per part: the description the driver commits with `_PartWriter.commit`.
  On GPUs it is an actor (one per GPU, the model on `cuda`) fed by the decoding
  tasks; on CPUs both stages run in one task (`ingest_sources`), one per node at
  a time, in worker processes that keep the encoder loaded across tasks and
  runs.  Nothing here touches the catalog.

Rows cross the object store as plain columns: `kind`, `id`, `record` (JSON of the
asset's fields), `pixels` (the uint8 tensor's bytes), `image` (raw RGB for analyzers).
"""
from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict
from datetime import datetime

import numpy as np

from .decode import DecodedAsset
from .objects import location
from .sources import PLAIN, Source

_ENCODERS: dict = {}


def _encoder(name: str):
    """The loaded encoder, once per worker process (Ray reuses processes across tasks)."""
    if name not in _ENCODERS:
        from encoders import get_encoder

        _ENCODERS[name] = get_encoder(name)
    return _ENCODERS[name]


class _Rows:
    COLUMNS = ("kind", "id", "record", "pixels", "image")

    def __init__(self):
        self.cols = {c: [] for c in self.COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["kind"])

    def add(self, kind, id_, record, pixels=None, image=None) -> None:
        for c, v in zip(self.COLUMNS, (kind, id_, json.dumps(record, default=str), pixels, image)):
            self.cols[c].append(v)

    def asset(self, a: DecodedAsset, exists: bool, analyzed: list[str], with_image: bool) -> None:
        rec = {k: v for k, v in asdict(a).items() if k not in ("image", "pixels")}
        rec["file_mtime"] = a.file_mtime.isoformat() if a.file_mtime else None
        rec["exists"], rec["analyzed"] = exists, analyzed
        px = a.pixels.numpy()
        rec["shape"] = list(px.shape)
        image = None
        if with_image and a.image is not None:
            rec["image_size"] = list(a.image.size)
            image = a.image.tobytes()
        self.add("asset", a.coactive_image_id, rec, px.tobytes(), image)

    def take(self) -> dict:
        out = {c: np.array(v, dtype=object) for c, v in self.cols.items()}
        self.cols = {c: [] for c in self.COLUMNS}
        return out


PREPROCESS_FIELDS = ("input_size", "crop_pct", "mean", "std", "interpolation", "preprocess_mode")


def preprocess_spec(enc) -> dict:
    """What `Encoder.preprocess` reads, from the driver's loaded encoder (some set it when loading)."""
    return {k: getattr(enc, k) for k in PREPROCESS_FIELDS}


def _preprocessor(name: str, spec: dict):
    """The encoder without its weights, for `preprocess` only: decoding tasks never load a model."""
    from encoders import lookup

    enc = lookup(name)
    for k, v in spec.items():
        setattr(enc, k, v)
    return enc


def decode_sources(batch: dict, *, dataset: str, encoder: str, preprocess: dict, analyzers: list[str],
                   max_pixels: int, video_options: dict, block_rows: int = 64, files=PLAIN,
                   blocked: dict | None = None):
    """Decode a batch of sources (columns `path`, `metadata`, `problem`, `known`); a generator of row
    blocks.  `known` is the JSON of what is committed under that path (`ray_pipeline.known_by_path`),
    empty for a path the warehouse has never seen: the skip rules of a local ingest, fed with the
    ids of this batch's files only."""
    from .pipeline import _decode_and_preprocess, _prepare, refuse_blocked

    enc = _preprocessor(encoder, preprocess)
    analysis = bool(analyzers)
    out = _Rows()
    embedded, existing, analyzed = set(), set(), {name: set() for name in analyzers}
    known_videos = {}
    for path, k in zip(batch["path"], batch["known"]):
        if k:
            k = json.loads(k)
            embedded.update(k["embedded"])
            existing.update(k["existing"])
            for name, ids in k["analyzed"].items():
                analyzed.setdefault(name, set()).update(ids)
            if "video" in k:
                known_videos[path] = k["video"]
    video_options = {**video_options, "known_videos": known_videos}

    def asset(a):
        if a.pixels is None:  # keyframes arrive unprepared, images prepared by the decoder
            _prepare(a, enc, analysis)
        done = [n for n, ids in analyzed.items() if a.coactive_image_id in ids]
        out.asset(a, a.coactive_image_id in existing, done, analysis)
        a.image = a.pixels = None

    for path, meta, problem in zip(batch["path"], batch["metadata"], batch["problem"]):
        src = Source(location(path), json.loads(meta) if meta else {}, problem or None)  # a Path or an s3:// URI
        res = _decode_and_preprocess(src, dataset, embedded, max_pixels, enc, video_options, analysis, files)
        refuse_blocked(res, blocked or {})
        errors = [res.error] if res.error else []
        for a in res.assets:
            asset(a)
        if res.frames is not None:
            try:
                for a in res.frames:
                    asset(a)
                    if len(out) >= block_rows:
                        yield out.take()
            except Exception as e:  # as the local pump: the keyframes already emitted stay
                res.frames.error = res.frames.error or f"video keyframe failed: {type(e).__name__}: {e}"
                res.video.status, res.video.error = "error", res.frames.error
            if res.frames.error:
                errors.append(res.frames.error)
            # Only the finished row: the driver may commit parts out of order.
            out.add("video", res.video.coactive_video_id, asdict(res.video))
        out.add("source", None, {"path": str(src.path), "skipped": res.skipped, "errors": errors})
        if len(out) >= block_rows:
            yield out.take()
    if len(out):
        yield out.take()


def pick_device(cuda_available: bool, gpu_ids, batch_size: int | None, batch_sizes: tuple[int, int]) -> tuple[str, int]:
    """(torch device, images per forward pass) for an embedding actor.

    CUDA only when this actor was given a GPU by Ray (`gpu_ids`, which also sets
    CUDA_VISIBLE_DEVICES to it, so it is `cuda:0` inside) and torch can use it; a GPU the actor
    was not given belongs to another actor.  `batch_size` (the caller's) wins over the device's
    default `batch_sizes` (cpu, gpu)."""
    device = "cuda:0" if cuda_available and len(gpu_ids) > 0 else "cpu"
    return device, batch_size or batch_sizes[device != "cpu"]


class PartWriter:
    """An actor of the embedding pool: holds the encoder (and analyzers) once, writes parts."""

    def __init__(self, root: str, dataset: str, encoder: str, run_id: str, analyzers: list[str],
                 batch_size: int | None, threads: int = 1, batch_sizes: tuple[int, int] = (32, 128)):
        started = time.perf_counter()
        import ray
        import torch

        from warehouse.storage import Layout

        from .analyzers import get_analyzer

        torch.set_num_threads(max(1, threads))
        self.layout = Layout(root)
        self.dataset, self.encoder_name, self.run_id = dataset, encoder, run_id
        self.device, self.batch_size = pick_device(torch.cuda.is_available(), ray.get_gpu_ids(), batch_size,
                                                   tuple(batch_sizes))
        self.enc = _encoder(encoder)
        if self.device != "cpu":
            self.enc.to(self.device)  # vectors come back as numpy on the host either way
        self.active = [get_analyzer(n) for n in analyzers]
        # Where an actor's time goes, reported with each part (benchmarks/ray_ingest.py sums it):
        # starting (imports, model load) once, then embedding and writing per part.
        self.timing = {"start_s": time.perf_counter() - started}

    def __call__(self, batch: dict) -> dict:
        import torch

        from .pipeline import PartBuffer, _run_analyzers
        from .video import VideoInfo

        kinds, recs = batch["kind"], [json.loads(r) for r in batch["record"]]
        assets, existing, analyzed = [], set(), {an.name: set() for an in self.active}
        files, videos = [], []
        for i, (kind, rec) in enumerate(zip(kinds, recs)):
            if kind == "asset":
                a = _asset(rec, batch["pixels"][i], batch["image"][i])
                if rec["exists"]:
                    existing.add(a.coactive_image_id)
                for name in rec["analyzed"]:
                    analyzed.setdefault(name, set()).add(a.coactive_image_id)
                assets.append(a)
            elif kind == "video":
                videos.append(VideoInfo(**rec))
            else:
                files.append(rec)
        buf = PartBuffer(self.layout, self.dataset, self.encoder_name, self.run_id, existing)
        t0 = time.perf_counter()
        for s in range(0, len(assets), self.batch_size):
            chunk = assets[s:s + self.batch_size]
            vectors = self.enc.encode(torch.stack([a.pixels for a in chunk]))
            _run_analyzers(self.active, analyzed, chunk, buf)
            for a in chunk:
                a.pixels = a.image = None
            buf.add(chunk, vectors)
        for f in files:
            for e in f["errors"]:
                buf.error(f["path"], e)
        for v in videos:
            buf.add_video(v)
        t1 = time.perf_counter()
        new_parts, analyzed_parts = buf.write_parts()
        timing, self.timing = {**self.timing, "encode_s": t1 - t0, "write_s": time.perf_counter() - t1}, {}
        desc = {"timing": timing, "parts": [(k, e, str(p), n) for k, e, p, n in new_parts],
                "analyzed": [(n, str(p), ids) for n, p, ids in analyzed_parts],
                "rows": buf.rows, "vec_ids": buf.vec_ids, "errors": buf.errors, "ok_paths": sorted(buf.ok_paths),
                "videos": [asdict(v) for v in videos], "files": files}
        return {"desc": np.array([pickle.dumps(desc)], dtype=object)}


def ingest_sources(batch: dict, *, decode_args: dict, writer_args: dict, part_rows: int):
    """Decode a batch of sources and embed and write them, in one CPU task: a generator of part
    descriptions, one per `part_rows` rows (a long video spans several, so memory stays bounded).

    One task per node at a time (num_cpus = the node's), so Ray keeps one worker process per
    node and reuses it: the encoder loads once per process (`_encoder`), and a later run of the
    same driver (a server, a notebook) loads no model at all; the pixels never cross the object
    store.  The same decoding and writing as the GPU path's two stages."""
    writer = PartWriter(**writer_args)
    pending: list[dict] = []
    rows = 0
    for block in decode_sources(batch, **decode_args):
        pending.append(block)
        rows += len(block["kind"])
        if rows >= part_rows:
            yield writer(_concat(pending))
            pending, rows = [], 0
    if pending:
        yield writer(_concat(pending))


def _concat(blocks: list[dict]) -> dict:
    return {c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]}


def _asset(rec: dict, pixels: bytes, image: bytes | None) -> DecodedAsset:
    import torch
    from PIL import Image

    fields = {k: v for k, v in rec.items() if k in DecodedAsset.__dataclass_fields__}
    fields["file_mtime"] = datetime.fromisoformat(rec["file_mtime"]) if rec["file_mtime"] else None
    # Only a row that carries an image for the analyzers has a size (a null column may not read as None).
    fields["image"] = Image.frombytes("RGB", tuple(rec["image_size"]), image) if rec.get("image_size") else None
    a = DecodedAsset(**fields)
    a.pixels = torch.from_numpy(np.frombuffer(pixels, dtype=np.uint8).reshape(rec["shape"]).copy())
    return a
