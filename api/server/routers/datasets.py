"""`/api/v1/datasets`: datasets with their counts, and the tables (user views) with their columns."""
from __future__ import annotations

from fastapi import APIRouter, Query

from warehouse import catalog

from ..deps import Reader, State
from ..errors import NotFound
from ..models import Dataset, IngestErrorOut, Table

router = APIRouter(prefix="/api/v1", tags=["datasets"])


def _tables(state) -> list[Table]:
    cur = state.cursor()
    out = []
    for name in state.engine.user_views():
        cols = cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [name],
        ).fetchall()
        out.append(Table(name=name, columns=[{"name": c, "type": t} for c, t in cols]))
    return out


def _datasets(state, name: str | None = None) -> list[Dataset]:
    # The SDK's wh.datasets() uses the shared connection; request threads use their own cursor.
    rows = catalog.dataset_summaries(state.cursor(), name).fetchall()
    tables = _tables(state)
    out = []
    for dataset, encoder, created, assets, encoders, errors in rows:
        out.append(Dataset(dataset_id=dataset, encoder=encoder, created_dt=created, asset_count=assets,
                           encoders=encoders or [], error_count=errors, tables=tables))
    return out


@router.get("/datasets", response_model=list[Dataset])
def list_datasets(state: State, who: Reader):
    return _datasets(state)


@router.get("/datasets/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, state: State, who: Reader):
    found = _datasets(state, dataset_id)
    if not found:
        raise NotFound(f"unknown dataset {dataset_id!r}")
    return found[0]


@router.get("/datasets/{dataset_id}/errors", response_model=list[IngestErrorOut])
def dataset_errors(dataset_id: str, state: State, who: Reader, limit: int = Query(100, ge=1, le=10_000)):
    """Files of this dataset that could not be ingested, with the reason."""
    con = state.cursor()
    if not catalog.dataset_exists(con, dataset_id):
        raise NotFound(f"unknown dataset {dataset_id!r}")
    return catalog.dataset_errors(con, dataset_id, limit)


@router.get("/tables", response_model=list[Table])
def list_tables(state: State, who: Reader):
    """The views SQL may name, with their columns."""
    return _tables(state)
