"""Erasure: remove assets, videos and datasets from every place the warehouse holds them.

`erase(wh, selection, ...)` (selection from `erasure_select.select`):

1. journal row `prepared` (erasure_files.py);
2. every asset, vector and analyzer part holding a selected row is written
   again without it, as a new file (parts are immutable; a reader of the old
   view keeps the old file until the commit);
3. ONE catalog transaction: the parts swapped, asset/embedding/analysis/video
   rows gone, labels withdrawn (each affected concept gets a next version that
   records how many), feedback gone, moderation cache entries of the hashes
   gone, decisions keep their audit row with the subject replaced by its
   tombstone and no comment, query results naming the content withdrawn,
   ids and paths scrubbed from job, run, task and query text, tombstones
   written, score caches rebuilt on the new parts (so no query reads scores
   misaligned with them), views rebuilt, and the journal row `committed` with
   the old files to remove;
4. the old files go (parts, score files, raw vector copies, thumbnails,
   uploads, withdrawn results, an erased dataset's directory), the journal
   row goes, and the database is CHECKPOINTed (`pixql vacuum` rewrites it).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import catalog, concept_cache, erasure_scores, score_merge, tombstones
from .erasure_files import commit_intent, crash_point, finish, prepare, results_naming, sidecars
from .erasure_select import Selection
from . import vector_store
from .storage import atomic_write_parquet

ERASED = "[erased]"
# Text that may quote an erased id or path (a query's SQL, a job's parameters ...).
SCRUB = {"queries": ["query", "error"], "jobs": ["params", "counters", "error"],
         "ingest_runs": ["sources", "error"], "moderation_tasks": ["request", "result", "error"],
         "moderation_decisions": ["reasons"], "webhook_deliveries": ["error"]}


@dataclass
class ErasureReport:
    erasure_id: str | None
    dry_run: bool
    matched: dict
    removed: dict = field(default_factory=dict)
    block: bool = False
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        m = ", ".join(f"{v} {k}" for k, v in self.matched.items() if v) or "nothing"
        if self.dry_run:
            return f"would delete {m}"
        done = ", ".join(f"{k}: {v}" for k, v in self.removed.items() if v)
        return f"deleted {m} (erasure {self.erasure_id}{', blocked' if self.block else ''}); removed {done or 'nothing'}"


def erase(wh, sel: Selection, reason: str | None = None, who: str | None = None, block: bool = False,
          dry_run: bool = False) -> ErasureReport:
    report = ErasureReport(None, dry_run, sel.counts(), block=block, reason=reason)
    if dry_run or sel.empty:
        return report
    # The whole erasure holds the write lock: no ingest commits into the parts being rewritten; and
    # no score merge writes segments from the rows before it meanwhile.
    with score_merge.paused(wh.layout.db_path), wh.write_lock:
        return _erase(wh, sel, report, reason, who, block)


def _erase(wh, sel: Selection, report: ErasureReport, reason, who, block) -> ErasureReport:
    eid = uuid.uuid4().hex[:16]
    report.erasure_id = eid
    root = wh.root
    prepare(wh, eid)
    crash_point("prepared")
    con = wh.cursor()
    ids = list(sel.assets)
    rewrites = _rewrite_parts(con, wh, ids, sel.datasets)
    crash_point("parts_written")
    removed: dict[str, int] = {}
    with wh.transaction(con=con) as tx:
        old_order = catalog.part_paths(con, "assets")
        rows_of = catalog.part_rows(con, "assets")
        old_files = _swap_parts(con, root, rewrites, removed)
        paths = {a["path"] for a in sel.assets.values()} | {v["path"] for v in sel.videos.values()}
        shas = {a["sha256"] for a in sel.assets.values() if a["sha256"]} | \
               {v["sha256"] for v in sel.videos.values() if v["sha256"]}
        removed["assets"] = _delete_where(con, "assets", "coactive_image_id", ids)
        _delete_where(con, "embeddings", "coactive_image_id", ids)
        _delete_where(con, "analyses", "coactive_image_id", ids)
        removed["videos"] = _delete_where(con, "videos", "coactive_video_id", list(sel.videos))
        removed["ingest_errors"] = _delete_where(con, "ingest_errors", "path", sorted(paths))
        # A client may name an erased dataset by its UUID later: its tombstone keeps both names for it.
        dataset_uuids = [(d, catalog.dataset_uuid(con, d)) for d in sel.datasets]
        for d in sel.datasets:
            for table, col in (("datasets", "name"), ("dataset_analyzers", "dataset"), ("ingest_errors", "dataset"),
                               ("ingest_runs", "dataset")):
                removed[table] = removed.get(table, 0) + _delete_where(con, table, col, [d])
            old_files.append(str(wh.layout.dataset_dir(d).relative_to(root)))
        removed["labels"], derived = _withdraw_labels(con, eid, ids)
        removed["feedback"] = _delete_where(con, "moderation_feedback", "coactive_image_id", ids)
        removed["asset_metadata"] = _delete_where(con, "asset_metadata", "subject_id", ids + list(sel.videos))
        removed["moderation_cache"] = _delete_where(con, "moderation_cache", "sha256", sorted(shas))
        subjects = [(a["media_type"], i, a["sha256"]) for i, a in sel.assets.items()] + \
                   [("video", v, x["sha256"]) for v, x in sel.videos.items()] + [("dataset", d, None) for d in sel.datasets] + \
                   [("dataset", u, None) for _, u in dataset_uuids if u]
        stones = tombstones.record(con, eid, subjects, block, reason, who)
        removed["tombstones"] = len(stones)
        removed["decisions"] = _anonymise_decisions(con, stones)
        needles = set(ids) | set(sel.videos) | paths
        withdrawn = results_naming(con, root, needles | shas)
        if withdrawn:
            con.execute(f"UPDATE catalog.queries SET withdrawn = ? WHERE {catalog.in_list('query_id')}",
                        [f"withdrawn by erasure {eid}" + (f": {reason}" if reason else ""), withdrawn])
            old_files += [f"results/{q}.parquet" for q in withdrawn]
        removed["results_withdrawn"] = len(withdrawn)
        _scrub(con, needles | shas)
        masks = {part["path"]: mask for part, _, _, mask in rewrites if part["kind"] == "assets"}
        renamed = {part["path"]: new for part, new, _, _ in rewrites if part["kind"] == "assets"}
        before = set(concept_cache.segment_files(con))
        old_scores, removed["score_caches"] = erasure_scores.filter_caches(con, root, old_order, rows_of, masks,
                                                                            renamed, derived)
        segments = concept_cache.refresh(con, root)
        after = {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()} | set(segments)
        old_files += sorted((before | old_scores) - after)
        for aid in ids:
            old_files += [str(p.relative_to(root)) for p in (root / "thumbnails").glob(f"{aid}-*.jpg")]
        old_files += _unreferenced_uploads(con, root, paths)
        commit_intent(con, eid, old_files)
        tx.rebuild_views()
        tx.data_changed()  # moderation decisions and videos, which query sandboxes copy
        crash_point("before_commit")
    crash_point("committed")
    removed["files"] = finish(wh, eid, old_files)
    removed["checkpointed"] = int(checkpoint(con))
    report.removed = removed
    return report


def checkpoint(con) -> bool:
    """Fold the WAL into the database file now; False while another cursor is mid-transaction
    (DuckDB then checkpoints by itself later; `pixql vacuum` is the guarantee)."""
    import duckdb

    try:
        con.execute("CHECKPOINT")
        return True
    except duckdb.TransactionException:
        return False


def _rewrite_parts(con, wh, ids: list[str], datasets: list[str]) -> list[tuple]:
    """Write every part holding a selected row again without it.

    Returns [(old part row, new path | None, rows kept, keep mask)]."""
    affected = con.execute(
        "SELECT path, dataset, kind, encoder, row_count, run_id, created_dt FROM catalog.parts WHERE path IN ("
        f" SELECT part FROM catalog.assets WHERE {catalog.in_list('coactive_image_id', '$ids')} UNION"
        f" SELECT part FROM catalog.embeddings WHERE {catalog.in_list('coactive_image_id', '$ids')} UNION"
        f" SELECT part FROM catalog.analyses WHERE {catalog.in_list('coactive_image_id', '$ids')})"
        f" OR {catalog.in_list('dataset', '$ds')} ORDER BY created_dt, path", {"ids": ids, "ds": datasets}).fetchall()
    keys = ["path", "dataset", "kind", "encoder", "row_count", "run_id", "created_dt"]
    drop = pa.array(ids, pa.string())
    out = []
    for r in affected:
        part = dict(zip(keys, r))
        if part["dataset"] in datasets:
            out.append((part, None, 0, np.zeros(part["row_count"], bool)))
            continue
        src = wh.root / part["path"]
        table = pq.read_table(src)
        keep = pc.invert(pc.is_in(table.column("coactive_image_id"), value_set=drop))
        kept = table.filter(keep)
        if kept.num_rows == table.num_rows:
            continue
        new = None
        if kept.num_rows:
            new_path = wh.layout.new_part_path(src.parent)
            if part["kind"] == "vectors":  # the compact form, whatever form the old part had
                vector_store.write_table(vector_store.conform(kept), new_path)
            else:
                atomic_write_parquet(kept, new_path)
            new = str(new_path.relative_to(wh.root))
            crash_point("part_written")
        out.append((part, new, kept.num_rows, keep.to_numpy(zero_copy_only=False).astype(bool)))
    return out


def _swap_parts(con, root, rewrites, removed: dict) -> list[str]:
    old_files = []
    for part, new, n, _ in rewrites:
        old = part["path"]
        con.execute("DELETE FROM catalog.parts WHERE path = ?", [old])
        if new is not None:
            catalog.insert_part(con, new, part["dataset"], part["kind"], part["encoder"], n, part["run_id"],
                                part["created_dt"])  # same created_dt: the part keeps its place in view order
            for table in ("assets", "embeddings", "analyses"):
                con.execute(f"UPDATE catalog.{table} SET part = ? WHERE part = ?", [new, old])
            removed["parts_rewritten"] = removed.get("parts_rewritten", 0) + 1
        else:
            removed["parts_dropped"] = removed.get("parts_dropped", 0) + 1
        old_files.append(old)
        if part["kind"] == "vectors":
            old_files += sidecars(root, part["encoder"], old)
    return old_files


def _delete_where(con, table: str, column: str, values: list) -> int:
    if not values:
        return 0
    return con.execute(f"DELETE FROM catalog.{table} WHERE {catalog.in_list(column)}", [values]).fetchone()[0]


def _withdraw_labels(con, eid: str, ids: list[str]) -> int:
    """Delete the labels of erased assets; each concept that had some gets a next version saying so.

    The new version keeps the head (a retrain refits without the withdrawn labels:
    `pixql concepts update`); its `training` records what was withdrawn and why.
    """
    counts = con.execute(f"SELECT concept, count(*) FROM catalog.concept_labels WHERE {catalog.in_list('coactive_image_id')}"
                         " GROUP BY concept ORDER BY concept", [ids]).fetchall() if ids else []
    if not counts:
        return 0, {}
    _delete_where(con, "concept_labels", "coactive_image_id", ids)
    cols = ("kind, encoder, vector_column, dim, weights, scale, bias, link, threshold, prompts, negative_prompts")
    now = catalog.now()
    derived = {}
    for concept, n in counts:
        row = con.execute("SELECT latest_version FROM catalog.concepts WHERE name = ?", [concept]).fetchone()
        if row is None or not row[0]:
            continue
        v = row[0]
        note = json.dumps({"derived_from": v, "change": "labels withdrawn by erasure", "labels_withdrawn": n,
                           "erasure_id": eid})
        con.execute(f"INSERT INTO catalog.concept_versions (concept, version, {cols}, training, created_dt) "
                    f"SELECT concept, version + 1, {cols}, json_merge_patch(coalesce(training, '{{}}'), ?), ? "
                    "FROM catalog.concept_versions WHERE concept = ? AND version = ?", [note, now, concept, v])
        con.execute("UPDATE catalog.concepts SET latest_version = ?, updated_dt = ? WHERE name = ?",
                    [v + 1, now, concept])
        derived[(concept, v + 1)] = v  # the same head: the same (filtered) scores
    return sum(n for _, n in counts), derived


def _anonymise_decisions(con, stones: dict[str, str]) -> int:
    """Decisions keep who decided what and when; the subject becomes its tombstone, the comment goes."""
    if not stones:
        return 0
    # One join against the unnested mapping, not one UPDATE (a table scan) per erased subject.
    return con.execute(
        "UPDATE catalog.moderation_decisions SET subject_id = m.stone, comment = NULL "
        "FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS subject, unnest(CAST(? AS VARCHAR[])) AS stone) m "
        "WHERE moderation_decisions.subject_id = m.subject",
        [list(stones), [f"erased:{t}" for t in stones.values()]]).fetchone()[0]


def _scrub(con, needles: set[str], chunk: int = 200) -> None:
    """Replace erased ids and paths quoted in free text (SQL of queries, job parameters ...)."""
    import re

    items = sorted(needles, key=len, reverse=True)  # a path before the id it may contain
    for i in range(0, len(items), chunk):
        pattern = "|".join(re.escape(x) for x in items[i:i + chunk])
        # An async moderation request may carry the bytes themselves (base64): the whole
        # request goes when its result names the content; the result keeps its verdicts.
        con.execute("UPDATE catalog.moderation_tasks SET request = NULL WHERE finished_dt IS NOT NULL AND ("
                    "regexp_matches(CAST(result AS VARCHAR), ?) OR regexp_matches(CAST(request AS VARCHAR), ?))",
                    [pattern, pattern])
        for table, cols in SCRUB.items():
            for col in cols:
                con.execute(f"UPDATE catalog.{table} SET {col} = regexp_replace(CAST({col} AS VARCHAR), ?, ?, 'g') "
                            f"WHERE regexp_matches(CAST({col} AS VARCHAR), ?)", [pattern, ERASED, pattern])


def _unreferenced_uploads(con, root, paths: set[str]) -> list[str]:
    """Erased files stored under uploads/ that no remaining asset or video points at."""
    out = []
    uploads = (root / "uploads").resolve()
    for p in paths:
        try:
            rel = Path(p).resolve().relative_to(uploads)
        except ValueError:
            continue
        used = con.execute("SELECT (SELECT count(*) FROM catalog.assets WHERE path = ?) + "
                           "(SELECT count(*) FROM catalog.videos WHERE path = ?)", [p, p]).fetchone()[0]
        if not used:
            out.append(str(Path("uploads") / rel))
    return out
