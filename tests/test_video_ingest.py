"""Video ingest: keyframes at 1 fps with timestamps, catalog.videos, truncated and fake videos,
re-runs, re-embedding keyframes, and bounded memory while streaming a long video."""
from __future__ import annotations

import shutil
import weakref
from pathlib import Path

import pytest

from videogen import make_video, truncate_copy


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    make_video(d / "clip.mp4")  # 10 s at 25 fps
    make_video(d / "other.mkv", seconds=10)
    truncate_copy(d / "other.mkv", d / "cut.mkv", 0.5)
    (d / "other.mkv").unlink()
    (d / "notes.mp4").write_text("meeting notes, not a video\n" * 20)
    return d


@pytest.fixture(scope="module")
def video_wh(tmp_path_factory, video_dir):
    from warehouse import Warehouse

    wh = Warehouse.open(tmp_path_factory.mktemp("wh-video"))
    report = wh.ingest([str(video_dir)], dataset="vids", progress=False)
    yield wh, report
    wh.close()


def test_ten_second_video_yields_ten_keyframes_one_per_second(video_wh, video_dir):
    wh, _ = video_wh
    rows = wh.sql(
        "SELECT media_type, keyframe_index, keyframe_time_ms, coactive_video_id, width, height "
        "FROM coactive_table_adv WHERE path = ? ORDER BY keyframe_index",
        [str(video_dir / "clip.mp4")],
    ).fetchall()
    assert [r[2] for r in rows] == [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]
    assert [r[1] for r in rows] == list(range(10))
    assert {r[0] for r in rows} == {"keyframe"}
    assert {(r[4], r[5]) for r in rows} == {(320, 240)}
    (vid,) = {r[3] for r in rows}
    video = wh.sql(
        "SELECT path, duration_ms, fps, width, height, codec, frames_sampled, status, error "
        "FROM catalog.videos WHERE coactive_video_id = ?", [vid]
    ).fetchone()
    assert video == (str(video_dir / "clip.mp4"), 10000, 25.0, 320, 240, "h264", 10, "complete", None)
    # every keyframe has vectors: concept columns work on them like on images
    n = wh.sql("SELECT count(*) FROM catalog.embeddings e JOIN catalog.assets a USING (coactive_image_id) "
               "WHERE a.media_type = 'keyframe' AND a.path = ?", [str(video_dir / "clip.mp4")]).fetchone()[0]
    assert n == 10


def test_truncated_video_keeps_frames_before_the_cut_and_records_an_error(video_wh, video_dir):
    wh, _ = video_wh
    cut = str(video_dir / "cut.mkv")
    times = [r[0] for r in wh.sql(
        "SELECT keyframe_time_ms FROM coactive_table_adv WHERE path = ? ORDER BY 1", [cut]).fetchall()]
    assert 2 <= len(times) < 10
    assert times == [1000 * i for i in range(len(times))]
    reasons = [r[0] for r in wh.sql("SELECT reason FROM catalog.ingest_errors WHERE path = ?", [cut]).fetchall()]
    assert len(reasons) == 1 and "truncated" in reasons[0]
    status, frames = wh.sql("SELECT status, frames_sampled FROM catalog.videos WHERE path = ?", [cut]).fetchone()
    assert (status, frames) == ("error", len(times))


def test_renamed_text_file_is_one_error_row_and_no_assets(video_wh, video_dir):
    wh, report = video_wh
    notes = str(video_dir / "notes.mp4")
    errors = wh.sql("SELECT reason FROM catalog.ingest_errors WHERE path = ?", [notes]).fetchall()
    assert len(errors) == 1 and "not a readable video" in errors[0][0]
    assert wh.sql("SELECT count(*) FROM catalog.assets WHERE path = ?", [notes]).fetchone()[0] == 0
    assert wh.sql("SELECT count(*) FROM catalog.videos WHERE path = ?", [notes]).fetchone()[0] == 0
    assert report.errors == 2  # the fake and the truncated video


def test_coactive_videos_has_one_row_per_readable_video(video_wh, video_dir):
    wh, _ = video_wh
    rows = wh.sql("SELECT path, keyframes, duration_ms, video_status FROM coactive_videos ORDER BY path").fetchall()
    assert [(Path(r[0]).name, r[1], r[3]) for r in rows][0] == ("clip.mp4", 10, "complete")
    assert [Path(r[0]).name for r in rows] == ["clip.mp4", "cut.mkv"]
    assert all(r[2] == 10000 for r in rows)


