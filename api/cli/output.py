"""Printing query results: a rich table for people, CSV/JSON/Parquet for programs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_CELL = 60


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return "[" + ", ".join(_cell(x) for x in v[:4]) + f", ... ({len(v)} items)]"
    if isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    return s if len(s) <= MAX_CELL else s[: MAX_CELL - 1] + "…"


def _json_text(v) -> str:
    return json.dumps(v.to_list() if hasattr(v, "to_list") else v, default=str)


def print_relation(rel, fmt: str, output: Path | None, max_rows: int = 1000) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = rel.arrow()
        if hasattr(table, "read_all"):
            table = table.read_all()
        if output:
            pq.write_table(table, output)
        else:
            import io

            buf = io.BytesIO()
            pq.write_table(table, buf)
            sys.stdout.buffer.write(buf.getvalue())
        return
    if fmt in ("csv", "json"):
        df = rel.pl()
        if fmt == "csv":
            # CSV has no nested values: lists, arrays and structs become JSON text.
            import polars as pl

            nested = [c for c, t in df.schema.items() if t.is_nested()]
            if nested:
                df = df.with_columns(
                    pl.col(c).map_elements(_json_text, return_dtype=pl.String) for c in nested
                )
        text = df.write_csv() if fmt == "csv" else df.write_json()
        if output:
            Path(output).write_text(text)
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    columns = rel.columns
    rows = rel.fetchmany(max_rows + 1)
    table = Table(show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows[:max_rows]:
        table.add_row(*(_cell(v) for v in r))
    console = Console(file=open(output, "w") if output else None, width=None if output else None)
    console.print(table)
    more = " (first {max_rows} shown)" if len(rows) > max_rows else ""
    console.print(f"{min(len(rows), max_rows)} row(s){more}")
