"""The Typer application and the options every command shares."""
from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(
    name="pixql",
    help="PixQL: a self-hosted visual SQL warehouse. Images become rows, concepts become columns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RootOption = typer.Option(
    None,
    "--root",
    "-r",
    help="Warehouse directory (default: $PIXQL_HOME or ./pixql-data).",
    envvar="PIXQL_HOME",
)


def resolve_root(root: Path | None) -> Path:
    return Path(root) if root else Path(os.environ.get("PIXQL_HOME", "pixql-data"))


def fail(message: str, code: int = 1) -> "typer.Exit":
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_warehouse(root: Path | None, read_only: bool = False, must_exist: bool = False,
                   busy_hint: str = "stop it, or use the HTTP API it serves"):
    """Open the warehouse or exit with a message; a file held by another process says so.

    `busy_hint` tells the user what to do instead when a running server holds the lock.
    """
    from warehouse import Warehouse

    path = resolve_root(root)
    if must_exist and not (path / "pixql.duckdb").exists():
        fail(f"no warehouse at {path} (run `pixql init` or `pixql ingest` first)")
    try:
        return Warehouse.open(path, read_only=read_only)
    except Exception as e:
        if "lock" in str(e).lower():
            fail(f"the warehouse {path} is held by another process (a running `pixql serve`?); {busy_hint}")
        fail(f"cannot open warehouse {path}: {e}")
