"""Ingest and bulk scoring on a real two-node Ray cluster (head + one worker node) on 127.0.0.1.

Every test runs inside a network namespace with only `lo` (tests/netns.py), so
the cluster and the processes that talk to it keep every packet on loopback.
The cluster is one `ray.cluster_utils.Cluster` for the module: 1 CPU per node,
a small object store, no dashboard.
"""
from __future__ import annotations

import io
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import netns

pytest.importorskip("ray")

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
NODE = {"num_cpus": 1, "object_store_memory": 96 * 2**20}
# Vectors are stored as float16 (warehouse/vector_store.py): the two engines' float32 outputs differ in
# the last float32 bits (other batches), which can round to neighbouring float16 values, one ulp apart.
F16_ULP = 2.0 ** -10


def _address_file_dir() -> None:
    """`Cluster` writes its address to <system temp>/ray/ray_current_cluster whatever its temp_dir,
    and fails where that directory does not exist yet (a fresh machine)."""
    from ray._common.utils import get_default_ray_temp_dir

    Path(get_default_ray_temp_dir()).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory, photo_dir):
    """moto's S3 with the photos and a video (tests/s3store.py), inside the namespace with the
    cluster (the namespace has only its own lo).  Started before the cluster, so every Ray node
    inherits its endpoint and credentials from the environment, as a real node has its own."""
    sys.path.insert(0, str(HERE))
    import s3store

    with s3store.moto_bucket(tmp_path_factory.mktemp("s3"), photo_dir) as store:
        yield store


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, bucket):
    assert netns.interfaces() == ["lo"], "Ray tests must run in a namespace that has only lo"
    import ray
    from ray.cluster_utils import Cluster

    temp = Path(f"/tmp/pxr{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    _address_file_dir()
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False, "temp_dir": str(temp)})
    c.worker = c.add_node(**NODE)
    ray.init(address=c.address, log_to_driver=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"} and len(ray.nodes()) == 2
    yield c
    ray.shutdown()
    c.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _photos(directory: Path, copies: int = 1) -> Path:
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    directory.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            Image.fromarray(getattr(data, name)()).save(directory / f"{name}-{k}.png")
        for f in load_sample_images().filenames:
            shutil.copy(f, directory / f"{k}-{Path(f).name}")
    return directory


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    sys.path.insert(0, str(HERE))
    from videogen import make_video

    d = _photos(tmp_path_factory.mktemp("media") / "files")
    make_video(d / "clip.mp4", seconds=3)
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return d


@pytest.fixture(scope="module")
def local(tmp_path_factory, media):
    from pixql import Warehouse

    wh = Warehouse.open(tmp_path_factory.mktemp("local"))
    wh.ingest([str(media)], dataset="d", part_rows=4, progress=False)
    yield wh
    wh.close()


def _vectors(wh) -> dict[str, dict[str, np.ndarray]]:
    from warehouse import catalog

    out: dict[str, dict[str, np.ndarray]] = {}
    for part in catalog.part_paths(wh.cursor(), "vectors"):
        t = pq.read_table(wh.root / part).to_pydict()
        for i, aid in enumerate(t.pop("coactive_image_id")):
            assert aid not in out, "an asset has two vector rows"
            out[aid] = {c: np.asarray(v[i], np.float32) for c, v in t.items()}
    return out


def _rows(wh) -> list[tuple]:
    return wh.sql("SELECT coactive_image_id, path, media_type, keyframe_index, width, height, sha256 "
                  "FROM coactive_table_adv ORDER BY 1").fetchall()


def _errors(wh) -> list[tuple]:
    return wh.sql("SELECT path, reason FROM catalog.ingest_errors ORDER BY 1").fetchall()


@netns.loopback
def test_ray_ingest_matches_a_local_ingest(cluster, local, media, tmp_path):
    from pixql import Warehouse

    seen = []
    wh = Warehouse.open(tmp_path / "wh")
    report = wh.ingest([str(media)], dataset="d", engine="ray", ray_address=cluster.address, part_rows=4,
                       progress=False, on_progress=lambda r: seen.append((r.status, r.processed_files)))
    assert report.status == "Complete" and report.errors == 1
    assert _rows(wh) == _rows(local)  # same ids (dataset, path, sha256), same facts
    kinds = {r[2] for r in _rows(wh)}
    assert kinds == {"image", "keyframe"}
    ours, theirs = _vectors(wh), _vectors(local)
    assert ours.keys() == theirs.keys()
    for aid, cols in theirs.items():
        for col, v in cols.items():
            np.testing.assert_allclose(ours[aid][col], v, atol=1e-5, rtol=F16_ULP)
    assert _errors(wh) == _errors(local) and "broken.jpg" in _errors(wh)[0][0]
    # The job counters the HTTP ingestion job shows move as parts commit, and end complete.
    assert seen[-1] == ("Complete", report.total_files) and any(s == "Running" for s, _ in seen)
    run = wh.sql("SELECT status, files_seen, errors, assets_added FROM catalog.ingest_runs").fetchall()
    assert run == [("Complete", report.total_files, 1, len(ours))]
    # A re-run finds everything committed: nothing is added twice.
    again = wh.ingest([str(media)], dataset="d", engine="ray", ray_address=cluster.address, progress=False)
    assert again.assets_added == 0 and again.skipped == report.total_files - 1
    assert _rows(wh) == _rows(local)
    wh.close()


@netns.loopback
def test_a_ray_ingest_compacts_its_small_parts_like_a_local_one(cluster, local, media, tmp_path, monkeypatch):
    from pixql import Warehouse

    monkeypatch.setenv("PIXQL_COMPACT_AFTER_PARTS", "2")
    monkeypatch.setenv("PIXQL_COMPACT_RETIRE_S", "0")
    wh = Warehouse.open(tmp_path / "wh")
    try:
        report = wh.ingest([str(media)], dataset="d", engine="ray", ray_address=cluster.address, part_rows=2,
                           progress=False)
        assert report.status == "Complete"
        parts = dict(wh.sql("SELECT kind, count(*) FROM catalog.parts GROUP BY kind").fetchall())
        assert parts == {"assets": 1, "vectors": 1}, parts
        assert _rows(wh) == _rows(local)
        assert wh.sql("SELECT path FROM ingest_errors").fetchall() == [(p,) for p, _ in _errors(local)]
        left = {str(p.relative_to(wh.root)) for p in (wh.root / "datasets").rglob("*.parquet")}
        assert left == {r[0] for r in wh.sql("SELECT path FROM catalog.parts").fetchall()}
    finally:
        wh.close()


def _one_row_per_file(wh, files: Path) -> None:
    rows = wh.sql("SELECT path, keyframe_index, count(*) FROM coactive_table_adv GROUP BY ALL").fetchall()
    assert all(n == 1 for _, _, n in rows)
    images = sorted(p for p in files.iterdir() if p.suffix != ".mp4" and p.name != "broken.jpg")
    assert sorted(Path(p).name for p, k, _ in rows if k is None) == sorted(p.name for p in images)
    vecs = _vectors(wh)
    assert len(vecs) == len(rows)


@netns.loopback
def test_a_worker_node_killed_mid_run_and_the_run_completes(cluster, tmp_path):
    from pixql import Warehouse

    files = _photos(tmp_path / "many", copies=2)
    killed = {}

    def on_progress(report):
        if report.status == "Running" and report.assets_added and not killed:
            killed["at"] = report.processed_files
            # Every process of the worker node (raylet, its workers and actors) dies at once.
            cluster.remove_node(cluster.worker, allow_graceful=False)
            cluster.worker = cluster.add_node(**NODE)  # a replacement joins, as an autoscaler's would

    wh = Warehouse.open(tmp_path / "wh")
    report = wh.ingest([str(files)], dataset="d", engine="ray", ray_address=cluster.address, part_rows=2,
                       files_per_task=2, progress=False, on_progress=on_progress)
    assert killed and killed["at"] < report.total_files, "the node was killed before the run ended"
    assert report.status == "Complete" and report.processed_files == report.total_files
    _one_row_per_file(wh, files)
    wh.close()


DRIVER = """
import sys
from pixql import Warehouse
wh = Warehouse.open(sys.argv[2])
def on_progress(r):
    if r.assets_added:
        print("COMMITTED", r.assets_added, flush=True)
wh.ingest([sys.argv[3]], dataset="d", engine="ray", ray_address=sys.argv[1], part_rows=2, files_per_task=2,
          progress=False, on_progress=on_progress)
print("DONE", flush=True)
"""


@netns.loopback
def test_a_killed_driver_leaves_no_duplicates_and_a_rerun_resumes(cluster, tmp_path):
    from pixql import Warehouse

    files = _photos(tmp_path / "many", copies=2)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(tmp_path / "wh"), str(files)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline, lines = time.monotonic() + 300, []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 5)
            line = proc.stdout.readline() if ready else ""
            lines.append(line)
            if line.startswith("COMMITTED") or line.startswith("DONE") or proc.poll() is not None:
                break
        assert any(x.startswith("COMMITTED") for x in lines), lines
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not any(x.startswith("DONE") for x in lines), "the driver finished before it could be killed"
    wh = Warehouse.open(tmp_path / "wh")
    before = wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0]
    assert before > 0
    report = wh.ingest([str(files)], dataset="d", engine="ray", ray_address=cluster.address, progress=False)
    assert report.status == "Complete" and report.skipped >= 1
    _one_row_per_file(wh, files)
    wh.close()


