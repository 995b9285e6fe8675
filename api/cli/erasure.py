"""`pixql delete` (erase content from every place the warehouse holds it), `pixql vacuum`, `pixql tombstones`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import RootOption, app, open_warehouse, resolve_root

_SERVE_HINT = "delete through the HTTP API it serves (DELETE /api/v1/assets/{id} ...), or stop it"


@app.command()
def delete(
    image: Optional[List[str]] = typer.Option(None, "--image", help="coactive_image_id (repeatable); a keyframe takes its video."),
    video: Optional[List[str]] = typer.Option(None, "--video", help="coactive_video_id: the video and all its keyframes."),
    path: Optional[List[str]] = typer.Option(None, "--path", help="Stored path of an asset or video."),
    sha256: Optional[List[str]] = typer.Option(None, "--sha256", help="Content hash."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A whole dataset (with --where or an id: only within it)."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL predicate over coactive_table_adv."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept in the tombstone)."),
    by: Optional[str] = typer.Option(None, "--by", help="Who asks (kept in the tombstone; default: $USER)."),
    block: bool = typer.Option(False, "--block", help="Refuse the same bytes on any later ingest or upload."),
    purge: bool = typer.Option(False, "--purge", help="Then rewrite the database file (pixql vacuum)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    root: Optional[Path] = RootOption,
):
    """Erase assets, videos, a dataset or what a predicate selects; a tombstone (no content) stays."""
    import getpass

    from warehouse.erasure_select import select

    whole = dataset if dataset and not (image or video or path or sha256 or where) else None
    within = dataset if not whole else None
    wh = open_warehouse(root, must_exist=True, busy_hint=_SERVE_HINT)
    try:
        sel = select(wh.cursor(), image_id=image, video_id=video, path=path, sha256=sha256, dataset=whole,
                     where=where, within=within)
        preview = wh.delete(image, video, path, sha256, whole, where, within=within, dry_run=True)
        if dry_run or sel.empty:
            typer.echo(str(preview) if not sel.empty else "nothing to delete (already erased, or no match)")
            return
        if not yes:
            typer.confirm(f"{preview}. Delete for good?", abort=True)
        report = wh.delete(image, video, path, sha256, whole, where, within=within, reason=reason,
                           by=by or getpass.getuser(), block=block)
    finally:
        wh.close()
    if purge:
        from warehouse.erasure_vacuum import vacuum as vacuum_

        report.removed["vacuum_bytes_after"] = vacuum_(resolve_root(root))["bytes_after"]
    typer.echo(json.dumps(report.to_dict(), default=str) if as_json else str(report))


@app.command()
def vacuum(root: Optional[Path] = RootOption):
    """Rewrite pixql.duckdb into a fresh file, so deleted values are no longer in its bytes."""
    from warehouse.erasure_vacuum import vacuum as vacuum_

    wh = open_warehouse(root, must_exist=True, busy_hint="stop it first: vacuum needs the file to itself")
    wh.close()  # opening sweeps what an interrupted erasure left
    out = vacuum_(resolve_root(root))
    typer.echo(f"vacuumed: {out['bytes_before']} -> {out['bytes_after']} bytes in {out['seconds']}s")


@app.command()
def tombstones(limit: int = typer.Option(100, "--limit"), root: Optional[Path] = RootOption):
    """What was erased: id, hash, when, who, why, block (no content)."""
    from warehouse import tombstones as stones

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        for t in stones.listing(wh.cursor(), limit):
            typer.echo(f"{t['created_dt']:%Y-%m-%d %H:%M:%S}  {t['kind']:<8} {t['subject_id']}  "
                       f"{(t['sha256'] or '-')[:16]}  {'BLOCK ' if t['block'] else ''}{t['created_by'] or '-'}: "
                       f"{t['reason'] or ''}")
    finally:
        wh.close()
