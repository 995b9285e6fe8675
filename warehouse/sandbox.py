"""The SQL sandbox for every query a user sends over HTTP: two layers, each standing alone.

Layer 1, `check_sql` (in `sandbox_sql`): sqlglot reads the query at submit
and accepts exactly one read-only query whose tables are user views or CTEs
in lexical scope and whose functions are on the reviewed allow-list
(`sandbox_policy`, `sandbox_functions.txt`) or are the warehouse's macros.

Layer 2, `SandboxDB` (here): the query runs in a separate DuckDB database that
is not the warehouse file.  It holds copies of the user views and the macros
they call (rebuilt whenever their definitions change) and nothing of the
catalog, so token hashes and query records are out of reach whatever the SQL.
It is opened read-only with `enable_external_access=false`,
`allowed_directories` limited to the warehouse data directories the views
read (never the root, so the `pixql.duckdb` file itself is unreadable),
`lock_configuration=true`, and its own memory and thread limits.  Before a
query runs, DuckDB's own parser must see one SELECT whose tables, table
functions and function calls pass the same policy (`sandbox_duckdb`): a
second grammar, not sqlglot's, so the layers do not share a parser's
mistakes.  Views that cannot be copied are logged and listed in
`SandboxDB.skipped` with DuckDB's reason.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .sandbox_duckdb import check_statement
from .sandbox_policy import SandboxError, allowed_functions
from .sandbox_sql import check_sql, check_syntax, verdict_key

__all__ = ["SandboxDB", "SandboxError", "SandboxLimits", "check_sql", "check_syntax", "definitions", "macro_names", "verdict_key"]

log = logging.getLogger(__name__)

# Schemas whose objects the sandbox copies; `catalog` is never among them.
COPIED_SCHEMAS = ("main", "pixql_internal")
# Catalog tables never copied into a sandbox, whatever a view says.
SECRET_TABLES = {"api_tokens", "queries"}
# Directories under the root that never become readable, even if a view named them.
NEVER_ALLOWED = {"results", "uploads", "thumbnails", "tokens"}


# -- layer 2 ------------------------------------------------------------------------------------

def definitions(con, generation=None) -> dict:
    """The user-view and macro definitions the sandbox copies, read from the warehouse.

    `generation` identifies the content of the copied catalog tables (the
    query engine passes the catalog's change counters); it goes into the
    fingerprint as it is.
    """
    schemas = ", ".join(f"'{s}'" for s in COPIED_SCHEMAS)
    views = con.execute(
        f"SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name IN ({schemas})"
        " ORDER BY schema_name, view_name"
    ).fetchall()
    macros = con.execute(
        f"""SELECT schema_name, function_name, function_type, parameters, macro_definition
            FROM duckdb_functions() WHERE NOT internal AND function_type IN ('macro', 'table_macro')
              AND schema_name IN ({schemas}) AND macro_definition IS NOT NULL
            ORDER BY schema_name, function_name"""
    ).fetchall()
    user = sorted(v for s, v, _ in views if s == "main")
    # Views may read catalog tables (moderation decisions, video rows): those
    # are copied too, except the ones holding secrets.  Their writers bump a
    # change counter (`warehouse.transaction`), which the caller puts in
    # `generation` so the fingerprint follows their rows without hashing them.
    text = "\n".join([v[2] or "" for v in views] + [m[4] or "" for m in macros])
    named = {m.lower() for m in re.findall(r'(?:"catalog"|\bcatalog)\s*\.\s*"?(\w+)"?', text, re.IGNORECASE)}
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'catalog'").fetchall()}
    tables = sorted((named & existing) - SECRET_TABLES)
    return {"views": views, "macros": macros, "user_views": user, "catalog_tables": tables,
            "generation": generation}


def macro_names(defs: dict) -> list[str]:
    """The warehouse's scalar macros a query may call (concept heads, lookups)."""
    # pixql_internal holds the views' part-file lists (server paths): not for users to call.
    return sorted({name for schema, name, ftype, *_ in defs["macros"] if ftype == "macro" and schema != "pixql_internal"})


def fingerprint(defs: dict) -> str:
    """Names the sandbox file for these definitions and this generation of the copied tables."""
    h = hashlib.sha256()
    for row in defs["views"] + defs["macros"] + [list(defs.get("catalog_tables", ())), defs.get("generation")]:
        h.update(repr(row).encode())
    return h.hexdigest()


def allowed_directories(root: Path, defs: dict) -> list[str]:
    """Top-level data directories under `root` that the view definitions read."""
    root = Path(root).resolve()
    prefix = str(root) + "/"
    dirs = {"datasets", "scores"}
    for *_, sql in defs["views"] + [m[:4] + (m[4],) for m in defs["macros"]]:
        for lit in re.findall(r"'((?:[^']|'')*)'", sql or ""):
            if lit.startswith(prefix):
                first = lit[len(prefix):].split("/", 1)[0]
                if "/" in lit[len(prefix):]:
                    dirs.add(first)
    return [str(root / d) + "/" for d in sorted(dirs - NEVER_ALLOWED)]


def _macro_statements(macros) -> list[str]:
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for schema, name, ftype, params, body in macros:
        args = ", ".join(params or [])
        kind = "TABLE " if ftype == "table_macro" else ""
        grouped.setdefault((schema, name, kind), []).append(f"({args}) AS {kind}{body}")
    return [
        f"CREATE OR REPLACE MACRO {schema}.{name} " + ", ".join(overloads)
        for (schema, name, _), overloads in grouped.items()
    ]


@dataclass
class SandboxLimits:
    memory_limit: str = "512MB"
    threads: int = 1
    spill_limit: str = "2GB"  # what DuckDB may write to its temp directory beyond memory


class SandboxDB:
    """A read-only, locked DuckDB database holding copies of the warehouse's user views.

    One per query worker: `memory_limit` and `threads` apply per database
    instance, so each running query gets its own caps.  `interrupt` may be
    called from any thread.
    """

    def __init__(self, root: Path, defs: dict, limits: SandboxLimits | None = None, source=None,
                 path: Path | None = None):
        """With `path`, open that file (made by `build` for these `defs`) instead of writing one."""
        self.root = Path(root).resolve()
        self.limits = limits or SandboxLimits()
        self.fingerprint = fingerprint(defs)
        self.user_views = list(defs["user_views"])
        self.functions = allowed_functions(macro_names(defs))
        self._dir = Path(tempfile.mkdtemp(prefix="pixql-sandbox-"))
        if path is None:
            path = self._dir / "views.duckdb"
            self.skip_reasons = build(path, defs, source)
        else:
            self.skip_reasons = {}  # the process that built the file reported them
        self.skipped = list(self.skip_reasons)
        self.allowed_dirs = allowed_directories(self.root, defs)
        # Like the spill directory, the copies of catalog tables live outside the warehouse.
        own = [str(self._dir / "spill") + "/"]
        if defs.get("catalog_tables"):
            own.append(str(tables_dir(path).resolve()) + "/")
        self.con = duckdb.connect(
            str(path),
            read_only=True,
            config={
                "python_enable_replacements": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "memory_limit": self.limits.memory_limit,
                "threads": self.limits.threads,
                "temp_directory": str(self._dir / "spill"),
                "max_temp_directory_size": self.limits.spill_limit,
            },
        )
        # allowed_directories must be set before external access goes off, and
        # the lock last; the temp dir stays allowed so DuckDB can spill.
        dirs = ", ".join("'" + d.replace("'", "''") + "'" for d in self.allowed_dirs + own)
        self.con.execute(f"SET allowed_directories = [{dirs}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self._lock = threading.Lock()
        # SQL texts that passed layer 2 here. Its verdict is a function of the text, the
        # views and the functions, and the last two are fixed for this database, so a
        # repeated text (a dashboard's) skips the check: 0.7 ms of a worker's ~3.6 per
        # small query. Only passes are kept; a refused text is checked, and refused, every time.
        self._passed: "OrderedDict[str, None]" = OrderedDict()

    def execute(self, sql: str, batch_rows: int = 10_000, dataset: str | None = None):
        """Run one SELECT; returns a pyarrow RecordBatchReader.  Anything else is refused.

        With `dataset`, unqualified user views show only that dataset's rows
        (temporary views shadow them on this query's own cursor).
        """
        statements = self.con.extract_statements(sql)
        if len(statements) != 1:
            raise SandboxError(f"exactly one statement is allowed, got {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise SandboxError(f"{kind.name} statements are not allowed; send one SELECT query")
        with self._lock:
            cur = self.con.cursor()
            self._cur = cur
        try:
            with self._lock:
                passed = sql in self._passed
                if passed:
                    self._passed.move_to_end(sql)
            if not passed:
                check_statement(cur, sql, self.user_views, self.functions)
                with self._lock:
                    self._passed[sql] = None
                    while len(self._passed) > 1024:
                        self._passed.popitem(last=False)
            if dataset is not None:
                lit = "'" + dataset.replace("'", "''") + "'"
                # Qualified by database: inside the temp catalog `main.` names the temp schema.
                dbname = cur.execute("SELECT current_database()").fetchone()[0]
                for view in self.user_views:
                    cols = [r[0] for r in cur.execute(f'DESCRIBE "{dbname}".main."{view}"').fetchall()]
                    if "dataset" in cols:
                        cur.execute(
                            f'CREATE TEMP VIEW "{view}" AS SELECT * FROM "{dbname}".main."{view}" WHERE dataset = {lit}'
                        )
            return cur.execute(sql).to_arrow_reader(batch_rows)
        except Exception:
            self.done()
            raise

    def interrupt(self) -> None:
        with self._lock:
            cur = getattr(self, "_cur", None)
        if cur is not None:
            try:
                cur.interrupt()
            except Exception:
                pass

    def done(self) -> None:
        with self._lock:
            cur, self._cur = getattr(self, "_cur", None), None
        if cur is not None:
            try:
                cur.close()
            except Exception:
                pass

    def close(self) -> None:
        self.done()
        try:
            self.con.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def build(path: Path, defs: dict, source=None) -> dict[str, str]:
    """Write the sandbox file for `defs` (also for processes that open it with `SandboxDB(..., path=)`).

    What could not be copied is not queryable there: logged with DuckDB's reason, and returned.
    """
    skipped = _write_definitions(path, defs, source)
    if skipped:
        log.warning("sandbox: %d definition(s) could not be copied and cannot be queried: %s",
                    len(skipped), "; ".join(f"{name}: {why}" for name, why in skipped.items()))
    return skipped


def rebuild_tables(base: Path, path: Path, defs: dict, source) -> None:
    """The sandbox file for `defs` from `base`, a file built for the same views and macros.

    Only the copied catalog tables changed (a moderation decision, a video
    row): `base` is copied as it is and its table views point at fresh Parquet
    copies, instead of creating every macro and view again.
    """
    shutil.copyfile(base, path)
    con = duckdb.connect(str(path), config={"python_enable_replacements": False})
    try:
        for table in defs.get("catalog_tables", ()):
            con.execute(_copy_table(source, path, table, replace=True))
    finally:
        con.close()


def _copy_table(source, path: Path, table: str, replace: bool = False) -> str:
    """Write catalog `table` as Parquet for the sandbox file `path`; return the view over it."""
    out = tables_dir(path) / f"{table}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    lit = "'" + str(out).replace("'", "''") + "'"
    source.execute(f'COPY (SELECT * FROM catalog."{table}") TO {lit} (FORMAT parquet)')
    return f'CREATE {"OR REPLACE " if replace else ""}VIEW catalog."{table}" AS SELECT * FROM read_parquet({lit})'


def tables_dir(path: Path) -> Path:
    """Where the catalog tables a sandbox file's views read are kept, as Parquet, next to it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tables")


def _write_definitions(path: Path, defs: dict, source=None) -> dict[str, str]:
    """Create the views, macros and copied catalog tables in a fresh file; return {name: DuckDB's reason}
    for what could not be built.

    `source` is a cursor on the warehouse, needed when views read catalog tables.
    Those are written as Parquet by DuckDB itself (`tables_dir`) and the file
    holds views over them: a fraction of the cost of loading them into the
    file, which every moderation decision would otherwise pay in full.
    """
    con = duckdb.connect(str(path), config={"python_enable_replacements": False})
    skipped: dict[str, str] = {}
    try:
        for schema in COPIED_SCHEMAS + ("catalog",):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table in defs.get("catalog_tables", {}):
            if source is None:
                skipped[f"catalog.{table}"] = "no warehouse cursor to copy it from"
                continue
            con.execute(_copy_table(source, path, table))
        later = []
        for stmt in _macro_statements(defs["macros"]):
            try:
                con.execute(stmt)
            except duckdb.Error:
                later.append(stmt)  # a macro that reads a view (similarity search): after the views
        # Views may reference each other; retry until no more can be built.
        pending = [(s, v, sql) for s, v, sql in defs["views"]]
        while pending:
            failed = []
            for item in pending:
                try:
                    con.execute(item[2])
                except duckdb.Error as e:
                    failed.append((*item, _first_line(e)))
            if len(failed) == len(pending):
                skipped.update({f"{s}.{v}": why for s, v, _, why in failed})
                break
            pending = [f[:3] for f in failed]
        for stmt in later:
            try:
                con.execute(stmt)
            except duckdb.Error as e:
                skipped[stmt.split("(", 1)[0].replace("CREATE OR REPLACE MACRO ", "")] = _first_line(e)
    finally:
        con.close()
    return skipped


def _first_line(e: Exception) -> str:
    return str(e).strip().split("\n", 1)[0]
