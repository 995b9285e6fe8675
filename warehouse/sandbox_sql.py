"""Sandbox layer 1, `check_sql`: sqlglot (duckdb dialect) reads the query before it is queued.

Accepted: exactly one query (SELECT / FROM-first / VALUES / set operation,
with CTEs) whose every table is a user view or a CTE in lexical scope, and
whose every function call is on the reviewed allow-list of
`sandbox_policy` (or is one of the warehouse's macros).  Everything else is
a `SandboxError` with the reason and, where sqlglot knows it, the position.

CTE scope follows DuckDB's rules, checked against DuckDB itself in the
tests: a CTE is a table name in the body of its WITH, in the CTEs declared
after it in the same WITH, and in every subquery below those; a recursive
CTE (WITH RECURSIVE, body `anchor UNION [ALL] step`) also names itself
inside `step` only.  sqlglot's optimizer scopes are not used for this on
purpose: they model column resolution, so they also let a table alias, a
recursive anchor or an INTERSECT branch "see" a CTE, where DuckDB would
read the catalog object of that name instead.

Function names are the names as written (quotes removed, case folded):
the parser below records them on every call node, including calls sqlglot
turns into typed expressions (`"lower"(x)` becomes `exp.Lower`), calls with
special syntax (CAST, EXTRACT, TRIM...), and calls inside lambdas, list
comprehensions, window specs or FROM.
"""
from __future__ import annotations

import logging
import re
import threading

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.parsers.duckdb import DuckDBParser

from .sandbox_policy import TABLE_FUNCTIONS, SandboxError, allowed_functions, refusal

logging.getLogger("sqlglot").setLevel(logging.ERROR)

NAME_KEY = "pixql_name"

# Statements refused as the query, and anywhere inside it.
_REFUSED_NODES = {
    exp.Copy: "COPY", exp.Attach: "ATTACH", exp.Detach: "DETACH", exp.Pragma: "PRAGMA", exp.Set: "SET",
    exp.Install: "INSTALL", exp.Create: "CREATE", exp.Drop: "DROP", exp.Insert: "INSERT",
    exp.Update: "UPDATE", exp.Delete: "DELETE", exp.Merge: "MERGE", exp.Describe: "DESCRIBE",
    exp.Summarize: "SUMMARIZE", exp.Use: "USE", exp.Transaction: "BEGIN", exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK", exp.Alter: "ALTER", exp.Command: None,
}
# Typed nodes sqlglot builds from syntax rather than from a written call
# (literals, operators such as AND / @> / ->>, keywords); a node of another
# class with no written name must have an allowed sqlglot name.
_SYNTAX_NODES = (
    exp.Binary, exp.Connector, exp.Unary, exp.Predicate,
    exp.Array, exp.Struct, exp.ToMap, exp.Cast, exp.Case, exp.If, exp.Exists, exp.Any, exp.All,
    exp.Columns, exp.CurrentDate, exp.CurrentTime, exp.CurrentTimestamp, exp.Localtime, exp.Localtimestamp,
)


def _stamped(name: str, parse):
    def parse_and_stamp(self, *args, **kwargs):
        node = parse(self, *args, **kwargs)
        if isinstance(node, exp.Expr) and NAME_KEY not in node.meta:
            node.meta[NAME_KEY] = name
        return node
    return parse_and_stamp


class _Parser(DuckDBParser):
    # Calls with their own grammar (CAST(x AS t), TRIM(BOTH ...), CASE ...) keep their name too.
    FUNCTION_PARSERS = {k: _stamped(k, f) for k, f in DuckDBParser.FUNCTION_PARSERS.items()}
    NO_PAREN_FUNCTION_PARSERS = {k: _stamped(k, f) for k, f in DuckDBParser.NO_PAREN_FUNCTION_PARSERS.items()}


class SandboxDialect(DuckDB):
    """DuckDB's dialect, recording each call's name as written on the node it becomes."""

    ORIGINAL_NAME_META_KEY = NAME_KEY
    Parser = _Parser


def _position(node: exp.Expr) -> tuple[int | None, int | None]:
    for n in (node, node.args.get("this")):
        meta = getattr(n, "meta", None) or {}
        if "line" in meta:
            return meta.get("line"), meta.get("col")
    return None, None