@netns.loopback
def test_ray_bulk_scoring_equals_local_scoring(cluster, local):
    from warehouse import catalog, concept_cache, ray_scoring

    ids = [r[0] for r in local.sql("SELECT coactive_image_id FROM coactive_table_adv ORDER BY path, keyframe_index")
           .fetchall()]
    local.create_concept("things", positive=ids[:3], negative=ids[3:6])
    con = local.cursor()
    heads = concept_cache.load_heads(con, "things")
    parts = catalog.part_paths(con, "assets")
    mine, _ = concept_cache.score_assets(con, local.root, heads, parts)
    theirs, _ = concept_cache.score_assets(con, local.root, heads, parts, scorer=ray_scoring.ray_scorer())
    assert np.isfinite(mine).all() and mine.shape == (len(ids), 1)
    np.testing.assert_array_equal(theirs, mine)

    def cached():
        (path,) = [r[1] for r in concept_cache.cache_rows(con, "things", heads[-1].version)]
        return path, pq.read_table(local.root / path).column("prob").to_numpy()

    path_before, probs_before = cached()
    assert local.rescore_concepts(["things"], engine="ray", ray_address=cluster.address) == [("things", 1)]
    path_after, probs_after = cached()
    assert path_after != path_before  # a new cache file, the same probabilities
    np.testing.assert_array_equal(probs_after, probs_before)
    # A concept created with engine="ray" is scored on the cluster and served from its cache.
    local.create_concept("contrast", positive=ids[3:6], negative=ids[:3], engine="ray", ray_address=cluster.address)
    (v,) = [h.version for h in concept_cache.load_heads(con, "contrast")]
    assert concept_cache.cache_status(con, concept_cache.load_heads(con, "contrast")[0], parts) == "complete"
    got = local.sql("SELECT contrast_latest_prob FROM coactive_table_adv ORDER BY path, keyframe_index").fetchall()
    assert len(got) == len(ids) and all(g[0] is not None for g in got)


