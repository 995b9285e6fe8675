"""`pixql serve` (the HTTP API on uvicorn) and `pixql token create|list|revoke`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import RootOption, app, check_not_held, fail, open_warehouse

token_app = typer.Typer(help="API tokens: create (prints the secret once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _default(field: str) -> str:
    """The default `pixql serve --help` shows: the settings field's (an option left out means
    "not given", so `PIXQL_*` variables and then the field's default apply)."""
    from api.server.settings import ServerSettings

    return f"(default {ServerSettings.model_fields[field].get_default(call_default_factory=True)})"


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help=f"Address to bind. {_default('host')}"),
    port: Optional[int] = typer.Option(None, "--port", "-p", help=_default("port")),
    no_auth: bool = typer.Option(False, "--no-auth", help="Accept requests without a token (loopback only)."),
    query_workers: Optional[int] = typer.Option(
        None, "--query-workers", help=f"Queries run at once. {_default('query_workers')}"),
    time_limit: Optional[float] = typer.Option(
        None, "--time-limit", help=f"Seconds a query may run. {_default('query_time_limit_s')}"),
    row_cap: Optional[int] = typer.Option(
        None, "--row-cap", help=f"Most rows a query may return. {_default('query_row_cap')}"),
    memory_limit: Optional[str] = typer.Option(
        None, "--memory-limit", help="Memory cap per running query (DuckDB's limit and its worker process's). "
                                     + _default("query_memory_limit")),
    max_queued: Optional[int] = typer.Option(
        None, "--max-queued", help=f"Queued queries beyond this get 429. {_default('max_queued_queries')}"),
    max_running_per_token: Optional[int] = typer.Option(
        None, "--max-running-per-token", min=0,
        help="Queries one token may run at once; tokens' queues are served round-robin "
             f"(0: all query workers but one). {_default('max_running_per_token')}"),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", help=_default("max_upload_mb")),
    path_root: Optional[List[Path]] = typer.Option(
        None, "--path-root", help="Only read server-side paths under this directory (repeatable)."),
    object_root: Optional[List[str]] = typer.Option(
        None, "--object-root", help="Let clients name objects under this s3://, gs:// or az:// prefix (repeatable; "
        "none by default)."),
    no_url_fetch: bool = typer.Option(False, "--no-url-fetch", help="Refuse every request that names a URL (403)."),
    allow_url_network: Optional[List[str]] = typer.Option(
        None, "--allow-url-network", help="Also fetch from (and call back to) this network, e.g. 10.0.0.0/8; "
        "loopback, private and link-local addresses are refused otherwise (repeatable)."),
    allow_url_host: Optional[List[str]] = typer.Option(
        None, "--allow-url-host", help="Also fetch from this host name, whatever it resolves to (repeatable)."),
    max_url_mb: Optional[float] = typer.Option(
        None, "--max-url-mb", help=f"Largest download from a URL, in MB. {_default('max_url_mb')}"),
    url_time_limit: Optional[float] = typer.Option(
        None, "--url-time-limit", help=f"Seconds a URL download may take. {_default('url_time_limit_s')}"),
    lazy_model: bool = typer.Option(False, "--lazy-model",
                                    help="Load the encoder on first use instead of before /ready says ready."),
    log_level: str = typer.Option("info", "--log-level"),
    root: Optional[Path] = RootOption,
):
    """Serve the warehouse over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    from api.server import ServerSettings, create_app

    from pydantic import ValidationError

    # Only what was given on the command line: the rest comes from PIXQL_* or the defaults.
    given = dict(
        root=root, host=host, port=port, query_workers=query_workers, query_time_limit_s=time_limit,
        query_row_cap=row_cap, query_memory_limit=memory_limit, max_queued_queries=max_queued,
        max_upload_mb=max_upload_mb, max_running_per_token=max_running_per_token, path_roots=path_root or None,
        object_roots=object_root or None,
        auth=False if no_auth else None, url_fetch=False if no_url_fetch else None,
        load_model=False if lazy_model else None, allow_url_networks=allow_url_network or None,
        allow_url_hosts=allow_url_host or None, max_url_mb=max_url_mb, url_time_limit_s=url_time_limit,
    )
    try:
        settings = ServerSettings(**{k: v for k, v in given.items() if v is not None})
        settings.check()
    except ValidationError as e:
        fail(_settings_message(e))
    except ValueError as e:
        fail(str(e))
    # The server opens the warehouse inside uvicorn's startup, where a held lock
    # would print a traceback: find out here and say it as other commands do.
    check_not_held(settings.root, busy_hint="stop it first; one process serves a warehouse at a time")
    host, port = settings.host, settings.port
    if not settings.auth:
        typer.secho(f"WARNING: authentication is OFF (--no-auth); anyone who can reach {host}:{port} "
                    "has admin rights", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"pixql: serving {settings.root.resolve()} on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


# ServerSettings field -> the flag that sets it, so a refused value names what the user typed.
_FLAGS = {"port": "--port", "host": "--host", "query_workers": "--query-workers", "query_time_limit_s": "--time-limit",
          "query_row_cap": "--row-cap", "query_memory_limit": "--memory-limit", "max_queued_queries": "--max-queued",
          "max_upload_mb": "--max-upload-mb", "path_roots": "--path-root",
          "object_roots": "--object-root"}


def _settings_message(e) -> str:
    parts = []
    for err in e.errors(include_url=False):
        field = str(err["loc"][0]) if err.get("loc") else ""
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{_FLAGS.get(field, field.replace('_', '-'))}: {msg}" if field else msg)
    return "; ".join(parts)


def _local_warehouse(root):
    return open_warehouse(root, busy_hint="stop it, or create the token over HTTP: "
                          "POST /api/v1/tokens with an admin token")


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="Who or what the token is for."),
    scope: str = typer.Option("read", "--scope", "-s", help="read | write | admin"),
    root: Optional[Path] = RootOption,
):
    """Create a token and print its client id and secret (shown only this once)."""
    from api import auth

    wh = _local_warehouse(root)
    try:
        with wh.write_lock:
            client_id, secret = auth.create_token(wh.cursor(), name, scope)
    except ValueError as e:
        fail(str(e))
    finally:
        wh.close()
    typer.echo(f"client_id:     {client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo(f"scope:         {scope}")
    typer.echo("Send: Authorization: Bearer <client_id>:<client_secret>  (the secret is not stored; keep it now)",
               err=True)


@token_app.command("list")
def token_list(root: Optional[Path] = RootOption):
    """List tokens (never their secrets)."""
    from api import auth

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        for t in auth.list_tokens(wh.cursor()):
            state = f"revoked {t['revoked_dt']:%Y-%m-%d}" if t["revoked_dt"] else "active"
            typer.echo(f"{t['client_id']}  {t['scope']:<5}  {state:<18}  {t['name']}")
    finally:
        wh.close()


@token_app.command("revoke")
def token_revoke(client_id: str = typer.Argument(...), root: Optional[Path] = RootOption):
    """Revoke a token; requests with it get 401."""
    from api import auth

    wh = _local_warehouse(root)
    try:
        with wh.write_lock:
            found = auth.revoke_token(wh.cursor(), client_id)
    finally:
        wh.close()
    if not found:
        fail(f"no active token {client_id!r}")
    typer.echo(f"revoked {client_id}")
