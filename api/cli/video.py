"""Video and analyzer commands: analyze, analyzers, videos, ocr-flags."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import RootOption, app, fail, open_warehouse
from .output import print_relation


@app.command()
def analyze(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset whose assets to analyze."),
    analyzers: str = typer.Option(..., "--analyzers", "-a", help="Comma list of nsfw, ocr, faces, nudity."),
    batch_size: int = typer.Option(16, "--batch-size"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    root: Optional[Path] = RootOption,
):
    """Add analyzer columns (nsfw_score, ocr_text, face_count, nudity_labels) to a dataset's assets
    that lack them; later ingests into the dataset run them too."""
    wh = open_warehouse(root, must_exist=True)
    try:
        report = wh.analyze(dataset, analyzers, batch_size=batch_size, progress=not quiet)
    except (ValueError, KeyError, FileNotFoundError) as e:
        fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    finally:
        wh.close()
    typer.echo(str(report))
    for err in report.error_samples[:10]:
        typer.echo(f"  error: {err['path']}: {err['reason']}", err=True)


@app.command("analyzers")
def list_analyzers(root: Optional[Path] = RootOption):
    """List the analyzers, their columns, whether they can run here, and the datasets using them."""
    from ingest.analyzers import NAMES, AnalyzerUnavailable, get_analyzer

    used: dict[str, list[str]] = {}
    path = Path(root) if root else None
    from .app import resolve_root

    if (resolve_root(path) / "pixql.duckdb").exists():
        wh = open_warehouse(path, read_only=True)
        for ds, name in wh.sql("SELECT dataset, analyzer FROM catalog.dataset_analyzers ORDER BY 1").fetchall():
            used.setdefault(name, []).append(ds)
        wh.close()
    for name in NAMES:
        try:
            an = get_analyzer(name)
            state, cols = an.version, ", ".join(an.sql_types)
        except AnalyzerUnavailable as e:
            state, cols = f"not installed: {e}", "-"
        datasets = ", ".join(used.get(name, [])) or "-"
        typer.echo(f"{name:7} columns: {cols:28} datasets: {datasets:20} {state}")


@app.command()
def videos(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json"),
    root: Optional[Path] = RootOption,
):
    """List ingested videos: duration, frame rate, size, codec, keyframes sampled, errors."""
    wh = open_warehouse(root, read_only=True, must_exist=True)
    sql = ("SELECT dataset, path, duration_ms, round(fps, 2) AS fps, width || 'x' || height AS size, codec, "
           "keyframes, video_error AS error FROM coactive_videos")
    try:
        rel = wh.sql(sql + " WHERE dataset = ? ORDER BY path", [dataset]) if dataset else wh.sql(sql + " ORDER BY dataset, path")
        print_relation(rel, fmt, None)
    finally:
        wh.close()


@app.command("ocr-flags")
def ocr_flags(
    set_: Optional[str] = typer.Option(None, "--set", help="FLAG=REGEX (RE2, case-insensitive): add or replace a flag."),
    description: Optional[str] = typer.Option(None, "--description", help="What the flag catches (with --set)."),
    disable: Optional[str] = typer.Option(None, "--disable", help="Switch a flag off."),
    reset: Optional[str] = typer.Option(None, "--reset", help="Drop your override of a flag (a default comes back)."),
    root: Optional[Path] = RootOption,
):
    """Show or change the patterns behind the `ocr_flags` column (threats, drug sales, contact details, ...)."""
    from warehouse.analyzer_sql import DEFAULT_OCR_PATTERNS, ocr_patterns

    changing = set_ or disable or reset
    wh = open_warehouse(root, read_only=not changing, must_exist=True)
    try:
        if set_:
            flag, sep, pattern = set_.partition("=")
            if not sep:
                fail("--set takes FLAG=REGEX")
            wh.set_ocr_flag(flag.strip(), pattern, description)
        if disable:
            wh.set_ocr_flag(disable.strip(), None)
        if reset:
            if not wh.reset_ocr_flag(reset.strip()):
                typer.echo(f"{reset}: no override to reset", err=True)
        for flag, (pattern, desc) in ocr_patterns(wh.cursor()).items():
            origin = "default" if DEFAULT_OCR_PATTERNS.get(flag, (None,))[0] == pattern else "custom"
            typer.echo(f"{flag} ({origin}): {desc}\n    {pattern}")
    except ValueError as e:
        fail(str(e))
    finally:
        wh.close()
