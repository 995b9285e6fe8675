"""Ingest on a Ray cluster: the driver lists and commits, Ray Data decodes, embeds and writes parts.

    wh.ingest(["photos/"], dataset="photos", engine="ray", ray_address="10.0.0.5:6379")

The driver (this process, on the head) opens the run exactly as a local ingest
does (`pipeline.open_run`: the sources, the encoder and dataset rows, the ids
already committed) and hands the sources to a Ray Data pipeline:

    GPUs: from_items(sources) -> map_batches(decode_sources)  CPU tasks          (ingest/ray_parts.py)
                              -> map_batches(PartWriter)      an actor per GPU (num_gpus=1), model on cuda
    CPUs: from_items(sources) -> map_batches(ingest_sources)  one task per node at a time: decode, embed,
                                                              write; its worker process keeps the encoder
    both:                     -> one description per written part, streamed back to the driver

Workers write the Parquet parts into the warehouse's own layout (the root must
be the same path on every node: a shared file system); the driver commits each
part with `_PartWriter.commit`, the transaction a local ingest uses (the part,
its rows, errors, videos and views together), so queries see whole parts only.

Faults: Ray retries a task or restarts an actor that a dead node took with it;
a part written by the lost attempt is never committed (an orphan file, like a
part a killed local ingest leaves).  If a retry ever hands the driver ids it
has already committed, the part is rewritten without them before its commit,
so a run never commits an id twice.  A killed driver loses only uncommitted
parts; a re-run skips every committed id (same ids as a local ingest).
"""
from __future__ import annotations

import inspect
import json
import pickle
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from warehouse.ray_scoring import connect
from warehouse.settings import current as current_settings

from . import pipeline
from .pipeline import IngestReport, open_run, publish_run

