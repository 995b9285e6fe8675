"""The one way to write the catalog: `transaction()`, and the change counters it bumps.

    with wh.transaction() as tx:            # the write lock, BEGIN ... COMMIT
        tx.con.execute("INSERT INTO catalog.... ")
        tx.rebuild_views()                  # view SQL changes: rebuilt just before COMMIT
        tx.rebuild_views(scores=True)       # asset/vector parts or concept heads changed
        tx.data_changed()                   # rows of a table the views read (SANDBOX_TABLES)

Any exception inside the block rolls everything back: catalog rows, view
definitions and counters commit together or not at all.

Two counters in `catalog.meta` say what changed, so the query engine needs one
lookup per query instead of hashing tables:

* `views_generation`: view and macro definitions (bumped by every rebuild);
* `data_generation`: rows of the catalog tables the views read, which the
  query sandbox copies (moderation decisions, videos).

Concept score caches (`concept_cache.refresh`) are refreshed here only when
a writer asks (`scores=True`), before the views are built from the catalog:
building views never scores nor writes files.  After such a commit, still
holding the lock, the score files it replaced are swept (`concept_cache.sweep`):
at once, unless a live reader (`readers`) may still read them.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, nullcontext

log = logging.getLogger("pixql.transaction")

VIEWS_GENERATION = "views_generation"
DATA_GENERATION = "data_generation"

# Catalog tables user views read (the sandbox copies them); a write to any of
# them must call `data_changed()` in its transaction.  tests/test_views_seam.py
# checks that the views read no other catalog table.
SANDBOX_TABLES = frozenset({"moderation_decisions", "videos", "asset_metadata", "ingest_errors"})


_epoch = 0  # commits in this process that moved a counter (any warehouse): see `epoch`
_epoch_lock = threading.Lock()


def epoch() -> int:
    """A number that changes after every commit in this process that moved a change counter.

    The query engine reads the counters again only when it moved, instead of
    once per query: exact, because the server process is the warehouse's only
    writer and the number moves after the COMMIT, so whoever sees the new
    number reads the new counters.  (It spans every warehouse this process
    has open: a commit to another one costs a needless re-read, never a stale one.)
    """
    return _epoch


def _moved() -> None:
    global _epoch
    with _epoch_lock:
        _epoch += 1


def bump(con, key: str) -> None:
    """Add one to counter `key` in the caller's `transaction()` (which moves `epoch` once it commits)."""
    con.execute(
        "INSERT INTO catalog.meta VALUES (?, '1') ON CONFLICT (key) "
        "DO UPDATE SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR)", [key])


def counters(con) -> tuple[int, int]:
    """(views_generation, data_generation) as committed; 0 for a counter never bumped."""
    got = dict(con.execute("SELECT key, value FROM catalog.meta WHERE key IN (?, ?)",
                           [VIEWS_GENERATION, DATA_GENERATION]).fetchall())
    return int(got.get(VIEWS_GENERATION, 0)), int(got.get(DATA_GENERATION, 0))


class Transaction:
    """What a writer changed, acted on at commit; `con` is the cursor the transaction runs on."""

    def __init__(self, con, root=None, views: bool = False, scores: bool = False, merge_scores: bool = False):
        self.con, self.root = con, root
        self._views, self._scores, self._data = views or scores or merge_scores, scores or merge_scores, False
        self._merge = merge_scores
        self.score_delta = False  # the refresh left a delta layer (`WarehouseCore` merges it soon)

    def rebuild_views(self, scores: bool = False) -> None:
        """Rebuild the views before COMMIT; with `scores`, first bring concept score caches up to date."""
        if self.root is None:
            raise ValueError("this transaction has no warehouse root: it cannot rebuild views")
        self._views = True
        self._scores = self._scores or scores

    def data_changed(self) -> None:
        """Rows of a table in SANDBOX_TABLES changed: query sandboxes must copy them again."""
        self._data = True

    @property
    def moves_counters(self) -> bool:
        return self._views or self._data

    def _before_commit(self) -> None:
        if self._scores:
            from . import concept_cache

            concept_cache.refresh(self.con, self.root, merge=self._merge)
            self.score_delta = concept_cache.delta_layer(self.con)
        if self._data and not self._views and self.root is not None:
            from . import views

            # A view leaves out its join onto an empty table (views.DATA_AWARE): rows that made
            # one empty or non-empty need the views rebuilt in this commit.
            self._views = views.data_shape_moved(self.con)
        if self._views:
            from . import views

            views.rebuild(self.con, self.root)
            bump(self.con, VIEWS_GENERATION)
        if self._data:
            bump(self.con, DATA_GENERATION)


@contextmanager
def transaction(con, lock: threading.RLock | None = None, root=None, views: bool = False,
                scores: bool = False, merge_scores: bool = False):
    """BEGIN on `con` holding `lock`; COMMIT (after the rebuilds asked for) or ROLLBACK on error."""
    with lock if lock is not None else nullcontext():
        con.execute("BEGIN TRANSACTION")
        tx = Transaction(con, root, views, scores, merge_scores)
        try:
            yield tx
            tx._before_commit()
            con.execute("COMMIT")
            if tx.moves_counters:
                _moved()
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except Exception:  # the error that got us here is the one to report
                pass
            raise
        if tx._scores:
            # Still holding the lock, after the commit: the segments and caches the refresh replaced
            # go now unless a live reader may still read them (`concept_cache.sweep`).
            from . import concept_cache

            try:
                concept_cache.sweep(con, root)
            except Exception:  # committed all the same; the next sweep retries
                log.warning("sweeping replaced score files failed", exc_info=True)
