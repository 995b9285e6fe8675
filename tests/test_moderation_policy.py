"""Moderation policies: the Cloudinary override string, JSON, versions, and their HTTP errors."""
from __future__ import annotations

import pytest

from concepts import policy as pol
from concepts import taxonomy

CLOUDINARY = "aws_rek:female_underwear:0.85:explicit_nudity:0.7:revealing_clothes:ignore"


def test_cloudinary_example_string():
    p = pol.parse_spec(CLOUDINARY)
    assert p.name == "aws_rek"
    t = p.thresholds()
    assert t["female_underwear"] == 0.85
    # the top-level value applies to the parent and all its children
    for c in ("explicit_nudity", "nudity", "graphic_male_nudity", "graphic_female_nudity",
              "sexual_activity", "partial_nudity"):
        assert t[c] == 0.7, c
    assert "revealing_clothes" not in t  # ignored
    # everything else keeps the default
    assert t["male_underwear"] == 0.5 and t["suggestive"] == 0.5 and t["weapons"] == 0.5
    assert set(t) == set(taxonomy.CATEGORIES) - {"revealing_clothes"}
    # the canonical form round-trips
    assert pol.parse_spec(p.spec()).thresholds() == t


def test_child_value_wins_over_parent_in_any_order():
    a = pol.parse_spec("p:nudity:0.9:explicit_nudity:0.3").thresholds()
    b = pol.parse_spec("p:explicit_nudity:0.3:nudity:0.9").thresholds()
    assert a == b
    assert a["nudity"] == 0.9 and a["sexual_activity"] == 0.3 and a["explicit_nudity"] == 0.3


def test_ignore_on_parent_drops_children_and_settings():
    p = pol.parse_spec("p:violence:ignore:weapons:0.2:review_band:0.25:similarity:0.97")
    t = p.thresholds()
    assert "violence" not in t and "fight" not in t and "graphic_violence" not in t
    assert t["weapons"] == 0.2  # named explicitly: kept
    assert p.review_band == 0.25 and p.similarity == 0.97


@pytest.mark.parametrize(
    "text, needle",
    [
        ("p:female_underwaer:0.85", "unknown category 'female_underwaer'"),
        ("p:weapons:1.5", "between 0 and 1"),
        ("p:weapons:-0.1", "between 0 and 1"),
        ("p:weapons:lots", "'weapons' must be a number between 0 and 1 or 'ignore'"),
        ("p:female_underwear:0.85:explicit_nudity", "odd number of fields"),
        ("p:weapons", "odd number of fields"),
        ("p:weapons:0.3:weapons:0.4", "set twice"),
        ("", "empty policy string"),
        ("9lives:weapons:0.3", "invalid policy name"),
        ("p:review_band:ignore", "'review_band' must be a number between 0 and 1"),
    ],
)
def test_malformed_strings_name_the_problem(text, needle):
    with pytest.raises(pol.PolicyError) as e:
        pol.parse_spec(text)
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_json_form_matches_string_form():
    j = pol.from_json({"name": "aws_rek", "thresholds": {"female_underwear": 0.85, "explicit_nudity": 0.7,
                                                         "revealing_clothes": "ignore"}})
    assert j.thresholds() == pol.parse_spec(CLOUDINARY).thresholds()
    assert j.fingerprint() == pol.parse_spec(CLOUDINARY).fingerprint()
    with pytest.raises(pol.PolicyError, match="unknown category 'guns'"):
        pol.from_json({"name": "x", "thresholds": {"guns": 0.3}})
    with pytest.raises(pol.PolicyError, match="unknown policy field"):
        pol.from_json({"name": "x", "threshold": {}})


def test_versions_and_default(fresh_root):
    from warehouse import Warehouse

    wh = Warehouse.open(fresh_root)
    con = wh.cursor()
    assert pol.get(con, "default").version == 0
    with pytest.raises(pol.PolicyNotFound, match="unknown policy 'strict'"):
        pol.get(con, "strict")
    v1 = pol.save(con, pol.parse_spec("strict:weapons:0.3"))
    assert v1.version == 1
    assert pol.save(con, pol.parse_spec("strict:weapons:0.3")).version == 1  # unchanged: same version
    v2 = pol.save(con, pol.parse_spec("strict:weapons:0.2:alcohol:ignore"))
    assert v2.version == 2
    assert pol.get(con, "strict").thresholds()["weapons"] == 0.2
    assert pol.get(con, "strict", 1).thresholds()["weapons"] == 0.3  # old versions stay readable
    # ad-hoc overrides layer on the stored policy without storing anything
    adhoc = pol.resolve(con, "strict:weapons:0.9")
    assert adhoc.version == 2 and adhoc.thresholds()["weapons"] == 0.9 and "alcohol" not in adhoc.thresholds()
    assert adhoc.fingerprint() != v2.fingerprint()
    assert [p.name for p in pol.list_all(con)] == ["default", "strict"]
    assert pol.delete(con, "strict")
    with pytest.raises(pol.PolicyNotFound):
        pol.resolve(con, "strict")
    wh.close()
