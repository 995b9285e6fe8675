"""The dataset id a Coactive client sees for a concept (its UUID; a concept of no dataset shows its
encoder's first dataset). A reference a client sends is resolved by `catalog.resolve_dataset`."""
from __future__ import annotations

from warehouse import catalog


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
