"""In-process: the query engine's memory cap, and the app's readiness (503) and docs."""
from __future__ import annotations

from warehouse import Warehouse
from warehouse.queries import QueryEngine, QuerySettings


def test_memory_cap(fresh_root):
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1, memory_limit="32MB")).start()
    try:
        big = engine.submit("SELECT length(string_agg(repeat('x', 1000000), '')) AS n FROM (SELECT unnest(range(200)) x)")
        small = engine.submit("SELECT length(string_agg(repeat('x', 1000), '')) AS n FROM (SELECT unnest(range(200)) x)")
        done = engine.wait(big["query_id"], 60)
        assert done["status"] == "Error" and "memory limit of 32MB exceeded" in done["error"]
        ok = engine.wait(small["query_id"], 60)
        assert ok["status"] == "Complete" and engine.page(small["query_id"])[1][0]["data"] == {"n": 200_000}
    finally:
        engine.shutdown()
        wh.close()


def test_not_ready_is_503_and_docs_are_served(fresh_root):
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app
    from api.server.state import ServerState

    settings = ServerSettings(root=fresh_root, auth=False, load_model=False)
    state = ServerState(settings)
    state.settings = settings.model_copy(update={"load_model": True})
    state.model_ready.clear()  # as while the encoder is still loading
    with TestClient(create_app(settings, state=state)) as http:
        r = http.get("/ready")
        assert r.status_code == 503 and r.json()["model"] == "loading"
        r = http.post("/api/v1/ingestion", json={"dataset": "d", "paths": [str(fresh_root)]})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert http.post("/api/v1/queries", json={"query": "SELECT 1 AS one"}).status_code == 201
        assert http.get("/docs").status_code == 200
        assert "/api/v1/queries/{query_id}" in http.get("/openapi.json").json()["paths"]
        state.model_ready.set()
        assert http.get("/ready").status_code == 200


def test_upload_limit_is_413(fresh_root, photo_dir):
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app

    settings = ServerSettings(root=fresh_root, auth=False, load_model=False, max_upload_mb=0.01)
    with TestClient(create_app(settings)) as http:
        data = (photo_dir / "chelsea.png").read_bytes()
        assert len(data) > 0.01 * 1024 * 1024
        r = http.post("/api/v1/ingestion", data={"dataset": "d"}, files=[("files", ("c.png", data))])
        assert r.status_code == 413 and "MB" in r.json()["detail"]
        assert not any((fresh_root / "uploads").rglob("*.png"))  # the partial upload was removed
        r = http.post("/api/v1/ingestion", data={"dataset": "d"})  # a form without files is not JSON either
        assert r.status_code == 422


LONG = ("SELECT sum(a.x * b.y) AS s FROM (SELECT unnest(range(100000)) AS x) a, "
        "(SELECT unnest(range(100000)) AS y) b")


def test_worker_over_its_memory_is_killed_and_replaced(fresh_root):
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1, memory_limit="256MB")).start()
    try:
        assert engine.wait(engine.submit("SELECT 1 AS one")["query_id"], 60)["status"] == "Complete"
        worker = engine.workers[0]
        worker.rss_cap = 1  # as if the query had grown past its memory
        done = engine.wait(engine.submit(LONG)["query_id"], 60)
        assert done["status"] == "Error" and "memory limit of 256MB exceeded" in done["error"], done
        assert "killed" in done["error"] and not worker.alive()
        ok = engine.wait(engine.submit("SELECT 2 AS two")["query_id"], 60)
        assert ok["status"] == "Complete" and engine.page(ok["query_id"])[1][0]["data"] == {"two": 2}
        assert engine.workers[0].pid != worker.pid
    finally:
        engine.shutdown()
        wh.close()


def test_worker_that_does_not_unwind_is_killed_at_the_time_limit(fresh_root):
    import os
    import signal

    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1, time_limit_s=1, kill_grace_s=1)).start()
    try:
        assert engine.wait(engine.submit("SELECT 1 AS one")["query_id"], 60)["status"] == "Complete"
        worker = engine.workers[0]
        os.kill(worker.pid, signal.SIGSTOP)  # deaf to interrupts, as a stuck operator is
        done = engine.wait(engine.submit(LONG)["query_id"], 30)
        assert done["status"] == "Error" and "time limit of 1 s exceeded" in done["error"], done
        # Killed, not waited for: the 30 s bound of the wait above is what 'not forever' means here.
        assert worker.proc.returncode == -signal.SIGKILL
        ok = engine.wait(engine.submit("SELECT 2 AS two")["query_id"], 60)
        assert ok["status"] == "Complete", ok
    finally:
        engine.shutdown()
        wh.close()
