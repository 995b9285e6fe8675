"""Compaction: merging a dataset's small Parquet parts into few large ones, every answer unchanged.

Ingest commits a part every few hundred rows, so a warehouse grown by many
small ingests holds thousands of parts; every query (and every view build)
then opens each file.  `compact` merges, per dataset, the small parts of each
kind (assets, vectors per encoder, analyzer results per analyzer) in catalog
order into parts of up to `part_rows` rows.  Rows keep their values and their
order, so asset ids, vectors and analyzer columns do not change; merged vector
parts are written in `vector_store`'s compact form (float16), so a part of the
older FLOAT form is rounded to float16 on the way (scores move by under 1e-3,
the budget that form was chosen by) and needs no raw copy any more.

Materialised concept scores (`concept_cache.py`) are aligned row by row with
`pixql_internal.assets` in catalog part order; a merge moves rows in that
order, so every complete cache is rewritten by slicing its old files per part
and concatenating the slices in the new part order (no rescoring: the very
same float64 values), and the combined segments are rebuilt from them at
commit.  A cache that was not complete is dropped (its macro serves until the
next refresh).  Raw vector copies (`scores/_vectors/`) of merged old-form parts
are retired with them: the merged part is memory-mapped as it is.

Crash safety, through the intent journal of `erasure_files` (row `compact-<id>`):
the row is committed `prepared` first, then the new files are written (atomic
writes, unreferenced until commit), then ONE catalog transaction (parts, the
`part` column of assets/embeddings/analyses, the cache rows, views rebuilt, the
row turned `retired` with the replaced files).  A kill before COMMIT leaves the
old state and a `prepared` row: the next writable open sweeps the new files
(`erasure_files.recover`).  After COMMIT the new state holds; the replaced files
stay `compact_retire_s` seconds (readers that began before the commit still
read them), then `remove_retired` deletes them (after a compaction, on open).
A re-run merges whatever is still small.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import catalog, concept_cache, erasure_files, vector_store
from .storage import TMP_PREFIX, _fsync_dir

KINDS = ("assets", "vectors", "analyzer")
# A merged part's row groups: big enough for DuckDB's parallel scans, small enough to buffer
# (vector rows are kilobytes each, so bytes bound them too).
ROW_GROUP_ROWS = 65_536
ROW_GROUP_BYTES = 64 << 20


@dataclass
class Merge:
    kind: str
    encoder: str | None
    sources: list[str]
    rows: int
    created_dt: object
    run_id: str | None
    path: str = ""


@dataclass
class CompactReport:
    dataset: str
    parts_before: int = 0
    parts_after: int = 0
    parts_merged: int = 0
    parts_written: int = 0
    caches_rewritten: int = 0
    caches_dropped: int = 0
    files_removed: int = 0
    seconds: float = 0.0
    merges: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("merges")
        return d

    def __str__(self) -> str:
        if not self.parts_merged:
            return f"dataset {self.dataset!r}: nothing to compact ({self.parts_before} parts)"
        return (f"dataset {self.dataset!r}: {self.parts_before} parts -> {self.parts_after} "
                f"({self.parts_merged} merged into {self.parts_written}; {self.caches_rewritten} score caches "
                f"carried over, {self.caches_dropped} dropped) in {self.seconds:.1f}s")


def _parts(con, dataset: str) -> list[tuple]:
    return con.execute(
        "SELECT kind, encoder, path, row_count, created_dt, run_id FROM catalog.parts WHERE dataset = ? "
        "ORDER BY created_dt, path", [dataset]).fetchall()


def small_part_counts(con, part_rows: int) -> dict[str, int]:
    """dataset -> the most small parts (< part_rows rows) of any one kind/encoder it has."""
    rows = con.execute(
        "SELECT dataset, max(n) FROM (SELECT dataset, kind, encoder, count(*) AS n FROM catalog.parts "
        "WHERE row_count < ? GROUP BY ALL) GROUP BY dataset", [part_rows]).fetchall()
    return {d: int(n) for d, n in rows}


def plan(con, dataset: str, part_rows: int) -> list[Merge]:
    """Groups of consecutive small parts (per kind and encoder, catalog order) of up to `part_rows` rows."""
    by_key: dict[tuple, list[tuple]] = {}
    for kind, enc, path, n, created, run in _parts(con, dataset):
        if kind in KINDS and n < part_rows:
            by_key.setdefault((kind, enc), []).append((path, n, created, run))
    merges = []
    for (kind, enc), parts in by_key.items():
        group: list[tuple] = []

        def close():
            if len(group) > 1:
                runs = {g[3] for g in group}
                merges.append(Merge(kind, enc, [g[0] for g in group], sum(g[1] for g in group), group[0][2],
                                    runs.pop() if len(runs) == 1 else None))

        for p in parts:
            if group and sum(g[1] for g in group) + p[1] > part_rows:
                close()
                group = []
            group.append(p)
        close()
    return merges


# -- writing the new files ----------------------------------------------------------------
def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        if f.name in t.column_names:
            c = t.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:  # an older part without a column the views read as NULL anyway
            cols.append(pa.nulls(len(t), f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _write_merged(root: Path, sources: list[str], dest: Path) -> int:
    schema = pa.unify_schemas([pq.read_schema(root / s) for s in sources], promote_options="permissive")
    tmp = dest.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{dest.name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows, buf, held, size = 0, [], 0, 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for s in sources:
            t = _conform(pq.read_table(root / s), schema)
            buf.append(t)
            held += len(t)
            size += t.nbytes
            if held >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                w.write_table(pa.concat_tables(buf), row_group_size=held)
                rows += held
                buf, held, size = [], 0, 0
        if buf:
            w.write_table(pa.concat_tables(buf), row_group_size=held)
            rows += held
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    return rows


def _write_merged_vectors(root: Path, sources: list[str], dest: Path) -> int:
    """The sources' rows, in order, as one vectors part in the compact form (streamed part by part)."""
    tables = [vector_store.conform(pq.read_table(root / sources[0]))]
    schema = tables[0].schema

    def each():
        yield tables.pop()
        for s in sources[1:]:
            t = vector_store.conform(pq.read_table(root / s))
            yield t.select(schema.names).cast(schema)

    return vector_store.write_tables(each(), schema, dest)


