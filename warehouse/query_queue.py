"""What waits between the HTTP API and the query workers: the fair queue of query ids, the batched catalog writer."""
from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from contextlib import nullcontext

from .transaction import transaction


class FairQueue:
    """Queued query ids, one queue per owner (token), served round-robin under a per-owner cap.

    One FIFO let one token's slow queries hold every worker while others
    waited; here a free slot takes the next query of the next owner in turn
    that runs fewer than `per_owner` queries, so no token holds every slot.
    With `borrow`, a free slot that no owner under its cap wants goes to an
    owner at its cap anyway (twenty clients of one token use every worker);
    `borrowed` names those queries, and the engine puts one back in the queue
    (`put_front`) when another owner's query waits for its slot (`others_waiting`).
    """

    def __init__(self, per_owner: int, borrow: bool = False):
        self.per_owner = max(1, per_owner)
        self.borrow = borrow
        self._cv = threading.Condition()
        self._queues: "OrderedDict[str | None, deque[str]]" = OrderedDict()
        self._running: dict[str | None, int] = {}
        self.borrowed: set[str] = set()
        self._closed = False

    def put(self, qid: str, owner: str | None) -> None:
        with self._cv:
            self._queues.setdefault(owner, deque()).append(qid)
            self._cv.notify()

    def put_front(self, qid: str, owner: str | None) -> None:
        """A query taken back from its slot: first of its owner's queue again."""
        with self._cv:
            self._queues.setdefault(owner, deque()).appendleft(qid)
            self._cv.notify()

    def others_waiting(self, owner: str | None) -> bool:
        """Whether another owner under its cap has a query queued (it wants a slot)."""
        with self._cv:
            return any(o != owner and q and self._running.get(o, 0) < self.per_owner
                       for o, q in self._queues.items())

    def take(self, timeout: float | None = None) -> tuple[str, str | None] | None | bool:
        """The next (query_id, owner) to run, blocking; None once closed, False after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._closed:
                under = [o for o, q in self._queues.items() if self._running.get(o, 0) < self.per_owner][:1]
                over = not under and self.borrow and bool(self._queues)
                if under or over:
                    pick = under[0] if under else next(iter(self._queues))
                    q = self._queues.pop(pick)
                    qid = q.popleft()
                    if q:
                        self._queues[pick] = q  # to the back of the ring
                    self._running[pick] = self._running.get(pick, 0) + 1
                    if over:
                        self.borrowed.add(qid)
                    return qid, pick
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return None

    def done(self, owner: str | None, qid: str | None = None) -> None:
        with self._cv:
            self.borrowed.discard(qid)
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


class Rows:
    """A statement form that several pending writes can share: one INSERT of n rows, or one
    UPDATE joined to n rows of VALUES, instead of n statements.

    DuckDB spends about 0.5 ms on an INSERT statement and 1.5 ms on the end's point UPDATE
    (its CASEs) whatever the rows, and a commit costs more for each statement in it: under
    twenty clients these statements, not the queries, were most of the server's CPU.
    `render(n)` is the SQL for n rows, their `row_args` concatenated in order.  With
    `returns_key`, the shared statement RETURNs (key, *values) and each write gets
    `(*values,)` of the row whose key is its `row_args[0]` (None if none: as its own
    statement's `fetchone()` would), so callers see no difference.  Fewer than `min_rows`
    writes in a run, or a key repeated, run as their own statements.
    """

    def __init__(self, render, returns_key: bool = False, min_rows: int = 2):
        self.render, self.returns_key, self.min_rows = render, returns_key, min_rows
        self._sql: dict[int, str] = {}

    def sql(self, n: int) -> str:
        text = self._sql.get(n)
        if text is None:
            text = self._sql[n] = self.render(n)
        return text


class Pending:
    """One statement given to `GroupCommit`; `wait()` returns its row once committed (or raises its error)."""

    __slots__ = ("sql", "args", "fetch", "lazy", "then", "done", "row", "error", "rows", "row_args")

    def __init__(self, sql, args, fetch, lazy, then, rows: Rows | None = None, row_args=None):
        self.sql, self.args, self.fetch, self.lazy, self.then = sql, args, fetch, lazy, then
        self.rows, self.row_args = rows, row_args
        self.done = threading.Event()
        self.row = self.error = None

    def wait(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.row


class GroupCommit:
    """Writes to `catalog.queries` from any thread, committed in batches: one WAL sync per batch.

    Each DuckDB commit syncs the WAL (4 ms on a quiet disk, tens on a busy
    one), so with many clients the syncs, not the queries, would bound
    throughput.  `run` returns once its statement is committed, so what a
    caller wrote is durable and visible.  A `lazy` statement (a record whose
    outcome is already safe elsewhere, e.g. a complete query whose result file
    exists) may wait up to `linger` seconds to share the next batch, so a lone
    client pays one sync per query instead of two.  Statements commit in the
    order they were given, but for the lazy ones of a batch that also holds
    others: those commit just after, in a second transaction, so a caller
    waiting on its INSERT does not wait for them (they only record ends that
    are safe already; `flush` returns once both committed).  A batch that
    fails is rolled back and its statements retried one by one.
    """

    def __init__(self, cursor_factory, max_batch: int = 256, linger: float = 0.2):
        self._cursor_factory = cursor_factory
        self._max_batch = max_batch
        self.linger = linger
        self._queue: "queue.Queue[Pending | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="pixql-query-commits", daemon=True)
        self._thread.start()

    def start(self, sql: str, args: list, fetch: bool = False, lazy: bool = False, then=None,
              rows: Rows | None = None, row_args: list | None = None) -> Pending:
        """Queue a write; returns at once.  `then(row, error)` runs on the committer thread after it commits.

        With `rows`, the write may share one statement of that form (`Rows`) with its
        neighbours in the batch, as `row_args`; `sql` and `args` say the same for it alone."""
        item = Pending(sql, args, fetch, lazy, then, rows, row_args)
        self._queue.put(item)
        return item

    def run(self, sql: str, args: list, fetch: bool = False):
        return self.start(sql, args, fetch).wait()

    def submit(self, sql: str, args: list, then, lazy: bool = False, rows: Rows | None = None,
               row_args: list | None = None) -> None:
        """Queue a write without waiting; `then(result_row, error)` runs after it commits."""
        self.start(sql, args, True, lazy, then, rows, row_args)

    def flush(self) -> None:
        """Return once everything given before this call is committed (lazy statements too)."""
        self.start(None, None).wait()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        cur = self._cursor_factory()
        held: list[Pending] = []  # lazy statements waiting for company or their deadline
        deadline = 0.0
        closing = False
        while not closing:
            try:
                first = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if held else None)
            except queue.Empty:
                first = False  # a lazy statement's deadline passed: commit what is held
            if first is None:
                closing = True
            elif first is not False:
                if first.lazy and len(held) < self._max_batch:
                    if not held:
                        deadline = time.monotonic() + self.linger
                    held.append(first)
                    continue
                held.append(first)
            batch, held = held, []
            while len(batch) < self._max_batch and not closing:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    closing = True
                    break
                batch.append(nxt)
            if batch:
                self._commit(cur, batch)

    def _commit(self, cur, batch: list[Pending]) -> None:
        urgent = [item for item in batch if item.sql is not None and not item.lazy]
        later = [item for item in batch if item.sql is not None and item.lazy]
        if urgent and later:
            # Someone waits for the others (a submit's INSERT): they commit first and are
            # told at once; the lazy ones follow in a second transaction, so executing them
            # (a point UPDATE costs DuckDB ~1.5 ms) is not on that caller's path.
            self._transact(cur, urgent)
            self._done(urgent)
            self._transact(cur, later)
            self._done([item for item in batch if item.lazy or item.sql is None])
            return
        self._transact(cur, urgent + later)
        self._done(batch)

    @staticmethod
    def _transact(cur, work: list[Pending]) -> None:
        try:
            # No write lock: only this thread writes catalog.queries (see QueryEngine).
            with transaction(cur) if work else nullcontext():
                for run in _runs(work):
                    if len(run) == 1:
                        item = run[0]
                        r = cur.execute(item.sql, item.args)
                        item.row = r.fetchone() if item.fetch else None
                    else:
                        _execute_shared(cur, run)
        except Exception:
            for item in work:
                try:
                    r = cur.execute(item.sql, item.args)
                    item.row = r.fetchone() if item.fetch else None
                except Exception as e:
                    item.error = e

    @staticmethod
    def _done(batch: list[Pending]) -> None:
        for item in batch:
            item.done.set()
            if item.then is not None:
                try:
                    item.then(item.row, item.error)
                except Exception:  # a callback must not stop the committer
                    pass


def _runs(work: list[Pending]) -> list[list[Pending]]:
    """`work` in order, cut into runs that may share one statement (same `Rows` form, distinct
    keys, at least `min_rows`); every other write is a run of its own.  Order is kept: a run
    only joins neighbours, so no write moves past another."""
    out: list[list[Pending]] = []
    run: list[Pending] = []

    def close() -> None:
        if not run:
            return
        form = run[0].rows
        keys = {item.row_args[0] for item in run}
        if form is not None and len(run) >= form.min_rows and len(keys) == len(run):
            out.append(list(run))
        else:
            out.extend([item] for item in run)
        run.clear()

    for item in work:
        if run and (item.rows is None or item.rows is not run[0].rows):
            close()
        if item.rows is None:
            out.append([item])
        else:
            run.append(item)
    close()
    return out


def _execute_shared(cur, run: list[Pending]) -> None:
    form = run[0].rows
    args = [a for item in run for a in item.row_args]
    r = cur.execute(form.sql(len(run)), args)
    if form.returns_key:
        got = {row[0]: tuple(row[1:]) for row in r.fetchall()}
        for item in run:
            item.row = got.get(item.row_args[0]) if item.fetch else None
    else:
        for item in run:
            item.row = None
