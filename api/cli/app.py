"""The Typer application, the options every command shares, and how failures are reported.

Every command's exception ends at `PixqlGroup.invoke`: a `PixqlError` (the
hierarchy of `warehouse.errors`, whose `KINDS` table gives the exit code) and the
library and OS errors listed here become one `error: ...` line (exit 1), anything
else one `internal error` line (exit 70); the traceback is shown only with the
global `--debug` (or `PIXQL_DEBUG=1`).
"""
from __future__ import annotations

import errno
from pathlib import Path

import typer
from typer.core import TyperGroup

from warehouse.errors import EXIT_INTERNAL, EXIT_USER, PixqlError, kind_of

DEBUG_KEY = "pixql.debug"
MAX_MESSAGE = 400


def _first_line(text: str) -> str:
    line = (text.strip().splitlines() or [""])[0].strip()
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def _validation(e) -> str:
    parts = []
    for err in e.errors(include_url=False):
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or str(e)


def _os_error(e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"address already in use: {e.strerror or e}"
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"no such file: {e.filename}"
    if isinstance(e, PermissionError) and e.filename:
        return f"permission denied: {e.filename}"
    return str(e)


def known_errors() -> list[tuple[type, object]]:
    """(exception type, message function): the one table of failures the CLI explains.

    Most specific first; a type not listed here is reported as an internal error.
    The builtin kinds after `PixqlError` are errors of libraries and of argument
    parsing that a user can fix too.
    """
    import duckdb
    import pydantic

    return [
        (PixqlError, str),
        (pydantic.ValidationError, _validation),
        (duckdb.Error, str),
        (OSError, _os_error),
        (KeyError, lambda e: str(e.args[0]) if e.args else "not found"),
        (ValueError, str),
        (LookupError, str),
        (OverflowError, str),
        (RuntimeError, str),
    ]


def describe(e: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception a command raised."""
    for kind, message in known_errors():
        if isinstance(e, kind):
            row = kind_of(e)
            return _first_line(message(e) or type(e).__name__), row.exit_code if row else EXIT_USER
    return (_first_line(f"internal error: {type(e).__name__}: {e}") + " (run with --debug for the traceback)",
            EXIT_INTERNAL)


def _signals() -> tuple[type, ...]:
    """Exit, abort and usage errors: Typer reports those itself (it vendors click in 0.29+)."""
    kinds = [typer.Exit, typer.Abort, getattr(typer, "TyperException", typer.Exit)]
    try:
        import click

        kinds += [click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort]
    except ImportError:
        pass
    return tuple(kinds)


def _debug_env() -> bool:
    from warehouse.settings import current

    try:
        return current().debug
    except ValueError:  # a malformed PIXQL_* variable must not hide the error being reported
        return False


class PixqlGroup(TyperGroup):
    """Turns a command's exception into one clear line; `--debug` lets it through."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _signals():
            raise
        except Exception as e:
            if ctx.meta.get(DEBUG_KEY) or _debug_env():
                raise
            message, code = describe(e)
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    name="pixql",
    cls=PixqlGroup,
    help="PixQL: a self-hosted visual SQL warehouse. Images become rows, concepts become columns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks instead of one-line errors."),
):
    """PixQL: a self-hosted visual SQL warehouse. Images become rows, concepts become columns."""
    ctx.meta[DEBUG_KEY] = debug

RootOption = typer.Option(
    None,
    "--root",
    "-r",
    help="Warehouse directory (default: $PIXQL_HOME or ./pixql-data).",
)  # None: warehouse.settings reads PIXQL_HOME, the one place the environment is read


def resolve_root(root: Path | None) -> Path:
    from warehouse.storage import default_root

    return Path(root) if root else default_root()


def fail(message: str, code: int = 1) -> "typer.Exit":
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_warehouse(root: Path | None, read_only: bool = False, must_exist: bool = False,
                   busy_hint: str = "stop it, or use the HTTP API it serves"):
    """Open the warehouse or exit with a message; a file held by another process says so.

    `busy_hint` tells the user what to do instead when a running server holds the lock.
    """
    from pixql import Warehouse

    path = resolve_root(root)
    if must_exist and not (path / "pixql.duckdb").exists():
        fail(f"no warehouse at {path} (run `pixql init` or `pixql ingest` first)")
    try:
        return Warehouse.open(path, read_only=read_only)
    except Exception as e:
        if is_lock_error(e):
            fail(f"the warehouse {path} is held by another process (a running `pixql serve` or "
                 f"`pixql ingest`?); {busy_hint}")
        fail(f"cannot open warehouse {path}: {_first_line(str(e))}")


def check_not_held(root: Path, busy_hint: str) -> None:
    """Exit with open_warehouse's message if another process holds the warehouse file.

    A bare read-write connect, opened and closed: it conflicts with readers and
    writers alike, and does none of the work of opening a Warehouse.
    """
    import duckdb

    db = Path(root) / "pixql.duckdb"
    if not db.exists():
        return
    try:
        duckdb.connect(str(db)).close()
    except duckdb.Error as e:
        if is_lock_error(e):
            fail(f"the warehouse {root} is held by another process (a running `pixql serve` or "
                 f"`pixql ingest`?); {busy_hint}")
        fail(f"cannot open warehouse {root}: {_first_line(str(e))}")


def is_lock_error(e: BaseException) -> bool:
    """DuckDB's 'Could not set lock on file' (another process holds the warehouse)."""
    return "lock" in str(e).lower()