def test_rerun_adds_nothing_and_keeps_the_first_sampling(video_wh, video_dir):
    wh, _ = video_wh
    before = wh.sql("SELECT count(*) FROM catalog.assets").fetchone()[0]
    report = wh.ingest([str(video_dir)], dataset="vids", progress=False, video_options={"fps": 4.0})
    assert report.assets_added == 0
    assert wh.sql("SELECT count(*) FROM catalog.assets").fetchone()[0] == before
    assert wh.sql("SELECT sample_fps FROM catalog.videos WHERE path LIKE '%clip.mp4'").fetchone()[0] == 1.0
    # the errors are still the current state of those files, once each
    assert wh.sql("SELECT count(*) FROM catalog.ingest_errors WHERE dataset = 'vids'").fetchone()[0] == 2


@pytest.mark.parametrize("ext,codec", [("mov", "libx264"), ("webm", "libvpx-vp9"), ("avi", "mpeg4"), ("mkv", "libx264")])
def test_container_formats(tmp_path, ext, codec):
    from ingest.sources import Source
    from ingest.video import read_keyframes

    p = make_video(tmp_path / f"v.{ext}", seconds=3, codec=codec, width=160, height=120)
    frames, res = read_keyframes(Source(p), "d", target=256)
    assert [f.keyframe_time_ms for f in frames] == [0, 1000, 2000]
    assert res.error is None and res.video.duration_ms == 3000
    assert frames[0].image.size == (160, 120)  # never upscaled


def test_fps_and_max_frames_options(tmp_path):
    from ingest.sources import Source
    from ingest.video import read_keyframes

    p = make_video(tmp_path / "v.mp4", seconds=4)
    frames, res = read_keyframes(Source(p), "d", fps=2.0, max_frames=5)
    # 25 fps: frames every 40 ms, so the 500 ms targets land on the first frame at or after them
    assert [f.keyframe_time_ms for f in frames] == [0, 520, 1000, 1520, 2000]
    assert res.error is None and res.video.frames_sampled == 5
    from ingest.decode import DecodeError

    with pytest.raises(DecodeError, match="fps"):
        read_keyframes(Source(p), "d", fps=0)


def test_truncated_mp4_without_index_is_unreadable(tmp_path):
    from warehouse import Warehouse

    p = make_video(tmp_path / "in" / "x.mp4", seconds=3, faststart=False) if (tmp_path / "in").mkdir() is None else None
    truncate_copy(p, tmp_path / "in" / "x.mp4", 0.6)
    with Warehouse.open(tmp_path / "wh") as wh:
        report = wh.ingest([str(tmp_path / "in")], dataset="d", progress=False)
        assert report.errors == 1 and report.assets_added == 0
        assert "not a readable video" in wh.errors("d").fetchone()[3]


def test_long_video_streams_in_bounded_memory_across_parts(tmp_path, monkeypatch):
    """90 keyframes flow through in batches: never more than a queue and a batch alive at once."""
    from ingest import video as video_mod
    from warehouse import Warehouse

    make_video(tmp_path / "in" / "long.mp4", seconds=30, width=192, height=144) if (tmp_path / "in").mkdir() is None else None
    alive, peak = [0], [0]
    original = video_mod.KeyframeStream.__iter__

    def released():
        alive[0] -= 1

    def counting(self):
        for a in original(self):
            weakref.finalize(a.image, released)
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            yield a

    monkeypatch.setattr(video_mod.KeyframeStream, "__iter__", counting)
    with Warehouse.open(tmp_path / "wh") as wh:
        report = wh.ingest([str(tmp_path / "in")], dataset="d", progress=False, batch_size=8, part_rows=40,
                           video_options={"fps": 3.0})
        assert report.assets_added == 90 and report.errors == 0
        assert wh.sql("SELECT count(*) FROM catalog.parts WHERE kind = 'assets'").fetchone()[0] >= 3
        assert wh.sql("SELECT frames_sampled, status FROM catalog.videos").fetchone() == (90, "complete")
    print("peak keyframe images alive:", peak[0])
    assert 8 <= peak[0] <= 24


