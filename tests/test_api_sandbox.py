"""The SQL sandbox: each layer refuses escapes on its own, and over HTTP nothing in the warehouse changes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from warehouse import sandbox
from warehouse.sandbox import SandboxDB, SandboxError, check_sql

VIEWS = ["coactive_table", "coactive_table_adv"]


def escapes(root: Path) -> dict[str, str]:
    """Escape attempts named in the issue, aimed at this warehouse root."""
    return {
        "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
        "quoted_path": "SELECT * FROM '/etc/passwd'",
        "copy_into_warehouse": f"COPY (SELECT * FROM coactive_table) TO '{root}/datasets/stolen.csv'",
        "attach": f"ATTACH '{root}/pixql.duckdb' AS w",
        "attach_memory": "ATTACH ':memory:' AS m",
        "install": "INSTALL httpfs",
        "load": "LOAD httpfs",
        "set": "SET threads = 64",
        "multiple": "SELECT 1; SELECT 2",
        "pragma": "PRAGMA database_list",
        "call": "CALL pragma_version()",
        "create": "CREATE TABLE x AS SELECT * FROM coactive_table",
        "create_view": "CREATE OR REPLACE VIEW coactive_table AS SELECT 1 AS x",
        "drop": "DROP VIEW coactive_table",
        "insert": "INSERT INTO coactive_table (path) VALUES ('x')",
        "update": "UPDATE coactive_table SET path = 'x'",
        "delete": "DELETE FROM coactive_table",
        "settings": "SELECT * FROM duckdb_settings()",
        "tokens": "SELECT * FROM catalog.api_tokens",
        "tokens_quoted": 'SELECT secret_sha256 FROM "catalog"."api_tokens"',
        "queries": "SELECT * FROM catalog.queries",
        "internal": "SELECT * FROM pixql_internal.assets",
        "export": f"EXPORT DATABASE '{root}/datasets/dump'",
        "read_blob_db": f"SELECT * FROM read_blob('{root}/pixql.duckdb')",
        "query_fn": "SELECT * FROM query('SELECT * FROM catalog.api_tokens')",
        "glob": f"SELECT * FROM glob('{root}/*')",
        "current_setting": "SELECT current_setting('allowed_directories')",
        "nested_table_fn": "SELECT (SELECT count(*) FROM read_text('/etc/hostname')) AS n",
        "cte_escape": "WITH t AS (SELECT * FROM read_parquet('/etc/passwd')) SELECT * FROM t",
    }


# -- layer 1: the parser check ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(escapes(Path("/w"))))
def test_parser_refuses_each_escape(name):
    with pytest.raises(SandboxError) as e:
        check_sql(escapes(Path("/w"))[name], VIEWS)
    assert e.value.reason


@pytest.mark.parametrize("sql", [
    "SELECT coactive_image_id, path FROM coactive_table WHERE width > 100 LIMIT 10",
    "SELECT count(coactive_image_id) AS n FROM main.coactive_table",
    "WITH big AS (SELECT * FROM coactive_table_adv WHERE width > 500) SELECT path FROM big ORDER BY path",
    "SELECT path FROM coactive_table UNION ALL SELECT path FROM coactive_table_adv",
    "FROM coactive_table SELECT dataset, count(*) GROUP BY ALL",
    "SELECT GREATEST(width, height) AS m FROM \"coactive_table\"",
    "SELECT * FROM (VALUES (1), (2)) v(x)",
])
def test_parser_accepts_read_only_queries(sql):
    check_sql(sql, VIEWS)


def test_parser_reports_position_and_unknown_tables():
    with pytest.raises(SandboxError) as e:
        check_sql("SELECT *\nFROM secrets", VIEWS)
    assert "unknown table 'secrets'" in e.value.reason and "coactive_table" in e.value.reason
    assert e.value.line == 2
    with pytest.raises(SandboxError, match="cannot parse"):
        check_sql("SELEC path FROM coactive_table", VIEWS)


# -- layer 2: the locked connection, with the parser check bypassed ---------------------------------
def _tree(root: Path) -> dict[str, str]:
    """Content hashes of every data file (the catalog file itself is the server's to change)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("pixql.duckdb") and "results" not in p.parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def sandbox_db(photo_warehouse):
    db = SandboxDB(photo_warehouse.root, sandbox.definitions(photo_warehouse.cursor()), source=photo_warehouse.cursor())
    yield db
    db.close()


def test_locked_connection_stands_alone(sandbox_db, photo_warehouse):
    root = photo_warehouse.root
    before = _tree(root)
    n = sandbox_db.execute("SELECT count(*) AS n FROM coactive_table").read_all().column("n")[0].as_py()
    sandbox_db.done()
    assert n == photo_warehouse.sql("SELECT count(*) FROM coactive_table").fetchone()[0] > 0
    passed = {}
    for name, sql in escapes(root).items():
        try:
            passed[name] = sandbox_db.execute(sql).read_all().to_pylist()
        except (SandboxError, duckdb.Error):
            continue
        finally:
            sandbox_db.done()
    # DuckDB's own parse tree is checked there too: not even settings or the copied views' internals get out.
    assert passed == {}
    assert _tree(root) == before
    assert not (root / "datasets" / "stolen.csv").exists()


# Escapes that the connection's settings stop on their own (file reads, writes to the database,
# extensions, configuration, secrets).  Not COPY / EXPORT: DuckDB lets them write inside
# allowed_directories, which is why layer 2 also runs DuckDB's parser and executes only a SELECT.
CONNECTION_ESCAPES = ["read_csv", "quoted_path", "attach", "install", "load", "set",
                      "create", "create_view", "drop", "insert", "update", "delete", "read_blob_db",
                      "glob", "nested_table_fn", "cte_escape", "tokens", "tokens_quoted", "queries"]


def test_raw_connection_holds_files_and_writes_without_any_statement_check(sandbox_db, photo_warehouse):
    """Below both statement checks: the locked, read-only copy still reads no file and writes nothing."""
    root = photo_warehouse.root
    before = _tree(root)
    cur = sandbox_db.con.cursor()
    try:
        for name in CONNECTION_ESCAPES:
            with pytest.raises(duckdb.Error):
                rows = cur.execute(escapes(root)[name]).fetchall()
                pytest.fail(f"{name} ran on the raw connection: {rows[:3]}")
    finally:
        cur.close()
    assert _tree(root) == before
    assert not (root / "datasets" / "stolen.csv").exists()


def test_locked_connection_settings(sandbox_db, photo_warehouse):
    settings = dict(sandbox_db.con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('enable_external_access', 'lock_configuration', 'threads', 'memory_limit', 'python_enable_replacements')"
    ).fetchall())
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["threads"] == "1"
    assert settings["python_enable_replacements"] == "false"
    root = str(photo_warehouse.root)
    assert all(d.startswith(root + "/") for d in sandbox_db.allowed_dirs)
    assert root + "/" not in sandbox_db.allowed_dirs  # never the root: pixql.duckdb stays unreadable
    with pytest.raises(duckdb.Error, match="locked"):
        sandbox_db.con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error):  # a read-only copy: even its own views cannot change
        sandbox_db.con.execute("DROP VIEW coactive_table")
    with pytest.raises(duckdb.Error, match="[Pp]ermission"):
        sandbox_db.con.execute(f"SELECT * FROM read_blob('{root}/pixql.duckdb')").fetchall()


