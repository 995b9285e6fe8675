"""The ingest pipeline: sources -> decode (worker threads) -> encode (batched) -> Parquet parts -> catalog.

Decoding and preprocessing run in a thread pool (PIL and numpy release the GIL)
while the model embeds full batches in single-threaded streams, one per core
(`model_streams.py`), so the two overlap; the main thread gathers batches, runs
analyzers on the images of each embedded batch and commits parts.
Every `part_rows` assets the pipeline writes one assets part and one vectors
part atomically, then commits their catalog rows, the error rows and the views
in one DuckDB transaction: a kill at any moment loses at most the uncommitted
part, and a re-run skips every asset already committed (deterministic ids from
dataset, path and content hash).

Size: over 400 lines because the decode pool, the batcher and the part flush
share one buffer and one commit per part; sources, decoding, video and
analyzers already live in their own modules.
"""
from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from encoders import get_encoder, normalize_name
from warehouse import catalog, encoder_sql, tombstones
from warehouse import vector_store
from warehouse.schema import ASSET_SCHEMA, vectors_table
from warehouse.settings import current as current_settings
from warehouse.storage import atomic_write_parquet

from . import video_catalog
from .idset import IdSet, committed_ids
from .analyzers import AnalyzerUnavailable, get_analyzer, parse_analyzers
from .analyzers import store as analysis_store
from .analyzers.base import ANALYSIS_MAX_SIDE
from .decode import DEFAULT_MAX_PIXELS, DecodedAsset, SourceResult, decode_source
from .model_streams import ModelStreams
from .sources import PLAIN, FileAccess, Source, expand
from warehouse.errors import Forbidden, Invalid, NotFound

SCOPED_PATHS = 50_000  # runs with at most this many sources read only their own paths' committed ids
DATASET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass
class IngestReport:
    run_id: str
    dataset: str
    encoder: str
    status: str = "Running"
    total_files: int = 0
    processed_files: int = 0
    assets_added: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_samples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"dataset {self.dataset!r} ({self.encoder}): {self.assets_added} assets added, "
            f"{self.skipped} already present, {self.errors} errors, {self.total_files} files "
            f"in {self.seconds:.1f}s"
        )


def validate_dataset_name(name: str) -> str:
    if not DATASET_NAME.match(name or ""):
        raise Invalid(
            f"invalid dataset name {name!r}: start with a letter, then letters, digits, '_' or '-' (max 64)"
        )
    return name


