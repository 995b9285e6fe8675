"""Datasets as Coactive clients name them: by name or by id.

A dataset is named today; Coactive clients pass ids (`datasetId`).  When the
catalog gives datasets a `dataset_id` column, both resolve here; until then the
name is the id.  The concept and search routes ask only these two functions.
"""
from __future__ import annotations

from warehouse.errors import NotFound


def _has_ids(con) -> bool:
    return bool(con.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'catalog' AND table_name = 'datasets' "
        "AND column_name = 'dataset_id'").fetchone())


def dataset_name(wh, ref: str) -> str:
    """The name of the dataset `ref` names (its name or its id)."""
    con = wh.cursor()
    sql = "SELECT name FROM catalog.datasets WHERE name = ?"
    args = [ref]
    if _has_ids(con):
        sql += " OR CAST(dataset_id AS VARCHAR) = lower(?)"
        args.append(ref)
    row = con.execute(sql + " ORDER BY name = ? DESC LIMIT 1", args + [ref]).fetchone()
    if not row:
        raise NotFound(f"no dataset named {ref!r} (and no dataset with that id)")
    return row[0]


def dataset_public_id(wh, name: str | None, encoder: str | None = None) -> str:
    """The id a client sees for dataset `name`; for a concept of no dataset, its encoder's first dataset."""
    con = wh.cursor()
    if name is None:
        row = con.execute("SELECT name FROM catalog.datasets WHERE encoder = ? ORDER BY created_dt, name LIMIT 1",
                          [encoder]).fetchone() if encoder else None
        if not row:
            return ""
        name = row[0]
    if _has_ids(con):
        row = con.execute("SELECT CAST(dataset_id AS VARCHAR) FROM catalog.datasets WHERE name = ?", [name]).fetchone()
        if row and row[0]:
            return row[0]
    return name
