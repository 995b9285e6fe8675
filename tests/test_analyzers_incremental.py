"""`pixql analyze` on existing datasets (images and keyframes), only where missing; OCR flag patterns."""
from __future__ import annotations

import duckdb
import pytest
from typer.testing import CliRunner

from conftest import copy_photos
from videogen import make_video


def flags_of(texts: list[str], patterns=None) -> list[list[str]]:
    from warehouse.analyzer_sql import DEFAULT_OCR_PATTERNS, ocr_flags_sql

    con = duckdb.connect()
    con.execute("CREATE TABLE t(i INT, ocr_text VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(texts)))
    sql = ocr_flags_sql("ocr_text", DEFAULT_OCR_PATTERNS if patterns is None else patterns)
    return [r[0] for r in con.execute(f"SELECT {sql} FROM t ORDER BY i").fetchall()]


def test_default_ocr_patterns_flag_threats_drug_sales_and_contact_details():
    got = flags_of([
        "I will kill you tomorrow",
        "Cheap XANAX bars for sale, fast delivery",
        "dm me on telegram",
        "write to sales@example.com",
        "Call (555) 123-4567",
        "Happy birthday grandma! See you at 5",
        "",
        None,
    ])
    assert got[0] == ["threat"]
    assert got[1] == ["drug_sale"]
    assert got[2] == ["contact_info"]
    assert got[3] == ["contact_info"]
    assert got[4] == ["contact_info"]
    assert got[5] == [] and got[6] == []
    assert got[7] is None  # not analyzed is not "clean"


def test_no_patterns_gives_empty_lists():
    assert flags_of(["buy pills"], patterns={}) == [[]]


@pytest.fixture
def plain_dataset(tmp_path, photo_dir):
    from warehouse import Warehouse

    src = copy_photos(photo_dir, tmp_path / "in", names={"astronaut", "coffee", "rocket"})
    make_video(tmp_path / "in" / "clip.mp4", seconds=3, width=160, height=120)
    wh = Warehouse.open(tmp_path / "wh")
    wh.ingest([str(src)], dataset="d", progress=False)
    yield wh, src
    wh.close()


def test_analyze_adds_columns_to_existing_assets_only_where_missing(plain_dataset, photo_dir):
    wh, src = plain_dataset
    cols = [r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()]
    assert "face_count" not in cols  # absent until an analyzer runs

    report = wh.analyze("d", "faces", progress=False)
    assert report.results_added == 6 and report.errors == 0  # 3 photos + 3 keyframes
    rows = dict(wh.sql("SELECT coalesce(keyframe_time_ms::VARCHAR, path), face_count FROM coactive_table_adv").fetchall())
    assert rows["0"] == 0 and rows["2000"] == 0
    assert rows[str(src / "astronaut.png")] >= 1

    assert wh.analyze("d", "faces", progress=False).results_added == 0  # nothing missing any more

    # the dataset now runs faces on what it ingests next
    copy_photos(photo_dir, src, names={"chelsea"})
    wh.ingest([str(src)], dataset="d", progress=False)
    assert wh.sql("SELECT face_count FROM coactive_table_adv WHERE path LIKE '%chelsea.png'").fetchone()[0] == 0
    assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE face_count IS NULL").fetchone()[0] == 0
    assert wh.analyze("d", "faces", progress=False).results_added == 0


def test_ingest_with_analyzers_also_fills_older_assets(plain_dataset):
    wh, src = plain_dataset
    report = wh.ingest([str(src)], dataset="d", progress=False, analyzers="nsfw")
    assert report.assets_added == 0
    assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE nsfw_score IS NULL").fetchone()[0] == 0
    videos = wh.sql("SELECT keyframes, nsfw_score_max, nsfw_score_max_time_ms FROM coactive_videos").fetchall()
    assert len(videos) == 1 and videos[0][0] == 3 and videos[0][2] in (0, 1000, 2000)


def test_missing_file_is_reported_not_fatal(plain_dataset):
    wh, src = plain_dataset
    (src / "rocket.png").unlink()
    report = wh.analyze("d", "faces", progress=False)
    assert report.results_added == 5 and report.errors == 1
    assert "no longer exists" in report.error_samples[0]["reason"]


def test_ocr_flag_patterns_are_configurable_and_apply_at_once(plain_dataset, tmp_path):
    wh, _ = plain_dataset
    from PIL import Image, ImageDraw, ImageFont

    img = tmp_path / "sign" / "sign.png"
    img.parent.mkdir()
    im = Image.new("RGB", (700, 160), "white")
    ImageDraw.Draw(im).text((30, 50), "GUNS FOR SALE", fill="black", font=ImageFont.load_default(size=48))
    im.save(img)
    wh.ingest([str(img)], dataset="signs", progress=False, analyzers="ocr")
    q = "SELECT ocr_text, ocr_flags FROM coactive_table_adv WHERE path LIKE '%sign.png'"
    text, flags = wh.sql(q).fetchone()
    assert "GUNS FOR SALE" in text and flags == []
    wh.set_ocr_flag("weapon_sale", r"\bguns?\b.{0,20}\bfor sale\b", "weapons offered for sale")
    assert wh.sql(q).fetchone()[1] == ["weapon_sale"]
    with pytest.raises(ValueError, match="RE2"):
        wh.set_ocr_flag("broken", "(unclosed")
    wh.set_ocr_flag("weapon_sale", None)
    assert wh.sql(q).fetchone()[1] == []
    assert wh.reset_ocr_flag("weapon_sale") is True


def test_cli_analyze_and_ingest_analyzers(tmp_path, photo_dir):
    from api.cli import app

    src = copy_photos(photo_dir, tmp_path / "in", names={"astronaut"})
    root = str(tmp_path / "wh")
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", str(src), "-d", "d", "-q", "-r", root, "--analyzers", "faces"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "-d", "d", "-a", "faces,nsfw", "-q", "-r", root])
    assert r.exit_code == 0, r.output
    assert "nsfw" in r.output and "1 assets" in r.output
    r = runner.invoke(app, ["sql", "SELECT face_count, nsfw_score < 0.2 AS low FROM coactive_table_adv", "-f", "csv", "-r", root])
    assert r.exit_code == 0 and r.output.strip().splitlines()[1] in ("1,true", "2,true")
    r = runner.invoke(app, ["analyze", "-d", "d", "-a", "colour", "-r", root])
    assert r.exit_code == 1 and "unknown analyzer 'colour'" in r.output
    r = runner.invoke(app, ["analyze", "-d", "nope", "-a", "faces", "-r", root])
    assert r.exit_code == 1 and "unknown dataset 'nope'" in r.output


def test_cli_ocr_flags_lists_sets_and_refuses_bad_patterns(tmp_path):
    from api.cli import app

    root = str(tmp_path / "wh")
    runner = CliRunner()
    assert runner.invoke(app, ["init", "-r", root]).exit_code == 0
    r = runner.invoke(app, ["ocr-flags", "-r", root])
    assert r.exit_code == 0 and {"threat (default)", "drug_sale (default)", "contact_info (default)"} <= {
        line.split(":")[0] for line in r.output.splitlines()}
    r = runner.invoke(app, ["ocr-flags", "-r", root, "--set", r"scam=\bwire me\b", "--description", "payment scams"])
    assert r.exit_code == 0 and "scam (custom): payment scams" in r.output
    r = runner.invoke(app, ["ocr-flags", "-r", root, "--disable", "contact_info"])
    assert r.exit_code == 0 and "contact_info" not in r.output
    r = runner.invoke(app, ["ocr-flags", "-r", root, "--reset", "contact_info"])
    assert "contact_info (default)" in r.output
    r = runner.invoke(app, ["ocr-flags", "-r", root, "--set", "x=(a"])
    assert r.exit_code == 1 and "RE2" in r.output
    r = runner.invoke(app, ["ocr-flags", "-r", root, "--set", "Bad Name=a"])
    assert r.exit_code == 1 and "invalid flag name" in r.output
