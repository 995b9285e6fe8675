"""Memory and time caps that hold, killed workers replaced, and fairness between tokens, over real HTTP.

The server runs each query in a worker process bounded by the OS; these tests
read the memory of the server and all its children from /proc while a query
that DuckDB's own `memory_limit` does not bound runs.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from apiserver import LONG_QUERY, Server, make_token
from warehouse.query_queue import FairQueue
from warehouse.query_worker import parse_size

BIG = "SELECT count(*) AS n FROM (SELECT unnest(generate_series(1, {n})))"
MB = 2**20


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def total_rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    """The peak of the server's total RSS (it and all its children), sampled every 10 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.01):
            self.peak = max(self.peak, total_rss(self.pid))
            self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def submit(http, sql: str) -> str:
    r = http.post("/api/v1/queries", json={"query": sql})
    assert r.status_code == 201, r.text
    return r.json()["query_id"]


def wait_final(http, qid: str, deadline: float) -> dict:
    while True:
        left = deadline - time.monotonic()
        body = http.get(f"/api/v1/queries/{qid}", params={"wait": max(0.0, min(left, 30))}).json()
        if body["status"] in ("Complete", "Error", "Stopped") or time.monotonic() >= deadline:
            return body


def wait_status(http, qid: str, status: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"/api/v1/queries/{qid}").json()
        if body["status"] == status or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_fair_queue_round_robin_under_a_per_token_cap():
    q = FairQueue(per_owner=2)
    for qid, owner in [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("c1", "C"), ("b2", "B")]:
        q.put(qid, owner)
    order = [q.take(timeout=0)[0] for _ in range(5)]
    assert order == ["a1", "b1", "c1", "a2", "b2"]  # one per token in turn, not first come first served
    assert q.take(timeout=0) is False  # a3 waits: A already runs two
    q.done("B")
    assert q.take(timeout=0) is False  # B's slot frees nothing for A
    q.done("A")
    assert q.take(timeout=0) == ("a3", "A")
    q.close()
    assert q.take() is None


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits") / "wh"
    tokens = [make_token(root, f"user-{i}", "read") for i in range(2)]
    srv = Server(root, "--memory-limit", "256MB", "--time-limit", "5", "--query-workers", "2",
                 "--lazy-model").start()
    srv.tokens = tokens
    yield srv
    srv.stop()


