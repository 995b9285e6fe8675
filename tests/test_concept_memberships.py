"""ConSE class memberships stored with a concept's versions: listed, pinned and dropped (a new
version each time, earlier versions untouched), kept across retraining, on the bundled photos."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from concepts import ConceptError, memberships, registry
from warehouse import Warehouse


@pytest.fixture(scope="module")
def wh(tmp_path_factory, photo_dir):
    root = tmp_path_factory.mktemp("wh-classes")
    w = Warehouse.open(root)
    w.ingest([str(photo_dir)], dataset="photos", progress=False)
    yield w
    w.close()


def _m(rows, cls):
    return next((r["membership"] for r in rows if r["class"] == cls), 0.0)


def test_beer_or_wine_keeps_the_classes_that_fire(wh):
    registry.create(wh, "beer_or_wine", prompts=["beer or wine"])
    rows = wh.concept_classes("beer_or_wine")
    assert [r["membership"] for r in rows] == sorted((r["membership"] for r in rows), reverse=True)
    for cls in ("red wine", "wine bottle", "beer bottle", "beer glass"):
        assert _m(rows, cls) > 0.5, (cls, rows[:6])
    v = registry.version(wh, "beer_or_wine", with_weights=True)
    assert v.training["classes"] == rows  # stored with the version, not recomputed
    w = np.asarray(v.weights)
    assert all(w[r["index"]] == pytest.approx(r["membership"], abs=1e-4) for r in rows)


def test_pin_and_drop_make_new_versions_and_never_change_old_ones(wh, photo_dir):
    registry.create(wh, "drink", prompts=["beer or wine"])
    v1 = registry.version(wh, "drink", 1, with_weights=True)
    before = {r["class"]: r["membership"] for r in wh.concept_classes("drink")}
    c = wh.edit_concept_classes("drink", pin=["eggnog"], drop=["beer glass"])
    assert c.latest_version == 2
    rows = wh.concept_classes("drink")
    assert _m(rows, "eggnog") == 1.0 and _m(rows, "beer glass") == 0.0
    edits = {r["class"]: r["edit"] for r in rows if r["edit"]}
    assert edits == {"eggnog": "pinned", "beer glass": "dropped"}
    v2 = registry.version(wh, "drink", 2)
    assert v2.training["class_edits"]["drop"]["beer glass"] == pytest.approx(before["beer glass"], abs=1e-4)
    # version 1 is as it was, in the catalog and in SQL
    again = registry.version(wh, "drink", 1, with_weights=True)
    assert again.weights == v1.weights and again.training == v1.training
    assert wh.concept_classes("drink", version=1) == [dict(r) for r in wh.concept_classes("drink", version=1)]
    assert _m(wh.concept_classes("drink", version=1), "beer glass") == pytest.approx(before["beer glass"], abs=1e-4)
    # the edits survive new prompts (a retrain rebuilds ConSE and applies them again)
    registry.update(wh, "drink", prompts=["beer or wine", "a cocktail"])
    rows3 = wh.concept_classes("drink")
    assert registry.get(wh, "drink").latest_version == 3
    assert _m(rows3, "eggnog") == 1.0 and _m(rows3, "beer glass") == 0.0
    # and a labelled retrain takes its text prior from the edited map
    ids = {Path(p).stem: i for i, p in wh.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}
    registry.add_labels(wh, "drink", positive=[ids["coffee"], ids["chelsea"]], negative=[ids["rocket"], ids["moon"]])
    v4 = registry.version(wh, "drink")
    assert v4.kind == "text+labeled" and v4.training["class_edits"]["pin"].keys() == {"eggnog"}
    assert _m(wh.concept_classes("drink"), "eggnog") == 1.0
    # reset restores what ConSE gives
    wh.edit_concept_classes("drink", reset=["beer glass"])
    assert _m(wh.concept_classes("drink"), "beer glass") == pytest.approx(before["beer glass"], abs=0.05)
    assert "beer glass" not in registry.version(wh, "drink").training["class_edits"]["drop"]


def test_bad_edits_are_clear_errors(wh):
    registry.create(wh, "gunny", prompts=["a gun"])
    with pytest.raises(ConceptError, match="no class named 'nosuchclass'"):
        wh.edit_concept_classes("gunny", pin=["nosuchclass"])
    with pytest.raises(ConceptError, match="neither pinned nor dropped"):
        wh.edit_concept_classes("gunny", reset=["rifle"])
    with pytest.raises(ConceptError, match="give a class"):
        wh.edit_concept_classes("gunny")
    assert registry.get(wh, "gunny").latest_version == 1
    assert memberships.find_class(memberships.names_for(wh.cursor(), "imagenet-lite0"), "revolver") == \
        memberships.find_class(memberships.names_for(wh.cursor(), "imagenet-lite0"), "revolver, six-gun, six-shooter")


def test_built_in_class_maps_are_editable_too(wh):
    wh.install_default_concepts(names=["alcohol"])
    rows = wh.concept_classes("alcohol")
    assert {r["class"] for r in rows} >= {"red wine", "beer bottle"} and all(r["membership"] == 1.0 for r in rows)
    wh.edit_concept_classes("alcohol", pin=["eggnog"])
    assert _m(wh.concept_classes("alcohol"), "eggnog") == 1.0
    wh.edit_concept_classes("alcohol", reset=["eggnog"])
    assert _m(wh.concept_classes("alcohol"), "eggnog") == 0.0
    assert registry.get(wh, "alcohol").latest_version == 3


def test_cli_lists_pins_and_shows_classes(wh):
    from api.cli import app

    root = str(wh.root)
    wh.close()  # the CLI opens the directory itself; this is the module's last test
    if True:
        r = CliRunner().invoke(app, ["concept", "classes", "beer_or_wine", "--pin", "eggnog", "--json", "--root", root])
        assert r.exit_code == 0, r.output
        rows = json.loads(r.stdout)
        assert _m(rows, "eggnog") == 1.0
        r = CliRunner().invoke(app, ["concept", "show", "beer_or_wine", "--root", root])
        shown = json.loads(r.stdout)
        assert r.exit_code == 0 and shown["latest_version"] == 2 and _m(shown["classes"], "red wine") > 0.5
        r = CliRunner().invoke(app, ["concept", "classes", "beer_or_wine", "--drop", "no such thing", "--root", root])
        assert r.exit_code != 0 and "no class named 'no such thing'" in r.output


def test_http_lists_pins_drops_and_resets_classes(wh):
    """`/api/v1/concepts/{name}/classes`: the same edits as the CLI's, each a new version (runs
    after the CLI test, on the directory it closed)."""
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app

    settings = ServerSettings(root=wh.root, auth=False, load_model=False)
    with TestClient(create_app(settings)) as http:
        r = http.get("/api/v1/concepts/gunny/classes")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["concept"] == "gunny" and body["version"] == 1 and body["classes"]
        r = http.patch("/api/v1/concepts/gunny/classes", json={"pin": ["eggnog"], "drop": ["revolver"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["previous_version"], body["version"]) == (1, 2)
        assert _m(body["classes"], "eggnog") == 1.0
        assert {r_["class"]: r_["edit"] for r_ in body["classes"] if r_["edit"]} == {
            "eggnog": "pinned", "revolver, six-gun, six-shooter": "dropped"}
        old = http.get("/api/v1/concepts/gunny/classes", params={"version": 1}).json()
        assert old["version"] == 1 and _m(old["classes"], "eggnog") == 0.0
        assert _m(old["classes"], "revolver, six-gun, six-shooter") > 0.5
        r = http.patch("/api/v1/concepts/gunny/classes", json={"reset": ["eggnog"]})
        assert r.status_code == 200 and r.json()["version"] == 3 and _m(r.json()["classes"], "eggnog") == 0.0
        r = http.patch("/api/v1/concepts/gunny/classes", json={"pin": ["nosuchclass"]})
        assert r.status_code == 400 and "no class named 'nosuchclass'" in r.text
        assert http.patch("/api/v1/concepts/gunny/classes", json={"pinn": ["x"]}).status_code == 422
        assert http.get("/api/v1/concepts/nosuch/classes").status_code == 404
        assert http.get("/api/v1/concepts/gunny").json()["latest_version"] == 3