def test_sandbox_holds_no_secrets(sandbox_db, photo_warehouse):
    tables = {(r[0], r[1]) for r in sandbox_db.con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() UNION "
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert ("catalog", "moderation_decisions") in tables  # copied: moderation_status reads it
    assert ("catalog", "api_tokens") not in tables and ("catalog", "queries") not in tables
    # Only catalog tables that some view reads are copied.
    assert {t for s, t in tables if s == "catalog"} <= set(sandbox.definitions(photo_warehouse.cursor())["catalog_tables"])
    views = {r[0] for r in sandbox_db.con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()}
    assert {"coactive_table", "coactive_table_adv"} <= views


# -- over HTTP ----------------------------------------------------------------------------------
def test_http_refuses_every_escape_and_nothing_changes(api_server):
    root = api_server.root
    with api_server.client(api_server.tokens["admin"]) as http:
        before_tree = _tree(root)
        before_count = http.get("/api/v1/queries", params={"limit": 1}).json()["total"]
        tables_before = http.get("/api/v1/tables").json()
        for name, sql in escapes(root).items():
            r = http.post("/api/v1/queries", json={"query": sql})
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert r.json()["detail"], name
        assert http.get("/api/v1/queries", params={"limit": 1}).json()["total"] == before_count
        assert http.get("/api/v1/tables").json() == tables_before
        assert _tree(root) == before_tree
        assert not (root / "datasets" / "stolen.csv").exists()
        r = http.post("/api/v1/queries", json={"query": "SELECT count(*) AS n FROM coactive_table"})
        assert r.status_code == 201


def test_http_refusal_has_reason_and_position(api_server):
    with api_server.client(api_server.tokens["read"]) as http:
        r = http.post("/api/v1/queries", json={"query": "SELECT *\n  FROM read_csv('/etc/passwd')"})
        assert r.status_code == 400
        body = r.json()
        assert "table function" in body["detail"].lower()
        assert body["line"] == 2


def test_copied_catalog_tables_follow_changes(fresh_root):
    """A view over a catalog table sees new rows: their writer bumps the change counter, which moves
    the fingerprint (the definitions themselves are not read again)."""
    from warehouse import Warehouse
    from warehouse.queries import _Definitions

    wh = Warehouse.open(fresh_root)
    try:
        con = wh.cursor()
        con.execute("CREATE TABLE catalog.flags(asset VARCHAR, flag VARCHAR)")
        con.execute("CREATE VIEW main.flags AS SELECT * FROM catalog.flags")
        cache = _Definitions()
        before, defs = cache.get(con)
        assert "flags" in defs["catalog_tables"] and "api_tokens" not in defs["catalog_tables"]
        with wh.transaction() as tx:
            tx.con.execute("INSERT INTO catalog.flags VALUES ('a1', 'weapon')")
            tx.data_changed()
        after, defs = cache.get(con)
        assert after != before and cache.reads == 1
        db = SandboxDB(wh.root, defs, source=con)
        try:
            assert db.execute("SELECT * FROM flags").read_all().to_pylist() == [{"asset": "a1", "flag": "weapon"}]
        finally:
            db.close()
    finally:
        wh.close()


def test_a_view_that_cannot_be_copied_is_reported(fresh_root, caplog):
    """A view the sandbox cannot rebuild is not queryable there: it is named, with DuckDB's reason, and logged."""
    import logging

    from warehouse import Warehouse

    wh = Warehouse.open(fresh_root)
    try:
        con = wh.cursor()
        # catalog.api_tokens is never copied, so a view over it cannot be built in the sandbox.
        con.execute("CREATE VIEW main.token_names AS SELECT name FROM catalog.api_tokens")
        defs = sandbox.definitions(con)
        assert "token_names" in defs["user_views"] and "api_tokens" not in defs["catalog_tables"]
        with caplog.at_level(logging.WARNING, logger="warehouse.sandbox"):
            db = SandboxDB(wh.root, defs, source=con)
        try:
            assert db.skipped == ["main.token_names"]
            assert "api_tokens" in db.skip_reasons["main.token_names"]
            assert any("main.token_names" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
            with pytest.raises(duckdb.Error):
                db.execute("SELECT * FROM token_names").read_all()
            db.done()
            assert db.execute("SELECT count(*) AS n FROM coactive_table").read_all().num_rows == 1
            db.done()
        finally:
            db.close()
    finally:
        wh.close()