class PartBuffer:
    """Buffers encoded assets and errors and writes them as parts; needs only the layout, so a Ray
    worker writes parts with it (ingest/ray_parts.py) and the driver commits them."""

    def __init__(self, layout, dataset, encoder, run_id, existing_assets: "IdSet | set[str]"):
        self.layout, self.dataset, self.encoder, self.run_id = layout, dataset, encoder, run_id
        self.existing_assets = existing_assets
        self.rows: list[dict] = []
        self.vec_ids: list[str] = []
        self.vec_cols: dict[str, list] = {}
        self.errors: list[tuple[str, str]] = []
        self.ok_paths: set[str] = set()
        self.analysis = analysis_store.AnalysisBuffer()
        # Videos whose row must be (re)written at the next flush; kept while streaming.
        self.videos: dict = {}

    def add_video(self, info) -> None:
        self.videos[info.coactive_video_id] = info

    def add(self, assets: list[DecodedAsset], vectors: dict) -> None:
        now = catalog.now()
        for i, a in enumerate(assets):
            self.ok_paths.add(a.path)
            if a.coactive_image_id not in self.existing_assets:
                self.rows.append(
                    {
                        "coactive_image_id": a.coactive_image_id,
                        "dataset": self.dataset,
                        "path": a.path,
                        "media_type": a.media_type,
                        "format": a.format,
                        "width": a.width,
                        "height": a.height,
                        "size_bytes": a.size_bytes,
                        "sha256": a.sha256,
                        "created_dt": now,
                        "file_mtime": a.file_mtime,
                        "metadata": json.dumps(a.metadata) if a.metadata else None,
                        "coactive_video_id": a.coactive_video_id,
                        "keyframe_index": a.keyframe_index,
                        "keyframe_time_ms": a.keyframe_time_ms,
                        "run_id": self.run_id,
                    }
                )
                self.existing_assets.add(a.coactive_image_id)
            self.vec_ids.append(a.coactive_image_id)
            for col, mat in vectors.items():
                self.vec_cols.setdefault(col, []).append(mat[i])

    def error(self, path: str, reason: str) -> None:
        self.errors.append((path, reason))

    @property
    def pending(self) -> int:
        return len(self.vec_ids)

    def write_parts(self) -> tuple[list, list]:
        """Write the buffered rows and vectors as Parquet parts; (new parts, analyzer parts) for `commit`."""
        import numpy as np

        layout = self.layout
        new_parts = []
        if self.rows:
            p = layout.new_part_path(layout.assets_dir(self.dataset))
            atomic_write_parquet(pa.Table.from_pylist(self.rows, schema=ASSET_SCHEMA), p)
            new_parts.append(("assets", None, p, len(self.rows)))
        if self.vec_ids:
            mats = {c: np.stack(v) for c, v in self.vec_cols.items()}
            p = layout.new_part_path(layout.vectors_dir(self.dataset, self.encoder))
            vector_store.write_table(vectors_table(self.vec_ids, mats), p)  # float16, mapped by the scorer
            new_parts.append(("vectors", self.encoder, p, len(self.vec_ids)))
        return new_parts, self.analysis.write(layout, self.dataset)


class _PartWriter(PartBuffer):
    """A `PartBuffer` that also commits: its parts, rows, errors, videos and views in one transaction."""

    def __init__(self, wh, dataset, encoder, run_id, existing_assets: "IdSet | set[str]"):
        super().__init__(wh.layout, dataset, encoder, run_id, existing_assets)
        self.wh = wh
        self.con = wh.cursor()

    def flush(self) -> int:
        """Write what is buffered; return how many new asset rows were committed."""
        if not (self.vec_ids or self.errors or self.ok_paths or self.analysis.pending or self.videos):
            return 0
        return self.commit(*self.write_parts())

    def commit(self, new_parts: list, analyzed: list) -> int:
        """One transaction for the written parts, their rows, the errors, videos and views."""
        root = self.wh.layout.root
        now = catalog.now()
        con = self.con
        with self.wh.transaction(con=con) as tx:
            for kind, enc, p, n in new_parts:
                rel = str(p.relative_to(root))
                catalog.insert_part(con, rel, self.dataset, kind, enc, n, self.run_id, now)
                if kind == "assets":
                    catalog.insert_assets(con, self.dataset, rel, self.rows, now)
                else:
                    catalog.insert_embeddings(con, self.vec_ids, self.encoder, rel)
            analysis_store.commit(con, root, self.dataset, self.run_id, analyzed, now)
            if self.videos:
                video_catalog.upsert(con, self.dataset, self.run_id, self.videos.values())
                tx.data_changed()  # coactive_videos reads catalog.videos
            # ingest_errors holds the current problem of each path: a newer
            # error replaces the older one, and a success clears it.
            touched = list(self.ok_paths | {p for p, _ in self.errors})
            if touched:
                con.execute(  # a hash semi-join: list_contains compared each row with every path
                    f"DELETE FROM catalog.ingest_errors WHERE dataset = ? AND {catalog.in_list('path')}",
                    [self.dataset, touched],
                )
            catalog.record_ingest_errors(con, self.run_id, self.dataset, self.errors, now)
            if touched:
                tx.data_changed()  # the ingest_errors view reads catalog.ingest_errors
            if new_parts or analyzed:
                # New asset/vector parts: score caches catch up before the views are built.
                tx.rebuild_views(scores=bool(new_parts))
        added = len(self.rows)
        self.rows, self.vec_ids, self.vec_cols, self.errors, self.ok_paths = [], [], {}, [], set()
        self.analysis.clear()
        self.videos = {k: v for k, v in self.videos.items() if v.status == "partial"}
        return added


