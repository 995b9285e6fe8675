"""`pixql shell`: a small SQL prompt with readline history, for when the stock DuckDB CLI is not at hand."""
from __future__ import annotations

import duckdb

from .output import print_relation

HELP = """Statements end with ';'.  Dot commands:
  .tables   list the views you can query
  .schema V show the columns of view V
  .help     this text
  .quit     leave (also Ctrl-D)"""


def run_shell(wh, stdin=None) -> None:
    import sys

    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    hist = wh.root / ".pixql_history"
    if interactive:
        try:
            import readline

            try:
                readline.read_history_file(hist)
            except OSError:
                pass
            readline.set_history_length(2000)
        except ImportError:  # readline is missing on some platforms; the prompt still works
            readline = None
    print(f"PixQL shell on {wh.root}. .help for help.")
    buf: list[str] = []
    while True:
        try:
            if interactive:
                line = input("pixql> " if not buf else "  ...> ")
            else:
                line = stdin.readline()
                if not line:
                    break
                line = line.rstrip("\n")
        except EOFError:
            break
        stripped = line.strip()
        if not buf and stripped.startswith("."):
            cmd, _, arg = stripped.partition(" ")
            if cmd in (".quit", ".exit"):
                break
            if cmd == ".help":
                print(HELP)
            elif cmd == ".tables":
                print_relation(wh.sql("SELECT view_name FROM duckdb_views() WHERE schema_name='main' AND NOT internal ORDER BY 1"), "table", None)
            elif cmd == ".schema" and arg:
                print_relation(wh.sql(f"DESCRIBE {duckdb.escape_identifier(arg.strip()) if hasattr(duckdb, 'escape_identifier') else arg.strip()}"), "table", None)
            else:
                print(f"unknown command {cmd}; .help lists them")
            continue
        buf.append(line)
        if stripped.endswith(";"):
            query = "\n".join(buf)
            buf = []
            try:
                rel = wh.sql(query)
                if rel is not None:
                    print_relation(rel, "table", None)
            except duckdb.Error as e:
                print(f"error: {e}")
    if interactive:
        try:
            import readline

            readline.write_history_file(hist)
        except (ImportError, OSError):
            pass