def _refuse(reason: str, node: exp.Expr | None = None) -> SandboxError:
    line, col = _position(node) if node is not None else (None, None)
    return SandboxError(reason, line, col)


def function_name(node: exp.Func) -> tuple[str, bool]:
    """(name, written): the name as the query wrote it, or sqlglot's name for syntax-built nodes."""
    if isinstance(node, exp.Anonymous):
        this = node.this
        return (this.name if isinstance(this, exp.Identifier) else str(this)), True
    written = node.meta.get(NAME_KEY)
    if written:
        return str(written), True
    return node.sql_name(), False


_parsers = threading.local()


def _duckdb_syntax(sql: str) -> None:
    """Syntax errors in DuckDB's own words (sqlglot is more lenient and reads typos as aliases)."""
    con = getattr(_parsers, "con", None)
    if con is None:
        con = _parsers.con = duckdb.connect(":memory:")
    try:
        con.extract_statements(sql)
    except duckdb.ParserException as e:
        m = re.search(r"LINE (\d+):", str(e))
        msg = str(e).split("\n", 1)[0].replace("Parser Error: ", "")
        raise SandboxError(f"cannot parse SQL: {msg}", int(m.group(1)) if m else None) from None


def check_syntax(sql: str) -> None:
    """DuckDB's own parser only (what `check_sql` runs first): a syntax error raises `SandboxError`."""
    if not isinstance(sql, str) or not sql.strip():
        raise SandboxError("empty query")
    _duckdb_syntax(sql)


def verdict_key(sql: str):
    """What `check_sql`'s sqlglot verdict depends on: the token stream, number literals' values left out.

    A caller may remember that a key passed (for the same views and macros)
    and, for another query with the same key, run only `check_syntax`.  Why
    the verdict is the same: sqlglot's parser chooses every node from token
    types and the texts of non-number tokens (identifiers, keywords, strings,
    operators, comments are all in the key); a NUMBER token's text only
    becomes a `Literal`'s value, and no check here reads a literal's value
    (tables, CTE scope, function names and statement kinds are all named by
    other tokens).  So `... WHERE width > 17` and `... > 300` share a key,
    while any change of a name, a string (e.g. a quoted file path in FROM),
    a keyword or the query's structure gives another.  DuckDB's syntax check
    still runs on every query, and layer 2 (`sandbox_duckdb`) checks
    DuckDB's own parse tree of each query in the worker regardless.  None
    when sqlglot cannot tokenize it (then the full check runs and refuses it).
    """
    try:
        tokens = SandboxDialect().tokenize(sql)
    except Exception:
        return None
    number = sqlglot.tokens.TokenType.NUMBER
    return tuple((t.token_type, None if t.token_type == number else t.text, tuple(t.comments)) for t in tokens)


def check_sql(sql: str, allowed_tables, allowed_macros=()) -> None:
    """Refuse anything but one read-only query over `allowed_tables` (user view names).

    `allowed_macros` are the warehouse's own macro names, callable beside the
    reviewed built-ins.
    """
    check_syntax(sql)
    tables = {t.lower() for t in allowed_tables}
    functions = allowed_functions(allowed_macros)
    try:
        statements = [s for s in sqlglot.parse(sql, read=SandboxDialect) if s is not None]
    except sqlglot.errors.ParseError as e:
        err = (e.errors or [{}])[0]
        raise SandboxError(f"cannot parse SQL: {err.get('description') or e}", err.get("line"), err.get("col")) from None
    except RecursionError:
        # sqlglot's parser recurses about 25 frames per level of nesting.
        raise SandboxError("the query is nested too deeply to check (about 40 levels of parentheses at most)") from None
    if len(statements) != 1:
        raise SandboxError(f"exactly one statement is allowed, got {len(statements)}")
    root = statements[0]
    if not isinstance(root, (exp.Query, exp.Values)):
        raise _refuse(f"{_statement_word(root)} statements are not allowed; send one SELECT query", root)
    for node in root.walk():
        for cls, word in _REFUSED_NODES.items():
            if isinstance(node, cls):
                raise _refuse(f"{word or _statement_word(node)} is not allowed in a query; send one SELECT query", node)
        if isinstance(node, (exp.From, exp.Join, exp.Lateral)):
            _check_source(node.this)
        if isinstance(node, exp.Func):
            _check_function(node, functions)
    for table, visible in _tables_in_scope(root):
        _check_table(table, tables, visible)


