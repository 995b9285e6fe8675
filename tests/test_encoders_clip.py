"""The clip:<model>:<pretrained> path with local weights, and a second encoder beside the first."""
from __future__ import annotations

import numpy as np
import pytest
import torch

MODEL = "ViT-S-32-alt"  # small enough for CPU tests


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory):
    import open_clip

    torch.manual_seed(1234)
    model = open_clip.create_model(MODEL, pretrained=None).eval()
    d = tmp_path_factory.mktemp("clip")
    torch.save(model.state_dict(), d / "random_clip.pt")
    return model, d


def test_local_checkpoint_file_and_directory_give_identical_vectors(saved_clip, photo_dir):
    from PIL import Image

    from encoders.clip import ClipEncoder

    model, d = saved_clip
    images = [Image.open(photo_dir / n) for n in ("chelsea.png", "coffee.png", "rocket.png")]
    via_file = ClipEncoder.from_name(f"clip:{MODEL}:{d / 'random_clip.pt'}")
    via_dir = ClipEncoder.from_name(f"clip:{MODEL}:{d}")
    a = via_file.encode_images(images)["embedding"]
    b = via_dir.encode_images(images)["embedding"]
    batch = torch.stack([via_file.preprocess(im.convert("RGB")) for im in images])
    with torch.inference_mode():
        ref = model.encode_image(via_file._normalise(batch))
        ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()
    assert a.shape == (3, via_file.vector_columns["embedding"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    # and not trivially equal: a different seed gives different vectors
    assert not np.allclose(a[0], a[1])
    t = via_file.encode_text(["a photo of a cat"])
    assert t.shape[1] == a.shape[1]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from encoders.clip import ClipEncoder

    with pytest.raises(FileNotFoundError, match="not found"):
        ClipEncoder.from_name(f"clip:{MODEL}:{tmp_path / 'nope.pt'}")
    with pytest.raises(ValueError, match="clip:<model>:<pretrained>"):
        ClipEncoder.from_name("clip:onlymodel")


def test_second_encoder_vectors_coexist(saved_clip, photo_dir, tmp_path):
    from conftest import copy_photos
    from warehouse import Warehouse

    _, d = saved_clip
    src = copy_photos(photo_dir, tmp_path / "in", names={"chelsea", "coffee", "rocket", "astronaut"})
    wh = Warehouse.open(tmp_path / "wh")
    wh.ingest([str(src)], dataset="two", progress=False)
    clip_name = f"clip:{MODEL}:{d / 'random_clip.pt'}"
    report = wh.embed("two", clip_name, progress=False)
    assert report.assets_added == 0 and report.errors == 0
    again = wh.embed("two", clip_name, progress=False)
    assert again.skipped == 4
    assert wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0] == 4
    enc = wh.datasets().fetchall()[0][4]
    assert sorted(enc) == sorted(["imagenet-lite0", clip_name])
    from warehouse.views import vectors_view_name

    n_clip = wh.sql(f"SELECT count(DISTINCT coactive_image_id) FROM {vectors_view_name(clip_name)}").fetchone()[0]
    n_lite = wh.sql(f"SELECT count(DISTINCT coactive_image_id) FROM {vectors_view_name('imagenet-lite0')}").fetchone()[0]
    assert n_clip == n_lite == 4
    wh.close()
