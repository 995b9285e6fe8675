"""Erasure of an image, a video with its keyframes, a dataset and a predicate: gone from every file.

After `Warehouse.delete` and `vacuum`, a scan of the whole data directory (raw
bytes of every file, the decoded content of every Parquet file, every text
column of the database, and the bytes of the database with the tombstone
table emptied) finds neither the ids, the paths, a run of the pixels (stored
file and thumbnail) nor the vector bytes; the views, concept estimates and the
moderation queue no longer count them; every other asset answers exactly as
before; a block tombstone refuses the same bytes on re-ingest (SDK and CLI).
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from erasure_helpers import answers, copy_template, needles_of, scan, shared_template


@pytest.fixture(scope="module")
def template(tmp_path_factory, photo_dir):
    return shared_template(tmp_path_factory, photo_dir)


def _open(root):
    from pixql import Warehouse

    return Warehouse.open(root)


def _queue_total(wh) -> int:
    from concepts.moderation import queue

    return queue.select(wh.cursor())[0]


def _erase_and_check(template, tmp_path, select_ids, **selector):
    wh = _open(copy_template(template, tmp_path / "wh"))
    try:
        ids = select_ids(wh)
        assert ids
        needles = needles_of(wh, ids)
        # the scan finds the content before: it can see what it looks for
        before_hits = scan(wh.root, needles, tmp_path / "before")
        assert any("vector" in h or "bytes of" in h for h in before_hits)
        assert any(n.decode() in h for n in needles["id"] for h in before_hits)
        expected = answers(wh, skip=set(ids) | {n.decode() for n in needles["id"]})
        total_before = wh.estimate("cat")["total"] if "total" in wh.estimate("cat") else None
        queue_before = _queue_total(wh)
        decided = wh.sql("SELECT count(DISTINCT subject_id) FROM pixql_internal.moderation_latest "
                         "WHERE list_contains(?, subject_id)", [ids]).fetchone()[0]
        labels = wh.sql("SELECT count(*) FROM catalog.concept_labels WHERE list_contains(?, coactive_image_id)",
                        [ids]).fetchone()[0]
        version = wh.concept("cat").latest_version

        preview = wh.delete(**selector, dry_run=True)
        assert sum(preview.matched.values()) >= 1 and preview.erasure_id is None
        assert answers(wh)["rows"] != expected["rows"]  # a dry run changes nothing
        report = wh.delete(**selector, reason="court order 42", by="tester")
        assert report.removed["assets"] == len(ids)
        assert report.removed["tombstones"] >= len(ids)
        wh.vacuum()

        assert answers(wh) == expected  # everything else answers as before
        left = wh.sql("SELECT count(*) FROM coactive_table WHERE list_contains(?, coactive_image_id)", [ids]).fetchone()[0]
        assert left == 0
        if total_before is not None:
            assert wh.estimate("cat")["total"] == total_before - len(ids)
        assert _queue_total(wh) == queue_before - decided
        # decisions keep their audit row, with the tombstone as subject and no comment
        audit = wh.sql("SELECT count(*), count(comment) FROM catalog.moderation_decisions "
                       "WHERE subject_id LIKE 'erased:%'").fetchone()
        assert audit[0] >= decided and audit[1] == 0
        if labels:
            c = wh.concept("cat")
            assert c.latest_version == version + 1
            v = [x for x in wh.concept_versions("cat") if x.version == c.latest_version][0]
            assert v.training["labels_withdrawn"] == labels and v.training["change"] == "labels withdrawn by erasure"
        stones = wh.tombstones()
        assert {s["subject_id"] for s in stones} >= set(ids)
        assert all(s["reason"] == "court order 42" and s["created_by"] == "tester" for s in stones)
        assert not any(p.name.startswith(tuple(ids)) for p in (wh.root / "thumbnails").iterdir())
        assert wh.sql("SELECT count(*) FROM catalog.erasure_journal").fetchone()[0] == 0
        hits = scan(wh.root, needles, tmp_path / "after")
        assert hits == []
        return wh, ids, report
    finally:
        wh.close()


def test_erase_one_image(template, tmp_path):
    from pixql import Warehouse

    pick = lambda wh: [wh.sql("SELECT coactive_image_id FROM coactive_table WHERE path LIKE '%chelsea%'").fetchone()[0]]
    t = Warehouse.open(template / "wh", read_only=True)  # the selector needs the id before the copy exists
    aid = pick(t)[0]
    t.close()
    _erase_and_check(template, tmp_path, pick, image_id=aid)


def test_erase_video_with_keyframes(template, tmp_path):
    from pixql import Warehouse

    t = Warehouse.open(template / "wh", read_only=True)
    vid = t.sql("SELECT coactive_video_id FROM coactive_videos").fetchone()[0]
    t.close()
    ids = lambda wh: [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table_adv WHERE coactive_video_id = ?",
                                            [vid]).fetchall()]
    wh, erased, report = _erase_and_check(template, tmp_path, ids, video_id=vid)
    assert len(erased) == 3 and report.matched["videos"] == 1 and report.matched["keyframes"] == 3
    wh = _open(wh.root)
    assert wh.sql("SELECT count(*) FROM coactive_videos").fetchone()[0] == 0
    wh.close()


def test_erase_dataset(template, tmp_path):
    ids = lambda wh: [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table WHERE dataset = 'other'").fetchall()]
    wh, erased, report = _erase_and_check(template, tmp_path, ids, dataset="other")
    assert len(erased) == 2
    assert not (wh.root / "datasets" / "other").exists()
    wh = _open(wh.root)
    assert [r[0] for r in wh.datasets().fetchall()] == ["photos"]
    wh.close()


def test_erase_predicate(template, tmp_path):
    where = "path LIKE '%coffee%' OR path LIKE '%rocket%'"
    ids = lambda wh: [r[0] for r in wh.sql(f"SELECT coactive_image_id FROM coactive_table_adv WHERE {where}").fetchall()]
    _, erased, _ = _erase_and_check(template, tmp_path, ids, where=where)
    assert len(erased) == 2


def test_block_tombstone_refuses_reingest_sdk_and_cli(template, tmp_path):
    from api.cli import app

    wh = _open(copy_template(template, tmp_path / "wh"))
    path = wh.sql("SELECT path FROM coactive_table WHERE path LIKE '%horse%'").fetchone()[0]
    wh.delete(path=path, reason="known bad: hash list 7", block=True)
    report = wh.ingest([path], dataset="photos", progress=False)
    assert report.assets_added == 0 and report.errors == 1
    assert "blocked" in report.error_samples[0]["reason"] and "hash list 7" in report.error_samples[0]["reason"]
    rows = wh.errors(dataset="photos").fetchall()
    assert any(r[2] == path and "hash list 7" in r[3] for r in rows)
    # a copy of the same bytes under another name is the same content
    other = tmp_path / "copy.png"
    other.write_bytes(open(path, "rb").read())
    wh.close()
    res = CliRunner().invoke(app, ["ingest", str(other), "--dataset", "fresh", "--quiet", "--root", str(tmp_path / "wh")])
    assert res.exit_code == 0, res.output
    assert "1 errors" in res.output and "hash list 7" in res.output
    wh = _open(tmp_path / "wh")
    assert wh.sql("SELECT count(*) FROM coactive_table WHERE dataset = 'fresh'").fetchone()[0] == 0
    wh.close()


def test_cli_delete_dry_run_confirm_and_purge(template, tmp_path):
    from api.cli import app

    root = copy_template(template, tmp_path / "wh")
    run = lambda *a, **kw: CliRunner().invoke(app, [*a, "--root", str(root)], **kw)
    res = run("delete", "--where", "dataset = 'other'", "--dry-run")
    assert res.exit_code == 0 and "would delete 2 images" in res.output
    res = run("delete", "--where", "dataset = 'other'", input="n\n")
    assert res.exit_code != 0  # refused at the prompt: nothing changed
    wh = _open(root)
    assert wh.sql("SELECT count(*) FROM coactive_table WHERE dataset = 'other'").fetchone()[0] == 2
    wh.close()
    res = run("delete", "--where", "dataset = 'other'", "--yes", "--purge", "--json", "--reason", "customer left")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["matched"]["images"] == 2 and out["removed"]["vacuum_bytes_after"] > 0
    res = run("delete", "--dataset", "other", "--yes")
    assert res.exit_code == 0 and "1 datasets" in res.output, res.output
    res = run("delete", "--dataset", "other", "--yes")
    assert res.exit_code == 1 and "unknown dataset 'other'" in res.output
    res = run("delete", "--where", "dataset = 'other'", "--yes")
    assert res.exit_code == 0 and "nothing to delete" in res.output, res.output
    res = run("delete", "--yes")
    assert res.exit_code == 1 and "name what to delete" in res.output
    res = run("delete", "--where", "no_such_column = 1", "--yes")
    assert res.exit_code == 1 and "bad --where" in res.output
    res = run("vacuum")
    assert res.exit_code == 0 and "vacuumed" in res.output
    res = run("tombstones")
    assert res.exit_code == 0 and "customer left" in res.output
