"""ingest/model_streams.py: batches come back in submission order with the inline results, each
stream runs torch on one thread, never more than `streams` passes are queued, and the caller's
torch thread count is left as it was."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ingest.model_streams import ModelStreams


class FakeEncoder:
    device = "cpu"

    def __init__(self):
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.threads_seen: set[int] = set()
        self.release = threading.Event()

    def load(self):
        return self

    def encode(self, batch):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads_seen.add(torch.get_num_threads())
        self.release.wait(5)
        with self.lock:
            self.running -= 1
        return {"v": batch.float().sum(dim=(1, 2, 3)).numpy()}


def test_order_bound_and_thread_settings():
    before = torch.get_num_threads()
    enc = FakeEncoder()
    got = []
    with ModelStreams(enc, streams=2) as ms:
        for k in range(7):
            if k == 2:
                enc.release.set()  # passes 0 and 1 are held until both streams are busy
            got += list(ms.ready())
            assert len(ms._pending) < 2  # room for one more, never more than two queued
            ms.submit(torch.full((3, 1, 2, 2), k, dtype=torch.uint8), k)
        got += list(ms.drain())
    assert [item for item, _ in got] == list(range(7))
    for item, vec in got:
        assert vec["v"].tolist() == [4.0 * item] * 3
    assert enc.most <= 2
    assert enc.threads_seen == {1}
    assert torch.get_num_threads() == before


def test_one_stream_runs_inline():
    enc = FakeEncoder()
    enc.release.set()
    with ModelStreams(enc, streams=1) as ms:
        assert ms._pool is None
        ms.submit(torch.ones((2, 1, 1, 1), dtype=torch.uint8), "a")
        assert [i for i, _ in ms.ready()] == ["a"]


def test_error_reaches_the_caller():
    class Broken(FakeEncoder):
        def encode(self, batch):
            raise RuntimeError("model failed")

    with ModelStreams(Broken(), streams=2) as ms:
        ms.submit(torch.ones((1, 1, 1, 1), dtype=torch.uint8), 0)
        with pytest.raises(RuntimeError, match="model failed"):
            list(ms.drain())


def test_real_encoder_streams_match_one_pass():
    from encoders import get_encoder

    enc = get_encoder("imagenet-lite0")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8, generator=g) for _ in range(3)]
    ref = [enc.encode(b) for b in batches]
    with ModelStreams(enc, streams=2) as ms:
        out = []
        for k, b in enumerate(batches):
            out += list(ms.ready())
            ms.submit(b, k)
        out += list(ms.drain())
    for (k, vec), want in zip(out, ref):
        for col in want:
            np.testing.assert_allclose(vec[col], want[col], atol=1e-5)
