"""Query records survive a crash and a restart: finished results stay served, queued queries run,
running ones end in Error with the reason; the queue is bounded (429)."""
from __future__ import annotations

import time

from apiserver import LONG_QUERY, Server, make_token, poll


def test_crash_restart_and_graceful_stop(tmp_path):
    root = tmp_path / "wh"
    token = make_token(root, "recovery", "read")
    args = ("--query-workers", "1", "--max-queued", "2", "--time-limit", "600", "--lazy-model")
    srv = Server(root, *args).start()
    try:
        with srv.client(token) as http:
            done = poll(http, http.post("/api/v1/queries", json={"query": "SELECT 42 AS answer"}).json()["query_id"])
            assert done["status"] == "Complete"
            running = http.post("/api/v1/queries", json={"query": LONG_QUERY}).json()["query_id"]
            poll(http, running, until=("Running",))
            queued = [http.post("/api/v1/queries", json={"query": f"SELECT {i} AS i"}).json()["query_id"]
                      for i in range(2)]
            # One worker busy, two queued: the bound is reached.
            r = http.post("/api/v1/queries", json={"query": "SELECT 3 AS i"})
            assert r.status_code == 429 and r.headers.get("retry-after")
            assert [http.get(f"/api/v1/queries/{q}").json()["status"] for q in queued] == ["Queued", "Queued"]
    finally:
        srv.kill()  # SIGKILL: no shutdown code runs

    srv = Server(root, *args).start()
    try:
        with srv.client(token) as http:
            again = http.get(f"/api/v1/queries/{done['query_id']}").json()
            assert again["status"] == "Complete"
            assert again["results"]["data"] == [{"row": 0, "data": {"answer": 42}}]
            crashed = http.get(f"/api/v1/queries/{running}").json()
            assert crashed["status"] == "Error" and "server stopped" in crashed["error"]
            for i, q in enumerate(queued):
                body = poll(http, q)
                assert body["status"] == "Complete" and body["results"]["data"][0]["data"] == {"i": i}
            # Now a graceful stop (SIGTERM) with one query running and one queued.
            running = http.post("/api/v1/queries", json={"query": LONG_QUERY}).json()["query_id"]
            poll(http, running, until=("Running",))
            queued = http.post("/api/v1/queries", json={"query": "SELECT 7 AS seven"}).json()["query_id"]
    finally:
        t0 = time.monotonic()
        # uvicorn shuts down on SIGTERM, then re-raises it: -15 after a clean exit.
        assert srv.stop() in (0, -15)
        assert time.monotonic() - t0 < 30  # the running query was interrupted, not waited for

    srv = Server(root, *args).start()
    try:
        with srv.client(token) as http:
            assert http.get(f"/api/v1/queries/{running}").json()["status"] == "Error"
            assert poll(http, queued)["results"]["data"][0]["data"] == {"seven": 7}
    finally:
        srv.stop()