@netns.loopback
def test_an_s3_prefix_through_ray_matches_a_local_ingest_of_it(cluster, bucket, tmp_path):
    """`s3://bucket/photos/` ingested on the two-node cluster and locally: the same ids, facts and
    vectors; denied and missing objects are error rows; queries, thumbnails and classify read
    the `s3://` paths."""
    from types import SimpleNamespace

    from PIL import Image

    from api.server.routers.assets import thumbnail_bytes
    from pixql import Warehouse
    from s3store import PREFIX

    sources = [PREFIX, PREFIX + "gone.jpg"]
    local = Warehouse.open(tmp_path / "local")
    mine = local.ingest(sources, dataset="d", part_rows=8, progress=False)
    wh = Warehouse.open(tmp_path / "ray")
    report = wh.ingest(sources, dataset="d", engine="ray", ray_address=cluster.address, part_rows=8,
                       progress=False)
    assert report.status == mine.status == "Complete" and report.errors == mine.errors == 2
    rows = _rows(wh)
    assert rows == _rows(local) and {r[2] for r in rows} == {"image", "keyframe"}
    assert all(r[1].startswith(PREFIX) for r in rows)
    ours, theirs = _vectors(wh), _vectors(local)
    assert ours.keys() == theirs.keys() == {r[0] for r in rows}
    for aid, cols in theirs.items():
        for col, v in cols.items():
            np.testing.assert_allclose(ours[aid][col], v, atol=1e-5, rtol=F16_ULP)
    errors = dict(_errors(wh))
    assert _errors(wh) == _errors(local) and len(errors) == 2
    assert "access denied" in errors[f"{PREFIX}secret/denied.png"]
    assert "no such object" in errors[f"{PREFIX}gone.jpg"]

    # Queries, thumbnails (the server's own code) and classify, on the s3:// paths.
    n_images = wh.sql("SELECT count(*) FROM coactive_table WHERE path LIKE 's3://%' AND media_type = 'image'"
                      ).fetchone()[0]
    assert n_images == sum(r[2] == "image" for r in rows) > 3
    chelsea = wh.sql("SELECT coactive_image_id FROM coactive_table WHERE path = ?", [f"{PREFIX}chelsea.png"]
                     ).fetchone()[0]
    frame = next(r[0] for r in rows if r[2] == "keyframe")
    state = SimpleNamespace(wh=wh, cursor=wh.cursor)
    for aid in (chelsea, frame):
        jpeg = thumbnail_bytes(state, aid, 64)
        assert jpeg[:2] == b"\xff\xd8" and max(Image.open(io.BytesIO(jpeg)).size) == 64
    wh.create_concept("cat", prompts=["a photo of a cat"])
    got = {r["path"]: r for r in wh.classify([f"{PREFIX}chelsea.png", f"{PREFIX}secret/denied.png",
                                              f"{PREFIX}nope.png"], concepts=["cat"])}
    assert got[f"{PREFIX}chelsea.png"]["error"] is None
    column = wh.sql("SELECT cat_latest_prob FROM coactive_table WHERE coactive_image_id = ?", [chelsea]).fetchone()[0]
    assert got[f"{PREFIX}chelsea.png"]["probabilities"]["cat"] == pytest.approx(column, abs=1e-4)
    assert "access denied" in got[f"{PREFIX}secret/denied.png"]["error"]
    assert "no such object" in got[f"{PREFIX}nope.png"]["error"]
    local.close()
    wh.close()