def _content_hash(res: SourceResult) -> str | None:
    if res.video is not None:
        return res.video.sha256
    return res.assets[0].sha256 if res.assets else None


def refuse_blocked(res: SourceResult, blocked: dict) -> None:
    """Empty a decoded file whose bytes a block tombstone keeps out, with the reason as its error
    (local and Ray ingest both call this: the run goes on)."""
    sha = _content_hash(res)
    if sha in blocked:
        res.assets, res.frames, res.video = [], None, None
        res.error = tombstones.blocked_message(sha, blocked[sha])


def _decode_and_preprocess(src: Source, dataset, known, max_pixels, encoder, video_options, analysis=False,
                           files: FileAccess = PLAIN) -> SourceResult:
    target = int(round(encoder.input_size / encoder.crop_pct))
    # Analyzers (OCR above all) need more detail than the encoder: decode larger, then bound it.
    res = decode_source(src, dataset, known, max_pixels=max_pixels,
                        target=max(target, ANALYSIS_MAX_SIDE) if analysis else target, video_options=video_options,
                        files=files)
    for a in res.assets:
        try:
            _prepare(a, encoder, analysis)
        except Exception as e:  # a pathological image must not take the batch down
            res.error = f"preprocess failed: {e}"
            res.assets = []
            break
    return res


def _prepare(a: DecodedAsset, encoder, analysis: bool) -> None:
    if analysis and max(a.image.size) > ANALYSIS_MAX_SIDE:
        a.image.thumbnail((ANALYSIS_MAX_SIDE, ANALYSIS_MAX_SIDE))
    a.pixels = encoder.preprocess(a.image)


def _run_analyzers(active, analyzed: dict[str, set], batch: list[DecodedAsset], writer: _PartWriter) -> None:
    """Run each analyzer on the batch's assets that lack it, before their images are dropped."""
    from .analyzers.run import apply

    for an in active:
        done = analyzed[an.name]
        todo = [a for a in batch if a.coactive_image_id not in done and a.image is not None]
        if todo:
            ids, results = apply(an, todo, writer.error)
            writer.analysis.add(an, ids, results)
            done.update(ids)


_END = object()


def _pump(stream, encoder, analysis: bool, out: queue.Queue, stop: threading.Event) -> None:
    """Decode a video's keyframes in a worker thread into a bounded queue.

    The queue bounds how many keyframes exist at once, whatever the video's
    length; `stop` ends the pump if the consumer gives up.
    """

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for a in stream:
            _prepare(a, encoder, analysis)
            if not put(a):
                return
    except Exception as e:  # recorded like a decode error; the keyframes already queued stay
        stream.error = stream.error or f"video keyframe failed: {type(e).__name__}: {e}"
        stream.info.status, stream.info.error = "error", stream.error
    finally:
        put(_END)


@dataclass
class OpenRun:
    """What a run opens before any file is read; the local loop below and ingest/ray_pipeline.py share it."""

    con: object
    encoder: str
    enc: object
    requested: list
    active: list
    sources: list
    run_id: str
    report: IngestReport
    existing: IdSet  # ids with an asset row in the dataset
    embedded: IdSet  # ids with this encoder's vectors: skipped, and a run's own duplicates
    analyzed: dict
    video_options: dict
    writer: "_PartWriter"
    blocked: dict  # sha256 -> reason, from block tombstones


