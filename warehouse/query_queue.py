"""What waits between the HTTP API and the query workers: the fair queue of query ids, the batched catalog writer."""
from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque

from .transaction import transaction


class FairQueue:
    """Queued query ids, one queue per owner (token), served round-robin under a per-owner cap.

    One FIFO let one token's slow queries hold every worker while others
    waited; here a free slot takes the next query of the next owner in turn
    that runs fewer than `per_owner` queries, so no token holds every slot.
    """

    def __init__(self, per_owner: int):
        self.per_owner = max(1, per_owner)
        self._cv = threading.Condition()
        self._queues: "OrderedDict[str | None, deque[str]]" = OrderedDict()
        self._running: dict[str | None, int] = {}
        self._closed = False

    def put(self, qid: str, owner: str | None) -> None:
        with self._cv:
            self._queues.setdefault(owner, deque()).append(qid)
            self._cv.notify()

    def take(self, timeout: float | None = None) -> tuple[str, str | None] | None | bool:
        """The next (query_id, owner) to run, blocking; None once closed, False after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._closed:
                for owner, q in self._queues.items():
                    if self._running.get(owner, 0) < self.per_owner:
                        qid = q.popleft()
                        del self._queues[owner]
                        if q:
                            self._queues[owner] = q  # to the back of the ring
                        self._running[owner] = self._running.get(owner, 0) + 1
                        return qid, owner
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return None

    def done(self, owner: str | None) -> None:
        with self._cv:
            n = self._running.get(owner, 0) - 1
            if n > 0:
                self._running[owner] = n
            else:
                self._running.pop(owner, None)
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class GroupCommit:
    """Writes to `catalog.queries` from any thread, committed in batches: one WAL sync per batch.

    Each DuckDB commit syncs the WAL (tens of ms on a busy disk); a query
    makes three writes (queued, running, done), so with many clients the
    syncs, not the queries, would bound throughput.  `run` returns once its
    statement is committed, so what a caller wrote is durable and visible.
    A batch that fails is rolled back and its statements retried one by one.
    """

    def __init__(self, cursor_factory, max_batch: int = 256):
        self._cursor_factory = cursor_factory
        self._max_batch = max_batch
        self._queue: "queue.Queue[list | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="pixql-query-commits", daemon=True)
        self._thread.start()

    def run(self, sql: str, args: list, fetch: bool = False):
        item = [sql, args, fetch, threading.Event(), None, None, None]  # ..., done, result, error, then
        self._queue.put(item)
        item[3].wait()
        if item[5] is not None:
            raise item[5]
        return item[4]

    def submit(self, sql: str, args: list, then) -> None:
        """Queue a write without waiting; `then(result_row, error)` runs after it commits."""
        self._queue.put([sql, args, True, threading.Event(), None, None, then])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        cur = self._cursor_factory()
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                # No write lock: only this thread writes catalog.queries (see QueryEngine).
                with transaction(cur):
                    for item in batch:
                        r = cur.execute(item[0], item[1])
                        item[4] = r.fetchone() if item[2] else None
            except Exception:
                for item in batch:
                    try:
                        r = cur.execute(item[0], item[1])
                        item[4] = r.fetchone() if item[2] else None
                    except Exception as e:
                        item[5] = e
            for item in batch:
                item[3].set()
                if item[6] is not None:
                    try:
                        item[6](item[4], item[5])
                    except Exception:  # a callback must not stop the committer
                        pass
