"""Ordered catalog migrations: a warehouse built by the current release upgrades on open.

The release is built for real: its source is `git archive`d from commit RELEASE into a
temp dir and run in a subprocess with the same venv, so the warehouse under test is
exactly what that release's code writes.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from warehouse import Warehouse, catalog, migrations

ROOT = Path(__file__).resolve().parents[1]
RELEASE = "22fe60c"  # the release before ordered migrations (schema_version '1')

_BUILD = """
import json, sys
from warehouse import Warehouse
root, photos, out = sys.argv[1:4]
wh = Warehouse.open(root)
wh.ingest([photos], dataset="photos", progress=False)
ids = dict(wh.sql("SELECT path, coactive_image_id FROM coactive_table").fetchall())
pick = lambda *names: [i for p, i in ids.items() if any(n in p for n in names)]
wh.create_concept("catlike", positive=pick("chelsea", "astronaut"), negative=pick("rocket", "moon"))
rows = wh.sql("SELECT path, catlike_latest_prob, imagenet_top_class FROM coactive_table_adv ORDER BY path").fetchall()
json.dump({"rows": rows, "meta": wh.sql("SELECT key, value FROM catalog.meta").fetchall()}, open(out, "w"))
wh.close()
"""


@pytest.fixture(scope="module")
def release_warehouse(tmp_path_factory, photo_dir):
    """(root, what the release read back) for a warehouse written by the release's own code."""
    base = tmp_path_factory.mktemp("release")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", RELEASE], capture_output=True)
    if tar.returncode != 0:
        # Only a shallow clone may lack the release; in a full checkout a missing release is a failure.
        shallow = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True).stdout.strip() == "true"
        if not shallow:
            pytest.fail(f"release {RELEASE} cannot be archived: {tar.stderr.decode().strip()}")
        pytest.skip(f"release {RELEASE} not in this shallow clone's history")
    src = base / "src"
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(src, filter="data")
    root, out = base / "wh", base / "read.json"
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _BUILD, str(root), str(photo_dir), str(out)],
                          cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    return root, json.loads(out.read_text())


def _copy(release_warehouse, tmp_path) -> Path:
    root, _ = release_warehouse
    dst = tmp_path / "wh"
    shutil.copytree(root, dst)
    return dst


def test_the_release_wrote_the_pre_migration_version(release_warehouse):
    _, read = release_warehouse
    assert dict(read["meta"])["schema_version"] == "1"


def test_a_release_warehouse_upgrades_on_open_and_keeps_its_data(release_warehouse, tmp_path):
    _, read = release_warehouse
    root = _copy(release_warehouse, tmp_path)
    con = __import__("duckdb").connect(str(root / "pixql.duckdb"))
    assert catalog.create(con) == [m[0] for m in migrations.MIGRATIONS]  # all of them, 1 included
    con.close()
    with Warehouse.open(root) as wh:
        assert migrations.schema_version(wh.con) == migrations.LATEST
        # each later migration's change is there
        assert wh.sql("SELECT count(*) FROM catalog.jobs").fetchone() == (0,)
        cols = {r[0] for r in wh.sql("SELECT column_name FROM information_schema.columns WHERE "
                                     "table_schema = 'catalog' AND table_name IN ('ingest_runs', "
                                     "'moderation_decisions')").fetchall()}
        assert {"error", "model_status"} <= cols
        assert wh.sql("SELECT count(*) FROM catalog.encoder_sql WHERE encoder = 'imagenet-lite0'").fetchone() == (3,)
        # the release's data reads back the same, its concept and encoder columns included
        rows = wh.sql("SELECT path, catlike_latest_prob, imagenet_top_class FROM coactive_table_adv "
                      "ORDER BY path").fetchall()
        assert [list(r) for r in rows] == read["rows"] and len(rows) == 23
        # and concepts keep working: a new label trains version 2 on the upgraded catalog
        # fetchall: a result left unfinished would hold wh.con's snapshot from before the label
        horse = wh.sql("SELECT coactive_image_id FROM coactive_table WHERE path LIKE '%horse%'").fetchall()[0][0]
        assert wh.label("catlike", negative=[horse]).latest_version == 2
        assert wh.sql("SELECT count(*) FROM coactive_table_adv WHERE catlike_v2_prob IS NOT NULL").fetchone() == (23,)
    # upgraded once: a read-only open now works
    with Warehouse.open(root, read_only=True) as wh:
        assert wh.sql("SELECT count(*) FROM coactive_table").fetchone() == (23,)