def test_reembed_decodes_keyframes_again_by_their_sampling(tmp_path, video_dir):
    import open_clip
    import torch

    from warehouse import Warehouse

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(video_dir / "clip.mp4", src / "clip.mp4")
    torch.manual_seed(0)
    ckpt = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("ViT-S-32-alt", pretrained=None).state_dict(), ckpt)
    with Warehouse.open(tmp_path / "wh") as wh:
        wh.ingest([str(src)], dataset="d", progress=False, video_options={"fps": 0.5})
        report = wh.embed("d", f"clip:ViT-S-32-alt:{ckpt}", progress=False)
        assert report.assets_added == 0
        counts = wh.sql(
            "SELECT e.encoder, count(*) FROM catalog.embeddings e JOIN catalog.assets a USING (coactive_image_id) "
            "WHERE a.media_type = 'keyframe' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        # fps=0.5 recorded at ingest is reused: the same 5 keyframes get the second vector set
        assert [c for _, c in counts] == [5, 5]
        assert wh.sql("SELECT count(*) FROM catalog.assets").fetchone()[0] == 5


@pytest.mark.timeout(120)
def test_a_failure_mid_video_raises_and_leaves_no_thread_behind(tmp_path, monkeypatch):
    """The decode thread feeding a video's keyframes stops when the consumer fails."""
    import threading

    from encoders import get_encoder
    from warehouse import Warehouse

    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "v.mp4", seconds=30, width=160, height=120)
    enc = get_encoder("imagenet-lite0")
    calls = [0]
    real = type(enc).encode

    def failing(self, batch):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("model crashed")
        return real(self, batch)

    monkeypatch.setattr(type(enc), "encode", failing)
    with Warehouse.open(tmp_path / "wh") as wh:
        with pytest.raises(RuntimeError, match="model crashed"):
            wh.ingest([str(tmp_path / "in")], dataset="d", progress=False, batch_size=4, video_options={"fps": 4.0})
        assert wh.sql("SELECT status FROM catalog.ingest_runs").fetchone()[0] == "Error"
    assert not [t for t in threading.enumerate() if t.name.startswith("pixql-decode")]


def test_cli_ingest_video_options_and_videos_listing(tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "short.mp4", seconds=3, width=160, height=120)
    root = str(tmp_path / "wh")
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", str(tmp_path / "in"), "-d", "v", "-q", "-r", root, "--fps", "2", "--max-frames", "3"])
    assert r.exit_code == 0, r.output
    assert "3 assets added" in r.output
    r = runner.invoke(app, ["videos", "-r", root, "-f", "csv"])
    assert r.exit_code == 0, r.output
    header, row = r.output.strip().splitlines()
    assert header.split(",")[:3] == ["dataset", "path", "duration_ms"]
    assert row.startswith("v,") and "short.mp4" in row and ",3000," in row and ",160x120,h264,3," in row
    r = runner.invoke(app, ["sql", "SELECT string_agg(keyframe_time_ms::VARCHAR, ' ' ORDER BY keyframe_time_ms) AS t "
                            "FROM coactive_table_adv", "-f", "csv", "-r", root])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines() == ["t", "0 520 1000"]


def test_phone_rotation_is_applied(tmp_path):
    import numpy as np

    from ingest.sources import Source
    from ingest.video import read_keyframes
    from videogen import rotate_mp4

    plain = make_video(tmp_path / "plain.mp4", seconds=2, width=160, height=120)
    turned = rotate_mp4(plain, tmp_path / "portrait.mp4")
    (a, *_), res_a = read_keyframes(Source(plain), "d")
    (b, *_), res_b = read_keyframes(Source(turned), "d")
    assert (res_a.video.width, res_a.video.height, res_a.video.rotation) == (160, 120, 0)
    assert (res_b.video.width, res_b.video.height, res_b.video.rotation) == (120, 160, 270)
    assert (b.width, b.height) == (120, 160) and b.image.size == (120, 160)
    # the picture is the plain one turned 90° clockwise, as a player shows it
    expected = np.rot90(np.asarray(a.image, dtype=np.int16), k=-1)
    assert np.abs(np.asarray(b.image, dtype=np.int16) - expected).mean() < 2


def test_keyframes_analyzer_parts_and_video_row_commit_together(tmp_path, monkeypatch):
    """A failure inside the commit leaves none of them: no asset without its video row or analysis."""
    from ingest import video_catalog
    from warehouse import Warehouse

    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "v.mp4", seconds=3, width=160, height=120)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(video_catalog, "upsert", broken)
    with Warehouse.open(tmp_path / "wh") as wh:
        with pytest.raises(RuntimeError, match="disk full"):
            wh.ingest([str(tmp_path / "in")], dataset="d", progress=False, analyzers="faces")
        for table in ("assets", "embeddings", "analyses", "videos", "parts"):
            assert wh.sql(f"SELECT count(*) FROM catalog.{table}").fetchone()[0] == 0, table
        written = list((tmp_path / "wh" / "datasets").rglob("part-*.parquet"))
        assert {p.parent.parent.name for p in written} >= {"analyzers"}  # files were written, then orphaned
    monkeypatch.undo()
    with Warehouse.open(tmp_path / "wh") as wh:  # orphans swept; a re-run commits everything
        assert not list((tmp_path / "wh" / "datasets").rglob("part-*.parquet"))
        report = wh.ingest([str(tmp_path / "in")], dataset="d", progress=False, analyzers="faces")
        assert report.assets_added == 3
        assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE face_count = 0").fetchone()[0] == 3
        assert wh.sql("SELECT keyframes, video_status FROM coactive_videos").fetchone() == (3, "complete")
