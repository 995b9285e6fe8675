"""Running an encoder's forward passes for a local ingest: on CPU, as several single-threaded
streams (one batch each, in order of submission) instead of one pass over all cores.

Why: on a small machine torch's intra-op parallelism costs CPU of its own (workers spinning at
every barrier, a pass stalled whenever one of its threads loses its core to a decode thread).
Measured on 2 cores, EfficientNet-lite0 spends about 33 CPU ms per image on one thread and 41
on two; two one-thread streams keep both cores busy with no barriers, and the decode threads
fit between them. Each stream is a thread of its own whose OpenMP/MKL thread count is set to 1
(both are per-thread settings), so the caller's own torch threads stay as they were.

Results come back in submission order; a GPU, a one-core machine or `streams=1` runs each
batch inline on the caller's thread.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch


def default_streams(encoder) -> int:
    """One stream per intra-op thread torch would use here; 1 off the CPU."""
    if getattr(encoder, "device", "cpu") != "cpu":
        return 1
    return max(1, torch.get_num_threads())


class ModelStreams:
    """`ready()` yields (item, vectors) of the finished batches, oldest first, waiting only until
    there is room for one more; then `submit(pixels, item)` queues it; `drain()` yields the rest.
    Use as a context."""

    def __init__(self, encoder, streams: int | None = None):
        self.encoder = encoder
        self.streams = default_streams(encoder) if streams is None else max(1, streams)
        self._pending: deque[tuple[object, Future | dict]] = deque()
        self._pool = None
        self._caller_threads = torch.get_num_threads()
        if self.streams > 1:
            encoder.load()  # once, before the streams race for it
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="pixql-model",
                                            initializer=torch.set_num_threads, initargs=(1,))

    def submit(self, pixels: torch.Tensor, item) -> None:
        if self._pool is None:
            self._pending.append((item, self.encoder.encode(pixels)))
        else:
            self._pending.append((item, self._pool.submit(self.encoder.encode, pixels)))

    def ready(self):
        """The finished batches in order, waiting for the oldest only while every stream has one:
        the caller never queues more than `streams` passes, nor waits while a stream is idle."""
        while self._pending and (len(self._pending) >= self.streams or self._done(self._pending[0][1])):
            yield self._pop()

    def drain(self):
        while self._pending:
            yield self._pop()

    @staticmethod
    def _done(r) -> bool:
        return not isinstance(r, Future) or r.done()

    def _pop(self):
        item, r = self._pending.popleft()
        return item, (r.result() if isinstance(r, Future) else r)

    def close(self) -> None:
        if self._pool is not None:
            for _, r in self._pending:
                r.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
            # set_num_threads also records the count torch gives threads it starts later
            # (at::init_num_threads): put the caller's back.
            torch.set_num_threads(self._caller_threads)
        self._pending.clear()

    def __enter__(self) -> "ModelStreams":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