def test_parse_size():
    assert parse_size("256MB") == 256 * 10**6 and parse_size("1GiB") == 2**30 and parse_size("2 gb") == 2 * 10**9
    for bad in ("banana", "", "-1GB", "0MB", "12XB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)


@pytest.mark.parametrize("n", ["1e8", "3e8", "1e9"])
def test_unbounded_operator_is_capped_and_the_server_carries_on(capped, n):
    heavy_user, other_user = capped.tokens
    sampler = Sampler(capped.proc.pid)
    sampler.start()
    try:
        with capped.client(heavy_user) as http, capped.client(other_user) as other:
            t0 = time.monotonic()
            qid = submit(http, BIG.format(n=int(float(n))))
            # Meanwhile another user's cheap query is answered.
            cheap = submit(other, "SELECT 6 * 7 AS answer")
            ok = wait_final(other, cheap, time.monotonic() + 5)
            assert ok["status"] == "Complete" and ok["results"]["data"][0]["data"] == {"answer": 42}, ok
            body = wait_final(http, qid, t0 + 2 * 5)
            elapsed = time.monotonic() - t0
    finally:
        sampler.stop()
    assert body["status"] == "Error", body
    assert "memory limit of 256MB exceeded" in body["error"] or "time limit of 5 s exceeded" in body["error"], body
    assert elapsed < 10, elapsed
    assert sampler.samples >= 1
    print(f"n={n}: {body['error'][:90]!r} after {elapsed:.2f} s, peak {sampler.peak / MB:.0f} MB")
    assert sampler.peak < 1024 * MB, f"server and workers together reached {sampler.peak / MB:.0f} MB"


def test_killed_worker_is_replaced_and_queries_still_run(capped):
    """A worker that dies mid-query (here: SIGKILL from outside, as the kernel's OOM killer would)."""
    user, _ = capped.tokens
    pid = capped.proc.pid
    with capped.client(user) as http:
        # After a memory-capped query the same worker answers again.
        body = wait_final(http, submit(http, BIG.format(n=10**9)), time.monotonic() + 10)
        assert body["status"] == "Error" and "memory limit of 256MB exceeded" in body["error"], body
        ok = wait_final(http, submit(http, "SELECT 1 AS k"), time.monotonic() + 30)
        assert ok["status"] == "Complete", ok
        before = set(tree(pid)) - {pid}
        assert len(before) == 2, before  # one process per query slot
        qid = submit(http, LONG_QUERY)
        assert wait_status(http, qid, "Running", 30)["status"] == "Running"
        for child in before:
            os.kill(child, signal.SIGKILL)
        body = wait_final(http, qid, time.monotonic() + 10)
        assert body["status"] == "Error" and "worker process died (killed by SIGKILL)" in body["error"], body
        for k in range(4):  # both slots serve again, from new processes
            ok = wait_final(http, submit(http, f"SELECT {k} AS k"), time.monotonic() + 30)
            assert ok["status"] == "Complete" and ok["results"]["data"][0]["data"] == {"k": k}, ok
    deadline = time.monotonic() + 30
    while len(set(tree(pid)) - {pid} - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = set(tree(pid)) - {pid}
    assert len(after) == 2 and not (after & before), (before, after)


def test_time_limit_ends_a_query_that_ignores_interrupts(capped):
    user, _ = capped.tokens
    with capped.client(user) as http:
        t0 = time.monotonic()
        qid = submit(http, LONG_QUERY)
        body = wait_final(http, qid, t0 + 10)
        assert body["status"] == "Error" and "time limit of 5 s exceeded" in body["error"], body
        assert time.monotonic() - t0 < 10


def test_stop_still_interrupts(capped):
    user, _ = capped.tokens
    with capped.client(user) as http:
        qid = submit(http, LONG_QUERY)
        assert wait_status(http, qid, "Running", 30)["status"] == "Running"
        t0 = time.monotonic()
        r = http.post(f"/api/v1/queries/{qid}/stop")
        assert r.status_code == 200 and r.json()["status"] in ("Stopping", "Stopped"), r.text
        body = wait_final(http, qid, t0 + 5)
        assert body["status"] == "Stopped", body


@pytest.mark.parametrize("workers", [2, 3])
def test_one_token_cannot_hold_every_worker(tmp_path, workers):
    """With 2 workers a token runs one query at a time, with 3 two; the other token is never starved."""
    root = tmp_path / "wh"
    busy, other = make_token(root, "busy", "read"), make_token(root, "other", "read")
    srv = Server(root, "--time-limit", "10", "--query-workers", str(workers), "--lazy-model").start()
    try:
        with srv.client(busy) as b, srv.client(other) as o:
            slow = [submit(b, LONG_QUERY), submit(b, LONG_QUERY)]
            for q in slow[:workers - 1]:
                assert wait_status(b, q, "Running", 30)["status"] == "Running"
            wait_final(o, submit(o, "SELECT 1 AS warm"), time.monotonic() + 30)  # the other slot is up
            t0 = time.monotonic()
            qid = submit(o, "SELECT 42 AS answer")
            body = wait_final(o, qid, t0 + 5)
            elapsed = time.monotonic() - t0
            assert body["status"] == "Complete" and body["results"]["data"][0]["data"] == {"answer": 42}, body
            assert elapsed < 1.0, f"the other token's query took {elapsed:.2f} s"
            states = [b.get(f"/api/v1/queries/{q}").json()["status"] for q in slow]
            assert states == (["Running", "Queued"] if workers == 2 else ["Running", "Running"]), states
            for q in slow:
                b.post(f"/api/v1/queries/{q}/stop")
            for q in slow:
                assert wait_final(b, q, time.monotonic() + 15)["status"] == "Stopped"
    finally:
        srv.stop()