def _statement_word(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    for cls, word in _REFUSED_NODES.items():
        if word and isinstance(node, cls):
            return word
    return type(node).__name__.upper()


def _check_function(node: exp.Func, functions: frozenset[str]) -> None:
    name, written = function_name(node)
    if not written and isinstance(node, _SYNTAX_NODES):
        return
    if name.lower() not in functions:
        raise _refuse(refusal(name), node)


def _check_source(source) -> None:
    """What may stand in FROM / JOIN / LATERAL: views (checked later), subqueries, VALUES, unnest."""
    if isinstance(source, exp.Table) and isinstance(source.this, exp.Func):
        source = source.this
    if isinstance(source, (exp.Table, exp.Subquery, exp.Values, exp.Lateral)):
        return
    if isinstance(source, exp.Func):
        name, _ = function_name(source)
        if isinstance(source, (exp.Unnest, exp.Explode)) or name.lower() in TABLE_FUNCTIONS:
            return
        raise _refuse(f"table function {name}() is not allowed; query the warehouse views", source)
    raise _refuse(f"{type(source).__name__} is not allowed in FROM; query the warehouse views", source)


def _tables_in_scope(root: exp.Expr):
    """Yield (table, CTE names visible where it stands) for every exp.Table under `root`.

    Iterative, so a deeply nested query cannot exhaust Python's stack here.
    """
    stack: list[tuple[object, frozenset[str]]] = [(root, frozenset())]
    while stack:
        node, visible = stack.pop()
        if isinstance(node, list):
            stack.extend((item, visible) for item in reversed(node))
            continue
        if not isinstance(node, exp.Expr):
            continue
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            inner = set(visible)
            todo: list[tuple[object, frozenset[str]]] = []
            for cte in with_.expressions:
                name = cte.alias_or_name.lower()
                body = cte.this
                if (with_.args.get("recursive") and isinstance(body, exp.Union) and not body.args.get("by_name")
                        and not body.args.get("with_")):
                    # DuckDB: the anchor reads the catalog's `name`; only the step reads the CTE itself.
                    todo += [(value, frozenset(inner | {name}) if key == "expression" else frozenset(inner))
                             for key, value in body.args.items()]
                else:
                    todo.append((cte, frozenset(inner)))
                inner.add(name)
            todo += [(value, frozenset(inner)) for key, value in node.args.items() if key != "with_"]
            stack.extend(reversed(todo))
            continue
        if isinstance(node, exp.Table):
            yield node, visible
        stack.extend((value, visible) for value in reversed(list(node.args.values())))


def _check_table(node: exp.Table, allowed: set[str], ctes: frozenset[str]) -> None:
    this = node.this
    if not isinstance(this, exp.Identifier):
        if isinstance(this, exp.Func):
            name, _ = function_name(this)
            if name.lower() in TABLE_FUNCTIONS and node.args.get("db") is None:
                return
        else:
            name = this.sql(dialect="duckdb")
        raise _refuse(f"table function {name}() is not allowed; query the warehouse views", node)
    name = this.name
    if this.quoted and re.search(r"[/\\.:*]", name):
        raise _refuse(f"file paths are not allowed ({name!r}); query the warehouse views", node)
    if node.args.get("catalog") is not None:
        raise _refuse(f"database-qualified names are not allowed ({node.sql(dialect='duckdb')})", node)
    db = node.args.get("db")
    if db is not None and db.name.lower() != "main":
        raise _refuse(f"schema {db.name!r} is not queryable; use the views in main: {', '.join(sorted(allowed))}", node)
    low = name.lower()
    if db is None and low in ctes:
        return
    if low not in allowed:
        raise _refuse(f"unknown table {name!r}; queryable views: {', '.join(sorted(allowed))}", node)
