"""Where analyzer results go: Parquet parts under datasets/<d>/analyzers/<name>/ plus catalog rows.

`AnalysisBuffer` collects results until the caller flushes; `write` puts the
parts on disk (atomically) and `commit` inserts their `catalog.parts` (kind
'analyzer') and `catalog.analyses` rows inside the caller's transaction, so
analyzer columns appear together with the assets they describe.
"""
from __future__ import annotations

import json

import pyarrow as pa

from warehouse import catalog
from warehouse.storage import atomic_write_parquet

from .base import Analyzer


def describe(con, analyzers: list[Analyzer]) -> None:
    """Record the analyzers' versions and columns (inside the caller's transaction)."""
    now = catalog.now()
    for an in analyzers:
        catalog.insert(con, "analyzers", dict(name=an.name, version=an.version, columns=json.dumps(an.sql_types),
                                              created_dt=now),
                       on_conflict="ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                                   "columns = excluded.columns")


def register(con, dataset: str, analyzers: list[Analyzer]) -> None:
    """Record the analyzers and that `dataset` uses them (inside the caller's transaction)."""
    now = catalog.now()
    describe(con, analyzers)
    for an in analyzers:
        catalog.insert(con, "dataset_analyzers", dict(dataset=dataset, analyzer=an.name, created_dt=now),
                       on_conflict="ON CONFLICT DO NOTHING")


def dataset_analyzers(con, dataset: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT analyzer FROM catalog.dataset_analyzers WHERE dataset = ? ORDER BY created_dt, analyzer", [dataset]
    ).fetchall()]


def analyzed_ids(con, dataset: str, analyzer: str) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT x.coactive_image_id FROM catalog.analyses x JOIN catalog.assets a USING (coactive_image_id) "
        "WHERE a.dataset = ? AND x.analyzer = ?",
        [dataset, analyzer],
    ).fetchall()}


class AnalysisBuffer:
    def __init__(self):
        self.rows: dict[str, list[dict]] = {}
        self.schemas: dict[str, pa.Schema] = {}

    def add(self, analyzer: Analyzer, ids: list[str], results: list[dict]) -> None:
        if len(ids) != len(results):
            raise RuntimeError(f"analyzer {analyzer.name} returned {len(results)} results for {len(ids)} images")
        self.schemas[analyzer.name] = analyzer.part_schema()
        self.rows.setdefault(analyzer.name, []).extend(
            {"coactive_image_id": i, **r} for i, r in zip(ids, results)
        )

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def write(self, layout, dataset: str) -> list[tuple[str, object, list[str]]]:
        """Write one part per analyzer; return (analyzer, path, ids) for `commit`."""
        written = []
        for name, rows in self.rows.items():
            if not rows:
                continue
            p = layout.new_part_path(layout.analyzers_dir(dataset, name))
            atomic_write_parquet(pa.Table.from_pylist(rows, schema=self.schemas[name]), p)
            written.append((name, p, [r["coactive_image_id"] for r in rows]))
        return written

    def clear(self) -> None:
        self.rows = {}


def commit(con, root, dataset: str, run_id: str, written, now) -> None:
    """Catalog rows for written parts; call inside the transaction that commits the assets."""
    for name, p, ids in written:
        rel = str(p.relative_to(root))
        catalog.insert_part(con, rel, dataset, "analyzer", name, len(ids), run_id, now)
        catalog.insert(con, "analyses", [dict(coactive_image_id=i, analyzer=name, part=rel) for i in ids])
