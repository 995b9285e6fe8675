"""Analyzer columns from real models on real photos: OCR of rendered text, faces, NSFW score, nudity."""
from __future__ import annotations

import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import copy_photos

CLOTHED = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse"]


def text_image(lines: list[str]) -> Image.Image:
    im = Image.new("RGB", (820, 110 * len(lines) + 40), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=44)
    for i, line in enumerate(lines):
        d.text((30, 40 + 110 * i), line, fill="black", font=font)
    return im


@pytest.fixture(scope="module")
def analyzed_wh(tmp_path_factory, photo_dir):
    """Photos plus one image of rendered text with the image analyzers; the text image also
    in a second dataset with OCR (the slow one, so it runs on one image)."""
    from warehouse import Warehouse

    src = copy_photos(photo_dir, tmp_path_factory.mktemp("in"), names=set(CLOTHED))
    flyer = text_image(["BUY PILLS NOW", "call me 555-123-4567"])
    flyer.save(src / "flyer.png")
    texts = tmp_path_factory.mktemp("texts")
    flyer.save(texts / "flyer_text.png")
    wh = Warehouse.open(tmp_path_factory.mktemp("wh-analyzers"))
    report = wh.ingest([str(src)], dataset="p", progress=False, analyzers="nsfw,faces,nudity")
    assert report.errors == 0
    assert wh.ingest([str(texts)], dataset="t", progress=False, analyzers="ocr").errors == 0
    yield wh
    wh.close()


def by_name(wh, column: str) -> dict:
    rows = wh.sql(f"SELECT path, {column} FROM coactive_table_adv").fetchall()
    return {p.rsplit("/", 1)[1].rsplit(".", 1)[0]: v for p, v in rows}


def test_rendered_text_comes_back_in_ocr_text_and_flags(analyzed_wh):
    wh = analyzed_wh
    text, conf, flags = wh.sql(
        "SELECT ocr_text, ocr_confidence, ocr_flags FROM coactive_table_adv WHERE path LIKE '%flyer_text.png'"
    ).fetchone()
    assert "BUY PILLS NOW" in text and "555-123-4567" in text
    assert conf > 0.9
    assert sorted(flags) == ["contact_info", "drug_sale"]
    hits = wh.sql("SELECT path FROM coactive_table_adv WHERE ocr_text ILIKE '%buy%'").fetchall()
    assert [h[0].endswith("flyer_text.png") for h in hits] == [True]
    hits = wh.sql("SELECT path FROM coactive_table_adv WHERE list_contains(ocr_flags, 'contact_info')").fetchall()
    assert [h[0].endswith("flyer_text.png") for h in hits] == [True]
    # assets of the dataset without OCR read NULL, not "no text"
    assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE dataset = 'p' AND ocr_text IS NOT NULL").fetchone()[0] == 0


def test_astronaut_has_a_face_and_the_others_none(analyzed_wh):
    faces = by_name(analyzed_wh, "face_count")
    assert faces["astronaut"] >= 1
    assert faces["coffee"] == 0 and faces["rocket"] == 0 and faces["flyer"] == 0


def test_clothed_photos_score_low_on_nsfw(analyzed_wh):
    scores = by_name(analyzed_wh, "nsfw_score")
    assert set(CLOTHED) <= set(scores)
    assert all(0.0 <= scores[n] < 0.2 for n in CLOTHED), scores
    assert len({round(scores[n], 6) for n in CLOTHED}) == len(CLOTHED)  # a real score per image


def test_nudity_labels_list_detected_classes_with_scores(analyzed_wh):
    labels = by_name(analyzed_wh, "nudity_labels")
    astronaut = labels["astronaut"]
    assert astronaut and astronaut[0]["label"] == "face_female" and 0.3 < astronaut[0]["score"] <= 1
    assert len(astronaut[0]["box"]) == 4
    assert labels["coffee"] == []
    exposed = analyzed_wh.sql(
        "SELECT count(*) FROM coactive_table_adv "
        "WHERE len(list_filter(nudity_labels, lambda l: l.label LIKE '%exposed' AND l.score > 0.5)) > 0"
    ).fetchone()[0]
    assert exposed == 0


def test_analyzer_parts_are_registered_with_their_files(analyzed_wh):
    wh = analyzed_wh
    parts = wh.sql("SELECT encoder, path, row_count FROM catalog.parts WHERE kind = 'analyzer' ORDER BY 1").fetchall()
    assert [p[0] for p in parts] == ["faces", "nsfw", "nudity", "ocr"]
    for name, path, n in parts:
        ds, rows = ("t", 1) if name == "ocr" else ("p", 7)
        assert path.startswith(f"datasets/{ds}/analyzers/{name}/") and (wh.root / path).is_file() and n == rows
    assert wh.sql("SELECT count(*) FROM catalog.analyses").fetchone()[0] == 3 * 7 + 1
    assert wh.sql("SELECT dataset, analyzer FROM catalog.dataset_analyzers ORDER BY 1, 2").fetchall() == [
        ("p", "faces"), ("p", "nsfw"), ("p", "nudity"), ("t", "ocr")]


def test_nudity_without_nudenet_says_how_to_enable_it(monkeypatch, tmp_path, photo_dir):
    from typer.testing import CliRunner

    from api.cli import app
    from ingest import analyzers
    from ingest.analyzers import AnalyzerUnavailable, get_analyzer
    from warehouse import Warehouse

    monkeypatch.setitem(sys.modules, "nudenet", None)  # import nudenet now raises ImportError
    analyzers._load.cache_clear()
    try:
        with pytest.raises(AnalyzerUnavailable, match=r"pip install 'pixql\[nudity\]'"):
            get_analyzer("nudity")
        with Warehouse.open(tmp_path / "wh") as wh:
            wh.ingest([str(copy_photos(photo_dir, tmp_path / "in", names={"coffee"}))], dataset="d", progress=False)
        result = CliRunner().invoke(app, ["analyze", "-d", "d", "-a", "nudity", "-r", str(tmp_path / "wh")])
        assert result.exit_code == 1
        assert "pip install 'pixql[nudity]'" in result.output
        with Warehouse.open(tmp_path / "wh") as wh:
            cols = [r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()]
            assert "nudity_labels" not in cols
    finally:
        analyzers._load.cache_clear()
