"""Ingest of real photos and broken files: rows, error rows, formats, metadata, resumability."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import copy_photos
from warehouse import Warehouse

PIXQL = [sys.executable, "-m", "api.cli"]


def make_bad_files(d: Path) -> dict[str, str]:
    """The four broken inputs of the issue; returns file name -> expected reason fragment."""
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(buf, "JPEG", quality=90)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "notes.png").write_text("this is a text file, not a picture\n")
    (d / "empty.jpg").write_bytes(b"")
    Image.new("1", (20000, 20000)).save(d / "huge.png", optimize=True)
    return {
        "truncated.jpg": "truncated",
        "notes.png": "not a recognised image",
        "empty.jpg": "empty file",
        "huge.png": "decompression bomb",
    }


def run_cli(*args, check=True):
    proc = subprocess.run(PIXQL + list(args), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_folder_with_broken_files_ingests_good_ones_and_records_each_bad_one(tmp_path, photo_dir):
    src = copy_photos(photo_dir, tmp_path / "in")
    good = sorted(p.name for p in src.iterdir())
    expected = make_bad_files(src / "bad")
    root = tmp_path / "wh"

    first = run_cli("ingest", str(src), "--dataset", "mixed", "--root", str(root), "--quiet")
    assert f"{len(good)} assets added" in first.stdout
    second = run_cli("ingest", str(src), "--dataset", "mixed", "--root", str(root), "--quiet")
    assert "0 assets added" in second.stdout

    wh = Warehouse.open(root, read_only=True)
    rows = wh.sql("SELECT path FROM coactive_table").fetchall()
    assert sorted(Path(r[0]).name for r in rows) == good
    errors = {Path(p).name: reason for p, reason in wh.sql("SELECT path, reason FROM catalog.ingest_errors").fetchall()}
    assert set(errors) == set(expected)
    for name, fragment in expected.items():
        assert fragment in errors[name], (name, errors[name])
    ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table").fetchall()]
    assert len(set(ids)) == len(ids)
    wh.close()


def test_formats_orientation_and_first_gif_frame(tmp_path):
    d = tmp_path / "fmt"
    d.mkdir()
    base = Image.new("RGB", (120, 60), (10, 120, 200))
    for ext, fmt in [("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP"), ("tiff", "TIFF")]:
        base.save(d / f"img.{ext}", fmt)
    frames = [Image.new("RGB", (50, 40), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 120x60, displayed 60x120
    base.save(d / "rotated.jpg", "JPEG", exif=exif.tobytes())

    wh = Warehouse.open(tmp_path / "wh")
    report = wh.ingest([str(d)], dataset="fmt", progress=False)
    assert report.errors == 0 and report.assets_added == 6
    dims = {Path(p).name: (w, h, f) for p, w, h, f in wh.sql("SELECT path, width, height, format FROM coactive_table_adv").fetchall()}
    assert dims["rotated.jpg"][:2] == (60, 120)
    assert dims["img.webp"] == (120, 60, "WEBP")
    assert dims["img.tiff"][2] == "TIFF" and dims["img.bmp"][2] == "BMP"
    assert dims["anim.gif"][:2] == (50, 40)

    from ingest.decode import open_image

    im, fmt, w, h = open_image((d / "anim.gif").read_bytes())
    assert im.getpixel((10, 10)) == (255, 0, 0)  # the first frame, not the second
    wh.close()


def test_globs_lists_sidecars_and_manifest(tmp_path, photo_dir):
    src = copy_photos(photo_dir, tmp_path / "in", names={"chelsea", "coffee", "rocket", "astronaut"})
    (src / "chelsea.png.json").write_text(json.dumps({"uploader": "u1", "report_count": 3}))
    (src / "manifest.csv").write_text("path,source\ncoffee.png,forum\nrocket.png,chat\n")
    (tmp_path / "list.txt").write_text(f"{src / 'astronaut.png'}\n# a comment\n")
    wh = Warehouse.open(tmp_path / "wh")
    r1 = wh.ingest([str(src / "c*.png")], dataset="meta", manifest=src / "manifest.csv", progress=False)
    assert r1.assets_added == 2  # chelsea, coffee
    r2 = wh.ingest([f"@{tmp_path / 'list.txt'}"], dataset="meta", progress=False)
    assert r2.assets_added == 1
    meta = {
        Path(p).name: m
        for p, m in wh.sql("SELECT path, metadata FROM coactive_table_adv").fetchall()
    }
    assert json.loads(meta["chelsea.png"]) == {"uploader": "u1", "report_count": 3}
    assert json.loads(meta["coffee.png"]) == {"source": "forum"}
    assert meta["astronaut.png"] is None
    # metadata is JSON in SQL
    n = wh.sql("SELECT count(*) FROM coactive_table_adv WHERE metadata->>'uploader' = 'u1'").fetchone()[0]
    assert n == 1
    wh.close()


def test_missing_path_is_an_error_row_not_a_crash(tmp_path):
    wh = Warehouse.open(tmp_path / "wh")
    r = wh.ingest([str(tmp_path / "nope.jpg")], dataset="x", progress=False)
    assert r.errors == 1 and r.assets_added == 0
    assert "no such file" in wh.errors().fetchall()[0][3]
    wh.close()


def test_fixed_file_clears_its_error(tmp_path, photo_dir):
    d = tmp_path / "in"
    d.mkdir()
    (d / "later.png").write_text("not yet an image")
    wh = Warehouse.open(tmp_path / "wh")
    assert wh.ingest([str(d)], dataset="x", progress=False).errors == 1
    (d / "later.png").write_bytes((photo_dir / "coffee.png").read_bytes())
    r = wh.ingest([str(d)], dataset="x", progress=False)
    assert r.assets_added == 1 and r.errors == 0
    assert wh.errors().fetchall() == []
    wh.close()


def test_bad_dataset_name_and_unknown_encoder_are_clear_errors(tmp_path, photo_dir):
    wh = Warehouse.open(tmp_path / "wh")
    with pytest.raises(ValueError, match="invalid dataset name"):
        wh.ingest([str(photo_dir)], dataset="drop table;", progress=False)
    with pytest.raises(ValueError, match="unknown encoder"):
        wh.ingest([str(photo_dir)], dataset="ok", encoder="resnet9000", progress=False)
    assert wh.sql("SELECT count(*) FROM catalog.ingest_runs").fetchone()[0] == 0
    wh.close()
    proc = run_cli("ingest", str(photo_dir), "--dataset", "ok", "--encoder", "resnet9000", "--root", str(tmp_path / "wh"), check=False)
    assert proc.returncode != 0 and "unknown encoder" in proc.stderr