# -- the score caches ------------------------------------------------------------------------
def _rewrite_caches(con, root: Path, old_parts: list[str], new_parts: list[str], rows_of: dict[str, int],
                    merges: list[Merge]) -> tuple[int, int, list[str]]:
    """Carry every complete cache over to the new part order; (rewritten, dropped, retired files)."""
    sources_of = {m.path: m.sources for m in merges if m.kind == "assets"}
    vec_merges = [m for m in merges if m.kind == "vectors"]
    heads = {(h.concept, h.version): h for h in concept_cache.load_heads(con)}
    keys = con.execute("SELECT DISTINCT concept, version FROM catalog.concept_scores ORDER BY 1, 2").fetchall()
    rewritten = dropped = 0
    retired: list[str] = []
    for concept, version in keys:
        rows = concept_cache.cache_rows(con, concept, version)
        retired += [r[1] for r in rows]
        covered, seen = concept_cache._covered(rows)
        head = heads.get((concept, version))
        seen = set(seen)
        ok = head is not None and covered == old_parts and all((root / r[1]).exists() for r in rows)
        for m in vec_merges:
            hit = seen & set(m.sources)
            if hit and len(hit) != len(m.sources):
                ok = False  # a cache that saw part of a merge cannot say what the merged part holds
            elif hit:
                seen = (seen - hit) | {m.path}
        concept_cache.drop_cache(con, concept, version)
        if not ok:
            dropped += 1
            continue
        probs = np.concatenate([
            pq.read_table(root / r[1], columns=["prob"]).column(0).to_numpy(zero_copy_only=False).astype(np.float64)
            for r in rows])
        starts, i = {}, 0
        for p in old_parts:
            starts[p] = i
            i += rows_of[p]
        pieces = []
        for p in new_parts:
            for s in sources_of.get(p, [p]):
                pieces.append(probs[starts[s]: starts[s] + rows_of[s]])
        new = np.concatenate(pieces) if pieces else np.zeros(0)
        concept_cache.write_cache(con, root, head, 0, new, new_parts, sorted(seen))
        rewritten += 1
    return rewritten, dropped, retired


# -- the whole operation -----------------------------------------------------------------------
def compact(wh, dataset: str | None = None, part_rows: int | None = None,
            on_step: Callable[[str], None] | None = None) -> list[CompactReport]:
    """Merge the small parts of `dataset` (every dataset if None); one report per dataset.

    Holds the warehouse write lock throughout, so no other writer interleaves;
    queries keep reading the old parts until the one commit.
    """
    from .settings import current

    part_rows = int(part_rows or current().compact_part_rows)
    if part_rows < 2:
        raise ValueError(f"part_rows must be at least 2, not {part_rows}")
    step = on_step or (lambda _: None)
    with wh.write_lock:
        con = wh.cursor()
        names = [dataset] if dataset else [r[0] for r in con.execute(
            "SELECT DISTINCT dataset FROM catalog.parts ORDER BY 1").fetchall()]
        if dataset and not catalog.dataset_exists(con, dataset):
            from .errors import NotFound

            raise NotFound(f"unknown dataset {dataset!r}")
        return [_compact_one(wh, con, name, part_rows, step) for name in names]


