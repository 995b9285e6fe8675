"""What the Ray ingest decides without a cluster: the device and batch size of an embedding actor,
an encoder moved to a device, and the per-source skip data the driver ships to decoding tasks.

No GPU here: `pick_device` is checked for both answers, and `Encoder.to` on "cpu" (the same path
a GPU takes, with another device name); a real CUDA forward pass is not exercised by these tests.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import copy_photos


def test_an_actor_uses_cuda_only_when_ray_gave_it_a_gpu_and_torch_sees_one():
    from ingest.ray_parts import pick_device

    sizes = (32, 128)
    assert pick_device(True, [0], None, sizes) == ("cuda:0", 128)
    assert pick_device(True, ["3"], None, sizes) == ("cuda:0", 128)  # Ray masks the device: it is 0 inside
    assert pick_device(False, [0], None, sizes) == ("cpu", 32)  # a GPU torch cannot use (no CUDA build)
    assert pick_device(True, [], None, sizes) == ("cpu", 32)  # a GPU of the machine, not given to this actor
    assert pick_device(True, [0], 8, sizes) == ("cuda:0", 8)  # the caller's batch size wins
    assert pick_device(False, [], 8, sizes) == ("cpu", 8)


def test_the_batch_sizes_per_device_are_settings(monkeypatch):
    from pydantic import ValidationError

    from warehouse.settings import current

    monkeypatch.setenv("PIXQL_GPU_BATCH_SIZE", "256")
    assert (current().cpu_batch_size, current().gpu_batch_size) == (32, 256)
    monkeypatch.setenv("PIXQL_CPU_BATCH_SIZE", "0")
    with pytest.raises(ValidationError):
        current()


def test_an_encoder_moved_to_a_device_runs_its_batches_there(photo_dir):
    from PIL import Image

    from encoders import get_encoder

    shared = get_encoder("imagenet-lite0")
    batch = torch.stack([shared.preprocess(Image.open(p).convert("RGB")) for p in sorted(photo_dir.iterdir())[:2]])
    before = shared.encode(batch)
    enc = type(shared)("imagenet-lite0").load()  # its own weights: the shared instance stays on the host
    assert enc.device == "cpu"
    np.testing.assert_array_equal(enc.to("cpu").encode(batch)["features"], before["features"])
    # "meta" stands in for a GPU: tensors there have shapes but no data, so the forward pass runs
    # on that device and only reading the result back fails, which shows the batch went there too.
    enc.to("meta")
    assert enc.device == "meta" and next(enc.model.parameters()).device.type == "meta"
    with pytest.raises(NotImplementedError, match="meta"):
        enc.encode(batch)


def test_decoding_tasks_get_the_committed_ids_of_their_own_files_only(photo_dir, tmp_path):
    """A resume skips committed files with what each source carries; nothing global is shipped."""
    from ingest import pipeline
    from ingest.ray_parts import decode_sources, preprocess_spec
    from ingest.ray_pipeline import source_items
    from warehouse import Warehouse, catalog

    files = copy_photos(photo_dir, tmp_path / "in", names={"chelsea", "coffee", "rocket"})
    wh = Warehouse.open(tmp_path / "wh")
    first = sorted(files.iterdir())[:2]
    wh.ingest([str(p) for p in first], dataset="d", progress=False)
    committed = dict(wh.sql("SELECT path, coactive_image_id FROM catalog.assets").fetchall())
    r = pipeline.open_run(wh, [str(files)], "d", None, None, None, None, None, pipeline.PLAIN)
    try:
        items = source_items(r)
        assert len(items) == 3
        for it in items:
            if it["path"] in committed:  # exactly this path's id, whatever else the warehouse holds
                known = json.loads(it["known"])
                assert known["embedded"] == known["existing"] == [committed[it["path"]]]
            else:
                assert it["known"] == ""
        batch = {k: np.array([it[k] for it in items], dtype=object) for k in items[0]}
        blocks = list(decode_sources(batch, dataset="d", encoder=r.encoder, preprocess=preprocess_spec(r.enc),
                                     analyzers=[], max_pixels=pipeline.DEFAULT_MAX_PIXELS,
                                     video_options={}, blocked={}))
        rows = [(k, json.loads(rec)) for b in blocks for k, rec in zip(b["kind"], b["record"])]
        sources = {rec["path"]: rec["skipped"] for k, rec in rows if k == "source"}
        assert sources == {str(p): str(p) in committed for p in sorted(files.iterdir())}
        decoded = [rec["path"] for k, rec in rows if k == "asset"]
        assert decoded == [p for p in sources if p not in committed]
    finally:
        catalog.LIVE_RUNS.discard(r.run_id)
        wh.close()
