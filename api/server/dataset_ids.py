"""Datasets as Coactive clients name them: by name or by UUID, through `catalog.resolve_dataset`.

The concept and search routes take a `wh` handle; these two wrap the catalog's
one resolver (`catalog.resolve_dataset`, `catalog.dataset_uuid`) for them.
"""
from __future__ import annotations

from warehouse import catalog


def dataset_name(wh, ref: str) -> str:
    """The name of the dataset `ref` names (its name or its UUID); NotFound otherwise."""
    return catalog.resolve_dataset(wh.cursor(), ref)


def dataset_public_id(wh, name: str | None, encoder: str | None = None) -> str:
    """The id a client sees for dataset `name`; for a concept of no dataset, its encoder's first dataset."""
    con = wh.cursor()
    if name is None:
        row = con.execute("SELECT name FROM catalog.datasets WHERE encoder = ? ORDER BY created_dt, name LIMIT 1",
                          [encoder]).fetchone() if encoder else None
        if not row:
            return ""
        name = row[0]
    return catalog.dataset_uuid(con, name) or name
