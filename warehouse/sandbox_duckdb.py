"""Sandbox layer 2's statement check: DuckDB's own parse tree of the query, before it runs.

`check_statement` asks DuckDB to parse the SQL (`json_serialize_sql`, which
only serializes SELECT statements) and walks the whole tree, independently
of sqlglot and of layer 1: every table reference must be a user view in
`main` or a CTE in lexical scope (by DuckDB's own CTE nodes, a recursive
CTE seeing itself only in its recursive step); the only table function is
`unnest`; SHOW / DESCRIBE / SUMMARIZE references are refused; every
function call, window function and operator must be on the reviewed
allow-list of `sandbox_policy` (or one of the warehouse's macros), with no
schema but `main` / `pixql_internal` and no database.  So DuckDB's catalog
functions and views (`duckdb_views()`, `sqlite_master`, `information_schema`,
`pg_catalog`), settings (`current_setting`) and file readers never run here
even when layer 1 is bypassed.
"""
from __future__ import annotations

import json

from .sandbox_policy import FUNCTION_SCHEMAS, TABLE_FUNCTIONS, SandboxError, refusal

_QUERY_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_SAFE_REFS = {"BASE_TABLE", "JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY", "PIVOT", "TABLE_FUNCTION"}
# Every TableReferenceType DuckDB has: a dict with one of these is a table reference.
_ALL_REFS = _SAFE_REFS | {"SHOW_REF", "COLUMN_DATA", "DELIM_GET", "BOUND_TABLE_REF", "CTE", "INVALID", "EMPTY_FROM"}
_UNKNOWN_LOCATION = 2**64 - 1


def check_statement(con, sql: str, views, functions: frozenset[str]) -> None:
    """Refuse `sql` unless DuckDB parses it as one SELECT over `views` calling only `functions`."""
    raw = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()[0]
    try:
        tree = json.loads(raw)
    except RecursionError:
        raise SandboxError("the query is nested too deeply") from None
    if tree.get("error"):
        msg = tree.get("error_message") or "cannot parse SQL"
        if "Only SELECT" in msg:
            raise SandboxError("only a single SELECT query is allowed")
        raise SandboxError(f"cannot parse SQL: {msg}")
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise SandboxError(f"exactly one statement is allowed, got {len(statements)}")
    _Walk(sql, {v.lower() for v in views}, functions).run(statements[0])


class _Walk:
    """Every dict of the parse tree, visited iteratively (DuckDB allows 1000 levels of nesting)."""

    def __init__(self, sql: str, views: set[str], functions: frozenset[str]):
        self.sql, self.views, self.functions = sql, views, functions

    def refuse(self, reason: str, item: dict) -> SandboxError:
        loc = item.get("query_location")
        if isinstance(loc, int) and loc != _UNKNOWN_LOCATION and loc <= len(self.sql):
            before = self.sql[:loc]
            return SandboxError(reason, before.count("\n") + 1, loc - (before.rfind("\n") + 1) + 1)
        return SandboxError(reason)

    def run(self, root) -> None:
        stack: list[tuple[object, frozenset[str]]] = [(root, frozenset())]
        while stack:
            v, visible = stack.pop()
            if isinstance(v, list):
                stack.extend((x, visible) for x in reversed(v))
            elif isinstance(v, dict):
                if "cte_map" in v and "type" in v:
                    stack.extend(reversed(self.query(v, visible)))
                    continue
                if "class" in v:
                    if "function_name" in v:
                        self.function(v)
                elif (isinstance(v.get("type"), str) and v["type"] in _ALL_REFS) or "table_name" in v:
                    self.reference(v, visible)
                stack.extend((x, visible) for x in reversed(list(v.values())))

    def query(self, node: dict, visible: frozenset[str]) -> list[tuple[object, frozenset[str]]]:
        """The parts of a query node, each with the CTE names in scope there."""
        if node["type"] not in _QUERY_NODES:
            raise self.refuse(f"{node['type']} is not allowed in a query", node)
        inner = set(visible)
        parts: list[tuple[object, frozenset[str]]] = []
        for entry in (node.get("cte_map") or {}).get("map") or []:
            name = str(entry["key"]).lower()
            value = entry.get("value") or {}
            body = (value.get("query") or {}).get("node") or {}
            if (body.get("type") == "RECURSIVE_CTE_NODE" and str(body.get("cte_name", "")).lower() == name
                    and not (body.get("cte_map") or {}).get("map")):
                # As DuckDB binds it: the anchor reads the catalog's `name`, only the step the CTE.
                parts += [(part, frozenset(inner | {name}) if key == "right" else frozenset(inner))
                          for key, part in body.items()]
                parts += [(part, frozenset(inner)) for key, part in value.items() if key != "query"]
            else:
                parts.append((value, frozenset(inner)))
            inner.add(name)
        parts += [(part, frozenset(inner)) for key, part in node.items() if key != "cte_map"]
        return parts

    def function(self, expr: dict) -> None:
        name = str(expr.get("function_name") or "")
        schema = str(expr.get("schema") or "").lower()
        if expr.get("catalog") or schema not in FUNCTION_SCHEMAS:
            raise self.refuse(f"function {schema}.{name}() is not allowed in a query", expr)
        if name.lower() not in self.functions:
            raise self.refuse(refusal(name), expr)

    def reference(self, ref: dict, visible: frozenset[str]) -> None:
        kind = ref.get("type")
        if kind == "BASE_TABLE" or "table_name" in ref:
            if kind != "BASE_TABLE":
                raise self.refuse(f"{kind} is not allowed in a query; query the warehouse views", ref)
            name = str(ref.get("table_name") or "").lower()
            schema = str(ref.get("schema_name") or "").lower()
            qualified = bool(schema or ref.get("catalog_name"))
            is_cte = not qualified and name in visible
            is_view = not ref.get("catalog_name") and schema in ("", "main") and name in self.views
            if not (is_cte or is_view):
                shown = ".".join(p for p in (ref.get("catalog_name"), ref.get("schema_name"), ref.get("table_name")) if p)
                raise self.refuse(f"unknown table {shown!r}; queryable views: {', '.join(sorted(self.views))}", ref)
        elif kind == "TABLE_FUNCTION":
            fn = ref.get("function") or {}
            name = str(fn.get("function_name") or "")
            if name.lower() not in TABLE_FUNCTIONS:
                raise self.refuse(f"table function {name}() is not allowed; query the warehouse views", ref)
        elif kind not in _SAFE_REFS:
            raise self.refuse(f"{kind} is not allowed in a query; query the warehouse views", ref)