def _compact_one(wh, con, dataset: str, part_rows: int, step) -> CompactReport:
    started = time.perf_counter()
    root = wh.layout.root
    report = CompactReport(dataset, parts_before=len(_parts(con, dataset)))
    merges = plan(con, dataset, part_rows)
    report.merges = merges
    if not merges:
        report.parts_after = report.parts_before
        return report
    journal_id = f"compact-{uuid.uuid4().hex}"
    erasure_files.prepare(wh, journal_id)
    written: list[str] = []
    try:
        step("planned")
        layout = wh.layout
        for m in merges:
            if m.kind == "assets":
                d = layout.assets_dir(dataset)
            elif m.kind == "vectors":
                d = layout.vectors_dir(dataset, m.encoder)
            else:
                d = layout.analyzers_dir(dataset, m.encoder)
            dest = layout.new_part_path(d)
            m.path = str(dest.relative_to(root))
            written.append(m.path)
            n = _write_merged_vectors(root, m.sources, dest) if m.kind == "vectors" else \
                _write_merged(root, m.sources, dest)
            if n != m.rows:
                raise RuntimeError(f"compaction read {n} rows from {len(m.sources)} parts, the catalog says {m.rows}")
            step(f"wrote {m.kind}")

        old_segments = concept_cache.segment_files(con)
        old_parts = catalog.part_paths(con, "assets")
        rows_of = catalog.part_rows(con, "assets")
        step("committing")
        # Views only at commit: the scores are refreshed here, so the files the commit references are known.
        with wh.transaction(con=con) as tx:
            for m in merges:
                con.execute(f"DELETE FROM catalog.parts WHERE {catalog.in_list('path')}", [m.sources])
                catalog.insert_part(con, m.path, dataset, m.kind, m.encoder, m.rows, m.run_id, m.created_dt)
                if m.kind == "assets":
                    con.execute(f"UPDATE catalog.assets SET part = ? WHERE {catalog.in_list('part')}", [m.path, m.sources])
                elif m.kind == "vectors":
                    con.execute(f"UPDATE catalog.embeddings SET part = ? WHERE encoder = ? AND {catalog.in_list('part')}",
                                [m.path, m.encoder, m.sources])
                else:
                    con.execute(f"UPDATE catalog.analyses SET part = ? WHERE analyzer = ? AND {catalog.in_list('part')}",
                                [m.path, m.encoder, m.sources])
            new_parts = catalog.part_paths(con, "assets")
            rows_of.update({m.path: m.rows for m in merges if m.kind == "assets"})
            report.caches_rewritten, report.caches_dropped, retired = _rewrite_caches(
                con, root, old_parts, new_parts, rows_of, merges)
            segments = concept_cache.refresh(con, root)
            tx.rebuild_views()
            live = {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()} | set(segments)
            doomed = [s for m in merges for s in m.sources]
            doomed += [p for p in set(retired) | set(old_segments) if p not in live]
            for m in merges:
                if m.kind == "vectors":
                    for s in m.sources:
                        doomed += erasure_files.sidecars(root, m.encoder, s)
            erasure_files.retire(con, journal_id, doomed)
            step("before commit")
    except BaseException:
        # Not committed: the old state holds; what this attempt wrote goes (a kill leaves it to recover).
        erasure_files.abandon(wh, journal_id, written)
        raise
    step("committed")
    # The replaced files are unreferenced now; they go once no reader can still be on them:
    # score files as soon as no live reader began before the commit (`readers`), the rest after
    # `compact_retire_s`.
    report.files_removed = concept_cache.sweep(con, root) + erasure_files.remove_retired(con, root)
    step("removed")
    report.parts_merged = sum(len(m.sources) for m in merges)
    report.parts_written = len(merges)
    report.parts_after = len(_parts(con, dataset))
    report.seconds = time.perf_counter() - started
    return report


def maybe_compact(wh, dataset: str) -> CompactReport | None:
    """Compact `dataset` when it has more than the `compact_after_parts` setting of small parts (0: never)."""
    from .settings import current

    s = current()
    if s.compact_after_parts <= 0 or \
            small_part_counts(wh.cursor(), s.compact_part_rows).get(dataset, 0) <= s.compact_after_parts:
        with wh.write_lock:
            erasure_files.remove_retired(wh.cursor(), wh.root)  # earlier compactions' files, past their grace
        return None
    return compact(wh, dataset, s.compact_part_rows)[0]
