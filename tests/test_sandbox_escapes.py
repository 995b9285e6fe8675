"""Escape attempts against the SQL sandbox: over HTTP with a read token, and through layer 2 alone.

Every attempt is a 400 with a reason over HTTP (layer 1 refuses it at submit),
and the same attempt sent straight to `SandboxDB.execute` (layer 1 bypassed)
is refused by layer 2 before DuckDB runs anything.  The CTE-scope rules are
checked against DuckDB's own name resolution, and the README's queries must
pass both layers.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pytest

from warehouse import sandbox
from warehouse.sandbox import SandboxDB, SandboxError, check_sql
from warehouse.sandbox_duckdb import check_statement
from warehouse.sandbox_policy import allowed_functions, builtin_names, reviewed, unreviewed

README = Path(__file__).resolve().parents[1] / "README.md"

# DuckDB's catalog views and table functions, each shadowed by a CTE declared where it is not in scope.
CATALOG_VIEWS = [
    "duckdb_views", "duckdb_tables", "duckdb_columns", "duckdb_databases", "duckdb_schemas",
    "duckdb_indexes", "duckdb_constraints", "duckdb_types", "sqlite_master", "sqlite_schema",
    "sqlite_temp_master", "pragma_database_list", "pg_class", "pg_settings", "pg_views", "pg_tables",
    "information_schema.tables", "information_schema.columns", "information_schema.schemata",
    "pg_catalog.pg_class", "pg_catalog.pg_namespace", "pg_catalog.pg_settings",
]
CATALOG_FUNCTIONS = ["duckdb_settings", "duckdb_functions", "duckdb_secrets", "duckdb_extensions",
                     "duckdb_views", "duckdb_memory", "duckdb_temporary_files"]


def escapes(root: Path) -> dict[str, str]:
    """Named escape attempts, aimed at the warehouse at `root`."""
    out: dict[str, str] = {}
    for name in CATALOG_VIEWS:
        short = name.split(".")[-1]
        out[f"nested_cte_{name}"] = f"WITH a AS (WITH {short} AS (SELECT 1 AS x) SELECT 1) SELECT * FROM {name}"
    for name in ("duckdb_views", "sqlite_master", "duckdb_databases", "pg_settings"):
        out[f"subquery_cte_{name}"] = f"SELECT * FROM (WITH {name} AS (SELECT 1 AS x) SELECT 1) t, {name}"
        out[f"recursive_anchor_{name}"] = (
            f"WITH RECURSIVE {name} AS (SELECT * FROM {name} UNION ALL SELECT * FROM {name} WHERE false) "
            f"SELECT * FROM {name}")
    out["forward_cte_duckdb_views"] = "WITH a AS (SELECT * FROM duckdb_views), duckdb_views AS (SELECT 1) SELECT * FROM a"
    out["self_cte_duckdb_tables"] = "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM duckdb_tables"
    out["recursive_intersect_sqlite_master"] = (
        "WITH RECURSIVE sqlite_master AS (SELECT 'x' AS sql EXCEPT SELECT sql FROM sqlite_master) SELECT * FROM sqlite_master")
    out["recursive_by_name_duckdb_views"] = (
        "WITH RECURSIVE duckdb_views AS (SELECT 1 AS x UNION ALL BY NAME SELECT * FROM duckdb_views) SELECT * FROM duckdb_views")
    out["union_branch_cte_duckdb_views"] = (
        "(WITH duckdb_views AS (SELECT 1) SELECT * FROM duckdb_views) UNION ALL (SELECT 1 FROM duckdb_views)")
    out["alias_is_not_a_cte"] = "WITH c AS (SELECT 1) SELECT * FROM c AS duckdb_views, LATERAL (SELECT * FROM duckdb_views) l"
    out["in_list_cte_sqlite_master"] = (
        "SELECT * FROM sqlite_master WHERE name IN (WITH sqlite_master AS (SELECT 'x' AS name) SELECT name FROM sqlite_master)")
    out["qualified_cte_name"] = "WITH duckdb_views AS (SELECT 1) SELECT * FROM main.duckdb_views"
    out["system_catalog"] = "SELECT * FROM system.main.duckdb_views"
    out["deeply_nested_duckdb_views"] = "SELECT * FROM " + "(SELECT * FROM " * 60 + "duckdb_views" + ") t" * 60
    for name in CATALOG_FUNCTIONS:
        out[f"table_function_{name}"] = f"SELECT * FROM {name}()"
    out["table_function_quoted_duckdb_settings"] = 'SELECT * FROM "duckdb_settings"()'
    out["table_function_qualified"] = "SELECT * FROM main.duckdb_views()"
    # settings, environment, session: quoted, cased, qualified, method-call
    for i, call in enumerate([
        "current_setting('allowed_directories')", "CURRENT_SETTING('temp_directory')",
        '"current_setting"(\'allowed_directories\')', '"Current_Setting"(\'temp_directory\')',
        "Current_Setting('allowed_directories')", "main.current_setting('temp_directory')",
        "system.main.current_setting('temp_directory')", "pg_catalog.current_setting('temp_directory')",
        "('allowed_directories').current_setting()", "getenv('HOME')", '"getenv"(\'HOME\')', "GetEnv('PATH')",
        "getvariable('x')", "version()", "current_database()", "current_query()", "current_schemas(true)",
        "pg_get_viewdef('coactive_table')", "json_serialize_plan('SELECT * FROM duckdb_settings()')",
        "txid_current()", "nextval('s')", "write_log('x')", "setseed(0.5)",
    ]):
        out[f"function_{i:02d}_{re.sub(r'[^a-z]+', '_', call.lower()).strip('_')[:30]}"] = f"SELECT {call}"
    # the same calls in every other position
    out["where_current_setting"] = "SELECT path FROM coactive_table WHERE path <> current_setting('temp_directory')"
    out["order_by_getenv"] = "SELECT path FROM coactive_table ORDER BY getenv('HOME')"
    out["group_by_current_setting"] = "SELECT count(*) FROM coactive_table GROUP BY current_setting('allowed_directories')"
    out["having_current_setting"] = "SELECT count(*) FROM coactive_table HAVING current_setting('x') IS NOT NULL"
    out["window_spec_current_setting"] = (
        "SELECT row_number() OVER (PARTITION BY current_setting('temp_directory') ORDER BY getenv('HOME')) FROM coactive_table")
    out["join_on_current_setting"] = "SELECT 1 FROM coactive_table a JOIN coactive_table b ON current_setting('x') = a.path"
    out["case_current_setting"] = "SELECT CASE WHEN true THEN current_setting('allowed_directories') END"
    out["values_current_setting"] = "SELECT * FROM (VALUES (current_setting('temp_directory'))) v(x)"
    out["unnest_arg_current_setting"] = "SELECT * FROM unnest([current_setting('temp_directory')])"
    out["cte_body_current_setting"] = "WITH a AS (SELECT current_setting('allowed_directories') AS d) SELECT * FROM a"
    out["lambda_current_setting"] = "SELECT list_transform([1], x -> current_setting('allowed_directories'))"
    out["lambda_keyword_getenv"] = "SELECT list_transform([1], lambda x: getenv('HOME'))"
    out["lambda_filter_getenv"] = "SELECT list_filter(['a'], x -> getenv('HOME') IS NOT NULL)"
    out["lambda_reduce_quoted"] = 'SELECT list_reduce([1, 2], (a, b) -> "current_setting"(\'temp_directory\'))'
    out["comprehension_getenv"] = "SELECT [getenv('HOME') for x in [1, 2]]"
    out["comprehension_filter_current_setting"] = "SELECT [x for x in [1] if current_setting('temp_directory') <> '']"
    out["columns_lambda_current_setting"] = "SELECT COLUMNS(c -> current_setting('x') IS NULL) FROM coactive_table"
    out["nested_scalar_read_text"] = "SELECT (SELECT content FROM read_text('/etc/hostname'))"
    out["scalar_position_read_csv_auto"] = "SELECT read_csv_auto('/etc/passwd')"
    out["scalar_position_glob"] = f"SELECT glob('{root}/*')"
    # table functions and files, quoted or not
    out["read_csv"] = "SELECT * FROM read_csv('/etc/passwd')"
    out["read_csv_auto_upper"] = "SELECT * FROM READ_CSV_AUTO('/etc/passwd')"
    out["quoted_read_parquet"] = "SELECT * FROM \"read_parquet\"('/etc/passwd')"
    out["quoted_cased_read_text"] = "SELECT * FROM \"Read_Text\"('/etc/hostname')"
    out["read_blob_catalog"] = f"SELECT * FROM read_blob('{root}/pixql.duckdb')"
    out["read_parquet_dataset"] = f"SELECT * FROM read_parquet('{root}/datasets/**/*.parquet')"
    out["glob"] = f"SELECT * FROM glob('{root}/*')"
    out["query_table_function"] = "SELECT * FROM query('SELECT * FROM duckdb_settings()')"
    out["query_table"] = "SELECT * FROM query_table('duckdb_views')"
    out["sniff_csv"] = "SELECT * FROM sniff_csv('/etc/passwd')"
    out["parquet_metadata"] = f"SELECT * FROM parquet_metadata('{root}/datasets/**/*.parquet')"
    out["range_in_from"] = "SELECT * FROM range(3)"
    out["lateral_read_csv"] = "SELECT * FROM coactive_table, LATERAL read_csv('/etc/passwd')"
    out["join_read_text"] = "SELECT * FROM coactive_table JOIN read_text('/etc/hostname') ON true"
    out["quoted_path"] = "SELECT * FROM '/etc/passwd'"
    out["quoted_identifier_path"] = 'SELECT * FROM "/etc/passwd"'
    out["relative_path"] = "SELECT * FROM 'datasets/photos.parquet'"
    out["path_in_cte"] = "WITH t AS (SELECT * FROM '/etc/hostname') SELECT * FROM t"
    out["cte_read_parquet"] = "WITH t AS (SELECT * FROM read_parquet('/etc/passwd')) SELECT * FROM t"
    # statements, alone and inside a query
    out["attach"] = f"ATTACH '{root}/pixql.duckdb' AS w"
    out["attach_memory"] = "ATTACH ':memory:' AS m"
    out["copy_to"] = f"COPY (SELECT * FROM coactive_table) TO '{root}/datasets/stolen.csv'"
    out["copy_inside"] = f"SELECT * FROM (COPY coactive_table TO '{root}/datasets/stolen.csv')"
    out["export"] = f"EXPORT DATABASE '{root}/datasets/dump'"
    out["pragma"] = "PRAGMA database_list"
    out["pragma_inside"] = "SELECT * FROM (PRAGMA database_list)"
    out["set"] = "SET threads = 64"
    out["set_variable"] = "SET VARIABLE x = 1"
    out["reset"] = "RESET threads"
    out["install"] = "INSTALL httpfs"
    out["load"] = "LOAD httpfs"
    out["call"] = "CALL pragma_version()"
    out["checkpoint"] = "CHECKPOINT"
    out["create_secret"] = "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')"
    out["create_table"] = "CREATE TABLE x AS SELECT * FROM coactive_table"
    out["drop_view"] = "DROP VIEW coactive_table"
    out["insert"] = "INSERT INTO coactive_table (path) VALUES ('x')"
    out["multiple"] = "SELECT 1; SELECT * FROM duckdb_settings()"
    out["explain"] = "EXPLAIN SELECT * FROM coactive_table"
    out["describe"] = "DESCRIBE coactive_table"
    out["summarize"] = "SUMMARIZE coactive_table"
    out["show_tables"] = "SHOW TABLES"
    out["show_all_tables"] = "SHOW ALL TABLES"
    out["describe_in_subquery"] = "SELECT * FROM (DESCRIBE coactive_table)"
    out["summarize_in_subquery"] = "SELECT * FROM (SUMMARIZE coactive_table)"
    out["show_in_subquery"] = "SELECT * FROM (SHOW TABLES)"
    out["describe_in_cte"] = "WITH d AS (DESCRIBE coactive_table) SELECT * FROM d"
    out["summarize_in_cte"] = "WITH d AS (SUMMARIZE SELECT 1) SELECT * FROM d"
    # the catalog and other schemas
    out["tokens"] = "SELECT * FROM catalog.api_tokens"
    out["tokens_quoted"] = 'SELECT secret_sha256 FROM "catalog"."api_tokens"'
    out["queries"] = "SELECT * FROM catalog.queries"
    out["internal"] = "SELECT * FROM pixql_internal.assets"
    out["database_qualified"] = "SELECT * FROM views.main.coactive_table"
    out["temp_schema"] = "SELECT * FROM temp.main.coactive_table"
    return out


ESCAPE_NAMES = sorted(escapes(Path("/root-placeholder")))


def test_there_are_enough_escapes():
    assert len(ESCAPE_NAMES) >= 60


# -- over HTTP, read token: both layers in place -----------------------------------------------------
@pytest.fixture(scope="module")
def reader(api_server):
    with api_server.client(api_server.tokens["read"]) as http:
        yield http


@pytest.fixture(scope="module")
def http_baseline(api_server):
    with api_server.client(api_server.tokens["admin"]) as http:
        total = http.get("/api/v1/queries", params={"limit": 1}).json()["total"]
    # datasets/ is where an allowed write would land; other folders may change under other tests' jobs.
    return {"tree": _tree(api_server.root / "datasets"), "queries": total}


@pytest.mark.parametrize("name", ESCAPE_NAMES)
def test_http_refuses(name, api_server, reader, http_baseline):
    sql = escapes(api_server.root)[name]
    r = reader.post("/api/v1/queries", json={"query": sql})
    assert r.status_code == 400, (name, r.status_code, r.text)
    body = r.json()
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10, body
    assert "query_id" not in body


def test_http_refusals_left_no_query_and_no_file(api_server, http_baseline):
    with api_server.client(api_server.tokens["admin"]) as http:
        assert http.get("/api/v1/queries", params={"limit": 1}).json()["total"] == http_baseline["queries"]
    assert _tree(api_server.root / "datasets") == http_baseline["tree"]
    assert not (api_server.root / "datasets" / "stolen.csv").exists()
    assert not (api_server.root / "datasets" / "dump").exists()


def test_http_refusal_names_the_function_and_position(reader):
    r = reader.post("/api/v1/queries", json={"query": "SELECT path,\n  \"Current_Setting\"('temp_directory') FROM coactive_table"})
    assert r.status_code == 400
    body = r.json()
    assert "current_setting" in body["detail"].lower() and "not allowed" in body["detail"]
    assert body["line"] == 2
    r = reader.post("/api/v1/queries", json={"query": "SELECT * FROM (SUMMARIZE coactive_table)"})
    assert r.status_code == 400 and "SUMMARIZE" in r.json()["detail"]


def test_http_runs_the_tutorial_query(reader):
    from apiserver import poll

    r = reader.post("/api/v1/queries", json={
        "query": "SELECT count(coactive_image_id) AS n FROM coactive_table WHERE width > 1 OR height > 1"})
    assert r.status_code == 201, r.text
    done = poll(reader, r.json()["query_id"])
    assert done["status"] == "Complete", done
    assert done["results"]["data"][0]["data"]["n"] > 0


# -- layer 2 alone: SandboxDB.execute without check_sql ---------------------------------------------
@pytest.fixture(scope="module")
def sandbox_db(photo_warehouse):
    cur = photo_warehouse.cursor()
    db = SandboxDB(photo_warehouse.root, sandbox.definitions(cur), source=cur)
    yield db
    db.close()


@pytest.fixture(scope="module")
def layer2_baseline(photo_warehouse):
    return _tree(photo_warehouse.root)


@pytest.mark.parametrize("name", ESCAPE_NAMES)
def test_layer2_alone_refuses(name, sandbox_db, photo_warehouse, layer2_baseline):
    sql = escapes(photo_warehouse.root)[name]
    try:
        with pytest.raises((SandboxError, duckdb.ParserException)):
            rows = sandbox_db.execute(sql).read_all().to_pylist()
            # Only reached when the layer let it run: show what came out.
            pytest.fail(f"layer 2 ran {name}: {rows[:3]}")
    finally:
        sandbox_db.done()


def test_layer2_escapes_wrote_nothing(photo_warehouse, layer2_baseline):
    assert _tree(photo_warehouse.root) == layer2_baseline
    assert not (photo_warehouse.root / "datasets" / "stolen.csv").exists()


def test_layer2_still_runs_view_queries(sandbox_db, photo_warehouse):
    n = sandbox_db.execute("SELECT count(*) AS n FROM coactive_table").read_all().column("n")[0].as_py()
    sandbox_db.done()
    assert n == photo_warehouse.sql("SELECT count(*) FROM coactive_table").fetchone()[0] > 0


def test_layer2_remembers_passes_only(sandbox_db, photo_warehouse, monkeypatch):
    """A text that passed runs again without the check; a refused one is checked and refused every time."""
    import warehouse.sandbox as sandbox_module

    calls = []
    real = sandbox_module.check_statement
    monkeypatch.setattr(sandbox_module, "check_statement", lambda *a: calls.append(a[1]) or real(*a))
    ok = "SELECT count(*) AS n, 17 AS seventeen FROM coactive_table"
    bad = "SELECT client_id, secret_sha256 FROM catalog.api_tokens"  # one SELECT: layer 2 must refuse it
    for _ in range(3):
        sandbox_db.execute(ok).read_all()
        sandbox_db.done()
        with pytest.raises((SandboxError, duckdb.ParserException)):
            sandbox_db.execute(bad).read_all()
        sandbox_db.done()
    assert calls.count(ok) == 1
    assert calls.count(bad) == 3
    assert bad not in sandbox_db._passed
    # One character more is another text: checked.
    sandbox_db.execute(ok + " ").read_all()
    sandbox_db.done()
    assert calls.count(ok + " ") == 1


# -- CTE scope: what the layers call a CTE, DuckDB resolves as that CTE ---------------------------------
# `{n}` is a real table holding 'LEAK'; a layer that accepts a shape must never let DuckDB read it.
CTE_SHAPES = [
    "WITH a AS (WITH {n} AS (SELECT 'cte' AS x) SELECT 1) SELECT * FROM {n}",
    "WITH a AS (WITH {n} AS (SELECT 'cte' AS x) SELECT 1), b AS (SELECT * FROM {n}) SELECT * FROM b",
    "SELECT * FROM (WITH {n} AS (SELECT 'cte' AS x) SELECT 1) t, {n}",
    "WITH a AS (SELECT * FROM {n}), {n} AS (SELECT 'cte' AS x) SELECT * FROM a",
    "WITH {n} AS (SELECT * FROM {n}) SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT * FROM {n} UNION ALL SELECT * FROM {n} WHERE false) SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT * FROM {n} EXCEPT SELECT 'cte' AS x) SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT 'cte' AS x UNION ALL BY NAME SELECT * FROM {n}) SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT 'cte' AS x UNION ALL SELECT * FROM {n} UNION ALL SELECT 'y' FROM {n} WHERE false) "
    "SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT * FROM (SELECT * FROM {n}) UNION SELECT 'cte') SELECT * FROM {n}",
    "(WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n}) UNION ALL (SELECT * FROM {n})",
    "WITH c AS (SELECT 'cte' AS x) SELECT * FROM c AS {n}, LATERAL (SELECT * FROM {n}) l",
    "SELECT (SELECT max(x) FROM {n}) FROM v AS {n}",
    "SELECT (SELECT max(x) FROM (WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n})), (SELECT max(x) FROM {n})",
    "SELECT * FROM {n} WHERE x IN (WITH {n} AS (SELECT 'LEAK' AS x) SELECT x FROM {n})",
    "WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM main.{n}",
    # shapes where the CTE is in scope: accepted, and DuckDB reads the CTE
    "WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n}",
    "WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM (SELECT * FROM {n}) t",
    "WITH {n} AS (SELECT 'cte' AS x), b AS (SELECT * FROM {n}) SELECT * FROM b",
    "WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n} UNION ALL SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT 'cte' AS x UNION ALL SELECT x FROM {n} WHERE false) SELECT * FROM {n}",
    "WITH RECURSIVE {n} AS (SELECT 'cte' AS x UNION SELECT x FROM (SELECT * FROM {n}) WHERE false) SELECT * FROM {n}",
    "WITH {n} AS (SELECT 'cte' AS x) SELECT (SELECT max(x) FROM {n})",
    "WITH RECURSIVE {n} AS (SELECT 'cte' AS x INTERSECT SELECT 'cte' UNION ALL SELECT * FROM {n} WHERE false) "
    "SELECT * FROM {n}",
    "SELECT * FROM (WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n}) t",
    "WITH {N} AS (SELECT 'cte' AS x) SELECT * FROM {n}",
    'WITH "{n}" AS (SELECT \'cte\' AS x) SELECT * FROM {N}',
    "WITH a AS (SELECT 1) SELECT * FROM (WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n}) t WHERE EXISTS (SELECT * FROM a)",
]
IN_SCOPE = CTE_SHAPES.index("WITH {n} AS (SELECT 'cte' AS x) SELECT * FROM {n}")


@pytest.fixture(scope="module")
def leak_db():
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE secret AS SELECT 'LEAK' AS x")
    con.execute("CREATE VIEW v AS SELECT 'view' AS x")
    yield con
    con.close()


def _shape(i: int) -> str:
    return CTE_SHAPES[i].replace("{n}", "secret").replace("{N}", "SECRET")


@pytest.mark.parametrize("i", range(len(CTE_SHAPES)))
def test_cte_scope_agrees_with_duckdb(i, leak_db):
    sql = _shape(i)
    rows = repr(leak_db.execute(sql).fetchall())
    functions = allowed_functions()
    verdicts = {}
    for layer, check in (("1", lambda: check_sql(sql, ["v"])),
                         ("2", lambda: check_statement(leak_db, sql, ["v"], functions))):
        try:
            check()
            verdicts[layer] = True
        except SandboxError:
            verdicts[layer] = False
    if i < IN_SCOPE:  # each escape shape does read the table in DuckDB, and both layers refuse it
        assert "LEAK" in rows, (sql, rows)
        assert verdicts == {"1": False, "2": False}, (sql, rows)
    if i >= IN_SCOPE:  # legitimate CTE use is accepted by both
        assert verdicts == {"1": True, "2": True}, sql
        assert "LEAK" not in rows


# -- legitimate SQL passes both layers -------------------------------------------------------------
def readme_queries() -> list[str]:
    text = README.read_text()
    found = re.findall(r'pixql sql "([^"]+)"', text)
    found += re.findall(r'"query": "([^"]+)"', text)
    found += re.findall(r'c\.query\("([^"]+)"\)', text)
    found += [" ".join(m.split()) for m in re.findall(r"^\s*(SELECT [^`]+?FROM coactive_videos[^`]+?)$", text, re.M)]
    return [q for q in found if "..." not in q]


LEGIT = [
    "SELECT count(coactive_image_id) FROM coactive_table WHERE handgun = 1 OR rifle = 1",
    "SELECT coactive_image_id, GREATEST(blood_latest_prob, syringe_latest_prob) AS risk FROM coactive_table ORDER BY risk DESC",
    "SELECT count(*) FROM coactive_table_adv WHERE metadata->>'uploader' = 'u1'",
    "FROM coactive_table SELECT dataset, count(*) GROUP BY ALL",
    "SELECT length(string_agg(repeat('x', 1000), '')) AS n FROM (SELECT unnest(range(200)) x)",
    "SELECT upper(path), lower(path), length(path), substr(path, 1, 3), substring(path FROM 2 FOR 3), trim(path),"
    " replace(path, '.png', ''), split_part(path, '/', -1), concat_ws('-', dataset, path), starts_with(path, '/'),"
    " position('a' IN path), format('{}x{}', width, height), printf('%d', width), lpad(path, 40, ' ') FROM coactive_table",
    "SELECT regexp_matches(path, 'c[a-z]+'), regexp_extract(path, '([a-z]+)\\.png', 1), regexp_replace(path, '[0-9]', '', 'g'),"
    " regexp_split_to_array(path, '/'), path SIMILAR TO '.*png', path ILIKE '%CAT%', path GLOB '*.png', path ~ 'png$'"
    " FROM coactive_table",
    "SELECT date_trunc('day', created_dt), date_part('year', created_dt), extract(year FROM created_dt),"
    " strftime(created_dt, '%Y-%m'), created_dt + INTERVAL 1 DAY, datediff('day', created_dt, now()),"
    " current_date, time_bucket(INTERVAL '1 hour', created_dt), DATE '2024-01-01', created_dt::DATE FROM coactive_table",
    "SELECT [1, 2, 3][2], [1, 2, 3][1:2], len([1, 2]), list_contains([1, 2], 1), list_sort([2, 1]),"
    " list_transform([1, 2], x -> x * 2), list_filter([1, 2], lambda x: x > 1), list_reduce([1, 2], (a, b) -> a + b),"
    " [x * 2 FOR x IN [1, 2] IF x > 1], list_aggregate([1, 2], 'sum'), flatten([[1], [2]]), unnest([1, 2]) AS u,"
    " generate_series(1, 3), array_to_string(['a', 'b'], ',')",
    "SELECT s.a, s['b'], struct_extract(s, 'a'), struct_pack(x := 1), {'k': 1}.k, row(1, 2), map(['a'], [1]),"
    " MAP {'a': 1}['a'] FROM (SELECT {'a': 1, 'b': 'two'} AS s)",
    "SELECT json_extract(metadata, '$.a'), json_extract_string(metadata, '$.a'), metadata->'$.a', json_keys(metadata),"
    " json_type(metadata), json_valid(metadata), to_json(path), json_object('p', path), metadata::VARCHAR FROM coactive_table_adv",
    "SELECT path, row_number() OVER (PARTITION BY dataset ORDER BY width DESC), rank() OVER w, lag(width) OVER w,"
    " sum(width) OVER (ORDER BY width ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM coactive_table WINDOW w AS (ORDER BY width)",
    "SELECT path FROM coactive_table QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY width) = 1",
    "SELECT CASE WHEN width > 1000 THEN 'big' ELSE 'small' END, if(width > height, 'l', 'p'), nullif(width, 0),"
    " ifnull(width, 0), coalesce(width, 0), least(width, height) FROM coactive_table",
    "SELECT CAST(width AS DOUBLE), width::VARCHAR, TRY_CAST(path AS INTEGER), typeof(width) FROM coactive_table",
    "SELECT abs(-1), round(3.14159, 2), sqrt(4), 2 ** 3, ln(2), 7 % 3, 7 // 2, hash(path), md5(path) FROM coactive_table",
    "SELECT count(DISTINCT dataset), avg(width), median(width), quantile_cont(width, 0.9), string_agg(path, ','),"
    " list(path), array_agg(width ORDER BY width), arg_max(path, width), count(*) FILTER (WHERE width > 100),"
    " histogram(dataset) FROM coactive_table",
    "SELECT dataset, grouping(dataset), count(*) FROM coactive_table GROUP BY ROLLUP (dataset) HAVING count(*) > 0",
    "WITH a AS (SELECT path FROM coactive_table), b AS (SELECT * FROM a) SELECT * FROM b WHERE path IN (SELECT path FROM a)",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
    "SELECT path FROM coactive_table UNION SELECT path FROM coactive_table_adv EXCEPT SELECT path FROM coactive_table_adv"
    " WHERE width < 0",
    "SELECT t.path, x FROM coactive_table t, unnest([1, 2]) AS u(x)",
    "SELECT t.path, l.n FROM coactive_table t, LATERAL (SELECT t.width * 2 AS n) l",
    "SELECT * EXCLUDE (path) FROM coactive_table t JOIN coactive_table_adv a USING (coactive_image_id)",
    "SELECT max(COLUMNS(c -> c LIKE 'wid%')) FROM coactive_table",
    "SELECT * FROM coactive_table PIVOT (count(*) FOR dataset IN ('photos'))",
    "SELECT 2 = ANY (SELECT width FROM coactive_table), width BETWEEN 1 AND 2, width IS DISTINCT FROM height FROM coactive_table",
    "SELECT * FROM (VALUES (1), (2)) v(x)",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM " + "(SELECT * FROM " * 20 + "coactive_table" + ") t" * 20,
    "SELECT pixql_imagenet_class(1) AS first_class",
]


def test_readme_has_queries_to_check():
    assert len(readme_queries()) >= 8


@pytest.mark.parametrize("sql", readme_queries() + LEGIT)
def test_legitimate_sql_passes_both_layers(sql, sandbox_db, photo_warehouse):
    defs = sandbox.definitions(photo_warehouse.cursor())
    check_sql(sql, defs["user_views"], sandbox.macro_names(defs))
    try:
        sandbox_db.execute(sql).read_all()
    except SandboxError as e:
        pytest.fail(f"layer 2 refused legitimate SQL: {e}")
    except duckdb.BinderException as e:
        # Past both layers; this warehouse lacks a concept column the README's example names.
        assert "Referenced column" in str(e), e
    finally:
        sandbox_db.done()


# -- the allow-list --------------------------------------------------------------------------------
def test_allow_list_is_a_reviewed_subset_of_duckdb():
    allowed, refused = reviewed()
    with duckdb.connect(":memory:") as con:
        kinds = dict(con.execute(
            "SELECT lower(function_name), list(DISTINCT function_type) FROM duckdb_functions() GROUP BY 1").fetchall())
    syntax = {line.split()[1] for line in (Path(sandbox.__file__).with_name("sandbox_functions.txt")).read_text().splitlines()
              if line.startswith("syntax ")}
    for name in allowed - syntax:
        assert set(kinds[name]) & {"scalar", "aggregate", "macro"}, (name, kinds.get(name))
    only_table = {n for n, k in kinds.items() if not set(k) & {"scalar", "aggregate", "macro"}}
    assert not (allowed & only_table) - syntax
    for name in ("current_setting", "read_csv", "read_csv_auto", "glob", "query", "duckdb_settings", "getvariable",
                 "json_serialize_plan", "pg_get_viewdef", "version", "current_database"):
        assert name not in allowed and name in refused, name
    assert "getenv" not in allowed  # not a DuckDB function at all here: refused without a line
    if duckdb.__version__ == "1.5.6":
        assert unreviewed() == []


def test_a_macro_cannot_lend_its_name_to_a_builtin():
    functions = allowed_functions(["current_setting", "pixql_concept_cat_v1", "Read_CSV"])
    assert "pixql_concept_cat_v1" in functions
    assert "current_setting" not in functions and "read_csv" not in functions
    assert "current_setting" in builtin_names()


def _tree(root: Path) -> dict[str, str]:
    """Content hashes of every data file (the catalog file itself is the server's to change)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.name.startswith("pixql.duckdb") and "results" not in p.parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
