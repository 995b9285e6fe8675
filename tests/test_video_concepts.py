"""`coactive_videos` with concepts: a concept learned from labelled keyframes finds the video and
the second where it appears; concept columns stay lazy; the stock DuckDB CLI sees the same rows."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videogen import make_video

DISC_SECONDS = {1, 2, 5, 7, 10}  # when the red disc is on screen in the training video


@pytest.fixture(scope="module")
def concept_wh(tmp_path_factory):
    from warehouse import Warehouse

    d = tmp_path_factory.mktemp("vc")
    make_video(d / "train" / "train.mp4", seconds=12, shape_at=DISC_SECONDS) if (d / "train").mkdir() is None else None
    (d / "watch").mkdir()
    make_video(d / "watch" / "target.mp4", seconds=10, shape_at={6})
    make_video(d / "watch" / "clean.mp4", seconds=10)
    wh = Warehouse.open(d / "wh")
    wh.ingest([str(d / "train")], dataset="train", progress=False)
    wh.ingest([str(d / "watch")], dataset="watch", progress=False)
    frames = wh.sql("SELECT coactive_image_id, keyframe_index FROM coactive_table_adv WHERE dataset = 'train'").fetchall()
    pos = [i for i, k in frames if k in DISC_SECONDS]
    neg = [i for i, k in frames if k not in DISC_SECONDS]
    wh.create_concept("red_disc", positive=pos, negative=neg)
    # a second concept, left as a SQL macro (not materialised), for the laziness check
    wh.create_concept("no_disc", positive=neg, negative=pos, materialize=False)
    yield wh, d
    wh.close()


def test_concept_learned_from_frames_finds_the_video_and_the_second(concept_wh):
    wh, d = concept_wh
    rows = wh.sql(
        "SELECT coactive_video_id, red_disc_max_time_ms FROM coactive_videos WHERE dataset = 'watch' AND red_disc = 1"
    ).fetchall()
    target = wh.sql("SELECT coactive_video_id FROM catalog.videos WHERE path LIKE '%target.mp4'").fetchone()[0]
    assert rows == [(target, 6000)]
    clean = wh.sql("SELECT red_disc, red_disc_max_prob FROM coactive_videos WHERE path LIKE '%clean.mp4'").fetchone()
    assert clean[0] == 0 and clean[1] < 0.5
    # the per-video maximum is the maximum of that video's keyframe probabilities
    per_frame = wh.sql(
        "SELECT max(red_disc_latest_prob) FROM coactive_table_adv WHERE coactive_video_id = ?", [target]
    ).fetchone()[0]
    assert wh.sql("SELECT red_disc_max_prob FROM coactive_videos WHERE coactive_video_id = ?",
                  [target]).fetchone()[0] == pytest.approx(per_frame)


def test_video_concept_columns_are_lazy(concept_wh):
    wh, _ = concept_wh

    def aggregates(sql: str) -> int:
        plan = "\n".join(r[1] for r in wh.sql("EXPLAIN " + sql).fetchall())
        return plan.count("arg_max(")

    assert aggregates("SELECT no_disc_max_time_ms FROM coactive_videos") == 1
    assert aggregates("SELECT no_disc_max_time_ms, red_disc_max_time_ms FROM coactive_videos") == 2
    assert aggregates("SELECT path, keyframes FROM coactive_videos") == 0


def test_stock_duckdb_cli_reads_coactive_videos(concept_wh, tmp_path):
    wh, d = concept_wh
    wh.checkpoint()
    copy = tmp_path / "wh"
    shutil.copytree(wh.root, copy)
    exe = Path(sys.executable).parent / "duckdb"
    cli = str(exe) if exe.exists() else shutil.which("duckdb")
    assert cli, "the duckdb-cli package must be installed"
    out = subprocess.run(
        [cli, "-readonly", "-csv", "-noheader", str(copy / "pixql.duckdb"),
         "SELECT regexp_extract(path, '[^/]+$'), red_disc, red_disc_max_time_ms FROM coactive_videos "
         "WHERE dataset = 'watch' ORDER BY path"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    clean, target = (line.split(",") for line in out.stdout.split())
    assert clean[:2] == ["clean.mp4", "0"] and target == ["target.mp4", "1", "6000"]