def open_run(wh, paths, dataset, encoder, manifest, analyzers, run_id, video_options, files) -> OpenRun:
    """Check, list the sources, register the encoder and dataset, (re)open the run's row, and read
    what is already committed (the ids a run skips)."""
    if wh.read_only:
        raise Forbidden("warehouse opened read-only")
    validate_dataset_name(dataset)
    con = wh.cursor()
    enc_name = normalize_name(encoder or catalog.dataset_encoder(con, dataset))
    enc = get_encoder(enc_name)  # fails early, before any row is written
    requested = parse_analyzers(analyzers)
    active = [get_analyzer(n) for n in requested]  # AnalyzerUnavailable says how to install
    for name in analysis_store.dataset_analyzers(con, dataset):
        if name not in requested:
            try:  # the dataset's analyzers keep running on its new assets
                active.append(get_analyzer(name))
            except AnalyzerUnavailable as e:
                import warnings

                warnings.warn(f"dataset {dataset!r} uses analyzer {name!r}, skipped: {e}")
    sources = expand(paths, manifest, files)
    run_id = run_id or uuid.uuid4().hex[:12]
    report = IngestReport(run_id, dataset, enc_name, total_files=len(sources))
    with wh.transaction(con=con):
        catalog.register_encoder(con, enc_name, enc.kind, enc.vector_columns)
        catalog.ensure_dataset(con, dataset, enc_name)
        if enc.class_names:
            catalog.register_class_names(con, enc_name, enc.class_names)
        encoder_sql.register(con, enc_name, enc.sql_columns())
        analysis_store.register(con, dataset, [a for a in active if a.name in requested])
        # A resumed job passes its run id again: the run's row is reopened, not duplicated.
        con.execute(
            "INSERT INTO catalog.ingest_runs (run_id, dataset, encoder, sources, status, started_dt) "
            "VALUES (?, ?, ?, ?, 'Running', ?) ON CONFLICT (run_id) DO UPDATE SET status = 'Running', "
            "finished_dt = NULL, error = NULL",
            [run_id, dataset, enc_name, json.dumps([str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]), catalog.now()],
        )
    catalog.LIVE_RUNS.add(run_id)

    # Compact sorted id arrays (~16 B per id, ingest/idset.py): two Python sets of every
    # committed id cost ~240 B per asset of the dataset.
    # Only the ids at the run's own paths: an asset id is made from its path (decode.asset_id), so
    # no other committed id can come up, and what opening a run reads does not grow with the dataset
    # (384 paths of a 1M-asset dataset: 5 ms instead of 2 s).  Past SCOPED_PATHS, handing DuckDB the
    # list costs more (1M paths 3.5 s) than reading the whole dataset's ids.
    paths_here = [str(s.path) for s in sources] if len(sources) <= SCOPED_PATHS else None
    existing = committed_ids(con, dataset, paths=paths_here)
    embedded = committed_ids(con, dataset, embedded_by=enc_name, paths=paths_here)
    analyzed = {an.name: analysis_store.analyzed_ids(con, dataset, an.name) for an in active}
    blocked = tombstones.block_reasons(con)  # erased content a block tombstone keeps out
    video_options = dict(video_options or {})
    video_options["known_videos"] = video_catalog.known_videos(con, dataset, enc_name)
    if active:
        video_options["analysis_size"] = ANALYSIS_MAX_SIDE
    return OpenRun(con, enc_name, enc, requested, active, sources, run_id, report, existing, embedded,
                   analyzed, video_options, _PartWriter(wh, dataset, enc_name, run_id, existing), blocked)


def publish_run(wh, con, report: IngestReport, started: float, on_progress=None, status: str = "Running") -> None:
    """Write the run's counters to `catalog.ingest_runs` and tell `on_progress`."""
    run_id = report.run_id
    report.status = status
    report.seconds = time.perf_counter() - started
    with wh.write_lock:
        # assets_added counts committed rows of every attempt of this run, from the catalog.
        con.execute(
            "UPDATE catalog.ingest_runs SET status = ?, files_seen = ?, skipped = ?, errors = ?,"
            " assets_added = (SELECT coalesce(sum(row_count), 0) FROM catalog.parts"
            "                 WHERE run_id = ? AND kind = 'assets'),"
            " finished_dt = CASE WHEN ? = 'Running' THEN NULL ELSE ? END WHERE run_id = ?",
            [status, report.processed_files, report.skipped, report.errors, run_id,
             status, catalog.now(), run_id],
        )
    if on_progress:
        on_progress(report)