def plan(batch_size: int | None = None, actors: int | None = None) -> dict:
    """How the cluster is used: one embedding actor per GPU, else one ingest task per node at a time.

    The batch size is left to each actor (`ray_parts.pick_device`: the device it finds decides)
    unless `batch_size` is given."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
    node_cpus = min((n["Resources"].get("CPU", 1) for n in nodes), default=1)
    if gpus:
        return {"actors": actors or gpus, "actor": {"num_gpus": 1, "num_cpus": 1}, "threads": 1,
                "batch_size": batch_size, "decode_cpus": 1, "gpus": gpus}
    # CPUs: a task per node takes the node's CPUs (decoding, then the model on all its threads).
    return {"actors": actors or len(nodes), "actor": {"num_cpus": node_cpus}, "threads": max(1, int(node_cpus)),
            "batch_size": batch_size, "decode_cpus": node_cpus, "gpus": 0}


_LOCAL = inspect.signature(pipeline.run)


def run(wh, paths, dataset: str = "default", *, ray_address: str | None = None, actors: int | None = None,
        files_per_task: int | None = None, **options) -> IngestReport:
    """Ingest `paths` into `dataset` on a Ray cluster: the arguments of `pipeline.run` (checked
    against its signature; `workers`, the local decode threads, is not used here) and the same
    report.  `ray_address`: the cluster (default $RAY_ADDRESS or the local `ray start` cluster);
    `actors`: embedding actors (default one per GPU, else one per node); `files_per_task`: sources
    per decoding task."""
    import ray

    try:
        bound = _LOCAL.bind(wh, paths, dataset, **options)
    except TypeError as e:
        raise TypeError(f"ray ingest: {e}") from None
    bound.apply_defaults()
    o = bound.arguments
    started = time.perf_counter()
    r = open_run(wh, paths, dataset, o["encoder"], o["manifest"], o["analyzers"], o["run_id"],
                 o["video_options"], o["files"])
    report, con = r.report, r.con
    bar = tqdm(total=len(r.sources), unit="file", disable=not o["progress"], desc=f"ingest {dataset} (ray)",
               dynamic_ncols=True)
    owns = []

    def ingest() -> bool:
        if not r.sources:
            return False
        # Connected inside the run: an unreachable cluster ends it as Error, with its row closed.
        if connect(ray_address):
            owns.append(True)
        return _stream(wh, r, plan(o["batch_size"], actors), o["part_rows"], o["max_pixels"], o["files"],
                       files_per_task, bar, lambda: publish_run(wh, con, report, started, o["on_progress"]),
                       o["should_stop"])

    return pipeline.finish_run(wh, r, started, ingest, bar=bar, on_progress=o["on_progress"],
                               part_rows=o["part_rows"], progress=o["progress"],
                               cleanup=lambda: ray.shutdown() if owns else None)


def known_by_path(con, r) -> dict[str, dict]:
    """Per path of the dataset with committed assets, what a decoding task needs to skip them:
    {"embedded": ids with this run's vectors, "existing": ids with an asset row, "analyzed":
    {analyzer: ids}, "video": its `known_videos` entry}.  Each source carries its own entry, so
    what a task receives grows with its files, not with the warehouse."""
    tbl = con.execute("SELECT path, coactive_image_id FROM catalog.assets WHERE dataset = ?",
                      [r.report.dataset]).fetch_arrow_table()
    # One vectorised membership test: `in` per id on the compact set costs microseconds each.
    embedded = r.embedded.contains(tbl.column(1)).tolist()
    out: dict[str, dict] = {}
    for path, aid, emb in zip(tbl.column(0).to_pylist(), tbl.column(1).to_pylist(), embedded):
        k = out.setdefault(path, {"embedded": [], "existing": [], "analyzed": {}})
        k["existing"].append(aid)
        if emb:
            k["embedded"].append(aid)
        for name, ids in r.analyzed.items():
            if aid in ids:
                k["analyzed"].setdefault(name, []).append(aid)
    for path, rec in r.video_options.get("known_videos", {}).items():
        out.setdefault(path, {"embedded": [], "existing": [], "analyzed": {}})["video"] = rec
    return out


def source_items(r) -> list[dict]:
    """The rows of the Ray dataset: one per source, with what is committed under its path."""
    known = known_by_path(r.con, r)
    return [{"path": str(s.path), "metadata": json.dumps(s.metadata) if s.metadata else "",
             "problem": s.problem or "", "known": json.dumps(known[str(s.path)]) if str(s.path) in known else ""}
            for s in r.sources]


def _stream(wh, r, how: dict, part_rows, max_pixels, files, files_per_task, bar, publish, should_stop) -> bool:
    """Run the Ray Data pipeline and commit each part as it arrives; True if stopped early."""
    import ray

    from .ray_parts import PartWriter, decode_sources, ingest_sources, preprocess_spec

    report, writer = r.report, r.writer
    n = len(r.sources)
    per_task = files_per_task or max(1, min(16, n // (4 * max(1, how["actors"])) or 1))
    items = source_items(r)
    video_options = {k: v for k, v in r.video_options.items() if k != "known_videos"}  # per source, above
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-n // per_task)))
    decode_args = dict(dataset=r.report.dataset, encoder=r.encoder, preprocess=preprocess_spec(r.enc),
                       analyzers=sorted(r.analyzed), blocked=r.blocked, max_pixels=max_pixels,
                       video_options=video_options, files=files)
    settings = current_settings()
    writer_args = dict(root=str(wh.layout.root), dataset=r.report.dataset, encoder=r.encoder, run_id=r.run_id,
                       analyzers=[a.name for a in r.active], batch_size=how["batch_size"], threads=how["threads"],
                       batch_sizes=(settings.cpu_batch_size, settings.gpu_batch_size))
    if how["gpus"]:
        # Decoding on CPU tasks, embedding on one actor per GPU (all started at once: CUDA and the
        # model are set up once per actor).  Ray Data restarts a lost actor and retries its batch.
        ds = ds.map_batches(decode_sources, batch_size=per_task, batch_format="numpy",
                            num_cpus=how["decode_cpus"], fn_kwargs=decode_args)
        # Every actor gets work on a small run too: a part is at most part_rows, and at least a batch.
        rows = min(part_rows, max(how["batch_size"] or settings.gpu_batch_size, -(-n // (2 * how["actors"]))))
        ds = ds.map_batches(PartWriter, batch_size=rows, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(min_size=how["actors"], max_size=how["actors"]),
                            fn_constructor_kwargs=writer_args, **how["actor"])
    else:
        # On CPUs, one task per node at a time decodes, embeds and writes its sources
        # (`ray_parts.ingest_sources`); a task lost with its node is retried elsewhere.
        ds = ds.map_batches(ingest_sources, batch_size=per_task, batch_format="numpy",
                            fn_kwargs=dict(decode_args=decode_args, writer_args=writer_args, part_rows=part_rows),
                            max_retries=-1, **how["actor"])
    rows = iter(ds.iter_rows())
    try:
        for row in rows:
            desc = pickle.loads(row["desc"])
            report.assets_added += _commit(wh, r, writer, desc)
            for f in desc["files"]:
                report.processed_files += 1
                report.skipped += bool(f["skipped"])
                for e in f["errors"]:
                    report.errors += 1
                    if len(report.error_samples) < 20:
                        report.error_samples.append({"path": f["path"], "reason": e})
            bar.update(len(desc["files"]))
            bar.set_postfix(added=report.assets_added, errors=report.errors, refresh=False)
            publish()
            if should_stop is not None and should_stop():
                return True  # committed parts stay; a re-run resumes from them
    finally:
        close = getattr(rows, "close", None)
        if close:
            close()
    return False


def _commit(wh, r, writer, desc: dict) -> int:
    """Commit one part a worker wrote, through the local ingest's commit; returns asset rows added."""
    from .video import VideoInfo

    dup = {i for i in desc["vec_ids"] if i in r.embedded} | \
          {row["coactive_image_id"] for row in desc["rows"] if row["coactive_image_id"] in r.existing}
    if dup:
        desc = _without(wh, desc, dup)
    writer.rows, writer.vec_ids, writer.errors = desc["rows"], desc["vec_ids"], [tuple(e) for e in desc["errors"]]
    writer.ok_paths = set(desc["ok_paths"])
    writer.videos = {v["coactive_video_id"]: VideoInfo(**v) for v in desc["videos"]}
    added = writer.commit([(k, e, Path(p), n) for k, e, p, n in desc["parts"]],
                          [(name, Path(p), ids) for name, p, ids in desc["analyzed"]])
    r.embedded.update(desc["vec_ids"])
    r.existing.update(row["coactive_image_id"] for row in desc["rows"])
    writer.videos = {}
    return added


