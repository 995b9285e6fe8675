"""A run reads only the committed ids at its own paths (ingest/pipeline.py `open_run`), and a
run past `SCOPED_PATHS` the whole dataset's: either way a re-run skips what is committed, adds
the new files, and a file embedded by another encoder gets vectors without a second asset row."""
from __future__ import annotations

import shutil

import pytest

from ingest import pipeline
from warehouse import Warehouse


@pytest.mark.parametrize("scoped", [True, False])
def test_rerun_skips_committed_files_and_adds_new_ones(tmp_path, photo_dir, monkeypatch, scoped):
    if not scoped:
        monkeypatch.setattr(pipeline, "SCOPED_PATHS", 0)
    photos = sorted(p for p in photo_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:4]
    assert len(photos) == 4
    src = tmp_path / "src"
    src.mkdir()
    for p in photos[:2]:
        shutil.copy(p, src / p.name)
    wh = Warehouse.open(tmp_path / "wh")
    first = wh.ingest([str(src)], dataset="d", progress=False)
    assert first.assets_added == 2
    for p in photos[2:]:
        shutil.copy(p, src / p.name)
    again = wh.ingest([str(src)], dataset="d", progress=False)
    assert (again.assets_added, again.skipped) == (2, 2)
    other = wh.ingest([str(src)], dataset="d", encoder="imagenet-lite0:letterbox", progress=False)
    assert (other.assets_added, other.skipped) == (0, 0)
    con = wh.cursor()
    assert con.execute("SELECT count(*), count(DISTINCT coactive_image_id) FROM catalog.assets").fetchone() == (4, 4)
    assert con.execute("SELECT encoder, count(*) FROM catalog.embeddings GROUP BY ALL ORDER BY 1").fetchall() == [
        ("imagenet-lite0", 4), ("imagenet-lite0:letterbox", 4)]
    wh.close()
