"""`WarehouseCore`: a PixQL data directory opened at the storage layer.

It owns what the `warehouse` package alone can do: opening (catalog creation,
sweeping temporaries), the catalog-backed listings, `sql`, cursors, view
rebuilding and catalog writes.  Ingest, concepts and labels live in the layers
above; the user-facing `Warehouse` (`pixql/warehouse.py`) subclasses this
class and adds them, so nothing here imports upward.

`sql` returns DuckDB's own relation (with `params` too), so `.pl()`, `.df()`,
`.arrow()` and `.fetchall()` behave exactly as in DuckDB; while it is referenced
it counts as a reader of the files its views list (`readers`).  This is the
trusted local path: it runs SQL unsandboxed, like the DuckDB shell; the HTTP
API sandboxes.
"""
from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

import duckdb

from . import catalog, migrations, readers, retention
from .storage import Layout, default_root
from .errors import Forbidden, MissingFile
from .score_merge import ScoreMerger
from .transaction import transaction


_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()


def _write_lock(db_path: Path) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(str(Path(db_path).resolve()), threading.RLock())


class WarehouseCore:
    def __init__(self, layout: Layout, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.layout = layout
        self.con = con
        self.read_only = read_only
        # DuckDB connections are not safe to share between threads; catalog
        # writes from worker threads go through this lock and a cursor.  It is one lock per
        # database file in this process: DuckDB shares one database between the connections
        # of a process, so two `Warehouse` objects on one directory (a notebook's and the
        # CLI's, or the background score merge of either) would otherwise conflict on update.
        self.write_lock = _write_lock(layout.db_path)
        self._merger = None if read_only else ScoreMerger(self)
        self._last: tuple[weakref.ref, readers.Reader] | None = None  # `sql`'s last relation, its reader

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, read_only: bool = False) -> "WarehouseCore":
        layout = Layout(path if path is not None else default_root())
        if read_only:
            if not layout.db_path.exists():
                raise MissingFile(f"no warehouse at {layout.root} (missing {layout.db_path.name})")
            con = duckdb.connect(str(layout.db_path), read_only=True)
            try:
                migrations.check(con)  # an older schema needs a writable open to upgrade
            except Exception:
                con.close()
                raise
            return cls(layout, con, True)
        layout.root.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(layout.db_path))
        wh = cls(layout, con, False)
        try:
            catalog.create(con)
        except Exception:
            con.close()  # a refused or failed migration leaves the file as it was, and unheld
            raise
        layout.remove_temporaries()
        catalog.sweep_orphans(con, layout.root)
        from .erasure_files import recover

        # An erasure or compaction a kill interrupted: finished, or its new files swept; files a
        # compaction retired past their grace period removed.  Replaced score files are swept by the
        # refresh below, unless a reader of another open in this process still needs them (`readers`).
        recover(con, layout.root)
        retention.sweep_uploads(con, layout.root)
        # Paths inside views are absolute; rebuilding on open keeps them right
        # after the directory has been moved.
        wh.refresh_views()
        return wh

    @property
    def root(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        if self._merger is not None:
            self._merger.close()
        self.con.close()

    def wait_for_merge(self, timeout: float | None = None) -> bool:
        """Block until the concept score delta is merged into the wide segments (see
        `warehouse/score_merge.py`); False if `timeout` passed first."""
        return self._merger.wait(timeout) if self._merger is not None else True

    def __enter__(self) -> "WarehouseCore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    # -- querying --------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> duckdb.DuckDBPyRelation:
        # A reader from before the bind to the relation's end: a half-consumed result opens later
        # files only when it reaches them, so the sweep leaves every file of its generation until then.
        # DuckDB binds a statement in the transaction of the connection's unfinished result, if any
        # (a `fetchone()` leaves one): the catalog as it was then, files a sweep may have deleted
        # since.  While the last relation lives, this one reads as early as it does; once it is
        # gone, nothing can fetch the rest, so ending its transaction first binds this one now.
        last, self._last = self._last, None
        if last is not None and last[0]() is None:
            self.con.execute("SELECT 1")
        reader = readers.begin(since=last[1] if last is not None else None)
        try:
            rel = self.con.sql(query, params=params) if params else self.con.sql(query)
        except BaseException:
            reader.release()
            raise
        if rel is None:  # a statement, already run
            reader.release()
            return rel
        self._last = (weakref.ref(rel), reader)
        return readers.track(rel, reader)

    def checkpoint(self) -> None:
        """Fold the WAL into `pixql.duckdb` (so a reader of the file alone, the stock DuckDB
        CLI on a copy, sees every commit).  Under the write lock: DuckDB refuses a CHECKPOINT
        while a write transaction is open, and the background score merge runs one."""
        with self.write_lock:
            self.con.execute("CHECKPOINT")

    def refresh_views(self) -> None:
        """Refresh concept score caches and rebuild every view (also run on open)."""
        if self.read_only:
            return
        with self.transaction(scores=True):
            pass

    @contextmanager
    def transaction(self, views: bool = False, scores: bool = False, con=None, merge_scores: bool = False):
        """The write lock and one catalog transaction; see `warehouse.transaction`.

        `views`/`scores` rebuild the views (after refreshing concept score
        caches) at commit, as `tx.rebuild_views()` does from inside the block;
        `con` runs it on that cursor instead of a new one.  A commit that left
        concept columns in the score delta layer schedules their merge.
        """
        if self.read_only:
            raise Forbidden("warehouse opened read-only")
        with transaction(con if con is not None else self.cursor(), self.write_lock, self.layout.root,
                         views=views, scores=scores, merge_scores=merge_scores) as tx:
            yield tx
        if tx.score_delta:
            self._merger.soon()

    def datasets(self) -> duckdb.DuckDBPyRelation:
        return catalog.dataset_summaries(self.con)

    def errors(self, dataset: str | None = None, run_id: str | None = None) -> duckdb.DuckDBPyRelation:
        sql = "SELECT run_id, dataset, path, reason, created_dt FROM catalog.ingest_errors WHERE true"
        args = []
        if dataset:
            sql += " AND dataset = ?"
            args.append(dataset)
        if run_id:
            sql += " AND run_id = ?"
            args.append(run_id)
        sql += " ORDER BY created_dt, path"
        return self.con.sql(sql, params=args or None)  # a relation either way, as callers print it

    def runs(self) -> duckdb.DuckDBPyRelation:
        return self.con.sql("SELECT * FROM catalog.ingest_runs ORDER BY started_dt")

    # -- writing ---------------------------------------------------------------
    def set_ocr_flag(self, flag: str, pattern: str | None, description: str | None = None) -> None:
        """Add, replace or (pattern=None) switch off an `ocr_flags` pattern; views update at once."""
        from .analyzer_sql import set_ocr_pattern

        self._catalog_write(lambda con: set_ocr_pattern(con, flag, pattern, description))

    def reset_ocr_flag(self, flag: str) -> bool:
        """Forget the override of an `ocr_flags` pattern, bringing its default back."""
        from .analyzer_sql import reset_ocr_pattern

        return self._catalog_write(lambda con: reset_ocr_pattern(con, flag))

    def _catalog_write(self, change):
        with self.transaction(views=True) as tx:
            return change(tx.con)
