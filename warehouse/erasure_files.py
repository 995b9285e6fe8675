"""The file side of an erasure or a compaction: the intent journal, the files removed, the sweep after a kill.

`catalog.erasure_journal` holds one row per erasure (or compaction, `compact-<id>`) in progress:

* `prepared` (its own commit, before any file is written): a kill from here to
  the main commit leaves the old state; the new part and score files written
  meanwhile are orphans, which the next writable open sweeps (`recover`).
* `committed` (in the erasure's one catalog transaction, with the list of old
  files): queries see the new state; the files listed are removed, then the row.
  A kill before that ends is finished by `recover` on the next writable open.
* `retired` (a compaction's commit, with the replaced files): those files are
  not erased content, so they stay `compact_retire_s` seconds for readers
  whose snapshot began before the commit (another cursor of the same process
  with a half-read result binds its new queries in that older snapshot; a query
  worker may be mid-way through the old part list), then `remove_retired`
  deletes them and the row.  Until then no sweep takes them.

Sweeps with no age limit (`sweep_scores`) run only after a kill left a
`prepared` or `committed` row: every writable open would otherwise delete the
files such older snapshots still read.

Crash points for tests: `PIXQL_ERASURE_CRASH_AT=<point>` SIGKILLs the process there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import catalog
from .storage import TMP_PREFIX, safe_name

CRASH_ENV = "PIXQL_ERASURE_CRASH_AT"
CRASH_POINTS = ("prepared", "part_written", "parts_written", "before_commit", "committed", "files_half",
                "files_removed")


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# Journal rows of operations running in this process: another open of the same warehouse in this
# process (DuckDB shares the database) must not take them for a killed one.
LIVE: set[str] = set()


def prepare(wh, erasure_id: str) -> None:
    LIVE.add(erasure_id)
    with wh.transaction() as tx:
        tx.con.execute("INSERT INTO catalog.erasure_journal VALUES (?, 'prepared', NULL, ?)",
                       [erasure_id, catalog.now()])


def commit_intent(con, erasure_id: str, files: list[str]) -> None:
    """Inside the erasure's transaction: the old files to remove once it committed."""
    con.execute("UPDATE catalog.erasure_journal SET state = 'committed', files = ? WHERE erasure_id = ?",
                [json.dumps(sorted(set(files))), erasure_id])


def remove_files(root: Path, files: list[str]) -> int:
    """Remove files and directories (paths relative to `root`); a missing one is already done."""
    removed = 0
    half = len(files) // 2
    for i, rel in enumerate(files):
        if i == half:
            crash_point("files_half")
        p = root / rel
        try:
            if p.is_dir():
                shutil.rmtree(p)
                removed += 1
            elif p.exists() or p.is_symlink():
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def finish(wh, erasure_id: str, files: list[str]) -> int:
    n = remove_files(wh.root, files)
    crash_point("files_removed")
    with wh.transaction() as tx:
        tx.con.execute("DELETE FROM catalog.erasure_journal WHERE erasure_id = ?", [erasure_id])
    LIVE.discard(erasure_id)
    return n


def recover(con, root: Path) -> int:
    """On a writable open: finish committed erasures, forget interrupted ones (and compactions), sweep
    their files; remove the files of compactions retired long enough ago."""
    try:
        rows = con.execute("SELECT erasure_id, state, files FROM catalog.erasure_journal").fetchall()
    except Exception:  # a catalog before migration 6 (a read of an old file): nothing to do
        return 0
    interrupted = [r for r in rows if r[1] != RETIRED and r[0] not in LIVE]
    for eid, state, files in interrupted:
        if state == "committed":
            remove_files(root, json.loads(files or "[]"))
        con.execute("DELETE FROM catalog.erasure_journal WHERE erasure_id = ?", [eid])
    if interrupted:
        sweep_scores(con, root)
    remove_retired(con, root)
    return len(interrupted)


RETIRED = "retired"


def retire(con, journal_id: str, files: list[str]) -> None:
    """Inside a compaction's transaction: `files` are replaced, to be removed after the grace period."""
    con.execute("UPDATE catalog.erasure_journal SET state = ?, files = ?, created_dt = ? WHERE erasure_id = ?",
                [RETIRED, json.dumps(sorted(set(files))), catalog.now(), journal_id])
    LIVE.discard(journal_id)  # a retired row is never taken for a killed operation


