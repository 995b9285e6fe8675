"""`pixql compact`: merge a warehouse's small Parquet parts (warehouse/compaction.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import RootOption, app, open_warehouse


@app.command()
def compact(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset (default: all)."),
    part_rows: Optional[int] = typer.Option(
        None, "--part-rows", min=2, help="Rows per merged part; smaller parts are merged (default: the "
                                          "compact_part_rows setting, 100000)."),
    root: Optional[Path] = RootOption,
):
    """Merge small parts into large ones; asset ids, vectors, scores and query answers do not change."""
    wh = open_warehouse(root, must_exist=True)
    try:
        reports = wh.compact(dataset, part_rows)
    finally:
        wh.close()
    for r in reports:
        typer.echo(str(r))
