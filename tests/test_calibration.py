"""Default thresholds (concepts/calibrate.py), letterbox preprocessing and re-embedding (concepts/reembed.py).

Real warehouses of generated drawings, the default encoder; nothing is timed.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from concepts import calibrate, reembed, registry
from concepts.heads import HeadSpec
from warehouse import Warehouse

N_IMAGES = 40


def drawings(d, n=N_IMAGES):
    """Random shapes on random backgrounds, some wide, some tall."""
    rng = np.random.default_rng(3)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = [(160, 160), (320, 80), (80, 240)][i % 3]
        im = Image.new("RGB", (w, h), tuple(int(x) for x in rng.integers(0, 255, 3)))
        dr = ImageDraw.Draw(im)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
            box = (x0, y0, x0 + int(rng.integers(5, w - x0)), y0 + int(rng.integers(5, h - y0)))
            (dr.ellipse if rng.random() < 0.5 else dr.rectangle)(box, fill=tuple(int(x) for x in rng.integers(0, 255, 3)))
        im.save(d / f"drawing_{i:02d}.png")
    return d


def open_wh(tmp_path_factory, name):
    w = Warehouse.open(tmp_path_factory.mktemp(name))
    w.ingest([str(drawings(tmp_path_factory.mktemp(name + "-img")))], dataset="drawings", progress=False)
    return w


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    w = open_wh(tmp_path_factory, "wh-calib")
    yield w
    w.close()


def probs(w, column):
    return dict(w.sql(f"SELECT coactive_image_id, {column} FROM coactive_table_adv").fetchall())


def test_robust_rule_on_a_synthetic_score_distribution():
    rng = np.random.default_rng(0)
    neg = rng.normal(-4.0, 1.0, 5000)           # the bulk, in log-odds
    pos = rng.normal(2.0, 0.5, 250)             # 5% positives far above it
    scores = 1 / (1 + np.exp(-np.r_[neg, pos]))
    t = calibrate.robust_threshold(scores)
    L = np.log(scores / (1 - scores))
    med = np.median(L)
    expect = 1 / (1 + np.exp(-(med + 3 * 1.4826 * np.median(np.abs(L - med)))))
    assert t == pytest.approx(expect, rel=1e-9)
    # Close to the negatives' own 3-sigma point (prevalence barely moves it), far from 0.5 and from q99.
    assert 1 / (1 + np.exp(-(-4 + 3 * 0.8))) < t < 1 / (1 + np.exp(-(-4 + 3 * 1.3)))
    assert (scores[len(neg):] >= t).mean() > 0.99 and (scores[:len(neg)] >= t).mean() < 0.01
    # Capped at one half: a concept most assets are in still flags "more likely than not".
    assert calibrate.robust_threshold(1 / (1 + np.exp(-rng.normal(3, 1, 1000)))) == 0.5
    # Ties (over half the scores equal): the cut sits just above the tied value.
    assert calibrate.robust_threshold([0.01] * 60 + [0.2, 0.3, 0.4]) == 0.2
    # Labels: F1-optimal cut.
    assert calibrate.f1_threshold([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]) == 0.6


def test_default_threshold_follows_the_rule_and_is_the_flag(wh):
    c = registry.create(wh, "round", prompts=["a ball"])
    assert c.threshold_source == f"robust: median+3mad of {N_IMAGES} scores"
    p = np.array(list(probs(wh, "round_prob").values()), float)
    assert c.threshold == pytest.approx(calibrate.robust_threshold(p), rel=1e-6)
    assert c.threshold < 0.5
    # The 0/1 column (SQL macro and cache alike) is the stored threshold.
    flagged = wh.sql("SELECT count(*) FROM coactive_table WHERE round = 1").fetchall()[0][0]
    assert flagged == int((p >= c.threshold).sum()) < N_IMAGES // 10
    v = registry.version(wh, "round")
    assert v.threshold_source == c.threshold_source == v.training["threshold_source"]


def test_user_thresholds_are_kept_and_recalibration_is_a_new_version(wh):
    c = registry.create(wh, "boxy", prompts=["a box"], threshold=0.3)
    assert (c.threshold, c.threshold_source) == (0.3, "user")
    c = registry.update(wh, "boxy", prompts=["a box", "a crate"])   # retrained: the user's 0.3 stays
    assert (c.latest_version, c.threshold, c.threshold_source) == (2, 0.3, "user")
    pinned = probs(wh, "boxy_v2_prob")
    pinned_flags = wh.sql("SELECT count(*) FROM coactive_table_adv WHERE boxy_v2_prob >= 0.3").fetchall()[0][0]
    c = registry.recalibrate(wh, "boxy")
    assert c.latest_version == 3 and c.threshold_source.startswith("robust:") and c.threshold != 0.3
    assert registry.recalibrate(wh, "boxy").latest_version == 3   # nothing changed: no new version
    old = registry.versions(wh, "boxy")
    assert [(v.version, v.threshold, v.threshold_source) for v in old[:2]] == [(1, 0.3, "user"), (2, 0.3, "user")]
    assert probs(wh, "boxy_v2_prob") == pinned
    assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE boxy_v2_prob >= 0.3").fetchall()[0][0] == pinned_flags
    # A new threshold from the user is again the user's, and retraining keeps it.
    c = registry.set_threshold(wh, "boxy", 0.25)
    assert (c.latest_version, c.threshold_source) == (4, "user")


def test_labelled_heads_use_the_rule_and_enough_labels_calibrate_on_them(wh):
    ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table ORDER BY path").fetchall()]
    wide = ids[1::3]   # the 320x80 drawings
    rest = [i for i in ids if i not in wide]
    c = registry.create(wh, "wide", positive=wide[:3], negative=rest[:6])
    assert c.threshold_source.startswith("robust:")
    c = registry.add_labels(wh, "wide", positive=wide[3:13], negative=rest[6:18])
    assert c.threshold_source.startswith("labels: 13 pos / 18 neg, F1-optimal")
    assert 0 < c.threshold < 1


def test_letterbox_keeps_the_whole_width_of_a_wide_drawing():
    import encoders

    im = Image.new("RGB", (400, 100), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((0, 0, 9, 99), fill=(255, 0, 0))
    ImageDraw.Draw(im).rectangle((390, 0, 399, 99), fill=(255, 0, 0))
    lb = encoders.lookup("imagenet-lite0:letterbox")
    crop = encoders.lookup("imagenet-lite0")
    assert (lb.preprocess_mode, crop.preprocess_mode) == ("letterbox", "crop")

    def red(t, x):  # the middle row's pixel at column x
        return tuple(int(v) for v in t[:, 112, x]) == (255, 0, 0)

    t = lb.preprocess(im)
    assert t.shape == (3, 224, 224) and red(t, 0) and red(t, 223) and red(t, 1) and red(t, 222)
    assert not red(t, 112)
    # the pad above and below is the mean colour (0 after normalisation)
    pad = tuple(round(255 * m) for m in lb.mean)
    assert tuple(int(v) for v in t[:, 5, 112]) == pad and tuple(int(v) for v in t[:, 218, 112]) == pad
    assert not any(red(crop.preprocess(im), x) for x in (0, 223))   # the centre crop loses both stripes
    both = encoders.lookup("imagenet-lite0:both").preprocess(im)
    assert both.shape == (6, 224, 224) and red(both[3:], 0) and red(both[3:], 223)


def test_reembedding_with_letterbox_makes_new_versions_and_keeps_pinned_ones(tmp_path_factory):
    w = open_wh(tmp_path_factory, "wh-reembed")
    try:
        ids = [r[0] for r in w.sql("SELECT coactive_image_id FROM coactive_table ORDER BY path").fetchall()]
        registry.create(w, "ball", prompts=["a ball"])
        registry.create(w, "manual", prompts=["a box"], threshold=0.2)
        registry.create(w, "learned", positive=ids[:3], negative=ids[3:9])
        weights = np.zeros(1000, np.float32)
        weights[[409, 530]] = 1.0
        registry.create_from_head(w, "builtin", HeadSpec("model", "imagenet-lite0", "probs", weights, 1, 0, "linear"))
        before = {n: probs(w, f"{n}_v1_prob") for n in ("ball", "manual", "learned", "builtin")}
        w.embed("drawings", "imagenet-lite0:letterbox", progress=False)
        lines = reembed.after_embed(w, "drawings", "imagenet-lite0:letterbox")
        assert lines[0] == "dataset 'drawings' now uses imagenet-lite0:letterbox"
        assert registry.default_encoder(w) == "imagenet-lite0:letterbox"
        for n in before:
            c = registry.get(w, n)
            v1, v2 = registry.versions(w, n)
            assert (c.latest_version, c.encoder, v1.encoder, v2.encoder) == \
                (2, "imagenet-lite0:letterbox", "imagenet-lite0", "imagenet-lite0:letterbox")
            assert probs(w, f"{n}_v1_prob") == before[n]          # the pinned version reads the old vectors
            new = probs(w, f"{n}_v2_prob")
            assert set(new) == set(before[n]) and new != before[n]
            assert probs(w, f"{n}_prob") == new
        assert registry.get(w, "manual").threshold == 0.2 and registry.get(w, "manual").threshold_source == "user"
        assert registry.get(w, "ball").threshold_source.startswith("robust:")
        assert registry.version(w, "builtin", with_weights=True).weights == registry.version(w, "builtin", 1, True).weights
        # the letterbox setting's own SQL columns sit beside the crop's
        row = w.sql("SELECT imagenet_top_class, imagenet_letterbox_top_class FROM coactive_table_adv LIMIT 1").fetchall()[0]
        assert all(isinstance(x, str) for x in row)
        # embedding again with the same setting changes nothing
        w.embed("drawings", "imagenet-lite0:letterbox", progress=False)
        assert reembed.after_embed(w, "drawings", "imagenet-lite0:letterbox") == []
        assert registry.get(w, "ball").latest_version == 2
    finally:
        w.close()
