"""The same warehouse through the SDK, `pixql sql` and the stock DuckDB CLI; the default encoder's answers."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

QUERY = (
    "SELECT coactive_image_id, path, width, height, imagenet_top_class "
    "FROM coactive_table_adv WHERE width >= 300 ORDER BY path"
)


def duckdb_cli() -> str:
    exe = Path(sys.executable).parent / "duckdb"
    found = str(exe) if exe.exists() else shutil.which("duckdb")
    assert found, "the duckdb-cli package must be installed"
    return found


@pytest.fixture(scope="module")
def closed_copy(photo_warehouse, tmp_path_factory) -> Path:
    """A copy of the session warehouse, so other processes can open it (DuckDB locks open files)."""
    photo_warehouse.checkpoint()
    dst = tmp_path_factory.mktemp("copy") / "wh"
    shutil.copytree(photo_warehouse.root, dst)
    from warehouse import Warehouse

    Warehouse.open(dst).close()  # rebuild views for the new absolute paths
    return dst


def test_sdk_pixql_sql_and_duckdb_cli_agree(closed_copy):
    from warehouse import Warehouse

    wh = Warehouse.open(closed_copy, read_only=True)
    sdk = [tuple(str(v) for v in row) for row in wh.sql(QUERY).fetchall()]
    frames = (wh.sql(QUERY).pl(), wh.sql(QUERY).df(), wh.sql(QUERY).arrow())
    wh.close()
    assert len(sdk) >= 10
    assert frames[0].height == len(frames[1]) == len(sdk)

    out = subprocess.run([sys.executable, "-m", "api.cli", "sql", QUERY, "--format", "json", "--root", str(closed_copy)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    via_pixql = [tuple(str(r[c]) for c in ("coactive_image_id", "path", "width", "height", "imagenet_top_class"))
                 for r in json.loads(out.stdout)]
    assert via_pixql == sdk

    cli = subprocess.run([duckdb_cli(), "-readonly", "-csv", str(closed_copy / "pixql.duckdb"), QUERY],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    rows = list(csv.reader(io.StringIO(cli.stdout)))
    assert rows[0] == ["coactive_image_id", "path", "width", "height", "imagenet_top_class"]
    assert [tuple(r) for r in rows[1:]] == sdk


def test_count_matches_in_stock_cli(closed_copy):
    from warehouse import Warehouse

    wh = Warehouse.open(closed_copy, read_only=True)
    n = wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0]
    wh.close()
    cli = subprocess.run([duckdb_cli(), "-readonly", "-noheader", "-list", str(closed_copy / "pixql.duckdb"),
                          "SELECT count(*) FROM coactive_table"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert int(cli.stdout.strip()) == n


def test_pixql_sql_formats(closed_copy, tmp_path):
    base = [sys.executable, "-m", "api.cli", "sql", "SELECT path FROM coactive_table ORDER BY path LIMIT 3", "--root", str(closed_copy)]
    as_csv = subprocess.run(base + ["--format", "csv"], capture_output=True, text=True, timeout=60)
    assert as_csv.stdout.splitlines()[0] == "path" and len(as_csv.stdout.splitlines()) == 4
    nested = subprocess.run(
        [sys.executable, "-m", "api.cli", "sql", "SELECT [1, 2] AS l, {'a': 'x'} AS s", "--root", str(closed_copy), "--format", "csv"],
        capture_output=True, text=True, timeout=60)
    assert nested.returncode == 0, nested.stderr
    assert list(csv.reader(io.StringIO(nested.stdout))) == [["l", "s"], ["[1, 2]", '{"a": "x"}']]
    pq_file = tmp_path / "out.parquet"
    subprocess.run(base + ["--format", "parquet", "-o", str(pq_file)], check=True, timeout=60)
    import pyarrow.parquet as pq

    assert pq.read_table(pq_file).num_rows == 3
    table = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert "3 row(s)" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "api.cli", "sql", "SELEC nonsense", "--root", str(closed_copy)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "error" in bad.stderr.lower()


def test_shell_runs_statements_from_stdin(closed_copy):
    out = subprocess.run([sys.executable, "-m", "api.cli", "shell", "--root", str(closed_copy)],
                         input=".tables\nSELECT count(*) AS n\nFROM coactive_table;\n.quit\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "coactive_table_adv" in out.stdout and "1 row(s)" in out.stdout


def test_imagenet_top_classes_of_chelsea_and_coffee(photo_warehouse):
    from encoders.imagenet import imagenet_class_names

    names = imagenet_class_names()
    rows = photo_warehouse.sql(
        "SELECT regexp_extract(path, '[^/]+$'), v.probs, v.features FROM coactive_table a "
        "JOIN pixql_internal.vectors_imagenet_lite0 v USING (coactive_image_id)"
    ).fetchall()
    top = {name: names[int(np.argmax(probs))] for name, probs, _ in rows}
    assert top["chelsea.png"] in {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
    assert top["coffee.png"] in {"espresso", "cup", "coffee mug"}
    for _, probs, feats in rows:
        assert len(feats) == 1280 and abs(sum(probs) - 1.0) < 1e-3
