"""Ingest on a Ray cluster: the driver lists and commits, Ray Data decodes, embeds and writes parts.

    wh.ingest(["photos/"], dataset="photos", engine="ray", ray_address="10.0.0.5:6379")

The driver (this process, on the head) opens the run exactly as a local ingest
does (`pipeline.open_run`: the sources, the encoder and dataset rows, the ids
already committed) and hands the sources to a Ray Data pipeline:

    from_items(sources) -> map_batches(decode_sources)   CPU tasks   (ingest/ray_parts.py)
                        -> map_batches(PartWriter)        actor pool: encoder loaded once per actor,
                                                          num_gpus=1 each when the cluster has GPUs
                        -> one description per written part, streamed back to the driver

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

import json
import pickle
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from warehouse.ray_scoring import connect

from .decode import DEFAULT_MAX_PIXELS
from .pipeline import IngestReport, open_run, publish_run
from .sources import PLAIN, FileAccess

CPU_BATCH, GPU_BATCH = 32, 128  # images per forward pass on a CPU actor, on one GPU


def plan(batch_size: int | None = None, actors: int | None = None) -> dict:
    """How the cluster is used: one embedding actor per GPU, else one per node with half its CPUs."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
    node_cpus = min((n["Resources"].get("CPU", 1) for n in nodes), default=1)
    if gpus:
        return {"actors": actors or gpus, "actor": {"num_gpus": 1, "num_cpus": 1}, "threads": 1,
                "batch_size": batch_size or GPU_BATCH, "decode_cpus": 1, "gpus": gpus}
    half = node_cpus / 2
    return {"actors": actors or len(nodes), "actor": {"num_cpus": half}, "threads": max(1, int(half)),
            "batch_size": batch_size or CPU_BATCH, "decode_cpus": min(1.0, node_cpus / 4), "gpus": 0}


def run(
    wh,
    paths,
    dataset: str = "default",
    encoder: str | None = None,
    manifest=None,
    batch_size: int | None = None,
    part_rows: int = 512,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    video_options: dict | None = None,
    on_progress: Callable[[IngestReport], None] | None = None,
    run_id: str | None = None,
    analyzers=None,
    should_stop: Callable[[], bool] | None = None,
    files: FileAccess = PLAIN,
    ray_address: str | None = None,
    actors: int | None = None,
    files_per_task: int | None = None,
    workers: int | None = None,  # local decode threads: not used on a cluster
) -> IngestReport:
    """Ingest `paths` into `dataset` on a Ray cluster; same arguments and report as `pipeline.run`."""
    import ray

    started = time.perf_counter()
    r = open_run(wh, paths, dataset, encoder, manifest, analyzers, run_id, video_options, files)
    report, con = r.report, r.con
    owns = connect(ray_address)
    bar = tqdm(total=len(r.sources), unit="file", disable=not progress, desc=f"ingest {dataset} (ray)",
               dynamic_ncols=True)
    status, stopped = "Error", False
    try:
        if r.sources:
            stopped = _stream(wh, r, plan(batch_size, actors), part_rows, max_pixels, files, files_per_task,
                              bar, lambda: publish_run(wh, con, report, started, on_progress), should_stop)
        if r.requested and not stopped:
            from .analyzers.run import analyze  # assets ingested before these analyzers were asked for

            analyze(wh, dataset, r.requested, part_rows=part_rows, progress=progress, run_id=r.run_id,
                    register=False)
        status = "Stopped" if stopped else "Complete"
    except KeyboardInterrupt:
        status = "Stopped"
        raise
    finally:
        bar.close()
        try:
            publish_run(wh, con, report, started, on_progress, status)
        except Exception:
            pass
        from warehouse import catalog

        catalog.LIVE_RUNS.discard(r.run_id)
        if owns:
            ray.shutdown()
    if status == "Complete":
        from .pipeline import after_run

        after_run(wh, dataset)
    return report


def _stream(wh, r, how: dict, part_rows, max_pixels, files, files_per_task, bar, publish, should_stop) -> bool:
    """Run the Ray Data pipeline and commit each part as it arrives; True if stopped early."""
    import ray

    from .ray_parts import PartWriter, decode_sources, preprocess_spec

    report, writer = r.report, r.writer
    n = len(r.sources)
    per_task = files_per_task or max(1, min(16, n // (4 * max(1, how["actors"])) or 1))
    items = [{"path": str(s.path), "metadata": json.dumps(s.metadata) if s.metadata else "",
              "problem": s.problem or ""} for s in r.sources]
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-n // per_task)))
    ds = ds.map_batches(
        decode_sources, batch_size=per_task, batch_format="numpy", num_cpus=how["decode_cpus"],
        fn_kwargs=dict(dataset=r.report.dataset, encoder=r.encoder, preprocess=preprocess_spec(r.enc), embedded=frozenset(r.embedded),
                       existing=frozenset(r.existing), blocked=r.blocked, analyzed={k: frozenset(v) for k, v in r.analyzed.items()},
                       max_pixels=max_pixels, video_options=r.video_options, files=files))
    # Every actor gets work on a small run too: a part is at most part_rows, and at least a device batch.
    rows = min(part_rows, max(how["batch_size"], -(-n // (2 * how["actors"]))))
    ds = ds.map_batches(
        PartWriter, batch_size=rows, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=how["actors"]),
        fn_constructor_kwargs=dict(root=str(wh.layout.root), dataset=r.report.dataset, encoder=r.encoder,
                                   run_id=r.run_id, analyzers=[a.name for a in r.active],
                                   batch_size=how["batch_size"], threads=how["threads"]),
        **how["actor"])  # Ray Data restarts a lost actor and retries its batch (max_restarts=-1)
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

    from warehouse.storage import atomic_write_parquet

    def rewrite(path: str) -> tuple[str, int]:
        t = pq.read_table(path)
        keep = pc.invert(pc.is_in(t.column("coactive_image_id"), value_set=pa.array(sorted(dup), pa.string())))
        t = t.filter(keep)
        new = wh.layout.new_part_path(Path(path).parent)
        if t.num_rows:
            atomic_write_parquet(t, new)
        Path(path).unlink(missing_ok=True)
        return str(new), t.num_rows

    parts = []
    for kind, enc, p, _ in desc["parts"]:
        new, n = rewrite(p)
        if n:
            parts.append((kind, enc, new, n))
    analyzed = []
    for name, p, ids in desc["analyzed"]:
        new, n = rewrite(p)
        if n:
            analyzed.append((name, new, [i for i in ids if i not in dup]))
    return {**desc, "parts": parts, "analyzed": analyzed,
            "rows": [row for row in desc["rows"] if row["coactive_image_id"] not in dup],
            "vec_ids": [i for i in desc["vec_ids"] if i not in dup]}
