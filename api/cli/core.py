"""Core commands: init, ingest, embed, sql, shell, demo, datasets, errors."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import RootOption, app, fail, open_warehouse, resolve_root
from .output import print_relation


@app.command()
def init(root: Optional[Path] = RootOption):
    """Create an empty warehouse directory."""
    wh = open_warehouse(root)
    typer.echo(f"warehouse ready at {wh.root}")
    wh.close()


@app.command()
def ingest(
    paths: List[str] = typer.Argument(..., help="Directories (recursive), globs, files, or @list.txt files."),
    dataset: str = typer.Option("default", "--dataset", "-d", help="Dataset to add the assets to."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="imagenet-lite0 (default) or clip:<model>:<pretrained>."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="CSV or JSONL (a file or an s3:// object) with a 'path' column; other columns become metadata."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per forward pass (default: the cpu_batch_size setting; on Ray GPU actors gpu_batch_size)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Decode threads (default: number of cores)."),
    fps: float = typer.Option(1.0, "--fps", help="Video keyframes sampled per second."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="At most this many keyframes per video."),
    part_rows: int = typer.Option(512, "--part-rows", help="Assets per committed Parquet part."),
    analyzers: Optional[str] = typer.Option(None, "--analyzers", "-a", help="Also run analyzers: nsfw,ocr,faces,nudity (see `pixql analyze`)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ray: Optional[str] = typer.Option(
        None, "--ray", is_flag=False, flag_value="auto", metavar="[ADDRESS]",
        help="Decode and embed on a Ray cluster (ADDRESS, default $RAY_ADDRESS or the local `ray start` one); "
             "parts are committed here."),
    root: Optional[Path] = RootOption,
):
    """Ingest images (and videos) into a dataset; bad files become ingest_errors rows."""
    if manifest is not None:
        from ingest.objects import location

        try:
            found = location(manifest).is_file()
        except OSError as e:  # an object the credentials may not read
            fail(f"cannot read manifest {manifest}: {e}")
        if not found:
            fail(f"manifest not found: {manifest}")
    _check_encoder(encoder)
    wh = open_warehouse(root)
    try:
        report = wh.ingest(
            paths,
            dataset=dataset,
            encoder=encoder,
            manifest=manifest,
            batch_size=batch_size,
            workers=workers,
            part_rows=part_rows,
            progress=not quiet,
            video_options={"fps": fps, "max_frames": max_frames},
            analyzers=analyzers,
            **({"engine": "ray", "ray_address": None if ray == "auto" else ray} if ray else {}),
        )
    except (ValueError, KeyError, FileNotFoundError) as e:
        fail(str(e))
    finally:
        wh.close()
    typer.echo(str(report))
    for err in report.error_samples[:10]:
        typer.echo(f"  error: {err['path']}: {err['reason']}", err=True)
    if report.errors > 10:
        typer.echo(f"  ... {report.errors - 10} more: pixql errors --dataset {dataset}", err=True)


def _check_encoder(encoder: str | None) -> None:
    """Refuse an encoder that cannot load before anything is opened or read."""
    if encoder:
        from encoders import check_encoder_spec

        try:
            check_encoder_spec(encoder)
        except ValueError as e:
            fail(f"--encoder: {e}")


@app.command()
def embed(
    dataset: str = typer.Option(..., "--dataset", "-d"),
    encoder: str = typer.Option(..., "--encoder", "-e"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    root: Optional[Path] = RootOption,
):
    """Add vectors from a second encoder to every asset of a dataset.

    With another preprocessing setting of the dataset's own encoder (`imagenet-lite0:letterbox`)
    it re-embeds the dataset: that becomes the dataset's encoder, and every concept on the old
    setting gets a new version on the new vectors (old versions stay as they were).
    """
    _check_encoder(encoder)
    wh = open_warehouse(root, must_exist=True)
    moved = []
    try:
        report = wh.embed(dataset, encoder, progress=not quiet)
        from concepts import reembed

        moved = reembed.after_embed(wh, dataset, encoder)
    except (ValueError, KeyError, FileNotFoundError) as e:
        fail(str(e))
    finally:
        wh.close()
    typer.echo(str(report))
    for line in moved:
        typer.echo(line)


@app.command()
def sql(
    query: str = typer.Argument(..., help="SQL over coactive_table, coactive_table_adv, ..."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json | parquet"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    root: Optional[Path] = RootOption,
):
    """Run one SQL query and print the result."""
    if fmt not in ("table", "csv", "json", "parquet"):
        fail(f"unknown format {fmt!r}: use table, csv, json or parquet")
    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        rel = wh.sql(query)
        if rel is None:
            fail("statement returned no rows (pixql sql runs queries)")
        print_relation(rel, fmt, output)
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):
            fail(str(e))
        raise
    finally:
        wh.close()


@app.command()
def shell(root: Optional[Path] = RootOption):
    """Interactive SQL prompt on the warehouse views (history in <root>/.pixql_history)."""
    from .shell import run_shell

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        run_shell(wh)
    finally:
        wh.close()


@app.command()
def datasets(root: Optional[Path] = RootOption):
    """List datasets with asset, encoder and error counts."""
    wh = open_warehouse(root, read_only=True, must_exist=True)
    print_relation(wh.datasets(), "table", None)
    wh.close()


@app.command()
def errors(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    fmt: str = typer.Option("table", "--format", "-f"),
    root: Optional[Path] = RootOption,
):
    """List files that could not be ingested, with the reason."""
    wh = open_warehouse(root, read_only=True, must_exist=True)
    print_relation(wh.errors(dataset), fmt, None)
    wh.close()


@app.command()
def demo(
    root: Optional[Path] = RootOption,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Build a warehouse from the photos shipped in scikit-image and scikit-learn and query it."""
    from .demo import run_demo

    run_demo(resolve_root(root), progress=not quiet)