def retired_files(con) -> set[str]:
    """Files replaced by a compaction and not yet removed: no sweep takes them."""
    try:
        rows = con.execute("SELECT files FROM catalog.erasure_journal WHERE state = ?", [RETIRED]).fetchall()
    except Exception:  # a catalog before migration 6
        return set()
    return {f for (files,) in rows for f in json.loads(files or "[]")}


def abandon(wh, journal_id: str, files: list[str]) -> None:
    """An operation that failed before its commit: remove the new files it wrote, and its row."""
    remove_files(wh.root, files)
    with wh.transaction() as tx:
        tx.con.execute("DELETE FROM catalog.erasure_journal WHERE erasure_id = ?", [journal_id])
    LIVE.discard(journal_id)


def remove_retired(con, root: Path, grace_s: float | None = None) -> int:
    """Remove the files of compactions retired more than `grace_s` (`compact_retire_s`) ago, and their rows."""
    from datetime import timedelta

    if grace_s is None:
        from .settings import current

        grace_s = current().compact_retire_s
    cutoff = catalog.now() - timedelta(seconds=grace_s)
    rows = con.execute("SELECT erasure_id, files FROM catalog.erasure_journal WHERE state = ? AND created_dt <= ?",
                       [RETIRED, cutoff]).fetchall()
    removed = 0
    for jid, files in rows:
        removed += remove_files(root, json.loads(files or "[]"))
        con.execute("DELETE FROM catalog.erasure_journal WHERE erasure_id = ?", [jid])
    return removed


def sweep_scores(con, root: Path) -> int:
    """Score files and raw vector copies nothing committed references (no age limit: call after a kill,
    when no writer is mid-way); files a compaction retired stay until their grace period ends."""
    from . import concept_cache, encoder_columns

    keep = retired_files(con)
    removed = concept_cache.sweep(con, root, min_age_s=-1e9, keep=keep)
    vec_parts = {Path(p).stem for p in catalog.part_paths(con, "vectors")}
    for base, pattern in ((root / "scores" / "_vectors", "*.npy"),
                          (root / "scores" / encoder_columns.ENCODER_DIR, "*.parquet")):
        if not base.exists():
            continue
        for p in base.rglob(pattern):
            if str(p.relative_to(root)) in keep:
                continue
            if p.name.split(".", 1)[0] not in vec_parts or p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def sidecars(root: Path, encoder: str | None, part: str) -> list[str]:
    """The files `concept_cache` made of a vector part: raw vector copies, the encoder's SQL columns."""
    from .encoder_columns import ENCODER_DIR

    if not encoder:
        return []
    out = []
    for d, suffix in ((root / "scores" / "_vectors" / safe_name(encoder), "npy"),
                      (root / "scores" / ENCODER_DIR / safe_name(encoder), "parquet")):
        if d.exists():
            out += [str(p.relative_to(root)) for p in d.glob(f"{Path(part).stem}.*.{suffix}")]
    return out


def results_naming(con, root: Path, needles: set[str]) -> list[str]:
    """Ids of queries (not yet withdrawn) whose result file holds any of `needles` in a text column."""
    if not needles:
        return []
    value_set = pa.array(sorted(needles), pa.string())
    hits = []
    # Any status: the server shows a query Complete as soon as its file is in
    # place, before its record says so (warehouse/queries.py, `_finish`).
    rows = con.execute("SELECT query_id FROM catalog.queries WHERE withdrawn IS NULL").fetchall()
    for (qid,) in rows:
        path = root / "results" / f"{qid}.parquet"
        if not path.is_file():
            continue
        try:
            pf = pq.ParquetFile(path)
            names = [f.name for f in pf.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            if names and any(pc.any(pc.is_in(pf.read(columns=[n]).column(0), value_set=value_set)).as_py()
                             for n in names):
                hits.append(qid)
        except Exception:  # an unreadable result cannot be served either: withdraw it to be safe
            hits.append(qid)
    return hits
