"""Moderation categories scored by the shipped models: open_nsfw's `nsfw_score` is
`explicit_nudity`'s own score and NudeNet's detections (the test extra) score the nudity children
and `suggestive`; moderation runs the analyzers on the frames it moderates, keyframes included.

No explicit material is available: the tests show the wiring with the real models (the score a
frame gets is the model's number, the policy's threshold acts on it, the bundled photos score
low) and nothing about how well the models find nudity."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_photos
from PIL import Image, ImageDraw

from concepts import taxonomy
from concepts.moderation import Item, Moderator, analyzed

HAVE_NUDENET = importlib.util.find_spec("nudenet") is not None


def _skin(path: Path) -> Path:
    """A synthetic skin-toned figure on a warm background: no nudity, but a score to follow."""
    im = Image.new("RGB", (320, 320), (205, 150, 120))
    d = ImageDraw.Draw(im)
    d.ellipse((60, 30, 260, 300), fill=(228, 176, 148))
    d.ellipse((100, 120, 150, 170), fill=(180, 110, 90))
    d.ellipse((170, 120, 220, 170), fill=(180, 110, 90))
    im.save(path)
    return path


@pytest.fixture(scope="module")
def mod(tmp_path_factory, photo_dir):
    from warehouse import Warehouse

    base = tmp_path_factory.mktemp("mod-models")
    photos = copy_photos(photo_dir, base / "photos", names={"rocket", "coffee", "chelsea", "astronaut"})
    skin = _skin(base / "photos" / "skin.png")
    wh = Warehouse.open(base / "wh")
    yield wh, photos, skin
    wh.close()


def _frame_scores(res: dict) -> dict[str, float]:
    return {c["class"]: c["score"] for c in res["output"][0]["classes"]}


def test_nsfw_score_is_explicit_nudity_and_the_policy_acts_on_it(mod):
    wh, photos, skin = mod
    m = Moderator(wh)
    names = ["rocket.png", "coffee.png", "chelsea.png", "astronaut.png"]
    out = m.moderate([Item(path=str(photos / n)) for n in names] + [Item(path=str(skin))], use_cache=False)
    assert "explicit_nudity" not in out["unscored_categories"]
    ids = [r["coactive_image_id"] for r in out["results"]]
    # the analyzer ran on exactly the moderated frames, and its column is in SQL
    stored = dict(wh.sql("SELECT coactive_image_id, nsfw_score FROM coactive_table_adv").fetchall())
    assert set(ids) <= set(stored) and all(stored[i] is not None for i in ids)
    n_analyzed = wh.sql("SELECT count(*) FROM catalog.analyses WHERE analyzer = 'nsfw'").fetchone()[0]
    assert n_analyzed == len(ids)
    for r in out["results"]:
        got = _frame_scores(r)["explicit_nudity"]
        own = stored[r["coactive_image_id"]]
        assert got >= round(own, 4) - 1e-4  # the parent is the max of its own (nsfw) and its children
        if not HAVE_NUDENET:
            assert got == pytest.approx(own, abs=1e-4)
    photo_scores = [stored[i] for i in ids[:4]]
    assert max(photo_scores) < 0.2, photo_scores  # the bundled photos are safe and score low
    s = stored[ids[4]]
    assert s > 0.0
    # a policy just under the synthetic image's score rejects it for explicit_nudity; just over, it does not
    lo, hi = max(0.0, round(s - 0.02, 4)), min(1.0, round(s + 0.02, 4))
    rej = m.moderate([Item(path=str(skin))], policy=f"p:explicit_nudity:{lo}:review_band:0", use_cache=False)
    trig = {c["category"]: c for c in rej["results"][0]["categories"]}
    assert rej["results"][0]["status"] == "rejected" and trig["explicit_nudity"]["score"] >= lo
    ok = m.moderate([Item(path=str(skin))], policy=f"p:explicit_nudity:{hi}:nudity:ignore:partial_nudity:ignore:"
                    "graphic_male_nudity:ignore:graphic_female_nudity:ignore:review_band:0", use_cache=False)
    cats = {c["category"] for c in ok["results"][0]["categories"]}
    assert "explicit_nudity" not in cats or _frame_scores(ok["results"][0])["explicit_nudity"] >= hi
    # moderating again runs no analyzer a second time
    assert analyzed.ensure(wh, ids) == {}


@pytest.mark.skipif(not HAVE_NUDENET, reason="NudeNet (the nudity extra) is not installed")
def test_nudenet_detections_score_the_children_and_suggestive(mod):
    wh, photos, skin = mod
    m = Moderator(wh)
    out = m.moderate([Item(path=str(photos / "astronaut.png")), Item(path=str(skin))], use_cache=False)
    for c in ("nudity", "partial_nudity", "suggestive", "female_underwear"):
        assert c not in out["unscored_categories"]
    assert "sexual_activity" in out["unscored_categories"]  # NudeNet sees body parts, not activity
    labels = dict(wh.sql("SELECT coactive_image_id, nudity_labels FROM coactive_table_adv").fetchall())
    for r in out["results"]:
        dets = labels[r["coactive_image_id"]] or []
        best = lambda names: max([0.0] + [d["score"] for d in dets if d["label"] in names])  # noqa: E731
        sc = _frame_scores(r)
        assert sc["nudity"] == pytest.approx(best(analyzed.NUDENET["nudity"]), abs=1e-4)
        assert sc["suggestive"] >= best(analyzed.NUDENET["suggestive"]) - 1e-4
        assert sc["explicit_nudity"] >= sc["nudity"] - 1e-4  # the parent takes the max of its children
    rows = {r["category"]: r for r in taxonomy.report(wh)}
    assert rows["explicit_nudity"]["scored"] and "open_nsfw" in rows["explicit_nudity"]["state"]
    assert rows["nudity"]["model"] == "NudeNet detections"


def test_video_keyframes_get_the_analyzers(mod, tmp_path):
    import av

    wh, photos, skin = mod
    frames = [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in (photos / "coffee.png", skin)]
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as outv:
        stream = outv.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for arr in frames:
            for _ in range(10):
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    outv.mux(packet)
        for packet in stream.encode():
            outv.mux(packet)
    res = Moderator(wh).moderate([Item(path=str(path))], use_cache=False)["results"][0]
    assert res["media_type"] == "video" and len(res["output"]) >= 2
    vid = res["coactive_video_id"]
    kf = dict(wh.sql("SELECT keyframe_time_ms, nsfw_score FROM coactive_table_adv WHERE coactive_video_id = ?",
                     [vid]).fetchall())
    assert len(kf) == len(res["output"]) and all(v is not None for v in kf.values())
    for f in res["output"]:
        sc = {c["class"]: c["score"] for c in f["classes"]}
        assert sc["explicit_nudity"] >= round(kf[int(round(f["time"] * 1000))], 4) - 1e-4