def test_the_server_takes_engine_ray_only_with_a_cluster_setting(tmp_path):
    from pydantic import ValidationError

    from api.server.jobs import IngestJobs
    from api.server.models import IngestRequest
    from pixql import Warehouse
    from warehouse.errors import Invalid
    from warehouse.jobs import JobRunner

    assert IngestRequest.model_validate({"paths": ["x"], "engine": "ray"}).engine == "ray"
    with pytest.raises(ValidationError):
        IngestRequest.model_validate({"paths": ["x"], "engine": "spark"})
    wh = Warehouse.open(tmp_path / "wh")
    (tmp_path / "in").mkdir()
    jobs = IngestJobs(wh, JobRunner(wh.cursor, wh.write_lock, {"ingest": 1}))
    with pytest.raises(Invalid, match="PIXQL_RAY_ADDRESS"):
        jobs.submit([str(tmp_path / "in")], "d", engine="ray")
    queued = IngestJobs(wh, JobRunner(wh.cursor, wh.write_lock, {"ingest": 1}), ray_address="127.0.0.1:6379")
    job = queued.submit([str(tmp_path / "in")], "d", engine="ray")
    assert job["status"] == "Queued" and queued.runner.get(job["job_id"])["params"]["engine"] == "ray"
    wh.close()
