"""The CLIP code path (text tower heads, classify) with open_clip weights from a fixed seed (no download)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts import registry
from concepts.classify import classify
from conftest import copy_photos
from warehouse import Warehouse, concept_cache

ENCODER = "clip:ViT-B-32:none"


@pytest.fixture(scope="module")
def clip_wh(tmp_path_factory, photo_dir):
    torch.manual_seed(0)
    src = copy_photos(photo_dir, tmp_path_factory.mktemp("clip-photos"), names={"chelsea", "coffee", "rocket", "astronaut"})
    wh = Warehouse.open(tmp_path_factory.mktemp("wh-clip"))
    wh.ingest([str(src)], dataset="clipset", encoder=ENCODER, progress=False)
    yield wh, src
    wh.close()


def test_clip_text_head_is_the_two_way_softmax_in_sql(clip_wh):
    wh, src = clip_wh
    c = registry.create(wh, "kitten", prompts=["a cat"], negative_prompts=["a rocket"], materialize=False)
    assert c.encoder == ENCODER  # the warehouse's encoder is the default
    v = registry.version(wh, "kitten", with_weights=True)
    assert (v.kind, v.vector_column, v.link) == ("text", "embedding", "logistic")
    assert v.training["negatives_used"] == ["a rocket"]
    from encoders import get_encoder

    enc = get_encoder(ENCODER)
    scale = float(enc.model.logit_scale.detach().exp())
    assert v.scale == pytest.approx(scale)
    # the stored weights are t+ - t- of the normalised text embeddings
    pos = enc.encode_text(["a cat", "a photo of a cat"]).mean(0)
    neg = enc.encode_text(["a rocket"]).mean(0)
    expected = pos / np.linalg.norm(pos) - neg / np.linalg.norm(neg)
    assert np.allclose(v.weights, expected, atol=1e-5)
    head = concept_cache.load_heads(wh.cursor(), "kitten")[0]
    ids, X = concept_cache.read_vector_part(
        wh.root, ENCODER, wh.sql("SELECT path FROM catalog.parts WHERE kind = 'vectors'").fetchone()[0], "embedding",
        head.dim)
    truth = dict(zip(ids.to_pylist(), concept_cache.probabilities(np.asarray(X), [head])[:, 0]))
    macro = dict(wh.sql("SELECT coactive_image_id, kitten_prob FROM coactive_table").fetchall())
    assert max(abs(macro[k] - truth[k]) for k in truth) < 1e-5
    res = classify(wh, [str(src / "chelsea.png")], concepts=["kitten"])
    assert res[0]["probabilities"]["kitten"] == pytest.approx(macro[res[0]["coactive_image_id"]], abs=1e-5)


def test_labeled_head_on_clip_embeddings_with_text_prior(clip_wh):
    wh, _ = clip_wh
    if not registry.exists(wh, "kitten"):
        registry.create(wh, "kitten", prompts=["a cat"], negative_prompts=["a rocket"])
    ids = {p.rsplit("/", 1)[-1]: i for i, p in wh.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}
    c = registry.add_labels(wh, "kitten", positive=[ids["chelsea.png"], ids["coffee.png"]],
                            negative=[ids["rocket.png"], ids["astronaut.png"]])
    v = registry.version(wh, "kitten")
    assert c.latest_version == 2 and v.kind == "text+labeled" and v.vector_column == "embedding"
