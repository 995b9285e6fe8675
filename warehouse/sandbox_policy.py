"""What a sandboxed query may call, shared by both sandbox layers, and the error they raise.

The functions come from `sandbox_functions.txt`: every function of DuckDB
1.5.6 reviewed once as `allow`, `syntax` or `refuse`.  It is an allow-list:
a function a later DuckDB adds appears in none of the three and is refused
until someone reviews it (`python -m warehouse.sandbox_policy` lists them).
The warehouse's own macros (concept heads, lookups) are allowed by name on
top, unless the name is also a DuckDB built-in, so a macro can never lend
its name to a refused built-in.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from .errors import Invalid

FUNCTIONS_FILE = Path(__file__).with_name("sandbox_functions.txt")
# The one table function a query may call in FROM: it only expands the values given to it.
TABLE_FUNCTIONS = frozenset({"unnest"})
# Schemas a function may be qualified with (the warehouse's macros live in both).
FUNCTION_SCHEMAS = frozenset({"", "main", "pixql_internal"})


class SandboxError(Invalid):
    """A query the sandbox refuses; `reason` is safe to show the user."""

    def __init__(self, reason: str, line: int | None = None, col: int | None = None):
        self.reason, self.line, self.col = reason, line, col
        where = f" (line {line}" + (f", column {col})" if col is not None else ")") if line is not None else ""
        super().__init__(reason + where)


@lru_cache(maxsize=1)
def reviewed() -> tuple[frozenset[str], dict[str, str]]:
    """(allowed names, {refused name: reason}) from the reviewed file, names lower-cased."""
    allowed: set[str] = set()
    refused: dict[str, str] = {}
    for lineno, line in enumerate(FUNCTIONS_FILE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        verdict, _, rest = line.partition(" ")
        name, _, why = rest.strip().partition("  ")
        name = name.lower()
        if verdict in ("allow", "syntax"):
            allowed.add(name)
        elif verdict == "refuse":
            refused[name] = why.strip()
        else:
            raise ValueError(f"{FUNCTIONS_FILE.name}:{lineno}: unknown verdict {verdict!r}")
    return frozenset(allowed), refused


@lru_cache(maxsize=1)
def builtin_names() -> frozenset[str]:
    """Every function name the installed DuckDB knows (a warehouse macro may not reuse one)."""
    import duckdb

    with duckdb.connect(":memory:") as con:
        return frozenset(r[0].lower() for r in con.execute("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall())


def allowed_functions(macros=()) -> frozenset[str]:
    """The reviewed functions plus the warehouse's own macro names (never a built-in's name)."""
    own = {m.lower() for m in macros} - builtin_names()
    return reviewed()[0] | own


def refusal(name: str) -> str:
    """Why `name` may not be called, for the error message."""
    why = reviewed()[1].get(name.lower())
    if why:
        return f"function {name}() is not allowed in a query ({why})"
    return f"function {name}() is not allowed in a query (not on the sandbox's list of reviewed functions)"


def unreviewed() -> list[str]:
    """Functions of the installed DuckDB that the file does not mention (refused until reviewed)."""
    allowed, refused = reviewed()
    return sorted(builtin_names() - allowed - set(refused))


if __name__ == "__main__":
    names = unreviewed()
    for n in names:
        print(n)
    sys.exit(1 if names else 0)
