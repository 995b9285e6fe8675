"""Ray's overhead on this machine: images/s of a local ingest vs a Ray ingest, and concept scoring GB/s.

    nice -n 10 python benchmarks/ray_ingest.py [--copies 32] [--vector-rows 80000]

Re-executes itself inside a network namespace with only `lo` (tests/netns.py),
starts a two-node Ray cluster (head + one worker node, 1 CPU each, so two
cores in all), then:

* ingests the bundled photos (6 files x `--copies`) locally and on Ray into two
  fresh warehouses, timing each ingest call.  A first small Ray ingest starts
  the worker processes and loads the model in them (`ray_cold_s`: what a fresh
  driver pays once, e.g. a one-off `pixql ingest --ray`); the timed Ray run is
  then what a long-lived driver (a server, a notebook) pays per run, Ray Data's
  planning included.  `ray_where` splits it: the workers' model time, part
  writing, start-up inside the tasks, and the driver's catalog commits;
* scores one concept head over `--vector-rows` synthetic 1280-d vectors in
  parts of 10k rows, locally (`concept_cache.score_parts`) and on Ray
  (`ray_scoring.ray_scorer`), each once warm (sidecars written) and timed;
* prints bytes per asset on disk by folder of the local warehouse (for the
  README's sizing table), the load average, and the ratios Ray / local (last
  line: `RATIOS ingest=... scoring=...`).

The two nodes share this machine's cores: on a machine loaded by other work,
two Ray processes get a larger share of the contended cores than one local
process, so a ratio above 1 there says little; measure on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/http.py would shadow the standard library's http: this directory is not a package root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def folder_bytes(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in root.rglob("*"):
        if p.is_file():
            rel = p.relative_to(root).parts
            key = "/".join(rel[:1] if rel[0] != "datasets" else (rel[0], "*", rel[2])) if len(rel) > 2 else rel[0]
            out[key] = out.get(key, 0) + p.stat().st_size
    return out


def main(args) -> dict:
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from pixql import Warehouse
    from test_ray_ingest import NODE, _photos
    from warehouse import concept_cache, ray_scoring
    from warehouse.schema import vectors_table
    from warehouse import vector_store
    from warehouse.storage import Layout

    from test_ray_ingest import _address_file_dir

    tmp = Path(tempfile.mkdtemp(prefix="pxb"))
    _address_file_dir()
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False,
                                                      "temp_dir": str(tmp / "ray")})
    c.add_node(**NODE)
    ray.init(address=c.address, log_to_driver=False)
    files = _photos(tmp / "photos", copies=args.copies)
    n = len(list(files.iterdir()))
    out = {"images": n, "load_average_start": os.getloadavg()}

    # Both sides warm: the local process loads its model before the timed call, as the Ray
    # workers hold theirs after the cold run below.
    from encoders import get_encoder

    get_encoder(None)
    lw = Warehouse.open(tmp / "local")
    t = time.perf_counter()
    rep = lw.ingest([str(files)], dataset="d", progress=False)
    out["local_s"] = time.perf_counter() - t
    # A first Ray run on a few files starts the worker processes (Python, torch, the model): the
    # one-time cost of a cluster, reported apart from the steady state that is timed below.
    few = _photos(tmp / "few", copies=1)
    t = time.perf_counter()
    Warehouse.open(tmp / "warmup").ingest([str(few)], dataset="d", engine="ray", ray_address=c.address,
                                          progress=False)
    out["ray_cold_s"] = time.perf_counter() - t
    from ingest import ray_pipeline

    where = {"tasks_model_s": 0.0, "tasks_write_s": 0.0, "tasks_start_s": 0.0, "driver_commit_s": 0.0}
    commit = ray_pipeline._commit

    def timed_commit(wh, r, writer, desc):
        t0 = time.perf_counter()
        try:
            return commit(wh, r, writer, desc)
        finally:
            where["driver_commit_s"] += time.perf_counter() - t0
            where.setdefault("first_part_at_s", t0 - t)
            for k, v in desc.get("timing", {}).items():
                where["tasks_" + {"encode_s": "model_s"}.get(k, k)] += v

    ray_pipeline._commit = timed_commit
    rw = Warehouse.open(tmp / "ray")
    t = time.perf_counter()
    rrep = rw.ingest([str(files)], dataset="d", engine="ray", ray_address=c.address, progress=False)
    out["ray_s"] = time.perf_counter() - t
    ray_pipeline._commit = commit
    out["ray_where"] = {k: round(v, 2) for k, v in where.items()}
    assert rep.assets_added == rrep.assets_added == n
    out["local_images_per_s"] = n / out["local_s"]
    out["ray_images_per_s"] = n / out["ray_s"]
    out["ingest_ratio_ray_over_local"] = out["ray_images_per_s"] / out["local_images_per_s"]
    out["bytes_per_asset"] = {k: v / n for k, v in sorted(folder_bytes(lw.root).items()) if k != "pixql.duckdb"}
    out["catalog_bytes_per_asset"] = (lw.root / "pixql.duckdb").stat().st_size / n

    # Scoring: synthetic vectors in the warehouse layout, one head.
    layout = Layout(tmp / "vec")
    rng = np.random.default_rng(0)
    parts, per = [], 10_000
    for i in range(0, args.vector_rows, per):
        X = rng.standard_normal((per, 1280), dtype=np.float32)
        p = layout.new_part_path(layout.vectors_dir("d", "bench"))
        vector_store.write_table(vectors_table([f"{i + j}" for j in range(per)], {"features": X}), p)
        parts.append(str(p.relative_to(layout.root)))
    head = concept_cache.Head("c", 1, "bench", "features", 1280, rng.standard_normal(1280).astype(np.float32),
                              1.0, 0.0, "logistic", 0.5)
    gb = args.vector_rows * 1280 * 4 / 1e9
    concept_cache.score_parts(layout.root, "bench", parts, "features", [head])  # writes the sidecars
    t = time.perf_counter()
    local = concept_cache.score_parts(layout.root, "bench", parts, "features", [head])
    out["score_local_gb_per_s"] = gb / (time.perf_counter() - t)
    scorer = ray_scoring.ray_scorer(parts_per_task=max(1, len(parts) // 2))
    scorer(layout.root, "bench", parts[:2], "features", [head])  # workers up, numpy imported
    t = time.perf_counter()
    remote = scorer(layout.root, "bench", parts, "features", [head])
    out["score_ray_gb_per_s"] = gb / (time.perf_counter() - t)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(local, remote))
    out["score_ratio_ray_over_local"] = out["score_ray_gb_per_s"] / out["score_local_gb_per_s"]
    out["vector_gb"] = gb
    out["load_average_end"] = os.getloadavg()
    ray.shutdown()
    c.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=32)
    ap.add_argument("--vector-rows", type=int, default=80_000)
    args = ap.parse_args()
    import netns

    if not netns.inside():
        env = {**os.environ, netns.ENV: "1", "PYTHONPATH": str(ROOT)}
        sys.exit(subprocess.run(netns.command([sys.executable, *sys.argv]), env=env).returncode)
    out = main(args)
    print(json.dumps(out, indent=2))
    print(f"RATIOS ingest={out['ingest_ratio_ray_over_local']:.2f} scoring={out['score_ratio_ray_over_local']:.2f} "
          f"(Ray / local; load average {out['load_average_start'][0]:.1f} -> {out['load_average_end'][0]:.1f})")
