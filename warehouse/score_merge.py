"""The background merge of the concept score layers (`concept_cache`'s delta into its base).

A change that only adds concept columns commits them in the delta layer (score
columns alone), so creating a concept does not rewrite the wide base segments
with their asset columns.  Warm queries are slower while a delta exists (a
positional join, no late materialisation through it), so one thread per open
warehouse folds it in soon after: it waits until no score change has come for
`score_merge_delay_s`, writes the merged base segments without the write lock
(content-named files, so a writer committing meanwhile costs only a rewrite of
what it changed), then takes the lock for a commit that finds them in place (`readers.writing`
keeps sweeps off them until then).
"""
from __future__ import annotations

import logging
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

from . import concept_cache, readers

log = logging.getLogger("pixql.score_merge")

_registry_guard = threading.Lock()
_mergers: dict[str, weakref.WeakSet] = {}  # database file -> the mergers of its opens in this process


def _key(db_path) -> str:
    return str(Path(db_path).resolve())


@contextmanager
def paused(db_path):
    """No merge of the score delta runs on `db_path` in this process during the block; one that is
    running ends first (committed, or its files taken back).

    An erasure needs this: a merge writes its segments outside the write lock from the rows as
    they were, so one running across the erasure would leave erased rows on disk.  Call it
    without holding the write lock (a merge waiting for the lock gives up)."""
    with _registry_guard:
        mergers = list(_mergers.get(_key(db_path), ()))
    for m in mergers:
        m._pause()
    try:
        yield
    finally:
        for m in mergers:
            m._resume()


class ScoreMerger:
    def __init__(self, core):
        self._core = core
        self._cv = threading.Condition()
        self._wanted = False
        self._closed = False
        self._paused = 0
        self._merging = False
        self._thread: threading.Thread | None = None
        with _registry_guard:
            _mergers.setdefault(_key(core.layout.db_path), weakref.WeakSet()).add(self)

    def _pause(self) -> None:
        with self._cv:
            self._paused += 1
            self._cv.wait_for(lambda: not self._merging)

    def _resume(self) -> None:
        with self._cv:
            self._paused -= 1
            self._cv.notify_all()

    def soon(self) -> None:
        """A commit left a delta layer: merge it once the changes settle."""
        with self._cv:
            if self._closed:
                return
            self._wanted = True
            self._cv.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pixql-score-merge", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no merge is pending or running; False if `timeout` passed first."""
        with self._cv:
            return self._cv.wait_for(lambda: self._thread is None, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking merges and wait for a running one (it stops at its next safe point)."""
        with self._cv:
            self._closed, self._wanted = True, False
            self._cv.notify_all()
        return self.wait(timeout)

    def _settled(self) -> bool:
        """Wait (holding the condition) until changes have paused; False when closed."""
        from .settings import current

        while self._wanted and not self._closed:
            self._wanted = False
            # A new `soon()` during the wait sets `_wanted` again: wait once more (reading the
            # setting again, so a shorter delay set meanwhile takes effect).
            self._cv.wait(current().score_merge_delay_s)
        return not self._closed

    def _run(self) -> None:
        while True:
            with self._cv:
                go = self._settled()
                while go and self._paused and not self._closed:
                    self._cv.wait()
                go = self._merging = go and not self._closed
            try:
                if go:
                    self._merge()
            except Exception:  # the delta still serves every column: a failed merge costs speed only
                log.exception("merging the concept score delta failed; it stays until the next change")
            with self._cv:
                self._merging = False
                self._cv.notify_all()
                if self._wanted and not self._closed:
                    continue
                self._thread = None
                self._cv.notify_all()
                return

    def _merge(self) -> None:
        core = self._core
        con = core.cursor()
        written: list[str] = []
        committed = False
        lock = core.write_lock
        try:
            if not concept_cache.delta_layer(con):
                return
            # Until the commit, a sweep after another writer's commit must leave what this writes.
            with readers.writing(core.root):
                written = concept_cache.prepare_merge(con, core.root)
                # (close() may be waiting, holding the lock; so may a caller of `paused`)
                while not lock.acquire(timeout=0.05):
                    if self._closed or self._paused:
                        return
                try:
                    if self._closed or not concept_cache.delta_layer(con):
                        return
                    # Its commit sweeps the segments it replaced (`transaction`).
                    with core.transaction(merge_scores=True, con=con):
                        pass
                    committed = True
                finally:
                    lock.release()
        finally:
            # A merge that did not commit (closed, failed) takes back the files it wrote, if it
            # can take the lock at once; otherwise the next sweep finds them unreferenced.
            if written and not committed and lock.acquire(blocking=False):
                try:
                    concept_cache.discard_unreferenced(con, core.root, written)
                finally:
                    lock.release()
            con.close()
