"""A SIGKILLed ingest leaves a readable warehouse, and re-running it ends with one row per file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from warehouse import Warehouse


def make_images(d: Path, n: int) -> None:
    d.mkdir(parents=True)
    for i in range(n):
        im = Image.new("RGB", (96, 96), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
        ImageDraw.Draw(im).ellipse((i % 40, i % 30, 50 + i % 40, 60), fill=(255 - i % 256, 0, i % 256))
        im.save(d / f"img{i:04d}.png")


def wait_for(predicate, timeout: float, what: str, proc) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"ingest finished before {what}; make the input larger"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigkill_then_rerun_has_exactly_one_row_per_file(tmp_path):
    n = 400
    src = tmp_path / "imgs"
    make_images(src, n)
    root = tmp_path / "wh"
    cmd = [sys.executable, "-m", "api.cli", "ingest", str(src), "--dataset", "k", "--root", str(root),
           "--quiet", "--part-rows", "24", "--batch-size", "8"]
    assets_dir = root / "datasets" / "k" / "assets"

    # Kill twice at different depths, then let a third run finish.
    for parts_before_kill in (1, 4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_parts = len(list(assets_dir.glob("part-*.parquet"))) if assets_dir.exists() else 0
        wait_for(
            lambda: assets_dir.exists() and len(list(assets_dir.glob("part-*.parquet"))) >= start_parts + parts_before_kill,
            300, f"{parts_before_kill} new parts", proc,
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Readable after the kill, and never more rows than files.
        wh = Warehouse.open(root, read_only=True)
        count, distinct = wh.sql("SELECT count(*), count(DISTINCT path) FROM coactive_table").fetchone()
        assert count == distinct and count < n
        wh.close()

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    wh = Warehouse.open(root, read_only=True)
    count, distinct, ids = wh.sql(
        "SELECT count(*), count(DISTINCT path), count(DISTINCT coactive_image_id) FROM coactive_table"
    ).fetchone()
    assert (count, distinct, ids) == (n, n, n)
    vec_rows = wh.sql("SELECT count(*), count(DISTINCT coactive_image_id) FROM pixql_internal.vectors_imagenet_lite0").fetchone()
    assert vec_rows == (n, n)
    referenced = {r[0] for r in wh.sql("SELECT path FROM catalog.parts").fetchall()}
    on_disk = {str(p.relative_to(root)) for p in (root / "datasets").rglob("*.parquet")}
    wh.close()
    # orphans from the killed runs were swept when the warehouse was reopened for writing
    assert on_disk == referenced