def run(
    wh,
    paths,
    dataset: str = "default",
    encoder: str | None = None,
    manifest=None,
    batch_size: int | None = None,
    workers: int | None = None,
    part_rows: int = 512,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    video_options: dict | None = None,
    on_progress: Callable[[IngestReport], None] | None = None,
    run_id: str | None = None,
    analyzers=None,
    should_stop: Callable[[], bool] | None = None,
    files: FileAccess = PLAIN,
) -> IngestReport:
    """Ingest `paths` into `dataset`; `files` is how the files are reached (a server's intake checks
    each one when it is opened; the default reads whatever the process can).  `batch_size`: images
    per forward pass, default the `cpu_batch_size` setting."""
    started = time.perf_counter()
    r = open_run(wh, paths, dataset, encoder, manifest, analyzers, run_id, video_options, files)
    con, enc_name, enc, requested, active, sources, run_id, report = (
        r.con, r.encoder, r.enc, r.requested, r.active, r.sources, r.run_id, r.report)
    embedded, analyzed, video_options, writer = r.embedded, r.analyzed, r.video_options, r.writer
    workers = workers or max(2, (os.cpu_count() or 2))
    batch_size = batch_size or current_settings().cpu_batch_size
    bar = tqdm(total=len(sources), unit="file", disable=not progress, desc=f"ingest {dataset}", dynamic_ncols=True)
    batch: list[DecodedAsset] = []
    model: ModelStreams | None = None  # opened by the run itself (its threads end with it)

    def take(done):
        # Analyzers see a batch's images once its vectors are back; a part is committed as soon
        # as it is full.
        for encoded, vectors in done:
            _run_analyzers(active, analyzed, encoded, writer)
            for a in encoded:
                a.image = None
            writer.add(encoded, vectors)
            if writer.pending >= part_rows:
                report.assets_added += writer.flush()
                publish()

    def encode_batch():
        nonlocal batch
        if not batch:
            return
        take(model.ready())
        pixels = torch.stack([a.pixels for a in batch])
        for a in batch:
            a.pixels = None
            if not active:
                a.image = None  # only analyzers need it after this
        model.submit(pixels, batch)
        batch = []

    def publish(status="Running"):
        publish_run(wh, con, report, started, on_progress, status)

    def ingest() -> bool:
        stopped = False
        with ThreadPoolExecutor(workers, thread_name_prefix="pixql-decode") as pool:
            inflight: deque = deque()
            it = iter(sources)
            # A batch for every model stream and the one being gathered.
            prefetch = max(batch_size * (model.streams + 1), workers * 4)

            def fill():
                while len(inflight) < prefetch:
                    src = next(it, None)
                    if src is None:
                        return
                    inflight.append(
                        pool.submit(_decode_and_preprocess, src, dataset, embedded, max_pixels, enc, video_options,
                                    bool(active), files)
                    )

            def keyframes(res: SourceResult):
                # A video streams through a bounded queue fed by one pool thread.
                q: queue.Queue = queue.Queue(maxsize=max(batch_size, 8))
                stop = threading.Event()
                writer.add_video(res.video)
                fut = pool.submit(_pump, res.frames, enc, bool(active), q, stop)
                try:
                    while (item := q.get()) is not _END:
                        yield item
                finally:
                    stop.set()
                    fut.result()

            fill()
            while inflight:
                if should_stop is not None and should_stop():
                    stopped = True  # what is buffered is committed below; a re-run resumes from there
                    break
                res: SourceResult = inflight.popleft().result()
                fill()
                report.processed_files += 1
                refuse_blocked(res, r.blocked)
                if res.skipped:
                    report.skipped += 1
                if res.error:
                    report.errors += 1
                    writer.error(str(res.source.path), res.error)
                    if len(report.error_samples) < 20:
                        report.error_samples.append({"path": str(res.source.path), "reason": res.error})
                assets = res.assets if res.frames is None else keyframes(res)
                try:
                    for a in assets:
                        if a.coactive_image_id in embedded:
                            continue
                        embedded.add(a.coactive_image_id)
                        batch.append(a)
                        if len(batch) >= batch_size:
                            encode_batch()  # commits a part once it is full
                finally:
                    if res.frames is not None:
                        assets.close()  # on an error here, stop the video's pump thread now
                if res.frames is not None and res.frames.error:
                    report.errors += 1
                    writer.error(str(res.source.path), res.frames.error)
                    if len(report.error_samples) < 20:
                        report.error_samples.append({"path": str(res.source.path), "reason": res.frames.error})
                bar.update(1)
                bar.set_postfix(added=report.assets_added + len(writer.rows), errors=report.errors, refresh=False)
        encode_batch()
        take(model.drain())
        report.assets_added += writer.flush()
        return stopped

    def ingest_with_model() -> bool:
        nonlocal model
        with ModelStreams(enc) as model:
            return ingest()

    return finish_run(wh, r, started, ingest_with_model, bar=bar, on_progress=on_progress, part_rows=part_rows,
                      batch_size=batch_size, progress=progress)


