"""The official Coactive SDK's `concept` resource against a real `pixql serve`, driven only through the SDK.

Create (name, description, threshold, regularization, dataset_id: no prompt), label by
`coactiveImageId` and by `imagePath`, read labels, candidates and the prediction
estimate, update, get, list and delete, each answer parsed by the SDK's own models.
A concept made this way is an ordinary PixQL concept: its columns are in
`coactive_table` and it answers to its name and to its UUID.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from apiserver import poll
from coactive_sdk import SdkError, SdkSession


@pytest.fixture(scope="module")
def sdk(api_server):
    return SdkSession(api_server.url, api_server.tokens["write"])


@pytest.fixture(scope="module")
def photos(api_server):
    """{file stem: (coactive_image_id, path)} of the bundled photos, read over PixQL's own API."""
    with api_server.client(api_server.tokens["read"]) as http:
        r = http.post("/api/v1/queries", json={"query": "SELECT coactive_image_id, path FROM coactive_table "
                                                         "WHERE dataset = 'photos' ORDER BY path"})
        body = poll(http, r.json()["query_id"])
    rows = [d["data"] for d in body["results"]["data"]]
    return {r["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]: (r["coactive_image_id"], r["path"]) for r in rows}


def sql(srv, query: str) -> list[dict]:
    with srv.client(srv.tokens["read"]) as http:
        r = http.post("/api/v1/queries", json={"query": query})
        assert r.status_code in (200, 201, 202), r.text
        body = poll(http, r.json()["query_id"])
    assert body["status"] == "Complete", body
    return [d["data"] for d in body["results"]["data"]]


@pytest.fixture(scope="module")
def made(sdk, photos):
    """One SDK session: create a concept with no prompt, label it by id and by path, read it back."""
    cat, coffee, astronaut, rocket, camera = (photos[k] for k in ("chelsea", "coffee", "astronaut", "rocket",
                                                                     "camera"))
    return sdk.call('''
        from coactive import ConceptLabelRequest, ConceptLabelEnum
        j = lambda m: jsonable(m.dict(by_alias=True))  # SDK models are pydantic.v1 models
        out = {}
        c = client.concept.create(name="furry", description="furry animals", threshold=0.6,
                                  regularization=0.5, dataset_id="photos")
        out["created"] = j(c)
        one = client.concept.update_labels(concept_id=c.concept_id, labels=[
            ConceptLabelRequest(coactive_image_id=params["cat"], label=ConceptLabelEnum.POSITIVE)])
        out["after_one"] = j(one)
        out["labels_one"] = j(client.concept.get_labels(concept_id=c.concept_id))
        more = client.concept.update_labels(concept_id=c.concept_id, labels=[
            ConceptLabelRequest(image_path=params["astronaut_path"], label=ConceptLabelEnum.POSITIVE),
            ConceptLabelRequest(coactive_image_id=params["coffee"], label=ConceptLabelEnum.NEGATIVE),
            ConceptLabelRequest(image_path=params["rocket_path"], label=ConceptLabelEnum.NEGATIVE)])
        out["trained"] = j(more)
        out["labels"] = j(client.concept.get_labels(concept_id=c.concept_id, limit=2))
        out["labels_neg"] = j(client.concept.get_labels(concept_id="furry", labels_to_include="negative"))
        out["regularized"] = j(client.concept.update(concept_id=c.concept_id, regularization=2.0))
        out["sampled_negatives"] = j(client.concept.update_labels(concept_id=c.concept_id, labels=[
            ConceptLabelRequest(coactive_image_id=params["camera"], label=ConceptLabelEnum.NEGATIVE)],
            autosampled_num_negative_labels=2))
        out["labels_after"] = j(client.concept.get_labels(concept_id=c.concept_id, labels_to_include="negative"))
        out["candidates"] = j(client.concept.get_label_candidates(concept_id=c.concept_id, limit=3))
        out["prediction"] = j(client.concept.get_concept_prediction(concept_id=c.concept_id))
        out["sampled"] = j(client.concept.get_concept_prediction(
            concept_id="furry", threshold=0.5, confidence_level=0.9, estimation_fidelity=10))
        out["updated"] = j(client.concept.update(concept_id=c.concept_id, description="fur", threshold=0.7))
        out["got"] = j(client.concept.get(concept_id=c.concept_id))
        out["by_name"] = j(client.concept.get(concept_id="furry"))
        out["list"] = j(client.concept.list())
        out["list_ds"] = j(client.concept.list(datasets="photos", limit=50))
        out["photos_id"] = [d.dataset_id for d in client.dataset.list(limit=100).data if d.name == "photos"][0]
        result = out
    ''', cat=cat[0], coffee=coffee[0], astronaut_path=astronaut[1], rocket_path=rocket[1], camera=camera[0])


def test_create_without_prompt_answers_the_sdk_concept(made, photos):
    c = made["created"]
    assert uuid.UUID(c["conceptId"]) and c["name"] == "furry" and c["description"] == "furry animals"
    assert c["threshold"] == 0.6 and c["regularization"] == 0.5 and c["datasetId"] == made["photos_id"]
    assert c["createdUserId"] and datetime.fromisoformat(c["createdDt"]).utcoffset() == timedelta(0)


def test_labels_by_id_and_path_train_once_there_are_enough(made, photos, api_server):
    # One positive cannot train a head: it is kept and the concept stays at its empty version 1;
    # the next call has 2 positive and 2 negative labels and trains version 2.
    assert made["after_one"]["conceptId"] == made["trained"]["conceptId"] == made["created"]["conceptId"]
    assert [x["image"]["coactiveImageId"] for x in made["labels_one"]["data"]] == [photos["chelsea"][0]]
    with api_server.client(api_server.tokens["read"]) as http:
        kinds = [v["kind"] for v in http.get("/api/v1/concepts/furry/versions").json()]
        assert kinds[:2] == ["empty", "labeled"], kinds
    page = made["labels"]
    assert page["meta"]["page"]["total"] == 4 and len(page["data"]) == 2
    assert all(uuid.UUID(x["labelId"]) and x["label"] in ("positive", "negative") for x in page["data"])
    neg = {x["image"]["coactiveImageId"]: x["image"]["path"] for x in made["labels_neg"]["data"]}
    assert neg == {photos["coffee"][0]: photos["coffee"][1], photos["rocket"][0]: photos["rocket"][1]}
    assert {x["label"] for x in made["labels_neg"]["data"]} == {"negative"}
    # An ordinary PixQL concept: columns in coactive_table, the positives score above the negatives.
    rows = {r["coactive_image_id"]: r for r in sql(api_server, "SELECT coactive_image_id, furry, furry_prob "
                                                                "FROM coactive_table WHERE dataset = 'photos'")}
    assert rows[photos["chelsea"][0]]["furry_prob"] > rows[photos["coffee"][0]]["furry_prob"]
    assert rows[photos["astronaut"][0]]["furry_prob"] > rows[photos["rocket"][0]]["furry_prob"]
    assert {r["furry"] for r in rows.values()} <= {0, 1}


def test_regularization_retrains_and_negatives_can_be_autosampled(made, photos, api_server):
    assert made["regularized"]["regularization"] == 2.0
    with api_server.client(api_server.tokens["read"]) as http:
        vs = http.get("/api/v1/concepts/furry/versions").json()
    fits = [v["training"].get("C") for v in vs if v["kind"] == "labeled" and v["training"].get("method")]
    assert fits[0] == 2.0 and 0.5 in fits  # regularization 0.5 at create, then 2.0: C = 1/regularization
    negatives = {x["image"]["coactiveImageId"] for x in made["labels_after"]["data"]}
    named = {photos[k][0] for k in ("coffee", "rocket", "camera")}
    assert named < negatives and len(negatives) == 5
    assert not negatives & {photos["chelsea"][0], photos["astronaut"][0]}


def test_candidates_are_unlabeled_images(made, photos):
    data = made["candidates"]["data"]
    labeled = {photos[k][0] for k in ("chelsea", "astronaut", "coffee", "rocket")}
    assert len(data) == 3 and all(x["coactiveImageId"] not in labeled for x in data)
    assert all(x["path"] and x["createdUserId"] for x in data)


def test_prediction_estimate_counts_every_scored_asset(made, photos, api_server):
    p = made["prediction"]
    # Every scored asset of the warehouse (other test modules share this server and add their own).
    total = sql(api_server, "SELECT count(*) AS n FROM coactive_table")[0]["n"]
    assert sum(p["estimates"]) == total
    assert all(lo == hi == n for (lo, hi), n in zip(p["confidenceIntervals"], p["estimates"]))
    ranges = p["probabilityRanges"]
    assert ranges[0][0] == 0.0 and ranges[-1][1] == 1.0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # The ranges at or over the threshold hold what `WHERE furry = 1` counts (threshold 0.6 then).
    over = sum(n for (lo, _), n in zip(ranges, p["estimates"]) if lo >= 0.6)
    assert any(lo == 0.6 for lo, _ in ranges)
    s = made["sampled"]
    assert sum(s["estimates"]) in range(total - len(ranges), total + len(ranges) + 1)
    assert all(lo <= n <= hi for (lo, hi), n in zip(s["confidenceIntervals"], s["estimates"]))
    assert over >= 0


def test_update_get_list_by_id_and_name(made):
    cid = made["created"]["conceptId"]
    u = made["updated"]
    assert u["description"] == "fur" and u["threshold"] == 0.7 and u["conceptId"] == cid
    assert made["got"]["conceptId"] == made["by_name"]["conceptId"] == cid and made["got"]["threshold"] == 0.7
    names = [c["name"] for c in made["list"]["data"]]
    assert "furry" in names and made["list"]["meta"]["page"]["total"] == len(names)
    assert [c["name"] for c in made["list_ds"]["data"]] == names


def test_snake_case_routes_keep_their_shapes(made, api_server):
    """The same handlers answer PixQL's own clients as before: bare lists, 204, name in the path."""
    with api_server.client(api_server.tokens["write"]) as http:
        lst = http.get("/api/v1/concepts").json()
        assert isinstance(lst, list) and any(c["name"] == "furry" and c["concept_id"] for c in lst)
        labels = http.get(f"/api/v1/concepts/{made['created']['conceptId']}/labels").json()
        assert isinstance(labels, list) and {x["label"] for x in labels} == {"positive", "negative"}
        cands = http.get("/api/v1/concepts/furry/candidates", params={"n": 2}).json()
        assert isinstance(cands, list) and len(cands) == 2 and "uncertainty" in cands[0]
        r = http.post("/api/v1/concepts", json={"name": "sdk_snake", "prompts": ["cat"], "dataset_id": "photos"})
        assert r.status_code == 201 and r.json()["dataset"] == "photos", r.text
        r = http.post("/api/v1/concepts", json={"name": "sdk_camel", "prompts": ["cat"], "datasetId": "photos"})
        assert r.status_code == 201 and r.json()["dataset"] == "photos", r.text
        for name in ("sdk_snake", "sdk_camel"):
            assert http.delete(f"/api/v1/concepts/{name}").status_code == 204


def test_delete_and_errors_the_sdk_raises(sdk, made):
    out = sdk.call('''
        out = {}
        for label, fn in [("missing", lambda: client.concept.get(concept_id=params["missing"])),
                          ("bad_threshold", lambda: client.concept.create(name="bad_t", threshold=3.0,
                                                                          dataset_id="photos")),
                          ("no_dataset", lambda: client.concept.create(name="nods", dataset_id="nope"))]:
            try:
                fn()
                out[label] = None
            except ApiError as e:
                out[label] = [type(e).__name__, e.status_code]
        out["deleted"] = client.concept.delete(concept_id=params["cid"])
        try:
            client.concept.get(concept_id="furry")
            out["after"] = None
        except ApiError as e:
            out["after"] = [type(e).__name__, e.status_code]
        result = out
    ''', missing=str(uuid.uuid4()), cid=made["created"]["conceptId"])
    assert out["missing"] == ["NotFoundError", 404]
    assert out["bad_threshold"] == ["UnprocessableEntityError", 422]
    assert out["no_dataset"] == ["NotFoundError", 404]
    assert out["deleted"]["deleted"] is True and out["deleted"]["name"] == "furry"
    assert out["after"] == ["NotFoundError", 404]
