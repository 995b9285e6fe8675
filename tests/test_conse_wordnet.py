"""ConSE with WordNet (Debian `wordnet-base`): classes filed under the prompt's noun sense count,
homonyms do not, and without the database the class names alone are used, as before."""
from __future__ import annotations

import numpy as np
import pytest

from encoders import conse, wordnet
from encoders.imagenet import imagenet_class_names, imagenet_wnids


def _m(w, names, cls):
    return float(w[names.index(cls)])


@pytest.mark.skipif(not wordnet.available(), reason="wordnet-base not installed")
def test_classes_under_the_prompt_sense_count_and_homonyms_do_not():
    names, wnids = imagenet_class_names(), list(imagenet_wnids())
    assert wordnet.hypernyms(wnids[names.index("red wine")], 2)[1][0] == "alcohol"
    w, _, how = conse.text_weights(["alcohol"], [], names, wnids)
    assert "WordNet" in how
    for cls in ("red wine", "eggnog"):  # eggnog is a mixed drink, an alcoholic beverage
        assert _m(w, names, cls) == pytest.approx(1.0)
    # "screwdriver" and "grasshopper" are also cocktails in WordNet: by synset, the tool and the insect stay out
    assert _m(w, names, "screwdriver") < 0.05 and _m(w, names, "grasshopper, hopper") < 0.05
    t = conse.taxonomy(["a gun"], wnids)
    assert {names[i] for i in np.flatnonzero(t)} >= {"revolver, six-gun, six-shooter", "rifle", "cannon"}
    assert conse.taxonomy(["beer or wine"], wnids)[names.index("red wine")] == 1.0  # by its parts


def test_without_wordnet_the_class_names_alone(monkeypatch):
    names, wnids = imagenet_class_names(), list(imagenet_wnids())
    monkeypatch.setattr(wordnet, "data_file", lambda: None)
    w, mapped, how = conse.text_weights(["alcohol"], [], names, wnids)
    assert how == "class names (WordNet not installed)"
    plain, _ = conse.conse_weights(["alcohol"], [], names)
    np.testing.assert_allclose(w, plain)
    assert conse.taxonomy(["alcohol"], wnids) is None
    # and class names that are not timm's (no ids) say so
    assert conse.text_weights(["alcohol"], [], names, None)[2] == "class names (classes without WordNet ids)"