def test_a_read_only_open_of_a_release_warehouse_asks_for_a_writable_open(release_warehouse, tmp_path):
    root = _copy(release_warehouse, tmp_path)
    with pytest.raises(migrations.SchemaVersionError, match=rf"schema version 1 .*needs {migrations.LATEST}.*open it writable"):
        Warehouse.open(root, read_only=True)
    with Warehouse.open(root) as wh:  # the refused read-only open changed nothing: it still upgrades
        assert migrations.schema_version(wh.con) == migrations.LATEST


def test_reopening_applies_nothing(fresh_root):
    with Warehouse.open(fresh_root) as wh:
        assert migrations.schema_version(wh.con) == migrations.LATEST
        assert migrations.migrate(wh.con) == []
        assert catalog.create(wh.con) == []
    with Warehouse.open(fresh_root) as wh:
        assert wh.sql("SELECT value FROM catalog.meta WHERE key = 'schema_version'").fetchone() == (
            str(migrations.LATEST),)


def test_a_warehouse_newer_than_the_code_is_refused_and_left_alone(fresh_root):
    newer = migrations.LATEST + 1
    with Warehouse.open(fresh_root) as wh:
        wh.con.execute("UPDATE catalog.meta SET value = ? WHERE key = 'schema_version'", [str(newer)])
    for read_only in (False, True):
        with pytest.raises(migrations.SchemaVersionError, match=f"schema version {newer}, newer than"):
            Warehouse.open(fresh_root, read_only=read_only)
    import duckdb

    con = duckdb.connect(str(fresh_root / "pixql.duckdb"), read_only=True)
    assert con.execute("SELECT value FROM catalog.meta WHERE key = 'schema_version'").fetchone() == (str(newer),)
    con.close()


def test_a_failing_migration_rolls_back_whole_and_keeps_the_version(fresh_root, monkeypatch):
    Warehouse.open(fresh_root).close()
    bad = (migrations.LATEST + 1, "a step that fails halfway", [
        "CREATE TABLE catalog.half_done(x INTEGER)",
        "SELECT * FROM catalog.no_such_table",
    ])
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + [bad])
    monkeypatch.setattr(migrations, "LATEST", bad[0])
    import duckdb

    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        Warehouse.open(fresh_root)
    monkeypatch.undo()
    with Warehouse.open(fresh_root) as wh:
        assert migrations.schema_version(wh.con) == migrations.LATEST
        assert wh.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'half_done'").fetchone() == (0,)


def test_migrations_are_numbered_one_by_one():
    assert [m[0] for m in migrations.MIGRATIONS] == list(range(1, len(migrations.MIGRATIONS) + 1))
    assert migrations.LATEST == len(migrations.MIGRATIONS)


def test_pixql_sql_on_a_release_warehouse_says_in_one_line_how_to_upgrade(release_warehouse, tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    root = _copy(release_warehouse, tmp_path)
    result = CliRunner().invoke(app, ["sql", "SELECT count(*) FROM coactive_table", "--root", str(root)])
    out = result.output.strip()
    assert result.exit_code == 1 and "Traceback" not in out and len(out.splitlines()) == 1, out
    assert out.startswith("error: cannot open warehouse") and "open it writable once" in out
    with Warehouse.open(root):
        pass
    result = CliRunner().invoke(app, ["sql", "SELECT count(*) AS n FROM coactive_table", "--root", str(root),
                                      "--format", "csv"])
    assert result.exit_code == 0 and result.output.split() == ["n", "23"], result.output