def finish_run(wh, r: OpenRun, started: float, ingest: Callable[[], bool], *, bar, on_progress=None,
               part_rows: int = 512, batch_size: int | None = None, progress: bool = False,
               cleanup: Callable[[], None] | None = None) -> IngestReport:
    """Run an engine's `ingest` (True if it stopped early), then what every run ends with: the
    catch-up of newly asked analyzers, the final status and counters, and the run's release.
    Local and Ray ingest both end here."""
    report, status = r.report, "Error"
    try:
        stopped = ingest()
        if r.requested and not stopped:
            # Assets ingested before these analyzers were asked for get them now.
            from .analyzers.run import analyze

            analyze(wh, r.report.dataset, r.requested, part_rows=part_rows, progress=progress,
                    run_id=r.run_id, register=False, **({"batch_size": batch_size} if batch_size else {}))
        status = "Stopped" if stopped else "Complete"
    except KeyboardInterrupt:
        status = "Stopped"
        raise
    finally:
        bar.close()
        try:
            publish_run(wh, r.con, report, started, on_progress, status)
        except Exception:
            pass
        catalog.LIVE_RUNS.discard(r.run_id)
        if cleanup is not None:
            cleanup()
    if status == "Complete":
        after_run(wh, r.report.dataset)
    return report


def after_run(wh, dataset: str) -> None:
    """After a complete run (local or Ray), once its counts are final (merging renames the parts they
    are counted from): compact the dataset if it has too many small parts, sweep stale uploads."""
    from warehouse.compaction import maybe_compact
    from warehouse.retention import sweep_uploads

    maybe_compact(wh, dataset)
    with wh.write_lock:
        sweep_uploads(wh.cursor(), wh.root)


def reembed(wh, dataset: str, encoder: str, **options) -> IngestReport:
    """Add a vector set from `encoder` to every asset of `dataset` that lacks one.

    Assets are decoded again from their stored paths; the deterministic ids mean
    only vectors are written, never duplicate asset rows.
    """
    con = wh.cursor()
    if not catalog.dataset_exists(con, dataset):
        raise NotFound(f"unknown dataset {dataset!r}")
    paths = catalog.asset_paths(con, dataset)
    return run(wh, paths, dataset=dataset, encoder=encoder, **options)
