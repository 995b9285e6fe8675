"""The late fusion of a concept's labels and prompts (`concepts/labeled.py`): one linear head over
`features` whose SQL column gives the numbers numpy gives, on the bundled photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from concepts import labeled, registry
from warehouse import Warehouse


@pytest.fixture(scope="module")
def wh(tmp_path_factory, photo_dir):
    w = Warehouse.open(tmp_path_factory.mktemp("wh-fusion"))
    w.ingest([str(photo_dir)], dataset="photos", progress=False)
    yield w
    w.close()


def _ids(w) -> dict[str, str]:
    return {Path(p).stem: i for i, p in w.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}


def test_fusion_is_z_labels_plus_weighted_z_text_on_the_labelled_logit_scale():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 12))
    X = np.vstack([rng.normal(size=(4, 12)) + 1.5, rng.normal(size=(12, 12))])
    y = np.r_[np.ones(4), np.zeros(12)].astype(int)
    d = rng.normal(size=12)
    w0, b0 = labeled.fit(X, y, None, ref)
    wf, bf = labeled.fit(X, y, d, ref)
    a = labeled.text_weight(4)
    z = lambda s: (s - (ref_s := s[: len(ref)]).mean()) / ref_s.std()  # noqa: E731
    allX = np.vstack([ref, X])
    want = z(allX @ w0 + b0) + a * z(allX @ d)
    got = allX @ wf + bf
    assert np.corrcoef(want, got)[0, 1] > 1 - 1e-9  # the fused score, up to an increasing affine map
    lab, fused = ref @ w0 + b0, ref @ wf + bf
    assert fused.mean() == pytest.approx(lab.mean(), abs=1e-4) and fused.std() == pytest.approx(lab.std(), rel=1e-4)
    assert (labeled.text_weight(4), labeled.text_weight(16), labeled.text_weight(64)) == (1.0, 0.5, 0.25)


def test_one_scale_keeps_a_low_variance_dimension_from_dominating():
    """Per-dimension standardisation turns a dimension where the labels barely vary into a
    huge weight; one common scale leaves the weights on the raw dimensions proportional."""
    rng = np.random.default_rng(1)
    ref = np.hstack([rng.normal(size=(500, 1)), rng.normal(size=(500, 1)) * 1e-3])
    X = np.array([[2.0, 0.001], [2.2, -0.001], [-2.0, 0.001], [-1.9, -0.001]])
    w, _ = labeled.fit(X, np.array([1, 1, 0, 0]), None, ref)
    assert abs(w[0]) > 10 * abs(w[1])


def test_fused_head_compiles_to_the_same_numbers_in_sql_and_numpy(wh):
    ids = _ids(wh)
    pos, neg = [ids["chelsea"], ids["coffee"]], [ids["rocket"], ids["astronaut"], ids["brick"], ids["moon"]]
    c = registry.create(wh, "fusedcat", prompts=["a cat"], positive=pos, negative=neg, materialize=False)
    assert c.kind == "text+labeled"
    v = registry.version(wh, "fusedcat", with_weights=True)
    assert v.vector_column == "features" and v.training["text_weight"] == 1.0
    assert "late fusion" in v.training["method"]
    con = wh.cursor()
    every = list(ids.values())
    X = labeled.vectors_for(con, wh.root, "imagenet-lite0", "features", 1280, every)
    want = 1.0 / (1.0 + np.exp(-(X.astype(np.float64) @ np.asarray(v.weights, np.float64) * v.scale + v.bias)))
    # and the stored weights are the fit the module documents, on the same labels and population
    ref = labeled.population(con, wh.root, "imagenet-lite0", "features", 1280)
    from concepts.heads import class_names
    from concepts.text import text_head

    prior = text_head("imagenet-lite0", ["a cat"], [], class_names(con, "imagenet-lite0"))
    d = labeled.prior_direction(prior, "features")
    Xl = labeled.vectors_for(con, wh.root, "imagenet-lite0", "features", 1280, pos + neg)
    w, b = labeled.fit(Xl, np.r_[np.ones(2), np.zeros(4)].astype(int), d, ref)
    np.testing.assert_allclose(w, v.weights, rtol=1e-5, atol=1e-7)
    assert b == pytest.approx(v.bias, abs=1e-5)
    macro = dict(wh.sql("SELECT coactive_image_id, fusedcat_prob FROM coactive_table").fetchall())
    np.testing.assert_allclose([macro[i] for i in every], want, rtol=1e-4, atol=1e-6)
    registry.materialize(wh, ["fusedcat"])  # the score cache reads the same numbers
    cached = dict(wh.sql("SELECT coactive_image_id, fusedcat_prob FROM coactive_table").fetchall())
    np.testing.assert_allclose([cached[i] for i in every], want, rtol=1e-4, atol=1e-6)
    assert macro[ids["chelsea"]] > 0.5 > macro[ids["rocket"]]
