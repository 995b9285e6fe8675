"""The encoder seam: a third encoder defined here (in no PixQL module) is ingested, gets its SQL
column, a text concept and a labelled concept through the registry alone; the built-in catalogue
gives one definition per concept whichever path creates it (the one-way imports: test_layers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import encoders
from encoders.base import Encoder, linear_head

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210), "gray": (128, 128, 128)}
WORDS = tuple(COLOURS)


class TinyColourEncoder(Encoder):
    """Deterministic: `rgb` is the mean colour, `words` a softmax over how close it is to each colour word."""

    name = "tiny-colour"
    kind = "tiny"
    usage = "tiny-colour"
    input_size = 16
    crop_pct = 1.0
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    vector_columns = {"rgb": 3, "words": len(WORDS)}
    text_column = "words"
    labeled_column = "rgb"
    loads = 0

    def _load(self) -> None:
        type(self).loads += 1
        self.centres = torch.tensor([COLOURS[w] for w in WORDS], dtype=torch.float32) / 255.0

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        rgb = x.mean(dim=(2, 3))
        words = (-torch.cdist(rgb, self.centres) * 20.0).softmax(-1)
        return {"rgb": rgb.numpy(), "words": words.numpy()}

    def text_head(self, prompts, negatives, class_names=None) -> dict:
        w = np.array([1.0 if any(word in p for p in prompts) else 0.0 for word in WORDS], dtype=np.float32)
        return linear_head("words", w, 1.0, 0.0, "linear", {"method": "colour-words"})

    def sql_columns(self):
        return [("column", "list_max({vectors}.rgb::FLOAT[]) AS tiny_brightest_channel")]


@pytest.fixture(scope="module")
def tiny_wh(tmp_path_factory):
    from warehouse import Warehouse

    encoders.register(TinyColourEncoder)
    src = tmp_path_factory.mktemp("colours")
    for name, rgb in COLOURS.items():
        for k in range(3):  # three shades of each colour
            shade = tuple(min(255, max(0, c + 12 * (k - 1))) for c in rgb)
            Image.new("RGB", (40 + 8 * k, 32), shade).save(src / f"{name}{k}.png")
    wh = Warehouse.open(tmp_path_factory.mktemp("wh-tiny"))
    try:
        wh.ingest([str(src)], dataset="colours", encoder="tiny-colour", progress=False)
        yield wh
    finally:
        wh.close()
        encoders.unregister(TinyColourEncoder)


def _ids(wh, prefix: str) -> list[str]:
    rows = wh.sql("SELECT coactive_image_id, path FROM coactive_table ORDER BY path").fetchall()
    return [i for i, p in rows if Path(p).stem.startswith(prefix)]


def test_a_third_encoder_ingests_and_adds_its_sql_column(tiny_wh):
    wh = tiny_wh
    assert TinyColourEncoder.loads == 1  # loaded once by ingest, not per batch
    cols = wh.sql("SELECT vector_columns FROM catalog.encoders WHERE name = 'tiny-colour'").fetchone()[0]
    assert cols == '{"rgb": 3, "words": 4}'
    stored = wh.sql("SELECT kind, sql FROM catalog.encoder_sql WHERE encoder = 'tiny-colour'").fetchall()
    assert stored == [("column", "list_max({vectors}.rgb::FLOAT[]) AS tiny_brightest_channel")]
    rows = dict(wh.sql("SELECT path, tiny_brightest_channel FROM coactive_table_adv").fetchall())
    assert len(rows) == 12
    for path, value in rows.items():
        im = np.asarray(Image.open(path).convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
        assert value == pytest.approx(im.reshape(-1, 3).mean(axis=0).max(), abs=2e-3)
    # an ImageNet column is not there: this warehouse has no ImageNet encoder
    assert "imagenet_top_class" not in {r[0] for r in wh.sql("DESCRIBE coactive_table_adv").fetchall()}


def test_text_and_labelled_concepts_on_the_third_encoder(tiny_wh):
    from concepts import registry

    wh = tiny_wh
    registry.create(wh, "reddish", prompts=["red"], encoder="tiny-colour")
    v = registry.version(wh, "reddish")
    assert (v.kind, v.encoder, v.vector_column, v.dim) == ("text", "tiny-colour", "words", 4)
    ranked = [Path(p).stem for (p,) in wh.sql("SELECT path FROM coactive_table ORDER BY reddish_prob DESC").fetchall()]
    assert {s[:-1] for s in ranked[:3]} == {"red"} and all(not s.startswith("red") for s in ranked[3:])

    blue, other = _ids(wh, "blue"), _ids(wh, "green") + _ids(wh, "gray")
    registry.create(wh, "bluish", positive=blue[:2], negative=other[:4], encoder="tiny-colour")
    v = registry.version(wh, "bluish")
    assert (v.kind, v.vector_column, v.dim) == ("labeled", "rgb", 3)
    probs = dict(wh.sql("SELECT coactive_image_id, bluish_prob FROM coactive_table").fetchall())
    assert probs[blue[2]] > max(probs[i] for i in other)  # the held-out blue image ranks above every non-blue one


def test_an_encoder_without_a_text_side_says_so(tiny_wh):
    from concepts import ConceptError, registry

    class NoText(TinyColourEncoder):
        name = "tiny-notext"
        text_column = None

    encoders.register(NoText)
    try:
        with pytest.raises(ConceptError, match="no text side"):
            registry.create(tiny_wh, "wordless", prompts=["red"], encoder="tiny-notext")
    finally:
        encoders.unregister(NoText)
    assert encoders.find("tiny-notext") is None
    with pytest.raises(ValueError, match="unknown encoder 'tiny-notext'"):
        encoders.lookup("tiny-notext")


def test_capabilities_come_from_the_encoder_without_loading_weights():
    from concepts.heads import labeled_column

    lite0, clip = encoders.lookup("imagenet-lite0"), encoders.lookup("clip:ViT-B-32:/nowhere/model.pt")
    assert (lite0.text_column, lite0.labeled_column, lite0.known_columns()) == \
        ("probs", "features", {"features": 1280, "probs": 1000})
    assert (clip.text_column, clip.labeled_column, clip.known_columns()) == ("embedding", "embedding", {})
    assert not clip._loaded  # a missing checkpoint only matters when the weights are needed
    assert labeled_column(None, "clip:ViT-B-32:/nowhere/model.pt") == "embedding"
    with pytest.raises(FileNotFoundError, match="not found"):
        encoders.get_encoder("clip:ViT-B-32:/nowhere/model.pt")
    assert encoders.lookup("imagenet-lite0") is lite0  # one instance per name


def test_one_catalogue_one_definition_whoever_creates_it(photo_dir, tmp_path):
    """`syringe` is the same head from the starter library and from the moderation taxonomy."""
    from conftest import copy_photos

    from concepts import catalogue, library, registry, taxonomy
    from warehouse import Warehouse

    src = copy_photos(photo_dir, tmp_path / "in", names={"chelsea", "coffee", "rocket"})
    heads = {}
    for order in ("library-first", "taxonomy-first"):
        wh = Warehouse.open(tmp_path / order)
        try:
            wh.ingest([str(src)], dataset="p", progress=False)
            steps = [lambda: library.install_defaults(wh, names=["syringe", "alcohol", "fight"]),
                     lambda: taxonomy.ensure_concepts(wh, materialize=False)]
            for step in steps if order == "library-first" else steps[::-1]:
                step()
            heads[order] = {n: registry.version(wh, n, with_weights=True) for n in ("syringe", "alcohol", "fight")}
            if order == "taxonomy-first":
                assert registry.get(wh, "syringe").parent == "drugs"
        finally:
            wh.close()
    for name in ("syringe", "alcohol", "fight"):
        a, b = heads["library-first"][name], heads["taxonomy-first"][name]
        assert (a.kind, a.vector_column, a.link, a.weights) == (b.kind, b.vector_column, b.link, b.weights), name
    syringe = heads["library-first"]["syringe"]
    names = [c.name for c in catalogue.BY_NAME.values()]
    assert len(names) == len(set(names))
    assert np.flatnonzero(syringe.weights).tolist() == [845] and syringe.vector_column == "probs"
    # a proxy is in the library but gives the moderation category no built-in
    assert taxonomy.CATEGORIES["fight"].has_builtin is False and catalogue.BY_NAME["fight"].library


def test_every_catalogue_class_name_is_an_imagenet_class():
    from concepts import catalogue
    from encoders.imagenet import imagenet_class_names

    names = set(imagenet_class_names())
    for e in catalogue.BY_NAME.values():
        assert set(e.imagenet) <= names, e.name
        assert e.library or e.category


def test_a_warehouse_from_before_encoder_sql_gets_its_columns_back(tmp_path, photo_dir):
    """The previous release stored no `catalog.encoder_sql`: opening such a warehouse restores the rows."""
    from conftest import copy_photos
    from warehouse import Warehouse

    src = copy_photos(photo_dir, tmp_path / "in", names={"chelsea", "coffee"})
    wh = Warehouse.open(tmp_path / "wh")
    wh.ingest([str(src)], dataset="p", progress=False)
    before = wh.sql("SELECT path, imagenet_top_class, imagenet_top_prob FROM coactive_table_adv ORDER BY 1").fetchall()
    wh.con.execute("DROP TABLE catalog.encoder_sql")  # as the previous release left it
    wh.con.execute("UPDATE catalog.meta SET value = '1' WHERE key = 'schema_version'")
    wh.close()
    wh = Warehouse.open(tmp_path / "wh")
    try:
        assert wh.sql("SELECT count(*) FROM catalog.encoder_sql WHERE encoder = 'imagenet-lite0'").fetchone()[0] == 3
        after = wh.sql("SELECT path, imagenet_top_class, imagenet_top_prob FROM coactive_table_adv ORDER BY 1").fetchall()
        assert after == before and any("cat" in r[1] for r in after)  # chelsea is a cat
    finally:
        wh.close()


def test_no_module_outside_encoders_names_an_encoder():
    """Encoder knowledge lives in encoders/: elsewhere only the frozen pre-encoder_sql migration names one."""
    hits = []
    for package in ("concepts", "ingest", "warehouse"):
        for f in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if ('"imagenet-lite0"' in code or "startswith(\"clip" in code or '"clip:' in code):
                    hits.append(f"{f.relative_to(ROOT)}:{n}")
    assert hits == ["warehouse/migrations.py:286"]