def _without(wh, desc: dict, dup: set) -> dict:
    """The part description with ids in `dup` removed: its files rewritten without those rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from warehouse import vector_store
    from warehouse.storage import atomic_write_parquet

    def rewrite(kind: str, path: str) -> tuple[str, int]:
        t = pq.read_table(path)
        keep = pc.invert(pc.is_in(t.column("coactive_image_id"), value_set=pa.array(sorted(dup), pa.string())))
        t = t.filter(keep)
        new = wh.layout.new_part_path(Path(path).parent)
        if t.num_rows:
            if kind == "vectors":
                vector_store.write_table(vector_store.conform(t), new)
            else:
                atomic_write_parquet(t, new)
        Path(path).unlink(missing_ok=True)
        return str(new), t.num_rows

    parts = []
    for kind, enc, p, _ in desc["parts"]:
        new, n = rewrite(kind, p)
        if n:
            parts.append((kind, enc, new, n))
    analyzed = []
    for name, p, ids in desc["analyzed"]:
        new, n = rewrite("analyzer", p)
        if n:
            analyzed.append((name, new, [i for i in ids if i not in dup]))
    return {**desc, "parts": parts, "analyzed": analyzed,
            "rows": [row for row in desc["rows"] if row["coactive_image_id"] not in dup],
            "vec_ids": [i for i in desc["vec_ids"] if i not in dup]}
