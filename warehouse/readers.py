"""Which readers in this process may still read files the catalog no longer references.

`concept_cache.sweep` asks `unneeded` so that a replaced score file (a dropped or
compacted cache, a combined segment of an older generation) is deleted the
moment no reader that could read it is alive, instead of after a fixed age.

Who can read a file after the commit that stopped referencing it:

* a relation `WarehouseCore.sql` handed out (`track`): DuckDB binds a relation's
  views when it is executed, and a half-consumed result opens the later files of
  its list only when it reaches them, so a relation is counted as a reader of
  everything its generation referenced for as long as it is referenced (and
  the next relation made on the same connection meanwhile as one as old: DuckDB
  binds it in the transaction of the connection's unfinished result);
* a query of the query engine (`reading`, around each run): its worker process
  opens a sandbox database whose views list the files of the definitions it was
  built for;
* any other code that reads the views on a long-lived cursor and wants the same
  guarantee for one statement or result (`reading`).

No other process can be a reader while this one may sweep: sweeping runs in a
process holding `pixql.duckdb` read-write, and DuckDB's file lock refuses every
other open of it, read-only ones too (and a read-only process holds the lock
against writers while it reads).

Writers: a writer that writes files outside the write lock, to commit them later
(the score merge, `score_merge`), holds `writing(root)` meanwhile; a sweep leaves
every file newer than the oldest such writer's start (`writing_since`), since
an unreferenced file may be one it has not committed yet.

Generations: every sweep advances a process-wide counter (it runs after the
commit, holding the write lock); a reader records the counter when it begins,
before it binds anything.  A file a sweep first
found unreferenced at generation g is needed only by readers that began before
g: a reader that began at g or later bound the catalog after that commit.  So
the file goes once every live reader's generation is at least g.  The counter
spans every warehouse this process has open (DuckDB shares one database between
opens of the same file): a reader of one only ever keeps another's files longer.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

_lock = threading.Lock()
_generation = 0
_ids = itertools.count()
_live: dict[int, int] = {}  # reader id -> the generation it began at
_orphans: dict[str, dict[str, int]] = {}  # root -> {relative path: generation first found unreferenced}
_writers: dict[int, tuple[str, float]] = {}  # writer id -> (root, when it began)


class Reader:
    """One live reader; `release` (idempotent) ends it."""

    __slots__ = ("id", "generation", "__weakref__")

    def __init__(self, since: "Reader | None" = None):
        with _lock:
            self.id, self.generation = next(_ids), _generation
            if since is not None and since.id in _live:
                self.generation = min(self.generation, since.generation)
            _live[self.id] = self.generation

    def release(self) -> None:
        # No lock: the garbage collector runs this (a relation's finalizer) wherever it collects,
        # possibly inside `unneeded` on this very thread; a dict's pop is atomic.
        _live.pop(self.id, None)

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def begin(since: Reader | None = None) -> Reader:
    """A reader beginning now, or as early as `since` while that one is alive (a read that may bind
    in the same transaction): take it before binding anything, release it once done reading."""
    return Reader(since)


@contextmanager
def reading():
    """A reader for the duration of the block."""
    r = Reader()
    try:
        yield r
    finally:
        r.release()


def track(obj, reader: Reader | None = None):
    """`obj` (e.g. a DuckDB relation) is a reader until it is garbage: `reader` (taken before `obj`
    was made), or one beginning now."""
    r = reader if reader is not None else Reader()
    weakref.finalize(obj, r.release)
    return obj


@contextmanager
def writing(root: Path):
    """Files written under `root` during the block are a writer's until it commits: no sweep takes them."""
    import time

    # A second of slack: file times may be coarser than the clock.
    key, wid = str(Path(root).resolve()), next(_ids)
    with _lock:
        _writers[wid] = (key, time.time() - 1.0)
    try:
        yield
    finally:
        with _lock:
            _writers.pop(wid, None)


def writing_since(root: Path) -> float | None:
    """When the oldest writer still writing under `root` began (a time.time()), or None."""
    key = str(Path(root).resolve())
    with _lock:
        return min((t for r, t in _writers.values() if r == key), default=None)


def live() -> int:
    """How many readers are alive (tests and benchmarks report it)."""
    with _lock:
        return len(_live)


def unneeded(root: Path, unreferenced: list[str]) -> list[str]:
    """Of the files under `root` the committed catalog no longer references, those no live reader can read.

    Call after the commit, holding the write lock, with every such file (paths relative to `root`):
    a file not in the list any more (deleted, or referenced again) is forgotten.
    """
    global _generation
    with _lock:
        _generation += 1
        now = _generation
        oldest = min(_live.copy().values(), default=None)
        key = str(Path(root).resolve())
        seen = _orphans.get(key, {})
        seen = {p: seen.get(p, now) for p in unreferenced}
        _orphans[key] = seen
        return [p for p, g in seen.items() if oldest is None or oldest >= g]
